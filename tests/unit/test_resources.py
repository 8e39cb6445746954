"""The resource a finding's cause points at (checks/resources.py), the instance context and status
transitions the daemon carries (agent/transitions.py), and how both reach the inventory entries
(agent/publishers/inventory.py) — the fleet contract of issue 13."""
from __future__ import annotations

import contextvars
import json
import time
from typing import Any, Dict, Mapping, Sequence

import pytest

from vpce_doctor.checks import resources
from vpce_doctor.checks.causes import CAUSES, KNOWN_IDS, explain, known_ids
from vpce_doctor.checks.model import Check, Facts, Finding, Settings, Status, outcome
from vpce_doctor.config import ImdsSettings
from vpce_doctor.imds import gather_facts
from vpce_doctor.publishers.inventory import FINDING_ATTRIBUTES, MAX_ITEM_BYTES, build_inventory
from vpce_doctor.report import Report, verdicts
from vpce_doctor.runner import Runner
from vpce_doctor.transitions import carry

try:
    from .imds_server import DEFAULT_DATA, ImdsServer
except ImportError:  # run as a top-level module
    from imds_server import DEFAULT_DATA, ImdsServer  # type: ignore[no-redef]

VPC, SUBNET, INSTANCE = "vpc-0a1b2c3d4e5f60718", "subnet-0a1b2c3d4e5f60718", "i-0123456789abcdef0"
EP_SG, SG_A, SG_B = "sg-0e0e0e0e0e0e0e0e0", "sg-0aaaaaaaaaaaaaaaa", "sg-0bbbbbbbbbbbbbbbb"
FACTS = Facts(region="us-east-1", partition="aws", instance_id=INSTANCE, vpc_id=VPC, subnet_id=SUBNET,
              vpc_cidr="10.0.0.0/16", subnet_cidr="10.0.1.0/24", security_group_ids=(SG_B, SG_A),
              availability_zone="us-east-1a", account_id="123456789012",
              instance_profile_arn="arn:aws:iam::123456789012:instance-profile/SSMInstanceProfile",
              credentials={"state": "ok", "role": "SSMInstanceRole"})
CONTRACT = ("CheckId", "Status", "Summary", "Cause", "CauseCode", "Fix", "Evidence", "CheckedAt", "AgentVersion",
            "BlockedBy", "StatusSince", "PreviousStatus", "CauseResourceType", "CauseResourceId", "CauseResourceName",
            "AwsAccountId", "AwsRegion", "VpcId", "SubnetId", "AvailabilityZone", "SecurityGroupIds", "RoleName")


def on_instance(code: str, facts: Facts = FACTS, **params: Any) -> Mapping[str, str]:
    """explain(code)["resource"] as a check on this instance gets it (the runner sets KNOWN_IDS)."""
    def run() -> Mapping[str, str]:
        KNOWN_IDS.set(known_ids(facts))
        return explain(code, **params)["resource"]
    return contextvars.Context().run(run)


# --- every cause names a kind of the contract ---------------------------------------------------------

def test_every_cause_names_known_kinds() -> None:
    for cause in CAUSES.values():
        kinds = resources.chain(cause.resource)
        assert kinds[-1] == "instance", cause.code
        assert set(kinds) <= set(resources.KINDS), (cause.code, cause.resource)


def test_every_cause_builds_a_resource_of_its_chain_from_the_instance_facts_alone() -> None:
    for cause in CAUSES.values():
        got = on_instance(cause.code)
        assert got["type"] in resources.chain(cause.resource), cause.code
        assert set(got) == {"type", "id", "name"} and all(isinstance(v, str) for v in got.values())


@pytest.mark.parametrize("code, kind", [
    ("private_dns_disabled", "endpoint"), ("dns_hostnames_disabled", "vpc"), ("resolver_unreachable", "vpc"),
    ("instance_sg_no_outbound_443", "security-group"), ("s3_route_missing", "route-table"),
    ("nacl_blocks", "network-acl"), ("az_unreachable", "endpoint-eni|endpoint"),
    ("custom_dns_public_answers", "dhcp-options"), ("access_denied_identity_policy", "role"),
    ("role_not_assumable", "role"), ("s3_access_denied_endpoint_policy", "gateway-endpoint"),
    ("access_denied_endpoint_policy", "endpoint"), ("s3_bucket_other_region", "bucket"),
    ("s3_access_denied_bucket_policy", "bucket"), ("session_kms_key_not_found", "session-preferences"),
    ("endpoint_sg_no_inbound_443", "security-group|endpoint"), ("clock_skew", "instance"),
    ("no_instance_profile", "instance"), ("ssm_agent_disk_full", "instance"), ("imds_disabled", "instance"),
])
def test_the_contract_kinds_of_representative_causes(code: str, kind: str) -> None:
    assert CAUSES[code].resource == kind


# --- ids with and without what the EC2 API adds -----------------------------------------------------

def test_endpoint_sg_is_the_endpoints_group_when_known_else_the_endpoint() -> None:
    with_sg = on_instance("endpoint_sg_no_inbound_443", ip="10.0.1.21", sg_ids=EP_SG, sg_id=EP_SG, service="ssm")
    assert with_sg == {"type": "security-group", "id": EP_SG, "name": ""}
    without = on_instance("endpoint_sg_no_inbound_443", ip="10.0.1.21", service="ssm",
                          sg_id="<endpoint-sg-id>", endpoint_id="vpce-0123456789abcdef0")
    assert without == {"type": "endpoint", "id": f"{VPC}/ssm", "name": "vpce-0123456789abcdef0"}
    # never the instance's own groups (KNOWN_IDS carries none): an endpoint cause stays the endpoint's
    assert SG_A not in without["id"]


def test_instance_sg_ids_are_sorted_and_joined() -> None:
    got = on_instance("instance_sg_no_outbound_443", ip="10.0.1.21", sg_ids=f"{SG_B}, {SG_A}", sg_id=SG_B)
    assert got == {"type": "security-group", "id": f"{SG_A}+{SG_B}", "name": ""}


def test_endpoint_eni_from_one_address_the_endpoint_from_several() -> None:
    one = on_instance("tcp_timeout", ip="10.0.3.21 (us-east-1c)", service="ssm",
                      endpoint_id="vpce-0123456789abcdef0", eni_id="eni-0123456789abcdef0")
    assert one == {"type": "endpoint-eni", "id": f"{VPC}/ssm/10.0.3.21",
                   "name": "vpce-0123456789abcdef0 eni-0123456789abcdef0 us-east-1c"}
    # without the EC2 API: the same id, a shorter name
    bare = on_instance("tcp_timeout", ip="10.0.3.21", service="ssm")
    assert bare["id"] == one["id"] and bare["name"] == ""
    several = on_instance("tcp_timeout", ip="10.0.1.21, 10.0.2.21", service="ssm")
    assert several == {"type": "endpoint", "id": f"{VPC}/ssm", "name": ""}
    az = on_instance("az_unreachable", service="ssm", bad_count=1, total=3, bad_ips="10.0.3.21")
    assert az["type"] == "endpoint-eni" and az["id"] == f"{VPC}/ssm/10.0.3.21"


def test_route_table_and_nacl_fall_back_to_the_subnet() -> None:
    rtb = on_instance("s3_route_missing", route_table_id="rtb-0123456789abcdef0", prefix_list_id="pl-63a5400a")
    assert rtb == {"type": "route-table", "id": "rtb-0123456789abcdef0", "name": f"route table of {SUBNET}"}
    unknown = on_instance("s3_no_answer", route_table_id="<route-table-id>", ip="198.51.100.10")
    assert unknown == {"type": "route-table", "id": SUBNET, "name": f"route table of {SUBNET}"}
    acl = on_instance("nacl_blocks", nacl_id="acl-0123456789abcdef0", ip="10.0.2.21")
    assert acl["type"] == "network-acl" and acl["id"] == "acl-0123456789abcdef0"
    assert on_instance("nacl_suspected", service="ssm")["id"] == SUBNET


def test_dhcp_options_vpc_role_bucket_table_preferences() -> None:
    assert on_instance("custom_dns_public_answers", dhcp_options_id="dopt-0123456789abcdef0")["id"] == \
        "dopt-0123456789abcdef0"
    assert on_instance("custom_dns_public_answers") == {"type": "dhcp-options", "id": VPC,
                                                        "name": f"DHCP option set of {VPC}"}
    assert on_instance("dns_hostnames_disabled", host="ssm.us-east-1.amazonaws.com") == \
        {"type": "vpc", "id": VPC, "name": ""}
    assert on_instance("access_denied_identity_policy", action="ssm:UpdateInstanceInformation") == \
        {"type": "role", "id": "SSMInstanceRole", "name": ""}
    assert on_instance("s3_bucket_other_region", bucket="lab-bucket")["id"] == "lab-bucket"
    table = on_instance("dynamodb_table_not_found", table="arn:aws:dynamodb:us-east-1:123456789012:table/Orders")
    assert table == {"type": "table", "id": "Orders", "name": ""}
    assert on_instance("session_log_group_missing", log_group="/ssm/sessions") == \
        {"type": "session-preferences", "id": "us-east-1", "name": "SSM-SessionManagerRunShell"}
    gw = on_instance("s3_access_denied_endpoint_policy", endpoint_id="vpce-0aaaaaaaaaaaaaaaa")
    assert gw == {"type": "gateway-endpoint", "id": f"{VPC}/s3", "name": "vpce-0aaaaaaaaaaaaaaaa"}
    assert on_instance("dynamodb_access_denied_endpoint_policy")["id"] == f"{VPC}/dynamodb"
    # the session's S3 endpoint policy: the gateway endpoint; KMS's: the interface endpoint
    assert on_instance("session_access_denied_endpoint_policy", service="s3")["type"] == "gateway-endpoint"
    assert on_instance("session_access_denied_endpoint_policy", service="kms") == \
        {"type": "endpoint", "id": f"{VPC}/kms", "name": ""}


def test_local_causes_are_the_instance_and_unknown_ids_fall_back_to_it() -> None:
    assert on_instance("clock_skew", skew="ahead by 9 minutes") == {"type": "instance", "id": INSTANCE, "name": ""}
    assert on_instance("no_instance_profile") == {"type": "instance", "id": INSTANCE, "name": ""}
    assert on_instance("role_not_assumable", role="<role>") == {"type": "instance", "id": INSTANCE, "name": ""}
    # nothing known at all (IMDS down): still a resource, with an empty id
    assert on_instance("dns_hostnames_disabled", facts=Facts()) == {"type": "instance", "id": "", "name": ""}


# --- the finding, its JSON, redaction --------------------------------------------------------------

def test_findings_carry_the_resource_blocked_ones_have_none() -> None:
    cause = explain("dns_hostnames_disabled", vpc_id=VPC)
    f = Finding("dns.ssm", Status.CRITICAL, "public answers", **cause)
    assert f.to_dict()["resource"] == {"type": "vpc", "id": VPC, "name": ""}
    blocked = Finding("reach.ssm", Status.CRITICAL, "not run", blocked_by="dns.ssm", **cause)
    assert blocked.resource is None and blocked.to_dict()["resource"] is None
    assert Finding("imds", Status.OK, "ok").to_dict()["resource"] is None


def test_the_report_redacts_the_resource() -> None:
    secret = "AKIAIOSFODNN7EXAMPLE"
    f = Finding("x", Status.CRITICAL, "s", cause_code="aws_error",
                resource={"type": "bucket", "id": "b", "name": f"key {secret}"})
    report = Report((f,), FACTS, (), time.time(), 0.1)
    assert secret not in json.dumps(report.to_dict())
    assert report.findings[0].resource is not None and report.findings[0].resource["id"] == "b"


def test_the_runner_fills_the_resource_from_the_instance_facts() -> None:
    def run(ctx: Any) -> Any:
        return outcome(Finding("dns.ssm", Status.CRITICAL, "public", **explain("dns_hostnames_disabled")))
    found = Runner([Check("dns.ssm", run)], FACTS, Settings(), time.monotonic() + 5).run()
    assert found[0].resource == {"type": "vpc", "id": VPC, "name": ""}


# --- facts: AZ and account ---------------------------------------------------------------------------

def test_imds_gives_the_availability_zone_and_the_profile_arn_the_account() -> None:
    data = dict(DEFAULT_DATA, **{"placement/availability-zone": "us-east-1b"})
    with ImdsServer("ok", data=data) as srv:
        facts = gather_facts(ImdsSettings(endpoint=srv.endpoint, timeout_s=1.0, connect_timeout_s=0.5), {})
        asked = {s.path.rsplit("/meta-data/", 1)[-1] for s in srv.gets()}
    assert facts.imds_state == "ok", facts.imds_error
    assert facts.availability_zone == "us-east-1b" and facts.account_id == "123456789012"
    assert "placement/availability-zone" in asked
    with ImdsServer("no_profile") as srv:
        bare = gather_facts(ImdsSettings(endpoint=srv.endpoint, timeout_s=1.0, connect_timeout_s=0.5), {})
    assert bare.imds_state == "ok" and bare.account_id is None and bare.availability_zone is None


# --- transitions -----------------------------------------------------------------------------------

def _report(statuses: Mapping[str, Status], started_at: float, facts: Facts = FACTS) -> Report:
    findings = tuple(Finding(cid, st, f"{cid} {st.name}",
                             **({"resource": on_instance("dns_hostnames_disabled", facts=facts),
                                 "cause_code": "dns_hostnames_disabled"} if st != Status.OK else {}))
                     for cid, st in statuses.items())
    return Report(findings, facts, verdicts(findings), started_at, 0.2)


def test_transitions_carry_the_start_and_reset_on_a_change() -> None:
    t0 = 1_800_000_000.0
    first = carry(None, _report({"dns.ssm": Status.OK, "clock": Status.OK}, t0))
    assert first.transitions == {"dns.ssm": (t0, ""), "clock": (t0, "")}
    second = carry(first, _report({"dns.ssm": Status.OK, "clock": Status.OK}, t0 + 300))
    assert second.transitions == first.transitions  # unchanged: the start stays
    third = carry(second, _report({"dns.ssm": Status.CRITICAL, "clock": Status.OK, "reach.ssm": Status.OK}, t0 + 600))
    assert third.transitions["dns.ssm"] == (t0 + 600, "OK")
    assert third.transitions["clock"] == (t0, "")
    assert third.transitions["reach.ssm"] == (t0 + 600, "")  # new: starts now, previous unknown
    fourth = carry(third, _report({"dns.ssm": Status.CRITICAL, "clock": Status.OK}, t0 + 900))
    assert fourth.transitions["dns.ssm"] == (t0 + 600, "OK")
    fifth = carry(fourth, _report({"dns.ssm": Status.OK, "clock": Status.OK}, t0 + 1200))
    assert fifth.transitions["dns.ssm"] == (t0 + 1200, "CRITICAL")
    assert fifth.to_dict()["transitions"]["dns.ssm"] == {"since": "2027-01-15T08:20:00Z", "previous_status": "CRITICAL"}


# --- inventory entries -------------------------------------------------------------------------------

def _entries(report: Report) -> Sequence[Dict[str, str]]:
    return build_inventory(report, "Custom:VpceDoctor", "Custom:VpceDoctorVerdict").items[0].content


def test_inventory_entries_carry_the_contract_attributes_alike() -> None:
    t0 = 1_800_000_000.0
    checked = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 + 300))
    before = carry(None, _report({"dns.ssm": Status.OK, "clock": Status.OK}, t0))
    report = carry(before, _report({"dns.ssm": Status.CRITICAL, "clock": Status.OK}, t0 + 300))
    blocked = Finding("reach.ssm", Status.CRITICAL, "not run", blocked_by="dns.ssm",
                      cause_code="dns_hostnames_disabled", resource={"type": "vpc", "id": VPC, "name": ""})
    report = Report(report.findings + (blocked,), report.facts, report.verdicts, report.started_at, 0.2,
                    transitions=report.transitions)
    entries = {e["CheckId"]: e for e in _entries(report)}
    assert tuple(FINDING_ATTRIBUTES) == CONTRACT and len(CONTRACT) <= 50
    assert all(tuple(e) == CONTRACT and all(isinstance(v, str) for v in e.values()) for e in entries.values())
    dns, clock, reach = entries["dns.ssm"], entries["clock"], entries["reach.ssm"]
    assert (dns["CauseResourceType"], dns["CauseResourceId"], dns["CauseResourceName"]) == ("vpc", VPC, "")
    assert (dns["StatusSince"], dns["PreviousStatus"]) == (checked, "OK")
    assert clock["StatusSince"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)) and clock["CauseResourceType"] == ""
    assert reach["BlockedBy"] == "dns.ssm" and reach["CauseResourceType"] == "" and reach["StatusSince"] == checked
    for e in entries.values():
        assert (e["AwsAccountId"], e["AwsRegion"], e["VpcId"], e["SubnetId"], e["AvailabilityZone"]) == \
            ("123456789012", "us-east-1", VPC, SUBNET, "us-east-1a")
        assert e["SecurityGroupIds"] == f"{SG_A},{SG_B}" and e["RoleName"] == "SSMInstanceRole"


def test_role_name_falls_back_to_the_profile_and_unknowns_are_empty() -> None:
    facts = Facts(region="us-east-1", instance_profile_arn="arn:aws:iam::123456789012:instance-profile/Prof")
    entry = _entries(_report({"clock": Status.OK}, 1_800_000_000.0, facts))[0]
    assert entry["RoleName"] == "Prof" and entry["VpcId"] == "" and entry["SecurityGroupIds"] == ""
    one_shot = _entries(_report({"clock": Status.OK}, 1_800_000_000.0))[0]  # no transitions: CheckedAt
    assert one_shot["StatusSince"] == one_shot["CheckedAt"] and one_shot["PreviousStatus"] == ""


def _hash(report: Report) -> str:
    return build_inventory(report, "Custom:VpceDoctor", "Custom:VpceDoctorVerdict").items[0].content_hash


def test_content_hash_follows_resource_and_start_not_every_cycle() -> None:
    t0 = 1_800_000_000.0
    a = carry(None, _report({"dns.ssm": Status.CRITICAL}, t0))
    b = carry(a, _report({"dns.ssm": Status.CRITICAL}, t0 + 300))
    assert _hash(a) == _hash(b)  # the daemon's steady state: no PutInventory
    moved = _report({"dns.ssm": Status.CRITICAL}, t0 + 300, facts=Facts(region="us-east-1", vpc_id="vpc-0bbbbbbbb"))
    assert _hash(carry(a, moved)) != _hash(b)  # another resource: a new diagnosis
    # one-shot reports (no transitions) of one diagnosis hash alike however far apart
    assert _hash(_report({"dns.ssm": Status.CRITICAL}, t0)) == _hash(_report({"dns.ssm": Status.CRITICAL}, t0 + 60))


def test_sixty_findings_stay_well_under_the_item_limit() -> None:
    statuses = {f"reach.svc{i}.10.0.{i}.21": (Status.CRITICAL if i % 2 else Status.OK) for i in range(60)}
    findings = []
    for i, (cid, st) in enumerate(statuses.items()):
        cause = explain("tcp_timeout", ip=f"10.0.{i}.21 (us-east-1a)", service=f"svc{i}", vpc_id=VPC,
                        endpoint_id="vpce-0123456789abcdef0", eni_id="eni-0123456789abcdef0") if st else {}
        findings.append(Finding(cid, st, f"{cid}: TCP timeout " + "x" * 120, evidence={"a": "y" * 300}, **cause))
    report = carry(None, Report(tuple(findings), FACTS, (), 1_800_000_000.0, 1.0))
    content = build_inventory(report, "Custom:VpceDoctor", "Custom:VpceDoctorVerdict")
    entries = list(content.items[0].content)
    added = len(json.dumps([{k: e[k] for k in CONTRACT[9:]} for e in entries]))
    assert len(entries) == 60 and not content.notes
    assert len(json.dumps(entries)) < MAX_ITEM_BYTES / 2 and added / 60 < 600, (len(json.dumps(entries)), added)
    big = [Finding(f.id, f.status, f.summary, evidence={"a": "y" * 4000}, cause_code=f.cause_code, cause="c" * 4000,
                   fix="f" * 4000, resource=f.resource) for f in findings]
    shrunk = build_inventory(Report(tuple(big), FACTS, (), 1_800_000_000.0, 1.0), "Custom:VpceDoctor",
                             "Custom:VpceDoctorVerdict")
    assert len(shrunk.items[0].content) == 60 and shrunk.notes  # Evidence and texts cut, every entry kept
    assert len(json.dumps(list(shrunk.items[0].content))) <= MAX_ITEM_BYTES
    assert all(e["CauseResourceId"].startswith(VPC) for e in shrunk.items[0].content if e["Status"] == "CRITICAL")

