"""Does AWS accept this instance: iam.credentials, auth.ssm, ssm.preferences, clock.

The signed calls go to a service-shaped HTTP listener on loopback that checks what SSM checks
before answering (a SigV4 Authorization header for the ssm service, the JSON 1.1 target and body)
and answers with SSM's real error shapes; the credentials come from a real IMDSv2 server.
"""
from __future__ import annotations

import json
import time
from email.utils import formatdate
from typing import Any, Callable, Dict, Mapping, Optional

import pytest

from vpce_doctor.checks import awsclient, clock, denials, ssmapi
from vpce_doctor.checks.model import Facts, Settings, Status
from vpce_doctor.config import ImdsSettings
from vpce_doctor.imds import gather_facts

try:
    from tests.unit.imds_server import DEFAULT_DATA, ImdsServer
    from tests.unit.moto_fixture import aws_env, by_id, fake_aws, run_check, use_endpoints
except ImportError:  # tests/unit on sys.path
    from imds_server import DEFAULT_DATA, ImdsServer  # type: ignore
    from moto_fixture import aws_env, by_id, fake_aws, run_check, use_endpoints  # type: ignore

__all__ = ["aws_env"]

INSTANCE = "i-0123456789abcdef0"
ROLE = "SSMInstanceRole"
PRINCIPAL = f"arn:aws:sts::123456789012:assumed-role/{ROLE}/{INSTANCE}"
CHECKS = by_id(ssmapi.checks(Settings(connect_timeout_s=1.0, api_timeout_s=2.0)) + clock.checks(Settings()))
GOOD_CREDS = {"state": "ok", "role": ROLE, "code": "Success", "type": "AWS-HMAC",
              "expiration": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 6 * 3600)),
              "has_keys": True}


def facts(**over: Any) -> Facts:
    base: Dict[str, Any] = dict(region="us-east-1", partition="aws", domain="amazonaws.com", instance_id=INSTANCE,
                                vpc_id="vpc-0vdt", vpc_cidr="10.0.0.0/16", vpc_cidrs=("10.0.0.0/16",),
                                instance_profile_arn="arn:aws:iam::123456789012:instance-profile/SSMProfile",
                                credentials=GOOD_CREDS, imds_state="ok")
    base.update(over)
    return Facts(**base)


def ssm_service(handlers: Mapping[str, Callable[[Dict[str, Any]], tuple]], clock_offset_s: float = 0.0,
                date_header: Optional[str] = None):
    """A responder that validates like SSM: signed for ssm, JSON 1.1, a known target."""

    def respond(method: str, path: str, headers: Mapping[str, str], body: bytes):
        date = date_header or formatdate(time.time() + clock_offset_s, usegmt=True)
        auth = headers.get("authorization", "")
        if method != "POST" or "/ssm/aws4_request" not in auth or "Signature=" not in auth:
            return 400, {"Content-Type": "application/x-amz-json-1.1", "Date": date}, json.dumps(
                {"__type": "MissingAuthenticationTokenException", "message": "Missing Authentication Token"}).encode()
        target = headers.get("x-amz-target", "")
        op = target.split(".", 1)[1] if target.startswith("AmazonSSM.") else ""
        if op not in handlers:
            return 400, {"Content-Type": "application/x-amz-json-1.1", "Date": date}, json.dumps(
                {"__type": "UnknownOperationException"}).encode()
        status, doc = handlers[op](json.loads(body or b"{}"))
        out = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        return status, {"Content-Type": "application/x-amz-json-1.1", "Date": date}, out

    return respond


def denied(action: str, clause: str):
    return lambda payload: (400, {"__type": "AccessDeniedException", "Message":
                                  f"User: {PRINCIPAL} is not authorized to perform: {action} on resource: "
                                  f"arn:aws:ec2:us-east-1:123456789012:instance/{INSTANCE} {clause}"})


def associations(payload: Dict[str, Any]):
    assert payload["InstanceId"] == INSTANCE  # the agent's own call: for this very instance
    return 200, {"Associations": []}


def no_document(payload: Dict[str, Any]):
    return 400, {"__type": "InvalidDocument", "Message": "The specified document does not exist."}


@pytest.fixture
def ssm(aws_env, monkeypatch):
    awsclient.forget_clients()
    servers = []

    def start(handlers, clock_offset_s: float = 0.0, date_header: Optional[str] = None):
        ctx = fake_aws(ssm_service(handlers, clock_offset_s, date_header))
        server = ctx.__enter__()
        servers.append(ctx)
        use_endpoints(monkeypatch, ssm=server.url)
        return server

    yield start
    for ctx in servers:
        ctx.__exit__(None, None, None)
    awsclient.forget_clients()


def run(check_id: str, data: Optional[Mapping[str, Any]] = None, **fact_over: Any):
    return run_check(CHECKS[check_id], facts(**fact_over), Settings(connect_timeout_s=1.0, api_timeout_s=2.0),
                     data or {})


# --- auth.ssm -----------------------------------------------------------------------------------------

def test_accepted_instance(ssm) -> None:
    server = ssm({"ListInstanceAssociations": associations})
    out = run("auth.ssm")
    f = out.findings[0]
    assert f.status == Status.OK and "SSM accepts this instance" in f.summary
    assert out.data["accepted"] is True and abs(out.data["clock"]["skew_s"]) <= 2
    assert server.requests[0][2]["x-amz-target"] == "AmazonSSM.ListInstanceAssociations"


@pytest.mark.parametrize("clause, code", [
    ("because no identity-based policy allows the ssm:ListInstanceAssociations action", "access_denied_identity_policy"),
    ("with an explicit deny in an identity-based policy", "access_denied_identity_policy"),
    ("because no VPC endpoint policy allows the ssm:ListInstanceAssociations action", "access_denied_endpoint_policy"),
    ("with an explicit deny in a VPC endpoint policy", "access_denied_endpoint_policy"),
    ("with an explicit deny in a service control policy", "access_denied_scp"),
    ("because no permissions boundary allows the ssm:ListInstanceAssociations action", "access_denied_boundary"),
    ("", "access_denied_ambiguous"),
])
def test_refusal_names_the_policy(ssm, clause: str, code: str) -> None:
    ssm({"ListInstanceAssociations": denied("ssm:ListInstanceAssociations", clause)})
    out = run("auth.ssm", data={"iam.credentials": {"role": ROLE}})
    f = out.findings[0]
    assert f.status == Status.CRITICAL and f.cause_code == code, (f.cause_code, f.summary)
    assert out.data is None  # dependents see that SSM refused
    if code == "access_denied_identity_policy":
        assert (f"aws iam attach-role-policy --role-name {ROLE} --policy-arn "
                "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore") in f.fix
    if code == "access_denied_ambiguous":
        assert "endpoint policy" in f.cause and "identity" in f.cause


def test_endpoint_policy_fix_names_the_endpoint_when_known(ssm) -> None:
    from vpce_doctor.checks.ec2view import Ec2View, EndpointView

    ep = EndpointView(id="vpce-0ssm", service_name="com.amazonaws.us-east-1.ssm", type="Interface",
                      state="available", private_dns_enabled=True, eni_ids=(), eni_ips=(), eni_azs={},
                      security_group_ids=(), route_table_ids=(), dns_names=())
    view = Ec2View(available=True, endpoints=(ep,))
    ssm({"ListInstanceAssociations": denied("ssm:ListInstanceAssociations",
                                            "with an explicit deny in a VPC endpoint policy")})
    f = run("auth.ssm", data={"ec2.api": view}).findings[0]
    assert "aws ec2 modify-vpc-endpoint --vpc-endpoint-id vpce-0ssm --reset-policy" in f.fix


def test_signature_expired_is_the_clock(ssm) -> None:
    expired = ("Signature expired: 20261202T180000Z is now earlier than 20261202T180200Z "
               "(20261202T180700Z - 5 min.)")
    ssm({"ListInstanceAssociations": lambda p: (400, {"__type": "InvalidSignatureException", "message": expired}),
         "GetDocument": no_document}, clock_offset_s=420)
    auth = run("auth.ssm").findings[0]
    assert auth.status == Status.CRITICAL and auth.cause_code == "clock_skew"
    assert "behind AWS" in auth.cause and "Session Manager" in auth.cause
    prefs = run("ssm.preferences")
    clock = run("clock", data={"auth.ssm": None, "ssm.preferences": prefs.data}).findings[0]
    assert clock.status == Status.CRITICAL and clock.cause_code == "clock_skew"
    assert 415 <= -clock.evidence["skew_s"] <= 425 and "S3 still works" in clock.summary


def test_skew_beyond_15_minutes_breaks_s3_too() -> None:
    data = {"ssm.preferences": {"clock": {"date": "x", "parsed": True, "skew_s": -1200.0}}}
    f = run_check(CHECKS["clock"], facts(), Settings(), data, ).findings[0]
    assert f.status == Status.CRITICAL and "and S3" in f.cause


def test_small_drift_warns_and_agreement_is_ok() -> None:
    warn = run_check(CHECKS["clock"], facts(), Settings(),
                     {"auth.ssm": {"clock": {"parsed": True, "skew_s": 120.0}}}).findings[0]
    assert warn.status == Status.WARNING and warn.cause_code == "clock_drift"
    ok = run_check(CHECKS["clock"], facts(), Settings(), {"auth.ssm": {"clock": {"parsed": True, "skew_s": 0.4}},
                                                         "ssm.preferences": {"clock": {"parsed": True, "skew_s": 30}}})
    assert ok.findings[0].status == Status.OK and ok.data["skew_s"] == 0.4


def test_unregistered_instance_is_accepted_but_warned(ssm) -> None:
    ssm({"ListInstanceAssociations": lambda p: (400, {"__type": "InvalidInstanceId", "Message": ""})})
    out = run("auth.ssm")
    assert out.findings[0].status == Status.WARNING and out.findings[0].cause_code == "ssm_not_registered"
    assert out.data["accepted"] is True


@pytest.mark.parametrize("body", [b"<html><body>Proxy login</body></html>", b'{"Associations": 1', b"\x00\xff" * 10])
def test_garbage_answer_is_one_bounded_line_without_secrets(ssm, body: bytes) -> None:
    ssm({"ListInstanceAssociations": lambda p: (200, body)})
    f = run("auth.ssm").findings[0]
    assert f.status == Status.CRITICAL and f.cause_code == "aws_bad_answer"
    text = json.dumps(f.to_dict())
    assert "\n" not in f.summary and len(f.summary) < 400
    assert "vdt-test-secret" not in text and "AKIAVDTTESTKEY" not in text and "Signature=" not in text


def test_a_broken_path_blocks_the_call_instead_of_timing_out(ssm) -> None:
    server = ssm({"ListInstanceAssociations": associations})
    start = time.monotonic()
    out = run("auth.ssm", data={"reach.ssm": None, "dns.ssm": {"answers": []}})
    f = out.findings[0]
    assert f.blocked_by == "reach.ssm" and f.cause_code == "aws_call_blocked"
    assert server.requests == [] and time.monotonic() - start < 0.5


# --- ssm.preferences ----------------------------------------------------------------------------------

def test_preferences_read_from_the_document(ssm) -> None:
    content = {"schemaVersion": "1.0", "description": "prefs", "sessionType": "Standard_Stream",
               "inputs": {"kmsKeyId": "alias/session", "cloudWatchLogGroupName": "/ssm/sessions",
                          "cloudWatchEncryptionEnabled": True, "s3BucketName": ""}}
    ssm({"GetDocument": lambda p: (200, {"Name": p["Name"], "Content": json.dumps(content),
                                         "DocumentType": "Session", "DocumentFormat": "JSON", "Status": "Active"})})
    out = run("ssm.preferences")
    assert out.findings[0].status == Status.OK
    assert "KMS encryption (alias/session)" in out.findings[0].summary
    assert out.data["source"] == "document" and out.data["inputs"]["cloudWatchLogGroupName"] == "/ssm/sessions"


def test_no_document_means_defaults(ssm) -> None:
    ssm({"GetDocument": no_document})
    out = run("ssm.preferences")
    assert out.findings[0].status == Status.OK and out.data == {**out.data, "source": "document", "inputs": {}}


def test_refused_preferences_are_assumed_not_broken(ssm) -> None:
    ssm({"GetDocument": denied("ssm:GetDocument", "because no identity-based policy allows the ssm:GetDocument action")})
    out = run("ssm.preferences")
    f = out.findings[0]
    assert f.status == Status.WARNING and f.cause_code == "preferences_unreadable"
    assert out.data["source"] == "assumed" and "AccessDeniedException" in out.data["why"]


# --- iam.credentials ----------------------------------------------------------------------------------

@pytest.mark.parametrize("creds, code", [
    ({"state": "ok", "role": ROLE, "code": "AssumeRoleUnauthorizedAccess",
      "message": f"EC2 cannot assume the role {ROLE}."}, "role_not_assumable"),
    ({"state": "no_role"}, "credentials_no_role"),
    ({**GOOD_CREDS, "expiration": "2020-01-01T00:00:00Z"}, "credentials_expired"),
    ({"state": "error", "message": "not JSON"}, "credentials_unreadable"),
])
def test_credentials_failures(creds: Dict[str, Any], code: str) -> None:
    f = run_check(CHECKS["iam.credentials"], facts(credentials=creds), Settings()).findings[0]
    assert f.status == Status.CRITICAL and f.cause_code == code, f.summary
    if code == "role_not_assumable":
        assert f"update-assume-role-policy --role-name {ROLE}" in f.fix and "ec2.amazonaws.com" in f.fix


def test_good_credentials() -> None:
    out = run_check(CHECKS["iam.credentials"], facts(), Settings())
    assert out.findings[0].status == Status.OK and out.data["role"] == ROLE


def _imds_with(extra: Dict[str, str]) -> Facts:
    data = dict(DEFAULT_DATA)
    data.update(extra)
    with ImdsServer("ok", data=data) as srv:
        return gather_facts(ImdsSettings(endpoint=srv.endpoint, timeout_s=0.5, connect_timeout_s=0.5), {}, 2.5)


def test_imds_credentials_summary_never_holds_the_keys() -> None:
    doc = {"Code": "Success", "LastUpdated": "2026-12-02T10:00:00Z", "Type": "AWS-HMAC",
           "AccessKeyId": "ASIAVDTSECRETKEYID00", "SecretAccessKey": "vdt-very-secret", "Token": "vdt-session-token",
           "Expiration": "2026-12-02T16:00:00Z"}
    got = _imds_with({"iam/security-credentials/": ROLE, f"iam/security-credentials/{ROLE}": json.dumps(doc)})
    assert got.imds_state == "ok"
    assert got.credentials["code"] == "Success" and got.credentials["role"] == ROLE and got.credentials["has_keys"]
    text = json.dumps(got.to_dict())
    assert "vdt-very-secret" not in text and "vdt-session-token" not in text and "ASIAVDTSECRET" not in text


def test_imds_assume_role_unauthorized_and_garbage() -> None:
    doc = {"Code": "AssumeRoleUnauthorizedAccess", "Message": f"EC2 cannot assume the role {ROLE}.",
           "LastUpdated": "2026-12-02T10:00:00Z"}
    got = _imds_with({"iam/security-credentials/": ROLE, f"iam/security-credentials/{ROLE}": json.dumps(doc)})
    assert got.credentials["code"] == "AssumeRoleUnauthorizedAccess" and got.imds_state == "ok"
    bad = _imds_with({"iam/security-credentials/": ROLE, f"iam/security-credentials/{ROLE}": "<html>portal</html>"})
    assert bad.credentials["state"] == "error" and "not a JSON object" in bad.credentials["message"]
    assert bad.imds_state == "ok"  # the credentials' trouble is theirs, not IMDS's
    none = _imds_with({})
    assert none.credentials["state"] == "no_role"


# --- denials ------------------------------------------------------------------------------------------

def test_classify_reads_code_and_clause() -> None:
    d = denials.classify("AccessDeniedException", f"User: {PRINCIPAL} is not authorized to perform: "
                         "ssm:UpdateInstanceInformation on resource: arn:aws:ec2:us-east-1:123456789012:instance/"
                         f"{INSTANCE} with an explicit deny in a VPC endpoint policy")
    assert (d.kind, d.explicit, d.action, d.principal) == ("endpoint_policy", True, "ssm:UpdateInstanceInformation",
                                                           PRINCIPAL)
    assert denials.classify("AccessDenied", "Access Denied").kind == "ambiguous"
    s3 = denials.classify("AccessDenied", 'User: x is not authorized to perform: s3:GetObject on resource: '
                          '"arn:aws:s3:::b/k" because no resource-based policy allows the s3:GetObject action')
    assert s3.kind == "resource_policy" and s3.resource == "arn:aws:s3:::b/k" and not s3.explicit
    assert denials.is_denial("AccessDeniedException") and not denials.is_denial("ThrottlingException")


def test_a_misled_system_resolver_blocks_the_call(ssm) -> None:
    # /etc/hosts (or a custom nameserver) sends ssm's name elsewhere: botocore, like the SSM agent,
    # would dial that address; the finding names resolver.system instead of a timeout.
    server = ssm({"ListInstanceAssociations": associations, "GetDocument": no_document})
    misled = {"resolver.system": {"misled_hosts": ["ssm.us-east-1.amazonaws.com"]}}
    auth = run("auth.ssm", data=misled)
    assert auth.findings[0].blocked_by == "resolver.system" and server.requests == []
    prefs = run("ssm.preferences", data=misled)
    assert prefs.findings[0].blocked_by == "resolver.system" and prefs.data["source"] == "assumed"
    other = run("auth.ssm", data={"resolver.system": {"misled_hosts": ["ssmmessages.us-east-1.amazonaws.com"]}})
    assert other.findings[0].status == Status.OK


def test_a_date_header_that_does_not_parse_is_not_a_clock_reading(ssm) -> None:
    ssm({"ListInstanceAssociations": associations, "GetDocument": no_document}, date_header="yesterday-ish \x01")
    auth = run("auth.ssm")
    assert auth.findings[0].status == Status.OK and auth.data["clock"]["parsed"] is False
    clock_finding = run("clock", data={"auth.ssm": auth.data}).findings[0]
    assert clock_finding.status == Status.OK and "not compared" in clock_finding.summary
