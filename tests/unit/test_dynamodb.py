"""checks/dynamodb.py: dynamodb.dns against a real dnsmasq in a test namespace; dynamodb.route from
EC2 views (and ec2api.gather against moto); dynamodb.api against moto, against a DynamoDB-shaped
listener for AWS's AccessDeniedException wording (moto has no endpoint policies), and against a
dropped address (timeouts ranked by what the view proves)."""
from __future__ import annotations

import json
import re
import time
from typing import Any, Dict

import pytest

from vpce_doctor.checks import dynamodb, ec2api
from vpce_doctor.checks.ec2view import Ec2View, EndpointView, Route, SecurityGroupRule
from vpce_doctor.checks.model import Context, Finding, Settings, Status

try:
    from tests.unit.moto_fixture import (aws_env, boto, facts_for, fake_aws, moto_reset, moto_url, netns,
                                         require_root_tools, run_check, seed_vpc, use_endpoints)
except ImportError:  # tests/unit on sys.path
    from moto_fixture import (aws_env, boto, facts_for, fake_aws, moto_reset, moto_url, netns,  # type: ignore
                              require_root_tools, run_check, seed_vpc, use_endpoints)

__all__ = ["aws_env", "moto_url"]

RESOLVER = "10.0.0.2"
DDB_IPS = ["198.51.100.16", "198.51.100.17"]  # the lab's DynamoDB stand-ins (docs/lab-contract.md)
DDB_PL, S3_PL = "pl-02cd2c6b", "pl-63a5400a"
GW, S3_GW, RTB, INST_SG = "vpce-0ddb", "vpce-0s3", "rtb-0sub", "sg-0inst"
TABLE = "vdt-table"
FACTS = facts_for({"vpc_id": "vpc-0vdt", "subnet_id": "subnet-0a", "instance_sg": INST_SG})
USER = "arn:aws:sts::123456789012:assumed-role/SSMInstanceRole/i-0vdt"
DNS_DATA: Dict[str, Any] = {"host": "dynamodb.us-east-1.amazonaws.com", "answers": DDB_IPS, "server": RESOLVER}


def lab_view(**over: Any) -> Ec2View:
    """The reference lab's API view: S3 and DynamoDB gateway endpoints, both routed."""
    base: Dict[str, Any] = dict(
        available=True, vpc_id="vpc-0vdt", enable_dns_support=True, enable_dns_hostnames=True,
        endpoints=(EndpointView(S3_GW, "com.amazonaws.us-east-1.s3", "Gateway", "available", route_table_ids=(RTB,)),
                   EndpointView(GW, "com.amazonaws.us-east-1.dynamodb", "Gateway", "available",
                                route_table_ids=(RTB,))),
        route_table_id=RTB, routes=(Route("10.0.0.0/16", "local"), Route(S3_PL, S3_GW), Route(DDB_PL, GW)),
        s3_prefix_list_id=S3_PL, s3_prefix_list_cidrs=("198.51.100.0/28",),
        dynamodb_prefix_list_id=DDB_PL, dynamodb_prefix_list_cidrs=("198.51.100.16/28",), instance_sg_ids=(INST_SG,),
        security_group_rules={INST_SG: (SecurityGroupRule("outbound", "tcp", 443, 443, cidrs=("0.0.0.0/0",)),)})
    base.update(over)
    return Ec2View(**base)


UNAVAILABLE = Ec2View(available=False, reason="no TCP connection to https://ec2.us-east-1.amazonaws.com")
NO_DDB_ROUTE = (Route("10.0.0.0/16", "local"), Route(S3_PL, S3_GW))


def ctx_for(settings: Settings, view: Ec2View, deadline_s: float = 20.0) -> Context:
    return Context(FACTS, settings, {"resolver": {"server": RESOLVER}, "ec2.api": view},
                   deadline=time.monotonic() + deadline_s, check_timeout_s=deadline_s)


def api(settings: Settings, view: Ec2View, dns: Dict[str, Any] = DNS_DATA) -> Finding:
    return dynamodb.api_step(ctx_for(settings, view), view, "us-east-1", dict(dns))


def route(view: Ec2View, dns: Dict[str, Any] = DNS_DATA) -> Finding:
    return dynamodb.route_step(ctx_for(Settings(), view), view, "us-east-1", dict(dns))


# --- when it runs at all ---------------------------------------------------------------------------------

def test_not_configured_and_no_gateway_seen_is_one_quiet_finding_and_no_verdict():
    from vpce_doctor.report import verdicts

    check = dynamodb.checks(Settings())[0]
    for view in (UNAVAILABLE, lab_view(endpoints=())):
        out = run_check(check, FACTS, Settings(), {"resolver": {"server": RESOLVER}, "ec2.api": view})
        assert [f.id for f in out.findings] == ["dynamodb"]
        f = out.findings[0]
        assert f.status == Status.OK and f.verified and f.evidence == {"applicable": False}
        assert "dynamodb_gateway" not in [v.name for v in verdicts(list(out.findings))]


def test_a_silent_resolver_blocks_only_what_is_checked():
    check = dynamodb.checks(Settings())[0]
    assert "resolver" in check.wants and "resolver" not in check.needs  # its failure adds no row when idle
    quiet = run_check(check, FACTS, Settings(), {"resolver": None, "ec2.api": UNAVAILABLE})
    assert [f.id for f in quiet.findings] == ["dynamodb"] and quiet.findings[0].status == Status.OK
    out = run_check(check, FACTS, Settings(dynamodb_table=TABLE), {"resolver": None, "ec2.api": UNAVAILABLE})
    by = {f.id: f for f in out.findings}
    assert by["dynamodb.dns"].blocked_by == "resolver" and by["dynamodb.api"].blocked_by == "dynamodb.dns"


def test_verdict_follows_the_dynamodb_findings():
    from vpce_doctor.report import verdicts

    ok = [Finding("dynamodb.dns", Status.OK, "ok"), Finding("dynamodb.route", Status.OK, "ok"),
          Finding("dynamodb.api", Status.OK, "ok")]
    v = {x.name: x for x in verdicts(ok)}["dynamodb_gateway"]
    assert v.status == "works" and v.title == "DynamoDB via gateway endpoint"
    broken = ok[:1] + [Finding("dynamodb.route", Status.CRITICAL, "no route", cause_code="dynamodb_route_missing"),
                       ok[2]]
    v = {x.name: x for x in verdicts(broken)}["dynamodb_gateway"]
    assert v.status == "broken" and "dynamodb.route" in v.reason


def test_config_section():
    from vpce_doctor.config import parse_config
    from vpce_doctor.errors import ConfigError

    assert parse_config(None, "c").settings.dynamodb_table is None  # absent: only where a gateway is seen
    assert parse_config({"dynamodb": None}, "c").settings.dynamodb_table is None
    assert parse_config({"dynamodb": {}}, "c").settings.dynamodb_table == ""  # ListTables
    assert parse_config({"dynamodb": {"table": "orders"}}, "c").settings.dynamodb_table == "orders"
    for bad, words in (({"table": "x"}, "not a DynamoDB table name"), ({"tabel": "orders"}, "unknown key"),
                       ("orders", "not a mapping")):
        with pytest.raises(ConfigError, match=words) as err:
            parse_config({"dynamodb": bad}, "c")
        assert "\n" not in str(err.value) and str(err.value).startswith("c: dynamodb:")


# --- dynamodb.dns: a real resolver ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dns_ns(tmp_path_factory):
    require_root_tools("dnsmasq")
    records = [*(f"--host-record=dynamodb.us-east-1.amazonaws.com,{ip}" for ip in DDB_IPS),
               "--host-record=dynamodb.us-west-2.amazonaws.com,198.51.100.201",  # outside the lab's list
               "--host-record=dynamodb.eu-west-1.amazonaws.com,10.0.1.160",  # an interface endpoint's ENI
               "--local=/amazonaws.com/"]  # everything else: NXDOMAIN
    with netns("ddb", [RESOLVER]) as ns:
        ns.dnsmasq(RESOLVER, records, str(tmp_path_factory.mktemp("dnsmasq")))
        yield ns


def dns_run(ns, region: str = "us-east-1", view: Ec2View = None):
    view = view if view is not None else lab_view()
    facts = facts_for({"vpc_id": "vpc-0vdt", "subnet_id": "subnet-0a"}, region=region)
    ctx = Context(facts, Settings(), {"resolver": {"server": RESOLVER}, "ec2.api": view}, time.monotonic() + 10, 10)
    return ns.call(lambda: dynamodb.dns_step(ctx, view, region))


def test_dns_public_answers_inside_the_prefix_list(dns_ns):
    f, data = dns_run(dns_ns)
    assert f.id == "dynamodb.dns" and f.status == Status.OK and DDB_PL in f.summary
    assert data["answers"] == DDB_IPS and f.evidence["outside_prefix_list"] == []


def test_dns_answers_outside_the_prefix_list_warn(dns_ns):
    f, _ = dns_run(dns_ns, region="us-west-2")  # the view's list is us-east-1's
    assert f.status == Status.WARNING and f.cause_code == "dynamodb_outside_prefix_list"


def test_dns_private_answers_mean_an_interface_endpoint(dns_ns):
    f, data = dns_run(dns_ns, region="eu-west-1")
    assert f.status == Status.OK and data["interface_endpoint"] is True


def test_dns_nxdomain_blocks_the_call(dns_ns):
    f, data = dns_run(dns_ns, region="ap-south-1")
    assert f.id == "dynamodb.dns" and f.status == Status.CRITICAL and data["failed"]
    blocked = api(Settings(dynamodb_table=TABLE), lab_view(), data)
    assert blocked.status == Status.CRITICAL and blocked.blocked_by == "dynamodb.dns"


# --- dynamodb.route ------------------------------------------------------------------------------------------

def test_route_present():
    f = route(lab_view())
    assert f.status == Status.OK and f.verified and DDB_PL in f.summary and GW in f.summary


def test_s3s_route_does_not_count_for_dynamodb():
    f = route(lab_view(routes=NO_DDB_ROUTE))
    assert f.status == Status.CRITICAL and f.cause_code == "dynamodb_route_missing"
    assert f"--vpc-endpoint-id {GW} --add-route-table-ids {RTB}" in f.fix and "no route table" in f.cause


def test_route_on_another_table_names_it():
    view = lab_view(routes=NO_DDB_ROUTE, endpoints=(
        EndpointView(GW, "com.amazonaws.us-east-1.dynamodb", "Gateway", "available", route_table_ids=("rtb-0other",)),))
    f = route(view)
    assert f.cause_code == "dynamodb_route_missing" and "rtb-0other only" in f.cause


def test_configured_without_a_gateway_endpoint():
    view = lab_view(routes=NO_DDB_ROUTE, endpoints=lab_view().endpoints[:1])
    f = route(view)
    assert f.cause_code == "dynamodb_no_gateway_route" and "create-vpc-endpoint" in f.fix
    assert "com.amazonaws.us-east-1.dynamodb" in f.fix and f"--route-table-ids {RTB}" in f.fix


def test_route_unverified_without_the_view():
    f = route(UNAVAILABLE)
    assert f.status == Status.OK and not f.verified


def test_gather_reads_the_dynamodb_prefix_list_and_gateway(aws_env, moto_url, monkeypatch):
    moto_reset(moto_url)
    ids = seed_vpc(moto_url)
    ec2 = boto("ec2", moto_url)
    ec2.create_vpc_endpoint(VpcId=ids["vpc_id"], ServiceName="com.amazonaws.us-east-1.dynamodb",
                            VpcEndpointType="Gateway", RouteTableIds=[ids["route_table_id"]])
    facts = facts_for(ids)
    ctx = Context(facts, Settings(), {}, time.monotonic() + 20, 20)
    view = ec2api.gather(ctx, ec2, ids["vpc_id"], "us-east-1")
    want = ec2.describe_prefix_lists(Filters=[{"Name": "prefix-list-name",
                                               "Values": ["com.amazonaws.us-east-1.dynamodb"]}])["PrefixLists"][0]
    assert view.dynamodb_prefix_list_id == want["PrefixListId"] and view.dynamodb_prefix_list_cidrs
    assert view.endpoint_for("dynamodb", "Gateway") is not None
    f = dynamodb.route_step(Context(facts, Settings(), {}, time.monotonic() + 5, 5), view, "us-east-1", DNS_DATA)
    assert f.status == Status.OK and want["PrefixListId"] in f.summary


# --- dynamodb.api against moto ----------------------------------------------------------------------------------

@pytest.fixture
def tables(aws_env, moto_url, monkeypatch):
    moto_reset(moto_url)
    client = boto("dynamodb", moto_url)
    client.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    use_endpoints(monkeypatch, dynamodb=moto_url)
    return client


def test_describe_table(tables):
    f = api(Settings(dynamodb_table=TABLE), lab_view())
    assert f.status == Status.OK and f.evidence["table_status"] == "ACTIVE" and f.evidence["http_status"] == 200
    assert f.evidence["operation"] == "DescribeTable" and "latency_ms" in f.evidence


def test_list_tables_without_a_table(tables):
    f = api(Settings(dynamodb_table=""), lab_view())
    assert f.status == Status.OK and f.evidence["operation"] == "ListTables" and f.evidence["table_count"] == 1


def test_missing_table_says_name_or_region(tables):
    f = api(Settings(dynamodb_table="vdt-nope"), lab_view())
    assert f.status == Status.CRITICAL and f.cause_code == "dynamodb_table_not_found"
    assert f.evidence["error_code"] == "ResourceNotFoundException" and "another region" in f.cause


def test_table_arn_of_another_region_is_named_without_a_call(aws_env, monkeypatch):
    with fake_aws(lambda *a: (500, {}, b"")) as fake:
        use_endpoints(monkeypatch, dynamodb=fake.url)
        f = api(Settings(dynamodb_table=f"arn:aws:dynamodb:eu-west-1:123456789012:table/{TABLE}"), lab_view())
    assert f.cause_code == "dynamodb_table_other_region" and "eu-west-1" in f.cause and fake.requests == []


# --- refusals: AWS's AccessDeniedException wording ------------------------------------------------------------

def denied(message: str):
    body = json.dumps({"__type": "com.amazon.coral.service#AccessDeniedException", "Message": message}).encode()
    return lambda *a: (400, {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "VDT0REQ"}, body)


TABLE_ARN = f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}"
DENIALS = [
    (f"User: {USER} is not authorized to perform: dynamodb:DescribeTable on resource: {TABLE_ARN} with an explicit "
     "deny in a VPC endpoint policy", "dynamodb_access_denied_endpoint_policy"),
    (f"User: {USER} is not authorized to perform: dynamodb:DescribeTable on resource: {TABLE_ARN} because no VPC "
     "endpoint policy allows the dynamodb:DescribeTable action", "dynamodb_access_denied_endpoint_policy"),
    (f"User: {USER} is not authorized to perform: dynamodb:DescribeTable on resource: {TABLE_ARN} because no "
     "identity-based policy allows the dynamodb:DescribeTable action", "dynamodb_access_denied_iam"),
    (f"User: {USER} is not authorized to perform: dynamodb:DescribeTable on resource: {TABLE_ARN}",
     "dynamodb_access_denied"),
]


@pytest.mark.parametrize("message,code", DENIALS)
def test_describe_table_denied_names_the_policy(aws_env, monkeypatch, message, code):
    with fake_aws(denied(message)) as fake:
        use_endpoints(monkeypatch, dynamodb=fake.url)
        f = api(Settings(dynamodb_table=TABLE), lab_view())
    assert f.status == Status.CRITICAL and f.cause_code == code and len(fake.requests) == 1  # no retries
    assert f.evidence["error_code"] == "AccessDeniedException" and f.evidence["message"] == message
    assert TABLE_ARN in f.fix  # the resource as AWS named it, not a <placeholder> account
    if code == "dynamodb_access_denied_endpoint_policy":
        assert f"--vpc-endpoint-id {GW}" in f.fix


@pytest.mark.parametrize("message,code", [(m.replace("DescribeTable", "ListTables").replace(TABLE_ARN, "*"), c)
                                          for m, c in DENIALS])
def test_list_tables_denied_proves_the_path(aws_env, monkeypatch, message, code):
    """As s3.api (issue 14): DynamoDB answered, so the path works; no table was asked for."""
    with fake_aws(denied(message)) as fake:
        use_endpoints(monkeypatch, dynamodb=fake.url)
        f = api(Settings(dynamodb_table=""), lab_view())
    assert f.status == Status.OK and f.verified and f.cause_code is None
    assert f.evidence["path_proven"] is True and f.evidence["refused_by"] == code and "the path works" in f.summary


# --- timeouts: dropped DynamoDB addresses in a test namespace ----------------------------------------------------

@pytest.fixture(scope="module")
def drop_ns():
    require_root_tools()
    with netns("ddbt", DDB_IPS) as ns:
        ns.nft([f"ip daddr {ip} tcp dport 443 drop" for ip in DDB_IPS])
        yield ns


def timeout_run(ns, monkeypatch, view: Ec2View):
    use_endpoints(monkeypatch, dynamodb=f"https://{DDB_IPS[0]}")
    settings = Settings(dynamodb_table=TABLE, connect_timeout_s=0.5)
    start = time.monotonic()
    f = ns.call(lambda: api(settings, view))
    return f, time.monotonic() - start


def test_timeout_without_the_route_is_the_missing_association(aws_env, monkeypatch, drop_ns):
    f, elapsed = timeout_run(drop_ns, monkeypatch, lab_view(routes=NO_DDB_ROUTE))
    assert elapsed < 2.0, elapsed  # one 0.5 s connect attempt, no retries
    assert f.status == Status.CRITICAL and f.cause_code == "dynamodb_route_missing"
    assert f.fix == route(lab_view(routes=NO_DDB_ROUTE)).fix  # one fix for one root cause
    assert "ConnectTimeoutError" in f.evidence["error"] and "0x" not in f.evidence["error"]


def test_timeout_without_the_view_names_route_then_sg(aws_env, monkeypatch, drop_ns):
    f, _ = timeout_run(drop_ns, monkeypatch, UNAVAILABLE)
    assert f.cause_code == "dynamodb_no_answer" and "the route, then the instance security group" in f.cause
    assert "--add-route-table-ids" in f.fix and "authorize-security-group-egress" in f.fix
    assert "cannot reference prefix lists" in f.fix and not re.search(r"\{[a-z_]+\}", f.fix)


def test_timeout_with_route_known_and_rules_unknown_puts_the_sg_first(aws_env, monkeypatch, drop_ns):
    f, _ = timeout_run(drop_ns, monkeypatch, lab_view(security_group_rules={}))
    assert f.cause_code == "dynamodb_no_answer" and "the instance security group's egress, then the route" in f.cause


def test_timeout_with_route_and_an_sg_without_dynamodb_blames_the_sg(aws_env, monkeypatch, drop_ns):
    only_s3 = {INST_SG: (SecurityGroupRule("outbound", "tcp", 443, 443, cidrs=("198.51.100.0/28",)),)}
    f, _ = timeout_run(drop_ns, monkeypatch, lab_view(security_group_rules=only_s3))
    assert f.cause_code == "dynamodb_sg_no_outbound_443" and f"--group-id {INST_SG}" in f.fix and DDB_PL in f.fix


def test_timeout_with_the_prefix_list_rule_and_route_is_path_blocked(aws_env, monkeypatch, drop_ns):
    pl_rule = {INST_SG: (SecurityGroupRule("outbound", "tcp", 443, 443, prefix_list_ids=(DDB_PL,)),)}
    f, _ = timeout_run(drop_ns, monkeypatch, lab_view(security_group_rules=pl_rule))
    assert f.cause_code == "dynamodb_path_blocked" and RTB in f.cause
