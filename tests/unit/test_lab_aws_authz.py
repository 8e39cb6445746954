"""The lab's AWS layer refuses the instance as AWS does: identity and VPC endpoint policies, the clock,
expired tokens; it serves the Session Manager preferences and the resources they name.

Three layers on loopback (`python -m tests.lab.aws --listen 127.0.0.1:0`), started in parallel:
"deny" (denied actions, an ssm endpoint whose policy denies on 127.0.0.2, an ec2messages endpoint whose
policy allows nothing on 127.0.0.3, preferences with KMS, CloudWatch Logs and S3), "skew" (AWS's clock
1000 s behind, no preferences) and "odd" (expired role credentials; an unencrypted log group, no
bucket, a key named by id; an S3 gateway endpoint policy that allows nothing). Requests are signed by
botocore; nothing leaves loopback.
"""
from __future__ import annotations

import calendar
import datetime
import json
import re
import sys
import time
import types
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

import botocore.auth
import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.httpsession import URLLib3Session

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.lab.aws.authz import action_matches, classify, skew_message  # noqa: E402
from tests.lab.aws.loopback import LoopbackLayer, loopback_world  # noqa: E402
from tests.lab.aws.model_validation import validate  # noqa: E402
from tests.lab.aws.protocol import Request  # noqa: E402
from tests.lab.imds import metadata  # noqa: E402
from tests.lab.scenario import ScenarioError, parse  # noqa: E402

pytest.importorskip("trustme")
pytest.importorskip("moto")

READY_TIMEOUT_S = 60.0
ACCOUNT = "123456789012"
ROLE = "SSMInstanceRole"
OTHER = {"AccessKeyId": "AKIAIOSFODNN7EXAMPLE", "SecretAccessKey": "dummy"}
KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"


def _endpoint(service: str, octet: int, policy: str = "allow") -> Dict[str, Any]:
    return {"service": service, "hostname": f"{service}.us-east-1.amazonaws.com", "private_dns": True,
            "state": "available", "policy": policy,
            "enis": [{"az": "us-east-1a", "ip": f"10.0.1.{octet}"}, {"az": "us-east-1b", "ip": f"10.0.2.{octet}"}]}


def _world(name: str, **changes: Any) -> Dict[str, Any]:
    world = loopback_world(name)
    world["interface_endpoints"] = [_endpoint("ssm", 101), _endpoint("ec2messages", 102),
                                    _endpoint("kms", 104), _endpoint("logs", 105)]
    profile = changes.pop("profile", {})
    world["instance"]["profile"].update(profile)
    world.update(changes)
    return world


WORLDS: Dict[str, Tuple[Dict[str, Any], list]] = {
    "deny": (_world(
        "deny",
        interface_endpoints=[_endpoint("ssm", 101, "deny"), _endpoint("ec2messages", 102, "no_allow"),
                             _endpoint("kms", 104), _endpoint("logs", 105)],
        profile={"denied_actions": ["ssm:ListInstanceAssociations", "logs:*", "s3:PutObject", "kms:Decrypt",
                                    "ec2:DescribeVpcEndpoints"]},
        session_preferences={"kmsKeyId": "alias/session-key", "cloudWatchLogGroupName": "/ssm/sessions",
                             "cloudWatchEncryptionEnabled": True, "s3BucketName": "session-logs-bucket",
                             "s3EncryptionEnabled": True, "idleSessionTimeout": "30"}),
        ["--endpoint-listen", "ssm=127.0.0.2:0", "--endpoint-listen", "ec2messages=127.0.0.3:0"]),
    "skew": (_world("skew", aws_clock_offset_s=-1000), []),
    "odd": (_world(
        "odd", profile={"credentials_expired": True, "trusts_ec2": False},
        session_preferences={"kmsKeyId": KEY_ID, "cloudWatchLogGroupName": "/ssm/plain",
                             "cloudWatchEncryptionEnabled": True, "s3BucketName": "gone-bucket"},
        session_resources={"log_group": "unencrypted", "bucket": "missing"},
        s3={"gateway_endpoint": True, "route": True, "ips": ["198.51.100.10"],
            "prefix_list_cidrs": ["198.51.100.0/28"], "policy_allows": False, "policy": "no_allow"}), []),
}


@pytest.fixture(scope="module")
def layers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, LoopbackLayer]]:
    started: Dict[str, LoopbackLayer] = {}
    try:
        for name, (world, args) in WORLDS.items():
            started[name] = LoopbackLayer(tmp_path_factory.mktemp(f"authz-{name}"), world, args)
        for layer in started.values():
            layer.wait_ready(READY_TIMEOUT_S)
        yield started
    finally:
        for layer in started.values():
            layer.stop()


@pytest.fixture(scope="module")
def deny(layers: Dict[str, LoopbackLayer]) -> LoopbackLayer:
    return layers["deny"]


@pytest.fixture(scope="module")
def skew(layers: Dict[str, LoopbackLayer]) -> LoopbackLayer:
    return layers["skew"]


@pytest.fixture(scope="module")
def odd(layers: Dict[str, LoopbackLayer]) -> LoopbackLayer:
    return layers["odd"]


def url_of(layer: LoopbackLayer, host: str) -> str:
    return "https://" + next(a for a in layer.ids["front_addresses"] if a.startswith(host + ":"))


def principal(layer: LoopbackLayer) -> str:
    return f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/{layer.instance_id}"


def failure(call: Any, **kwargs: Any) -> Tuple[int, str, str, Dict[str, str]]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    response = caught.value.response
    return (response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"],
            response["Error"].get("Message", ""), response["ResponseMetadata"]["HTTPHeaders"])


class Raw:
    """A signed AWS JSON 1.1 call botocore has no model for (ListInstanceAssociations, the agent's)."""

    def __init__(self, status: int, headers: Dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    @property
    def json(self) -> Dict[str, Any]:
        return json.loads(self.body)


def ssm_json(layer: LoopbackLayer, operation: str, payload: Dict[str, Any], creds: Optional[Dict[str, str]] = None,
             url: Optional[str] = None) -> Raw:
    c = creds or layer.ids["credentials"]
    request = AWSRequest(method="POST", url=(url or layer.url) + "/", data=json.dumps(payload).encode(),
                         headers={"X-Amz-Target": f"AmazonSSM.{operation}",
                                  "Content-Type": "application/x-amz-json-1.1"})
    SigV4Auth(Credentials(c["AccessKeyId"], c["SecretAccessKey"], c.get("Token")), "ssm", "us-east-1").add_auth(request)
    session = URLLib3Session(verify=str(layer.ca), timeout=10)
    try:
        response = session.send(request.prepare())
        return Raw(response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content)
    finally:
        session.close()


@pytest.fixture
def signing_clock(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Sign as a host whose clock is ``offset`` seconds off (botocore reads its time here)."""

    def shift(offset_s: float) -> None:
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        shifted = now + datetime.timedelta(seconds=offset_s)
        if hasattr(botocore.auth, "get_current_datetime"):  # botocore >= 1.32
            monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: shifted)
        else:  # AL2023's botocore 1.31 calls datetime.datetime.utcnow()
            class Clock(datetime.datetime):
                @classmethod
                def utcnow(cls) -> datetime.datetime:  # type: ignore[override]
                    return shifted

            module = {k: getattr(datetime, k) for k in dir(datetime) if not k.startswith("__")}
            module["datetime"] = Clock
            monkeypatch.setattr(botocore.auth, "datetime", types.SimpleNamespace(**module))
    return shift


# --- identity policy ---------------------------------------------------------------------------

def test_identity_policy_denies_the_listed_ssm_action(deny: LoopbackLayer) -> None:
    answer = ssm_json(deny, "ListInstanceAssociations", {"InstanceId": deny.instance_id, "MaxResults": 1})
    assert (answer.status, answer.json["__type"]) == (400, "AccessDeniedException")
    assert answer.headers["content-type"] == "application/x-amz-json-1.1"
    assert answer.json["message"] == (
        f"User: {principal(deny)} is not authorized to perform: ssm:ListInstanceAssociations on resource: "
        f"arn:aws:ec2:us-east-1:{ACCOUNT}:instance/{deny.instance_id} because no identity-based policy allows "
        "the ssm:ListInstanceAssociations action")
    # Another principal (the lab's tooling) is not the instance role; an action not listed is allowed.
    other = ssm_json(deny, "ListInstanceAssociations", {"InstanceId": deny.instance_id, "MaxResults": 1}, OTHER)
    assert (other.status, other.json) == (200, {"Associations": []})
    assert deny.client("ssm").get_document(Name="SSM-SessionManagerRunShell")["DocumentType"] == "Session"


def test_identity_policy_patterns_cover_logs_kms_and_s3(deny: LoopbackLayer) -> None:
    status, code, message, _ = failure(deny.client("logs").describe_log_groups)
    assert (status, code) == (400, "AccessDeniedException")
    assert message == (f"User: {principal(deny)} is not authorized to perform: logs:DescribeLogGroups on resource: "
                       f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group::log-stream: because no identity-based policy "
                       "allows the logs:DescribeLogGroups action")
    kms = deny.client("kms")
    assert kms.describe_key(KeyId="alias/session-key")["KeyMetadata"]["Enabled"] is True  # not denied
    status, code, message, _ = failure(kms.decrypt, CiphertextBlob=b"x" * 32)
    assert (status, code) == (400, "AccessDeniedException") and "kms:Decrypt on resource: *" in message
    s3 = deny.client("s3", s3={"addressing_style": "path"})
    status, code, message, _ = failure(s3.put_object, Bucket="session-logs-bucket", Key="s/1.log", Body=b"x")
    assert (status, code) == (403, "AccessDenied")
    assert message == (f'User: {principal(deny)} is not authorized to perform: s3:PutObject on resource: '
                       '"arn:aws:s3:::session-logs-bucket/s/1.log" because no identity-based policy allows the '
                       's3:PutObject action')
    assert s3.get_object(Bucket="vpce-lab-bucket", Key="hello.txt")["Body"].read() == b"hello\n"
    ec2 = deny.client("ec2")
    status, code, message, _ = failure(ec2.describe_vpc_endpoints)
    assert (status, code) == (403, "UnauthorizedOperation")
    assert message == (f"You are not authorized to perform this operation. User: {principal(deny)} is not authorized "
                       "to perform: ec2:DescribeVpcEndpoints because no identity-based policy allows the "
                       "ec2:DescribeVpcEndpoints action")
    assert ec2.describe_vpcs()["Vpcs"]


def test_iam_view_agrees_with_the_knobs(deny: LoopbackLayer, odd: LoopbackLayer) -> None:
    iam = deny.client("iam", OTHER)
    actions = iam.get_role_policy(RoleName=ROLE, PolicyName="AmazonSSMManagedInstanceCore")[
        "PolicyDocument"]["Statement"][0]["Action"]
    assert "ssm:GetDocument" in actions and "ssm:ListInstanceAssociations" not in actions
    trust = odd.client("iam", OTHER).get_role(RoleName=ROLE)["Role"]["AssumeRolePolicyDocument"]
    assert "ec2.amazonaws.com" not in json.dumps(trust)


# --- VPC endpoint policy --------------------------------------------------------------------------

def test_endpoint_policy_applies_only_through_its_enis(deny: LoopbackLayer) -> None:
    through_ssm = url_of(deny, "127.0.0.2")
    answer = ssm_json(deny, "ListInstanceAssociations", {"InstanceId": deny.instance_id}, OTHER, url=through_ssm)
    assert (answer.status, answer.json["__type"]) == (400, "AccessDeniedException")
    assert answer.json["message"] == (
        f"User: arn:aws:iam::{ACCOUNT}:user/moto is not authorized to perform: ssm:ListInstanceAssociations on "
        f"resource: arn:aws:ec2:us-east-1:{ACCOUNT}:instance/{deny.instance_id} with an explicit deny in a VPC "
        "endpoint policy")
    # The explicit deny wins over the identity policy's missing allow.
    mine = ssm_json(deny, "ListInstanceAssociations", {"InstanceId": deny.instance_id}, url=through_ssm)
    assert mine.json["message"].endswith("with an explicit deny in a VPC endpoint policy")
    status, _, message, _ = failure(deny.client("ssm", url=through_ssm).get_document, Name="SSM-SessionManagerRunShell")
    assert status == 400 and message == (
        f"User: {principal(deny)} is not authorized to perform: ssm:GetDocument on resource: "
        f"arn:aws:ssm:us-east-1:{ACCOUNT}:document/SSM-SessionManagerRunShell with an explicit deny in a VPC "
        "endpoint policy")


def test_endpoint_policy_without_an_allow(deny: LoopbackLayer) -> None:
    ssm = deny.client("ssm", url=url_of(deny, "127.0.0.3"))
    status, code, message, _ = failure(ssm.get_document, Name="SSM-SessionManagerRunShell")
    assert (status, code) == (400, "AccessDeniedException")
    assert message.endswith("on resource: arn:aws:ssm:us-east-1:123456789012:document/SSM-SessionManagerRunShell "
                            "because no VPC endpoint policy allows the ssm:GetDocument action")
    # A missing allow in the identity policy is named first (both are missing allows).
    answer = ssm_json(deny, "ListInstanceAssociations", {"InstanceId": deny.instance_id}, url=url_of(deny, "127.0.0.3"))
    assert answer.json["message"].endswith("because no identity-based policy allows the ssm:ListInstanceAssociations "
                                           "action")


# --- the clock ------------------------------------------------------------------------------------

def _date(headers: Dict[str, str]) -> float:
    return parsedate_to_datetime(headers["date"]).timestamp()


def test_every_reply_carries_aws_clock(skew: LoopbackLayer, signing_clock: Any) -> None:
    signing_clock(-1000)  # in step with AWS: accepted
    response = skew.client("ec2").describe_vpcs()
    assert abs(_date(response["ResponseMetadata"]["HTTPHeaders"]) - (time.time() - 1000)) < 5
    *_, headers = failure(skew.client("ssm").get_document, Name="SSM-SessionManagerRunShell")
    assert abs(_date(headers) - (time.time() - 1000)) < 5


def test_signature_not_yet_current_beyond_five_minutes(skew: LoopbackLayer) -> None:
    sent: list = []
    ssm = skew.client("ssm")
    ssm.meta.events.register("before-send", lambda request, **_: sent.append(request.headers["X-Amz-Date"].decode()))
    status, code, message, headers = failure(ssm.get_document, Name="SSM-SessionManagerRunShell")
    assert (status, code) == (400, "InvalidSignatureException")
    match = re.fullmatch(r"Signature not yet current: (\w+) is still later than (\w+) \((\w+) \+ 5 min\.\)", message)
    assert match and match.group(1) == sent[0]
    later, now = (calendar.timegm(time.strptime(g, "%Y%m%dT%H%M%SZ")) for g in match.group(2, 3))
    assert later - now == 300 and abs(now - _date(headers)) <= 1
    # kms and logs are the same family.
    assert failure(skew.client("kms").list_keys)[:2] == (400, "InvalidSignatureException")
    assert failure(skew.client("logs").describe_log_groups)[:2] == (400, "InvalidSignatureException")


def test_signature_expired_is_ssm_only_between_five_and_fifteen_minutes(skew: LoopbackLayer,
                                                                        signing_clock: Any) -> None:
    signing_clock(-1000 - 420)  # seven minutes behind AWS
    status, code, message, _ = failure(skew.client("ssm").get_document, Name="SSM-SessionManagerRunShell")
    assert (status, code) == (400, "InvalidSignatureException")
    assert re.fullmatch(r"Signature expired: \w+ is now earlier than \w+ \(\w+ - 5 min\.\)", message)
    s3 = skew.client("s3", OTHER, s3={"addressing_style": "path"})
    assert s3.get_object(Bucket="vpce-lab-bucket", Key="hello.txt")["Body"].read() == b"hello\n"
    assert skew.client("ec2").describe_vpcs()["Vpcs"]


def test_s3_ec2_and_sts_refuse_beyond_fifteen_minutes(skew: LoopbackLayer) -> None:
    sent: list = []
    s3 = skew.client("s3", s3={"addressing_style": "path"})
    s3.meta.events.register("before-send", lambda request, **_: sent.append(request.headers["X-Amz-Date"].decode()))
    status, code, message, _ = failure(s3.get_object, Bucket="vpce-lab-bucket", Key="hello.txt")
    assert (status, code, message) == (403, "RequestTimeTooSkewed",
                                       "The difference between the request time and the current time is too large.")
    assert failure(s3.head_object, Bucket="vpce-lab-bucket", Key="hello.txt")[:2] == (403, "403")  # HEAD: no body
    assert failure(skew.client("ec2").describe_vpcs)[:3] == (400, "RequestExpired", "Request has expired.")
    status, code, message, _ = failure(skew.client("sts").get_caller_identity)
    assert (status, code) == (403, "SignatureDoesNotMatch") and message.endswith("+ 15 min.)")


def test_request_time_too_skewed_body(skew: LoopbackLayer) -> None:
    url = skew.url + "/vpce-lab-bucket/hello.txt"
    request = AWSRequest(method="GET", url=url)
    botocore.auth.S3SigV4Auth(Credentials(OTHER["AccessKeyId"], OTHER["SecretAccessKey"]), "s3",
                              "us-east-1").add_auth(request)
    session = URLLib3Session(verify=str(skew.ca), timeout=10)
    try:
        response = session.send(request.prepare())
    finally:
        session.close()
    body = response.content.decode()
    assert response.status_code == 403
    assert f"<RequestTime>{request.headers['X-Amz-Date']}</RequestTime>" in body
    server = re.search(r"<ServerTime>(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)</ServerTime>", body)
    assert server and abs(calendar.timegm(time.strptime(server.group(1), "%Y-%m-%dT%H:%M:%SZ"))
                          - (time.time() - 1000)) < 5
    assert "<MaxAllowedSkewMilliseconds>900000</MaxAllowedSkewMilliseconds>" in body


# --- tokens ---------------------------------------------------------------------------------------

def test_expired_role_credentials_are_refused(odd: LoopbackLayer) -> None:
    status, code, message, _ = failure(odd.client("ssm").get_document, Name="SSM-SessionManagerRunShell")
    assert (status, code, message) == (400, "ExpiredTokenException",
                                       "The security token included in the request is expired")
    s3 = odd.client("s3", s3={"addressing_style": "path"})
    assert failure(s3.get_object, Bucket="vpce-lab-bucket", Key="hello.txt")[:3] == (
        400, "ExpiredToken", "The provided token has expired.")
    assert failure(odd.client("ec2").describe_vpcs)[:2] == (400, "RequestExpired")


# --- SSM calls about the instance -----------------------------------------------------------------

def test_list_instance_associations(deny: LoopbackLayer) -> None:
    ok = ssm_json(deny, "ListInstanceAssociations", {"InstanceId": deny.instance_id, "MaxResults": 20}, OTHER)
    assert (ok.status, ok.json) == (200, {"Associations": []})
    unknown = ssm_json(deny, "ListInstanceAssociations", {"InstanceId": "i-0123456789abcdef0"}, OTHER)
    assert (unknown.status, unknown.json["__type"]) == (400, "InvalidInstanceId")
    assert unknown.json["message"] == ("Instance Id i-0123456789abcdef0 is not a managed instance of account "
                                       "123456789012: SSM Agent is not registered or not running.")
    garbage = ssm_json(deny, "ListInstanceAssociations", {"InstanceId": "<html>"}, OTHER)
    assert (garbage.status, garbage.json["__type"]) == (400, "ValidationException")
    assert garbage.json["message"].startswith("1 validation error detected: Value '<html>' at 'instanceId' failed")


def test_get_document_serves_the_preferences(deny: LoopbackLayer) -> None:
    got = deny.client("ssm", OTHER).get_document(Name="SSM-SessionManagerRunShell")
    payload = {k: v for k, v in got.items() if k != "ResponseMetadata"}
    model = botocore.session.get_session().get_service_model("ssm")
    payload["CreatedDate"] = payload["CreatedDate"].timestamp()
    assert validate(model.operation_model("GetDocument").output_shape, payload) == []
    assert {k: payload[k] for k in ("Name", "DocumentVersion", "Status", "DocumentType", "DocumentFormat")} == {
        "Name": "SSM-SessionManagerRunShell", "DocumentVersion": "1", "Status": "Active", "DocumentType": "Session",
        "DocumentFormat": "JSON"}
    content = json.loads(payload["Content"])
    assert (content["schemaVersion"], content["sessionType"]) == ("1.0", "Standard_Stream")
    inputs = content["inputs"]
    assert (inputs["kmsKeyId"], inputs["cloudWatchLogGroupName"], inputs["s3BucketName"]) == (
        "alias/session-key", "/ssm/sessions", "session-logs-bucket")
    assert (inputs["idleSessionTimeout"], inputs["runAsEnabled"], inputs["shellProfile"]) == (
        "30", False, {"windows": "", "linux": ""})  # the console's defaults for the rest
    ssm = deny.client("ssm", OTHER)
    assert failure(ssm.get_document, Name="SSM-SessionManagerRunShell",
                   DocumentVersion="7")[1] == "InvalidDocumentVersion"
    by_arn = ssm.get_document(Name=f"arn:aws:ssm:us-east-1:{ACCOUNT}:document/SSM-SessionManagerRunShell")
    assert by_arn["Content"] == payload["Content"]
    assert failure(ssm.get_document, Name="Some-Other-Doc")[1] == "InvalidDocument"  # moto's


def test_no_preferences_no_document(skew: LoopbackLayer, signing_clock: Any) -> None:
    signing_clock(-1000)
    status, code, message, _ = failure(skew.client("ssm").get_document, Name="SSM-SessionManagerRunShell")
    assert (status, code, message) == (400, "InvalidDocument",
                                       "Document with name SSM-SessionManagerRunShell does not exist.")


def test_preferences_resources_exist_in_kms_logs_and_s3(deny: LoopbackLayer) -> None:
    created = deny.ids["session_resources"]
    key = deny.client("kms", OTHER).describe_key(KeyId="alias/session-key")["KeyMetadata"]
    assert created["kms_key"] == key["Arn"]
    groups = deny.client("logs", OTHER).describe_log_groups(logGroupNamePrefix="/ssm/")["logGroups"]
    assert [(g["logGroupName"], g.get("kmsKeyId")) for g in groups] == [("/ssm/sessions", key["Arn"])]
    s3 = deny.client("s3", OTHER, s3={"addressing_style": "path"})
    rules = s3.get_bucket_encryption(Bucket="session-logs-bucket")["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


def test_preferences_resources_missing_or_unencrypted(odd: LoopbackLayer) -> None:
    kms = odd.client("kms", OTHER)
    assert kms.describe_key(KeyId=KEY_ID)["KeyMetadata"]["Arn"] == f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{KEY_ID}"
    groups = odd.client("logs", OTHER).describe_log_groups(logGroupNamePrefix="/ssm/")["logGroups"]
    assert [(g["logGroupName"], "kmsKeyId" in g) for g in groups] == [("/ssm/plain", False)]
    assert set(odd.ids["session_resources"]) == {"kms_key", "log_group"}  # no bucket


def test_s3_gateway_endpoint_policy_without_an_allow(odd: LoopbackLayer) -> None:
    s3 = odd.client("s3", OTHER, s3={"addressing_style": "path"})
    status, code, message, _ = failure(s3.get_object, Bucket="vpce-lab-bucket", Key="hello.txt")
    assert (status, code) == (403, "AccessDenied")
    assert message == (f'User: arn:aws:iam::{ACCOUNT}:user/moto is not authorized to perform: s3:GetObject on '
                       'resource: "arn:aws:s3:::vpce-lab-bucket/hello.txt" because no VPC endpoint policy allows the '
                       's3:GetObject action')
    assert failure(s3.head_object, Bucket="vpce-lab-bucket", Key="hello.txt")[:2] == (403, "403")


# --- pure parts -----------------------------------------------------------------------------------

def test_skew_message_and_action_patterns() -> None:
    now = 1_700_000_000.0
    assert skew_message(now - 301, now, 300) == ("Signature expired: 20231114T220819Z is now earlier than "
                                                 "20231114T220820Z (20231114T221320Z - 5 min.)")
    assert skew_message(now + 300, now, 300) is None
    assert skew_message(now + 901, now, 900).endswith("(20231114T221320Z + 15 min.)")
    assert action_matches("ssm:GetDocument", ["SSM:get*"]) and action_matches("s3:PutObject", ["*"])
    assert not action_matches("ssmmessages:CreateControlChannel", ["ssm:*"])
    assert not action_matches("ssm:GetDocument", ["ssm:GetDocuments"])


def test_classify_names_action_and_resource() -> None:
    def call(headers: Tuple[Tuple[str, str], ...], body: bytes = b"", path: str = "/", service: str = "ssm") -> Any:
        request = Request("POST", path, headers, body)
        found = classify(request, service)
        return found.protocol, found.action, found.resource(request, "us-east-1")

    ssm = call((("X-Amz-Target", "AmazonSSM.GetDocument"),), b'{"Name": "D1"}')
    assert ssm == ("json", "ssm:GetDocument", "arn:aws:ssm:us-east-1:123456789012:document/D1")
    form = (("Content-Type", "application/x-www-form-urlencoded"),)
    ec2 = call(form, b"Action=DescribeVpcs&Version=1", service="ec2")
    assert ec2 == ("ec2", "ec2:DescribeVpcs", "*")
    cw = call((("X-Amz-Target", "GraniteServiceVersion20100801.PutMetricData"),), b"{", service="monitoring")
    assert cw == ("json", "cloudwatch:PutMetricData", "*")  # a body that is not JSON: no resource
    channel = call((), path="/v1/control-channel/i-0abc", service="ssmmessages")
    assert channel == ("rest-json", "ssmmessages:CreateControlChannel", "*")


# --- IMDS and scenarios -----------------------------------------------------------------------------

IDS = {"instance_id": "i-0123456789abcdef0", "instance_sg_id": "sg-1", "vpc_id": "vpc-1",
       "subnet_ids": {"us-east-1a": "subnet-1"}, "role_name": ROLE, "instance_profile_arn": "arn:aws:iam::1:x",
       "credentials": {"AccessKeyId": "ASIAX", "SecretAccessKey": "s", "Token": "t",
                       "Expiration": "2099-01-01T00:00:00Z"}}


def test_imds_role_ec2_cannot_assume() -> None:
    md = metadata({"region": "us-east-1", "instance": {"profile": {"trusts_ec2": False}}}, IDS)
    doc = md[f"meta-data/iam/security-credentials/{ROLE}"]
    assert doc.startswith('{\n  "Code" : "AssumeRoleUnauthorizedAccess",\n')
    parsed = json.loads(doc)
    assert parsed["Message"].startswith(f"EC2 cannot assume the role {ROLE}.  Please see documentation at https://")
    assert "AccessKeyId" not in parsed and parsed["LastUpdated"].endswith("Z")
    assert json.loads(md["meta-data/iam/info"])["Code"] == "Success"


def test_imds_expired_credentials_keep_their_expiration() -> None:
    md = metadata({"region": "us-east-1", "instance": {"profile": {"credentials_expired": True}}}, IDS)
    creds = json.loads(md[f"meta-data/iam/security-credentials/{ROLE}"])
    assert creds["Code"] == "Success" and creds["Expiration"] < time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    fresh = json.loads(metadata({"region": "us-east-1"}, IDS)[f"meta-data/iam/security-credentials/{ROLE}"])
    assert fresh["Expiration"] == "2099-01-01T00:00:00Z"


@pytest.mark.parametrize("data, message", [
    ({"aws_clock_offset_s": 86401}, "x.yaml:aws_clock_offset_s: expected an integer -86400..86400, got 86401"),
    ({"aws_clock_offset_s": "7m"}, "x.yaml:aws_clock_offset_s: expected an integer"),
    ({"instance": {"profile": {"denied_actions": "ssm:*"}}}, "x.yaml:instance.profile.denied_actions: expected a list"),
    ({"instance": {"profile": {"denied_actions": ["ssm GetDocument"]}}}, "x.yaml:instance.profile.denied_actions: "
                                                                         "expected IAM actions"),
    ({"instance": {"profile": {"trusts_ec2": "no"}}}, "x.yaml:instance.profile.trusts_ec2: expected true or false"),
    ({"endpoints": {"ssm": {"policy": "allow_all"}}}, "x.yaml:endpoints.ssm.policy: expected one of allow, deny, "
                                                      "no_allow"),
    ({"session_preferences": "off"}, "x.yaml:session_preferences: expected none or a mapping"),
    ({"session_preferences": {"kmsKeyID": "k"}}, "x.yaml:session_preferences.kmsKeyID: not a Session Manager "
                                                 "preference"),
    ({"session_preferences": {"cloudWatchEncryptionEnabled": "true"}},
     "x.yaml:session_preferences.cloudWatchEncryptionEnabled: expected a boolean"),
    ({"session_preferences": {"shellProfile": {"linux": 1}}}, "x.yaml:session_preferences.shellProfile: expected"),
    ({"session_resources": {"log_group": "missing"}}, "x.yaml:session_resources.log_group: the preferences name no "
                                                      "such resource"),
    ({"session_preferences": {"kmsKeyId": "alias/k"}, "session_resources": {"kms_key": "unencrypted"}},
     "x.yaml:session_resources.kms_key: expected one of present, missing"),
    ({"session_resources": {"bukket": "missing"}}, "x.yaml:session_resources.bukket: unknown key"),
    ({"s3": {"policy": "none"}}, "x.yaml:s3.policy: expected one of allow, deny, no_allow"),
    ({"s3": {"policy_allows": False, "policy": "no_allow"}}, "x.yaml:s3.policy: no_allow contradicts policy_allows"),
])
def test_scenario_errors_name_the_key(data: Dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse(data, "x.yaml")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_scenario_keys_reach_world_json() -> None:
    from tests.lab.aws.world import World
    from tests.lab.world import build

    sc = parse({"endpoints": {"ssm": {"policy": "deny"}, "kms": {}, "logs": {}}, "aws_clock_offset_s": -420,
                "instance": {"profile": {"denied_actions": ["ssm:*"], "trusts_ec2": False}},
                "session_preferences": {"kmsKeyId": "alias/k", "cloudWatchLogGroupName": "g"},
                "session_resources": {"log_group": "unencrypted"}}, "x.yaml")
    world = World.from_dict(build(sc, "t").to_json(Path("/tmp")))
    assert [e.policy for e in world.interface_endpoints][:1] == ["deny"]
    profile = world.profile
    assert (world.aws_clock_offset_s, profile.denied_actions, profile.trusts_ec2) == (-420, ("ssm:*",), False)
    assert world.session_preferences == {"kmsKeyId": "alias/k", "cloudWatchLogGroupName": "g"}
    assert world.session_resources.log_group == "unencrypted"
    assert parse({}, "x.yaml").session_preferences is None
