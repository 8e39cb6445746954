"""session.requirements (+ session.kms / .logs / .s3): Session Manager preferences -> what a session
needs, against a real dnsmasq, real TLS listeners (trustme CA) and moto as a server, all inside a private
network namespace (fixtures_net); refusals and garbage come from a service-shaped listener (FakeAws)
inside the same namespace.

Regions stand for two VPCs: in us-east-1 kms and logs have interface endpoints with Private DNS
(answers inside 10.0.0.0/16, TLS listeners there); in us-west-2 they have none (public answers)."""
from __future__ import annotations

import json
import time
from typing import Any, Dict, Iterator, Mapping, Optional

import pytest

from vpce_doctor.checks import session
from vpce_doctor.checks.ec2view import Ec2View, EndpointView
from vpce_doctor.checks.model import Check, Facts, Finding, Outcome, Settings, Status, outcome

try:
    from .fixtures_net import Dnsmasq, Netns, TlsListener, require_netns_tools
    from .moto_fixture import FakeAws, aws_env, run_check, s3_error_xml, use_endpoints
except ImportError:  # tests/unit is not a package
    from fixtures_net import Dnsmasq, Netns, TlsListener, require_netns_tools  # type: ignore
    from moto_fixture import FakeAws, aws_env, run_check, s3_error_xml, use_endpoints  # type: ignore

__all__ = ["aws_env"]

trustme = pytest.importorskip("trustme")
pytest.importorskip("moto")

RESOLVER = "10.0.0.2"
KMS_IPS = ("10.0.1.31", "10.0.2.31")
LOGS_IPS = ("10.0.1.41",)
HALF_LOGS_IPS = ("10.0.1.42", "10.0.2.42")  # eu-west-1: the second ENI drops TCP 443 (one AZ unreachable)
PUBLIC = {"kms": "198.51.100.77", "logs": "198.51.100.78"}
KEY_PATTERN = "AKIAVDTTESTKEY000000"  # the fake access key id of aws_env: must never show up
ROLE = "vdt-session-role"
DENIED = ("User: arn:aws:sts::123456789012:assumed-role/{role}/i-0lab is not authorized to perform: "
          "{action} on resource: {resource} because no {policy} allows the {action} action")

RECORDS = [
    *(f"--host-record=kms.us-east-1.amazonaws.com,{ip}" for ip in KMS_IPS),
    *(f"--host-record=logs.us-east-1.amazonaws.com,{ip}" for ip in LOGS_IPS),
    f"--host-record=kms.us-west-2.amazonaws.com,{PUBLIC['kms']}",
    f"--host-record=logs.us-west-2.amazonaws.com,{PUBLIC['logs']}",
    *(f"--host-record=logs.eu-west-1.amazonaws.com,{ip}" for ip in HALF_LOGS_IPS),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, Any]]:
    require_netns_tools()
    from moto.server import ThreadedMotoServer

    work = tmp_path_factory.mktemp("session")
    ns = Netns("ses")
    dns: Optional[Dnsmasq] = None
    listeners = []
    moto: Any = None
    try:
        ns.create([RESOLVER, *KMS_IPS, *LOGS_IPS, *HALF_LOGS_IPS])
        dns = Dnsmasq(ns, [RESOLVER], RECORDS, str(work), "amazon").start()
        ca = trustme.CA()
        ca_path = str(work / "ca.pem")
        ca.cert_pem.write_to_path(ca_path)
        cert = ca.issue_cert("*.us-east-1.amazonaws.com", "*.eu-west-1.amazonaws.com")
        listeners = [TlsListener(ns, ip, cert) for ip in (*KMS_IPS, *LOGS_IPS, *HALF_LOGS_IPS)]
        ns.nft("table inet vdt_ses {\n chain input {\n  type filter hook input priority 0; policy accept;\n"
               f"  ip daddr {HALF_LOGS_IPS[1]} tcp dport 443 drop\n }}\n}}\n")
        with ns.entered():  # moto's listening socket (made in its own thread) lives in the namespace
            moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            moto.start()
            host, port = moto.get_host_and_port()
            url = f"http://{host}:{port}"
            seeded = _seed(url)
        yield {"ns": ns, "ca_path": ca_path, "moto": url, **seeded}
    finally:
        if moto is not None:
            moto.stop()
        for listener in listeners:
            listener.close()
        if dns is not None:
            dns.stop()
        ns.delete()


def _boto(service: str, url: str, region: str = "us-east-1") -> Any:
    import boto3

    return boto3.client(service, region_name=region, endpoint_url=url, aws_access_key_id="AKIAVDTSEED000000000",
                        aws_secret_access_key="vdt-seed-secret")


def _seed(url: str) -> Dict[str, Any]:
    """What the preferences point at: a key, an encrypted and a plain log group, three buckets."""
    key = _boto("kms", url).create_key(Description="session key")["KeyMetadata"]
    disabled = _boto("kms", url).create_key(Description="disabled")["KeyMetadata"]["KeyId"]
    _boto("kms", url).disable_key(KeyId=disabled)
    signing = _boto("kms", url).create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    logs = _boto("logs", url)
    logs.create_log_group(logGroupName="/ssm/sessions", kmsKeyId=key["Arn"])
    logs.create_log_group(logGroupName="/ssm/plain")
    logs.create_log_group(logGroupName="/ssm/plain-other")  # a prefix match that is not the group
    _boto("logs", url, "eu-west-1").create_log_group(logGroupName="/ssm/sessions")
    s3c = _boto("s3", url)
    s3c.create_bucket(Bucket="vdt-session-logs")
    s3c.put_bucket_encryption(Bucket="vdt-session-logs", ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]})
    s3c.create_bucket(Bucket="vdt-plain-logs")
    return {"key_id": key["KeyId"], "key_arn": key["Arn"], "disabled_key": disabled, "signing_key": signing}


def settings_for(world: Dict[str, Any]) -> Settings:
    return Settings(dns_timeout_s=0.5, connect_timeout_s=0.5, tls_timeout_s=2.0, api_timeout_s=3.0,
                    ca_bundle=world["ca_path"])


def facts(region: str = "us-east-1") -> Facts:
    return Facts(region=region, partition="aws", vpc_id="vpc-0lab", subnet_id="subnet-0a", vpc_cidr="10.0.0.0/16",
                 vpc_cidrs=("10.0.0.0/16",), subnet_cidr="10.0.1.0/24", local_ipv4="10.0.1.10",
                 instance_id="i-0lab", imds_state="ok")


def view(*services: str) -> Ec2View:
    eps = tuple(EndpointView(f"vpce-0{s}", f"com.amazonaws.us-east-1.{s}", "Interface", "available",
                             private_dns_enabled=True, security_group_ids=("sg-0ep",)) for s in services)
    return Ec2View(available=True, vpc_id="vpc-0lab", enable_dns_support=True, enable_dns_hostnames=True,
                   endpoints=eps)


def prefs(source: str = "document", why: str = "GetDocument SSM-SessionManagerRunShell: read", **inputs: Any) -> Dict[str, Any]:
    base: Dict[str, Any] = {"s3BucketName": "", "s3KeyPrefix": "", "s3EncryptionEnabled": False,
                            "cloudWatchLogGroupName": "", "cloudWatchEncryptionEnabled": False,
                            "cloudWatchStreamingEnabled": False, "kmsKeyId": "", "runAsEnabled": False,
                            "runAsDefaultUser": "", "idleSessionTimeout": "20", "shellProfile": {"linux": ""}}
    base.update(inputs)
    return {"source": source, "inputs": base, "why": why}


def run(world: Dict[str, Any], preferences: Any, *, region: str = "us-east-1", ec2: Any = None,
        data: Optional[Mapping[str, Any]] = None) -> Outcome:
    settings = settings_for(world)
    check = session.checks(settings)[0]
    given: Dict[str, Any] = {"ssm.preferences": preferences, "resolver": {"server": RESOLVER},
                             "ec2.api": ec2 if ec2 is not None else view("ssm", "kms", "logs")}
    given.update(data or {})
    with world["ns"].entered():
        return run_check(check, facts(region), settings, given)


def one(out: Outcome, fid: str) -> Finding:
    found = [f for f in out.findings if f.id == fid]
    assert len(found) == 1, [f.id for f in out.findings]
    return found[0]


@pytest.fixture
def aws(aws_env: Any, world: Dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Dict[str, Any]:
    use_endpoints(monkeypatch, kms=world["moto"], logs=world["moto"], s3=world["moto"])
    return world


# --- nothing required / assumed ----------------------------------------------------------------------

def test_registry_and_contract() -> None:
    (check,) = session.checks(Settings())
    assert check.id == "session.requirements" and check.needs == ("ssm.preferences",)
    assert set(check.wants) == {"resolver", "ec2.api", "s3.dns"}


def test_no_requirements(aws: Dict[str, Any]) -> None:
    out = run(aws, prefs())
    assert [f.id for f in out.findings] == ["session.requirements"]
    f = out.findings[0]
    assert f.status == Status.OK and "need nothing beyond ssmmessages" in f.summary and "assumed" not in f.summary
    assert out.data == {"source": "document", "required": [], "status": {}}


@pytest.mark.parametrize("data", [
    {"source": "assumed", "inputs": {}, "why": "GetDocument: AccessDeniedException (identity-based policy)"},
    {"source": "assumed", "inputs": "garbage", "why": "x" * 5000},
    None,  # ssm.preferences was not part of this run
])
def test_assumed_preferences_say_what_was_assumed(aws: Dict[str, Any], data: Any) -> None:
    out = run(aws, data)
    f = one(out, "session.requirements")
    assert f.status == Status.OK and "assumed Session Manager defaults" in f.summary
    assert len(f.summary) < 400
    if data and data["why"].startswith("GetDocument"):
        assert "AccessDeniedException" in f.summary


# --- kms ------------------------------------------------------------------------------------------

def test_kms_without_endpoint_is_critical_with_the_create_command(aws: Dict[str, Any]) -> None:
    out = run(aws, prefs(kmsKeyId="alias/session"), region="us-west-2", ec2=view("ssm"))
    f = one(out, "session.kms")
    assert f.status == Status.CRITICAL and f.cause_code == "session_kms_endpoint_missing"
    assert PUBLIC["kms"] in f.cause and "Session Manager" in f.cause
    assert ("aws ec2 create-vpc-endpoint --vpc-id vpc-0lab --vpc-endpoint-type Interface --service-name "
            "com.amazonaws.us-west-2.kms --subnet-ids subnet-0a --security-group-ids sg-0ep --private-dns-enabled") in f.fix
    assert out.data["status"] == {"kms": "CRITICAL"}


def test_kms_healthy_proves_path_and_key_but_not_decrypt(aws: Dict[str, Any]) -> None:
    out = run(aws, prefs(kmsKeyId=aws["key_id"]))
    f = one(out, "session.kms")
    assert f.status == Status.OK, f
    assert "kms:Decrypt not provable without a ciphertext" in f.summary
    assert f.evidence["key_state"] == "Enabled" and sorted(f.evidence["reach"]) == sorted(KMS_IPS)
    assert all(v == "ok" for v in f.evidence["reach"].values())


@pytest.mark.parametrize("key, code", [
    ("alias/does-not-exist", "session_kms_key_not_found"),
    ("arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab", "session_kms_key_other_region"),
])
def test_kms_key_problems(aws: Dict[str, Any], key: str, code: str) -> None:
    f = one(run(aws, prefs(kmsKeyId=key)), "session.kms")
    assert f.status == Status.CRITICAL and f.cause_code == code


@pytest.mark.parametrize("which, words", [("disabled_key", "Disabled"), ("signing_key", "RSA_2048/SIGN_VERIFY")])
def test_kms_key_that_cannot_decrypt(aws: Dict[str, Any], which: str, words: str) -> None:
    f = one(run(aws, prefs(kmsKeyId=aws[which])), "session.kms")
    assert f.status == Status.CRITICAL and f.cause_code == "session_kms_key_unusable" and words in f.cause


def test_kms_endpoint_with_private_dns_off_keeps_the_sharper_cause(aws: Dict[str, Any]) -> None:
    ec2 = Ec2View(available=True, vpc_id="vpc-0lab", enable_dns_support=True, enable_dns_hostnames=True,
                  endpoints=(EndpointView("vpce-0kms", "com.amazonaws.us-west-2.kms", "Interface", "available",
                                          private_dns_enabled=False),))
    f = one(run(aws, prefs(kmsKeyId="alias/session"), region="us-west-2", ec2=ec2), "session.kms")
    assert f.status == Status.CRITICAL and f.cause_code == "private_dns_disabled"
    assert "aws ec2 modify-vpc-endpoint --vpc-endpoint-id vpce-0kms --private-dns-enabled" in f.fix
    assert f.summary.startswith("session encryption (kmsKeyId alias/session) needs the kms endpoint")


# --- logs -----------------------------------------------------------------------------------------

def test_logs_without_endpoint(aws: Dict[str, Any]) -> None:
    f = one(run(aws, prefs(cloudWatchLogGroupName="/ssm/sessions"), region="us-west-2", ec2=view("ssm")),
            "session.logs")
    assert f.status == Status.CRITICAL and f.cause_code == "session_logs_endpoint_missing"
    assert "com.amazonaws.us-west-2.logs" in f.fix


@pytest.mark.parametrize("encrypted", [False, True])
def test_log_group_missing(aws: Dict[str, Any], encrypted: bool) -> None:
    f = one(run(aws, prefs(cloudWatchLogGroupName="/ssm/nope", cloudWatchEncryptionEnabled=encrypted)),
            "session.logs")
    assert f.status == Status.CRITICAL and f.cause_code == "session_log_group_missing"
    assert ("refuses every session" in f.cause) == encrypted
    assert "aws logs create-log-group --log-group-name /ssm/nope --region us-east-1" in f.fix


def test_log_group_unencrypted_with_encryption_required(aws: Dict[str, Any]) -> None:
    f = one(run(aws, prefs(cloudWatchLogGroupName="/ssm/plain", cloudWatchEncryptionEnabled=True,
                           kmsKeyId=aws["key_arn"])), "session.logs")
    assert f.status == Status.CRITICAL and f.cause_code == "session_log_group_not_encrypted"
    assert "We couldn't start the session because encryption is not set up on the selected CloudWatch Logs" in f.cause
    assert f"aws logs associate-kms-key --log-group-name /ssm/plain --kms-key-id {aws['key_arn']}" in f.fix


def test_logs_healthy_with_kms_and_logs(aws: Dict[str, Any]) -> None:
    out = run(aws, prefs(cloudWatchLogGroupName="/ssm/sessions", cloudWatchEncryptionEnabled=True,
                         cloudWatchStreamingEnabled=True, kmsKeyId=aws["key_arn"]))
    assert [f.id for f in out.findings] == ["session.requirements", "session.kms", "session.logs"]
    assert all(f.status == Status.OK for f in out.findings), [(f.id, f.summary) for f in out.findings]
    logs = one(out, "session.logs")
    assert "KMS-encrypted" in logs.summary and "not tried" in logs.summary
    assert out.data["status"] == {"kms": "OK", "logs": "OK"}


def test_one_unreachable_az_is_a_warning_not_ok(aws: Dict[str, Any]) -> None:
    f = one(run(aws, prefs(cloudWatchLogGroupName="/ssm/sessions"), region="eu-west-1", ec2=view("ssm", "logs")),
            "session.logs")
    assert f.status == Status.WARNING and f.cause_code in ("az_unreachable", "nacl_suspected"), f
    assert f.evidence["reach"] == {HALF_LOGS_IPS[0]: "ok", HALF_LOGS_IPS[1]: "timeout/not attempted"}


# --- refusals and garbage: a service-shaped listener inside the namespace ------------------------------

def _fake(world: Dict[str, Any], responder: Any) -> FakeAws:
    with world["ns"].entered():
        return FakeAws(responder)


def _json_error(status: int, code: str, message: str) -> Any:
    body = json.dumps({"__type": code, "message": message}).encode()
    return lambda *a: (status, {"Content-Type": "application/x-amz-json-1.1"}, body)


@pytest.mark.parametrize("policy, code, status", [
    ("identity-based policy", "session_access_denied_identity", Status.CRITICAL),
    ("VPC endpoint policy", "session_access_denied_endpoint_policy", Status.CRITICAL),
    ("service control policy", "session_access_denied_other", Status.CRITICAL),
])
def test_describe_log_groups_denied_is_the_agents_own_permission(aws: Dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                                                policy: str, code: str, status: Status) -> None:
    message = DENIED.format(role=ROLE, action="logs:DescribeLogGroups", policy=policy,
                            resource="arn:aws:logs:us-east-1:123456789012:log-group::log-stream:")
    fake = _fake(aws, _json_error(400, "AccessDeniedException", message))
    try:
        use_endpoints(monkeypatch, logs=fake.url)
        f = one(run(aws, prefs(cloudWatchLogGroupName="/ssm/sessions")), "session.logs")
    finally:
        fake.close()
    assert f.status == status and f.cause_code == code
    if code == "session_access_denied_identity":
        assert f"aws iam put-role-policy --role-name {ROLE} --policy-name session-manager-logs" in f.fix
        assert '"logs:DescribeLogGroups"' in f.fix and '"logs:PutLogEvents"' in f.fix
    if code == "session_access_denied_endpoint_policy":
        assert "aws ec2 modify-vpc-endpoint --vpc-endpoint-id vpce-0logs --reset-policy" in f.fix
    assert f.evidence["denial"]["kind"] in ("identity_policy", "endpoint_policy", "scp")


def test_describe_key_denied_is_only_unproven(aws: Dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    message = DENIED.format(role=ROLE, action="kms:DescribeKey", policy="identity-based policy",
                            resource="arn:aws:kms:us-east-1:123456789012:key/k")
    fake = _fake(aws, _json_error(400, "AccessDeniedException", message))
    try:
        use_endpoints(monkeypatch, kms=fake.url)
        f = one(run(aws, prefs(kmsKeyId="alias/session")), "session.kms")
    finally:
        fake.close()
    assert f.status == Status.OK and not f.verified and f.cause_code == "session_proof_denied"  # UNVERIFIED
    assert "could not prove" in f.summary and "kms:Decrypt not provable" in f.summary


SECRETS = ("vdt-test-secret", KEY_PATTERN, "FwoGZXIvYXdzEJr0000000000000000000000000000000000000000000000000",
           "Signature=0123456789abcdef")
ECHO = ("<html><body><h1>Proxy error</h1><pre>Authorization: AWS4-HMAC-SHA256 Credential={key}/20260101/us-east-1/"
        "logs/aws4_request, SignedHeaders=host;x-amz-date, Signature=0123456789abcdef\nX-Amz-Security-Token: {tok}"
        "</pre></body></html>").format(key=KEY_PATTERN, tok=SECRETS[2])


@pytest.mark.parametrize("status, body", [
    (200, ECHO.encode()),  # a proxy's page, echoing our request headers
    (502, ECHO.encode()),
    (200, b'{"logGroups": [{"logGroupName": "/ssm/sess'),  # truncated JSON
    (200, b'[1, 2, 3]'),  # JSON, wrongly shaped
    (200, b'{"logGroups": "all of them"}'),  # an object, wrongly shaped
    (200, b"{" + b" " * (300 * 1024) + b"}"),  # huge
])
def test_garbage_answers_are_one_bounded_line(aws: Dict[str, Any], monkeypatch: pytest.MonkeyPatch, status: int,
                                              body: bytes) -> None:
    fake = _fake(aws, lambda *a: (status, {"Content-Type": "text/html"}, body))
    try:
        use_endpoints(monkeypatch, logs=fake.url, kms=fake.url)
        start = time.monotonic()
        out = run(aws, prefs(cloudWatchLogGroupName="/ssm/sessions", kmsKeyId="alias/session"))
        elapsed = time.monotonic() - start
    finally:
        fake.close()
    assert elapsed < 15
    for fid in ("session.kms", "session.logs"):
        f = one(out, fid)
        assert f.status == Status.WARNING and f.cause_code == "session_proof_failed", f
        assert "\n" not in f.summary and len(f.summary) <= 400 and len(f.cause) <= 800
    dumped = json.dumps([f.to_dict() for f in out.findings])
    for secret in SECRETS:
        assert secret not in dumped


# --- s3 ---------------------------------------------------------------------------------------------

S3DNS = {"host": "s3.us-east-1.amazonaws.com", "answers": ["198.51.100.10"], "interface_endpoint": False}


def test_s3_bucket_encrypted(aws: Dict[str, Any]) -> None:
    f = one(run(aws, prefs(s3BucketName="vdt-session-logs", s3EncryptionEnabled=True), data={"s3.dns": S3DNS}),
            "session.s3")
    assert f.status == Status.OK and "aws:kms" in f.summary and "s3:PutObject (a write) not tried" in f.summary


def test_s3_bucket_without_encryption_required_only_proves_the_region(aws: Dict[str, Any]) -> None:
    f = one(run(aws, prefs(s3BucketName="vdt-plain-logs"), data={"s3.dns": S3DNS}), "session.s3")
    assert f.status == Status.OK and f.evidence["operation"] == "HeadBucket"


@pytest.mark.parametrize("bucket, encrypted, code", [
    ("vdt-no-such-bucket", True, "session_s3_bucket_missing"),
    ("vdt-no-such-bucket", False, "session_s3_bucket_missing"),
])
def test_s3_bucket_missing(aws: Dict[str, Any], bucket: str, encrypted: bool, code: str) -> None:
    f = one(run(aws, prefs(s3BucketName=bucket, s3EncryptionEnabled=encrypted), data={"s3.dns": S3DNS}),
            "session.s3")
    assert f.status == Status.CRITICAL and f.cause_code == code


def test_s3_bucket_not_encrypted(aws: Dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    body = s3_error_xml("ServerSideEncryptionConfigurationNotFoundError",
                        "The server side encryption configuration was not found", BucketName="vdt-plain-logs")
    fake = _fake(aws, lambda *a: (404, {"Content-Type": "application/xml", "x-amz-bucket-region": "us-east-1"}, body))
    try:
        use_endpoints(monkeypatch, s3=fake.url)
        f = one(run(aws, prefs(s3BucketName="vdt-plain-logs", s3EncryptionEnabled=True), data={"s3.dns": S3DNS}),
                "session.s3")
    finally:
        fake.close()
    assert f.status == Status.CRITICAL and f.cause_code == "session_s3_bucket_not_encrypted"
    assert "We couldn't start the session because encryption is not set up on the selected Amazon S3 bucket" in f.cause
    assert "aws s3api put-bucket-encryption --bucket vdt-plain-logs" in f.fix


def test_s3_bucket_in_other_region(aws: Dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    body = s3_error_xml("PermanentRedirect", "The bucket you are attempting to access must be addressed using the "
                        "specified endpoint.", Endpoint="vdt-far.s3.eu-west-1.amazonaws.com", Bucket="vdt-far")
    fake = _fake(aws, lambda *a: (301, {"Content-Type": "application/xml", "x-amz-bucket-region": "eu-west-1"}, body))
    try:
        use_endpoints(monkeypatch, s3=fake.url)
        f = one(run(aws, prefs(s3BucketName="vdt-far", s3EncryptionEnabled=True), data={"s3.dns": S3DNS}),
                "session.s3")
    finally:
        fake.close()
    assert f.status == Status.CRITICAL and f.cause_code == "session_s3_bucket_other_region" and "eu-west-1" in f.cause


@pytest.mark.parametrize("encrypted, status, code", [
    (True, Status.CRITICAL, "session_access_denied_identity"),  # GetBucketEncryption: the agent's own call
    (False, Status.OK, "session_proof_denied"),  # HeadBucket: only the proof needs s3:ListBucket: UNVERIFIED
])
def test_s3_denied(aws: Dict[str, Any], monkeypatch: pytest.MonkeyPatch, encrypted: bool, status: Status,
                   code: str) -> None:
    message = DENIED.format(role=ROLE, action="s3:GetEncryptionConfiguration", policy="identity-based policy",
                            resource='"arn:aws:s3:::vdt-session-logs"')
    body = s3_error_xml("AccessDenied", message)
    fake = _fake(aws, lambda *a: (403, {"Content-Type": "application/xml", "x-amz-bucket-region": "us-east-1"}, body))
    try:
        use_endpoints(monkeypatch, s3=fake.url)
        f = one(run(aws, prefs(s3BucketName="vdt-session-logs", s3EncryptionEnabled=encrypted),
                    data={"s3.dns": S3DNS}), "session.s3")
    finally:
        fake.close()
    assert f.status == status and f.cause_code == code and f.verified is encrypted
    if encrypted:
        assert f"--role-name {ROLE}" in f.fix and "s3:GetEncryptionConfiguration" in f.fix


def test_s3_blocked_when_s3_dns_failed(aws: Dict[str, Any]) -> None:
    f = one(run(aws, prefs(s3BucketName="vdt-session-logs"), data={"s3.dns": None}), "session.s3")
    assert f.status == Status.CRITICAL and f.blocked_by == "s3.dns" and f.cause_code == "session_path_blocked"


# --- wiring -----------------------------------------------------------------------------------------

def test_resolver_failed_blocks_the_path_not_the_check(aws: Dict[str, Any]) -> None:
    out = run(aws, prefs(kmsKeyId="alias/session"), data={"resolver": None})
    f = one(out, "session.kms")
    assert f.status == Status.CRITICAL and f.blocked_by == "resolver"


def test_through_the_runner_with_a_stand_in_preferences_check(aws: Dict[str, Any]) -> None:
    from vpce_doctor.runner import Runner

    settings = settings_for(aws)
    stand_ins = [
        Check("ssm.preferences", lambda ctx: outcome(Finding("ssm.preferences", Status.OK, "read"),
                                                     data=prefs(kmsKeyId="alias/session"))),
        Check("resolver", lambda ctx: outcome(Finding("resolver", Status.OK, "ok"), data={"server": RESOLVER})),
        Check("ec2.api", lambda ctx: outcome(Finding("ec2.api", Status.OK, "ok"), data=view("ssm"))),
    ]
    with aws["ns"].entered():
        found = Runner(stand_ins + session.checks(settings), facts("us-west-2"), settings,
                       deadline=time.monotonic() + 30).run()
    ids = {f.id: f for f in found}
    assert ids["session.requirements"].status == Status.OK
    assert ids["session.kms"].cause_code == "session_kms_endpoint_missing"


def test_optional_policy_lists_exactly_the_proof_only_calls() -> None:
    """packaging/iam/session-preferences-proof.json: the calls only this proof makes (the agent's own
    calls, logs:DescribeLogGroups and s3:GetEncryptionConfiguration, belong on the role anyway)."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    policy = json.loads((repo / "packaging" / "iam" / "session-preferences-proof.json").read_text())
    actions = {st["Action"] for st in policy["Statement"]}
    source = (repo / "checks" / "session.py").read_text()
    assert actions == {"kms:DescribeKey", "s3:ListBucket"}
    assert '"DescribeKey"' in source and "head_bucket" in source


def test_lines_keep_names_and_drop_credentials() -> None:
    text = ("<p>/aws/ssm/sessionmanager/productionaccountlogs</p> AKIAVDTTESTKEY000000 "
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY Signature=0123abcd\n" + "x" * 10000)
    line = session._line(text)
    assert "/aws/ssm/sessionmanager/productionaccountlogs" in line and "<p>" not in line and "\n" not in line
    assert "AKIA" not in line and "wJalrXUtnFEMI" not in line and "0123abcd" not in line
    assert len(line) <= 240
