"""s3.dns against a real dnsmasq in a test namespace; s3.route from the ec2.api view of moto;
s3.api / s3.object against moto, against an S3-shaped listener for what moto doesn't do (301 for a
bucket in another region, AccessDenied wording), and against a dropped address (timeouts)."""
from __future__ import annotations

import re
import sys
import time
from typing import Any, Dict

import pytest

from vpce_doctor.checks import awsclient, ec2api, s3, s3errors
from vpce_doctor.checks.ec2view import Ec2View, EndpointView, Route, SecurityGroupRule
from vpce_doctor.checks.model import Context, Settings, Status

try:
    from tests.unit.moto_fixture import (aws_env, boto, by_id, dump, facts_for, fake_aws, moto_reset, moto_url,
                                         netns, require_root_tools, run_check, s3_error_xml, seed_vpc,
                                         use_endpoints)
except ImportError:  # tests/unit on sys.path
    from moto_fixture import (aws_env, boto, by_id, dump, facts_for, fake_aws, moto_reset, moto_url,  # type: ignore
                              netns, require_root_tools, run_check, s3_error_xml, seed_vpc, use_endpoints)

__all__ = ["aws_env", "moto_url"]

RESOLVER, DEAD_RESOLVER = "10.0.0.2", "10.0.0.3"
S3_IPS = ["198.51.100.10", "198.51.100.11"]
LAB_PL = "pl-63a5400a"
GW = "vpce-0gw"
RTB = "rtb-0sub"
INST_SG = "sg-0inst"


def lab_view(**over: Any) -> Ec2View:
    """The API view of the reference lab (what the lab's AWS layer makes moto say)."""
    base: Dict[str, Any] = dict(
        available=True, vpc_id="vpc-0vdt", enable_dns_support=True, enable_dns_hostnames=True,
        endpoints=(EndpointView(GW, "com.amazonaws.us-east-1.s3", "Gateway", "available", route_table_ids=(RTB,)),),
        route_table_id=RTB, routes=(Route("10.0.0.0/16", "local"), Route(LAB_PL, GW)),
        s3_prefix_list_id=LAB_PL, s3_prefix_list_cidrs=("198.51.100.0/28",), instance_sg_ids=(INST_SG,),
        security_group_rules={INST_SG: (SecurityGroupRule("outbound", "tcp", 443, 443, cidrs=("0.0.0.0/0",)),)})
    base.update(over)
    return Ec2View(**base)


UNAVAILABLE = Ec2View(available=False, reason="no TCP connection to https://ec2.us-east-1.amazonaws.com")
FACTS = facts_for({"vpc_id": "vpc-0vdt", "subnet_id": "subnet-0a"})


def checks(settings: Settings = Settings()):
    return by_id(s3.checks(settings))


# --- s3.dns: a real resolver ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dns_ns(tmp_path_factory):
    require_root_tools("dnsmasq")
    records = [
        *(f"--host-record=s3.us-east-1.amazonaws.com,{ip}" for ip in S3_IPS),
        "--host-record=s3.us-west-2.amazonaws.com,198.51.100.200",  # another region: outside the list
        "--host-record=s3.eu-west-1.amazonaws.com,10.0.1.150",  # an S3 interface endpoint's ENIs
        "--host-record=s3.eu-west-1.amazonaws.com,10.0.2.150",
        "--host-record=s3.eu-central-1.amazonaws.com,10.0.1.150",  # a shadowing record + public
        "--host-record=s3.eu-central-1.amazonaws.com,198.51.100.10",
        "--txt-record=s3.ca-central-1.amazonaws.com,nodata",  # the name exists, no A
        # S3 answers every virtual-hosted bucket name (a wildcard); s3.dns asks the SSM agent's bucket's
        *(f"--host-record=aws-ssm-{r}.s3.{r}.amazonaws.com,198.51.100.10"
          for r in ("us-east-1", "us-west-2", "eu-west-1", "eu-central-1")),
        "--local=/amazonaws.com/",  # everything else: NXDOMAIN
    ]
    with netns("s3d", [RESOLVER, DEAD_RESOLVER]) as ns:
        ns.nft([f"ip daddr {DEAD_RESOLVER} udp dport 53 drop", f"ip daddr {DEAD_RESOLVER} tcp dport 53 drop"])
        ns.dnsmasq(RESOLVER, records, str(tmp_path_factory.mktemp("dnsmasq")))
        yield ns


def dns_run(ns, region="us-east-1", view=None, server=RESOLVER, settings=Settings()):
    facts = facts_for({"vpc_id": "vpc-0vdt", "subnet_id": "subnet-0a"}, region=region)
    data = {"resolver": {"server": server}, "ec2.api": view if view is not None else lab_view()}
    return ns.call(lambda: run_check(checks(settings)["s3.dns"], facts, settings, data))


def test_dns_public_answers_inside_prefix_list(dns_ns):
    out = dns_run(dns_ns)
    f = out.findings[0]
    assert f.status == Status.OK and f.cause_code is None
    assert out.data == {"host": "s3.us-east-1.amazonaws.com", "answers": S3_IPS, "interface_endpoint": False,
                        "server": RESOLVER}
    assert f.evidence["prefix_list_id"] == LAB_PL and f.evidence["outside_prefix_list"] == []
    assert f.evidence["ttl"] == 60 and f.evidence["latency_ms"] >= 0
    dump(f.evidence)


def test_dns_answers_outside_prefix_list_warn(dns_ns):
    out = dns_run(dns_ns, region="us-west-2")  # the view's list is us-east-1's lab list
    f = out.findings[0]
    assert f.status == Status.WARNING and f.cause_code == "s3_outside_prefix_list"
    assert "198.51.100.200" in f.cause and LAB_PL in f.cause and out.data is not None


def test_dns_without_view_is_ok_unverified(dns_ns):
    f = dns_run(dns_ns, view=UNAVAILABLE).findings[0]
    assert f.status == Status.OK and "prefix list not verified" in f.summary


def test_dns_private_answers_mean_interface_endpoint(dns_ns):
    out = dns_run(dns_ns, region="eu-west-1")
    f = out.findings[0]
    assert f.status == Status.OK and "S3 interface endpoint with Private DNS serves S3" in f.summary
    assert f.evidence["cause_code"] == "s3_interface_endpoint" and f.cause_code is None
    assert out.data["interface_endpoint"] is True and f.evidence["interface_endpoint"] is True


def test_dns_mixed_answers_warn(dns_ns):
    f = dns_run(dns_ns, region="eu-central-1").findings[0]
    assert f.status == Status.WARNING and f.cause_code == "dns_mixed_answers"


@pytest.mark.parametrize("region,code", [("ap-south-1", "dns_nxdomain"), ("ca-central-1", "dns_no_answer")])
def test_dns_negative_answers_are_critical(dns_ns, region, code):
    out = dns_run(dns_ns, region=region)
    assert out.findings[0].status == Status.CRITICAL and out.findings[0].cause_code == code
    assert out.data is None  # s3.api / s3.object can't proceed


def test_dns_timeout_is_critical_and_bounded(dns_ns):
    start = time.monotonic()
    out = dns_run(dns_ns, server=DEAD_RESOLVER, settings=Settings(dns_timeout_s=0.5))
    assert time.monotonic() - start < 1.5
    f = out.findings[0]
    assert f.status == Status.CRITICAL and f.cause_code == "dns_timeout" and out.data is None
    assert f.evidence["outcome"] == "timeout"


def test_dns_timeout_with_dns_support_off_names_the_attribute(dns_ns):
    out = dns_run(dns_ns, server=DEAD_RESOLVER, settings=Settings(dns_timeout_s=0.3),
                  view=lab_view(enable_dns_support=False))
    f = out.findings[0]
    assert f.cause_code == "dns_support_disabled" and "modify-vpc-attribute --vpc-id vpc-0vdt" in f.fix


# --- s3.route: the ec2.api view of moto -----------------------------------------------------------------

def route_from_moto(moto_url, monkeypatch, **seed):
    moto_reset(moto_url)
    ids = seed_vpc(moto_url, **seed)
    use_endpoints(monkeypatch, ec2=moto_url)
    facts = facts_for(ids)
    view = run_check(by_id(ec2api.checks(Settings()))["ec2.api"], facts, Settings()).data
    assert view.available
    return ids, run_check(checks()["s3.route"], facts, Settings(), {"ec2.api": view}).findings[0]


def test_route_present(aws_env, moto_url, monkeypatch):
    ids, f = route_from_moto(moto_url, monkeypatch)
    assert f.status == Status.OK and ids["prefix_list_id"] in f.summary and ids["s3_gateway"] in f.summary


def test_route_missing_on_subnet_table(aws_env, moto_url, monkeypatch):
    ids, f = route_from_moto(moto_url, monkeypatch, gateway_on_subnet_table=False)
    # the endpoint is on another table: named, so the user sees which box was ticked (issue 12)
    assert f.status == Status.CRITICAL and f.cause_code == "s3_route_other_tables"
    assert ids["other_rtb"] in f.cause and ids["route_table_id"] in f.cause
    assert (f"modify-vpc-endpoint --vpc-endpoint-id {ids['s3_gateway']} --add-route-table-ids "
            f"{ids['route_table_id']}") in f.fix
    assert f.evidence["gateway_route_tables"] == [ids["other_rtb"]]


def test_no_gateway_endpoint(aws_env, moto_url, monkeypatch):
    ids, f = route_from_moto(moto_url, monkeypatch, gateway=False)
    assert f.status == Status.CRITICAL and f.cause_code == "s3_no_gateway_route"
    assert (f"create-vpc-endpoint --vpc-id {ids['vpc_id']} --vpc-endpoint-type Gateway --service-name "
            f"com.amazonaws.us-east-1.s3 --route-table-ids {ids['route_table_id']}") in f.fix


def test_route_not_verified_without_view():
    f = run_check(checks()["s3.route"], FACTS, Settings(), {"ec2.api": UNAVAILABLE}).findings[0]
    assert f.status == Status.OK and f.summary.startswith("route not verified (no TCP connection")


def test_route_blackhole_counts_as_missing():
    view = lab_view(routes=(Route(LAB_PL, GW, "blackhole"),))
    f = run_check(checks()["s3.route"], FACTS, Settings(), {"ec2.api": view}).findings[0]
    assert f.status == Status.CRITICAL and f.cause_code == "s3_route_missing"


def test_interface_endpoint_without_gateway_route_is_ok():
    iface = EndpointView("vpce-0if", "com.amazonaws.us-east-1.s3", "Interface", "available", private_dns_enabled=True)
    view = lab_view(endpoints=(iface,), routes=(Route("10.0.0.0/16", "local"),))
    f = run_check(checks()["s3.route"], FACTS, Settings(), {"ec2.api": view}).findings[0]
    assert f.status == Status.OK and "vpce-0if" in f.summary


# --- s3.api / s3.object ------------------------------------------------------------------------------------

DNS_DATA = {"host": "s3.us-east-1.amazonaws.com", "answers": S3_IPS, "interface_endpoint": False}


def call_data(view: Ec2View = None) -> Dict[str, Any]:
    return {"s3.dns": DNS_DATA, "ec2.api": view if view is not None else lab_view()}


@pytest.fixture
def buckets(aws_env, moto_url, monkeypatch):
    moto_reset(moto_url)
    client = boto("s3", moto_url)
    client.create_bucket(Bucket="vdt-lab-bucket")
    client.put_object(Bucket="vdt-lab-bucket", Key="hello.txt", Body=b"hello from the private subnet\n")
    use_endpoints(monkeypatch, s3=moto_url)
    return client


def test_api_list_buckets(buckets):
    out = run_check(checks()["s3.api"], FACTS, Settings(), call_data())
    f = out.findings[0]
    assert f.status == Status.OK and f.evidence["bucket_count"] == 1 and f.evidence["http_status"] == 200
    assert f.evidence["answers"] == S3_IPS and "latency_ms" in f.evidence
    dump(f.evidence)


def test_object_head_and_get(buckets):
    settings = Settings(s3_bucket="vdt-lab-bucket", s3_key="hello.txt", s3_get_object=True)
    f = run_check(checks(settings)["s3.object"], FACTS, settings, call_data()).findings[0]
    assert f.status == Status.OK, f.summary
    assert f.evidence["content_length"] == 30 and f.evidence["get_bytes"] == 30
    dump(f.evidence)


def test_object_bucket_only_uses_head_bucket(buckets):
    settings = Settings(s3_bucket="vdt-lab-bucket")
    f = run_check(checks(settings)["s3.object"], FACTS, settings, call_data()).findings[0]
    assert f.status == Status.OK and f.evidence["operation"] == "HeadBucket"


def test_object_missing_key(buckets):
    settings = Settings(s3_bucket="vdt-lab-bucket", s3_key="nope.txt")
    f = run_check(checks(settings)["s3.object"], FACTS, settings, call_data()).findings[0]
    assert f.status == Status.CRITICAL and f.cause_code == "s3_no_such_key" and f.evidence["http_status"] == 404
    assert "nope.txt" in f.cause


def test_object_missing_bucket(buckets):
    settings = Settings(s3_bucket="vdt-no-such-bucket", s3_key="hello.txt")
    f = run_check(checks(settings)["s3.object"], FACTS, settings, call_data()).findings[0]
    assert f.status == Status.CRITICAL and f.cause_code == "s3_no_such_bucket"  # HEAD 404 + HeadBucket 404
    assert f.evidence["bucket_exists"] is False
    settings = Settings(s3_bucket="vdt-no-such-bucket")
    f = run_check(checks(settings)["s3.object"], FACTS, settings, call_data()).findings[0]
    assert f.cause_code == "s3_no_such_bucket" and f.evidence["operation"] == "HeadBucket"


def test_object_not_configured():
    c = checks()["s3.object"]
    assert c.needs == ()
    f = run_check(c, FACTS, Settings(), {}).findings[0]
    assert f.status == Status.OK and f.summary.startswith("no test object configured (s3.bucket/s3.key)")
    assert f.verified is False and f.state == "UNVERIFIED"  # nothing about object access was proven


def test_no_credentials(aws_env, moto_url, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    use_endpoints(monkeypatch, s3=moto_url)
    f = run_check(checks()["s3.api"], FACTS, Settings(), call_data()).findings[0]
    assert f.status == Status.CRITICAL and f.cause_code == "s3_no_credentials"


# AWS's AccessDenied wording names the policy type that denied (since 2023/2024).
USER = "arn:aws:sts::123456789012:assumed-role/SSMInstanceRole/i-0vdt"
DENIALS = [
    (f"User: {USER} is not authorized to perform: s3:ListAllMyBuckets because no identity-based policy allows "
     "the s3:ListAllMyBuckets action", "s3_access_denied_iam"),
    (f"User: {USER} is not authorized to perform: s3:ListAllMyBuckets with an explicit deny in a VPC endpoint "
     "policy", "s3_access_denied_endpoint_policy"),
    ("Access Denied", "s3_access_denied"),
]


@pytest.mark.parametrize("message,code", DENIALS)
def test_api_access_denied_proves_the_path(aws_env, monkeypatch, message, code):
    """Issue 14: with only AmazonSSMManagedInstanceCore, ListBuckets is refused — S3 answered, so
    the path works; the role's permission is no finding unless an object is configured."""
    reply = (403, {"Content-Type": "application/xml", "x-amz-request-id": "VDT0REQUEST0ID01"},
             s3_error_xml("AccessDenied", message))
    with fake_aws(lambda *a: reply) as fake:
        use_endpoints(monkeypatch, s3=fake.url)
        f = run_check(checks()["s3.api"], FACTS, Settings(), call_data()).findings[0]
    assert f.status == Status.OK and f.verified and f.cause_code is None and f.fix is None
    assert "the path works" in f.summary and "s3:ListAllMyBuckets" in f.summary
    assert f.evidence["path_proven"] is True and f.evidence["refused_by"] == code
    assert f.evidence["http_status"] == 403 and f.evidence["error_code"] == "AccessDenied"
    assert f.evidence["message"] == message and f.evidence["request_id"] == "VDT0REQUEST0ID01"
    if code == "s3_access_denied_endpoint_policy":
        assert "gateway endpoint's policy" in f.summary and "aws-ssm-us-east-1/*" in f.summary


@pytest.mark.parametrize("message,code", DENIALS)
def test_object_access_denied_names_the_policy(aws_env, monkeypatch, message, code):
    """A configured object the role should read: a refusal is the user's finding, with its policy."""
    reply = (403, {"Content-Type": "application/xml", "x-amz-request-id": "VDT0REQUEST0ID01"},
             s3_error_xml("AccessDenied", message.replace("s3:ListAllMyBuckets", "s3:GetObject")))
    with fake_aws(lambda method, *a: reply if method != "HEAD" else (403, {}, b"")) as fake:
        use_endpoints(monkeypatch, s3=fake.url)
        settings = Settings(s3_bucket="vdt-lab-bucket", s3_key="hello.txt", s3_get_object=True)
        f = run_check(checks(settings)["s3.object"], FACTS, settings, call_data()).findings[0]
    assert f.status == Status.CRITICAL and f.cause_code in (code, "s3_access_denied")
    assert "s3:GetObject" in (f.fix or "")


def test_get_object_denied_by_bucket_policy(aws_env, monkeypatch):
    message = (f"User: {USER} is not authorized to perform: s3:GetObject on resource: "
               "\"arn:aws:s3:::vdt-lab-bucket/hello.txt\" with an explicit deny in a resource-based policy")

    def reply(method, path, headers, body):
        if method == "HEAD":
            return 200, {"ETag": '"x"'}, b""
        return 403, {"Content-Type": "application/xml"}, s3_error_xml("AccessDenied", message)

    with fake_aws(reply) as fake:
        use_endpoints(monkeypatch, s3=fake.url)
        settings = Settings(s3_bucket="vdt-lab-bucket", s3_key="hello.txt", s3_get_object=True)
        f = run_check(checks(settings)["s3.object"], FACTS, settings, call_data()).findings[0]
    assert f.status == Status.CRITICAL and f.cause_code == "s3_access_denied_bucket_policy"
    assert "bucket policy of vdt-lab-bucket" in f.fix and f.evidence["operation"] == "GetObject"


def test_head_object_403_has_no_body(aws_env, monkeypatch):
    with fake_aws(lambda *a: (403, {"x-amz-request-id": "R1"}, b"")) as fake:
        use_endpoints(monkeypatch, s3=fake.url)
        settings = Settings(s3_bucket="vdt-lab-bucket", s3_key="hello.txt")
        f = run_check(checks(settings)["s3.object"], FACTS, settings, call_data()).findings[0]
    assert f.cause_code == "s3_access_denied" and "403 Forbidden on HeadObject" in f.cause
    assert "arn:aws:s3:::vdt-lab-bucket/hello.txt" in f.fix and "s3:GetObject" in f.fix


def redirect_to(region: str):
    """S3 for a bucket in another region: 301, x-amz-bucket-region, and (not for HEAD) the XML."""
    def reply(method, path, headers, body):
        bucket = path.lstrip("/").split("/", 1)[0].split("?", 1)[0]
        return 301, {"x-amz-bucket-region": region, "Content-Type": "application/xml",
                     "x-amz-request-id": "VDT0REDIRECT0001"}, s3_error_xml(
            "PermanentRedirect", "The bucket you are attempting to access must be addressed using the specified "
            "endpoint. Please send all future requests to this endpoint.",
            Endpoint=f"{bucket}.s3.{region}.amazonaws.com", Bucket=bucket)
    return reply


@pytest.mark.parametrize("get_object,key", [(False, "hello.txt"), (False, None), (True, "hello.txt")])
def test_bucket_in_other_region_is_seen_not_followed(aws_env, monkeypatch, get_object, key):
    with fake_aws(redirect_to("us-west-2")) as fake:
        use_endpoints(monkeypatch, s3=fake.url)
        settings = Settings(s3_bucket="vdt-west", s3_key=key, s3_get_object=get_object)
        f = run_check(checks(settings)["s3.object"], FACTS, settings, call_data()).findings[0]
        assert len(fake.requests) == 1, fake.requests  # botocore did not follow the redirect
    assert f.status == Status.CRITICAL and f.cause_code == "s3_bucket_other_region"
    assert "vdt-west is in us-west-2, not us-east-1" in f.cause
    assert f.evidence["http_status"] == 301 and f.evidence["bucket_region"] == "us-west-2"


def test_get_object_redirect_after_head_ok(aws_env, monkeypatch):
    """GetObject's own 301 carries the XML body; the region also comes from <Endpoint>."""
    def reply(method, path, headers, body):
        if method == "HEAD":
            return 200, {"Content-Type": "text/plain", "ETag": '"x"'}, b""
        return 301, {"Content-Type": "application/xml"}, s3_error_xml(
            "PermanentRedirect", "The bucket you are attempting to access must be addressed using the specified "
            "endpoint.", Endpoint="vdt-west.s3.eu-west-1.amazonaws.com", Bucket="vdt-west")

    with fake_aws(reply) as fake:
        use_endpoints(monkeypatch, s3=fake.url)
        settings = Settings(s3_bucket="vdt-west", s3_key="k", s3_get_object=True)
        f = run_check(checks(settings)["s3.object"], FACTS, settings, call_data()).findings[0]
        assert [m for m, _, _ in fake.requests] == ["HEAD", "GET"]
    assert f.cause_code == "s3_bucket_other_region" and f.evidence["bucket_region"] == "eu-west-1"
    assert f.evidence["operation"] == "GetObject"


@pytest.mark.parametrize("get_object", [False, True])
def test_wrong_signing_region_names_the_bucket_region(aws_env, monkeypatch, get_object):
    """S3's 400 for a request signed for the wrong region: the header on HEAD, <Region> in the XML."""
    def reply(method, path, headers, body):
        if method == "HEAD" and not get_object:
            return 400, {"x-amz-bucket-region": "ap-southeast-2"}, b""
        if method == "HEAD":
            return 200, {"ETag": '"x"'}, b""
        return 400, {"Content-Type": "application/xml"}, s3_error_xml(
            "AuthorizationHeaderMalformed", "The authorization header is malformed; the region 'us-east-1' is "
            "wrong; expecting 'ap-southeast-2'", Region="ap-southeast-2")

    with fake_aws(reply) as fake:
        use_endpoints(monkeypatch, s3=fake.url)
        settings = Settings(s3_bucket="vdt-syd", s3_key="k", s3_get_object=get_object)
        f = run_check(checks(settings)["s3.object"], FACTS, settings, call_data()).findings[0]
        assert len(fake.requests) == (2 if get_object else 1)
    assert f.cause_code == "s3_bucket_other_region" and f.evidence["bucket_region"] == "ap-southeast-2"


def test_redirect_is_followed_without_our_hook(aws_env, monkeypatch):
    """Control: botocore's redirector does follow a 301 on its own (so the test above means something)."""
    with fake_aws(redirect_to("us-west-2")) as fake:
        use_endpoints(monkeypatch, s3=fake.url)
        ctx = Context(FACTS, Settings(), {}, time.monotonic() + 10, 10)
        client = awsclient.client(ctx, "s3")
        from botocore.exceptions import ClientError

        with pytest.raises(ClientError):
            client.head_object(Bucket="vdt-west", Key="hello.txt")
        assert len(fake.requests) > 1


def test_other_s3_error(aws_env, monkeypatch):
    reply = (503, {"Content-Type": "application/xml"}, s3_error_xml("SlowDown", "Please reduce your request rate."))
    with fake_aws(lambda *a: reply) as fake:
        use_endpoints(monkeypatch, s3=fake.url)
        f = run_check(checks()["s3.api"], FACTS, Settings(), call_data()).findings[0]
    assert f.cause_code == "s3_error" and "SlowDown" in f.cause and len(fake.requests) == 1  # no retries


# --- timeouts: a dropped S3 address in a test namespace ------------------------------------------------------

@pytest.fixture(scope="module")
def drop_ns():
    require_root_tools()
    with netns("s3t", S3_IPS) as ns:
        ns.nft([f"ip daddr {ip} tcp dport 443 drop" for ip in S3_IPS])
        yield ns


def timeout_run(ns, monkeypatch, check_id="s3.api", view=None, settings=Settings(connect_timeout_s=0.5)):
    use_endpoints(monkeypatch, s3=f"https://{S3_IPS[0]}")
    start = time.monotonic()
    out = ns.call(lambda: run_check(checks(settings)[check_id], FACTS, settings, call_data(view)))
    return out.findings[0], time.monotonic() - start


def test_timeout_without_route_is_the_missing_association(aws_env, monkeypatch, drop_ns):
    """The VPC has a gateway endpoint, this subnet's table lacks its route: the same cause and fix
    as s3.route (issue 14: s3.api said create-vpc-endpoint while s3.route said modify)."""
    f, elapsed = timeout_run(drop_ns, monkeypatch, view=lab_view(routes=(Route("10.0.0.0/16", "local"),)))
    assert elapsed < 2.0, elapsed  # one 0.5 s connect attempt, no retries
    assert f.status == Status.CRITICAL and f.cause_code == "s3_route_missing"
    assert "ConnectTimeoutError" in f.evidence["error"] and "0x" not in f.evidence["error"]
    assert f"--add-route-table-ids {RTB}" in f.fix and "create-vpc-endpoint" not in f.fix
    route = run_check(checks()["s3.route"], FACTS, Settings(),
                      {"ec2.api": lab_view(routes=(Route("10.0.0.0/16", "local"),))}).findings[0]
    assert route.cause_code == f.cause_code and route.fix == f.fix


def test_timeout_without_view_names_route_and_sg_unproven(aws_env, monkeypatch, drop_ns):
    """Issue 12: without the EC2 API a drop is not proof of a missing route; the instance SG's egress
    to the prefix list (and the NACL's CIDRs) drop the same way. Both are named, the route first."""
    f, _ = timeout_run(drop_ns, monkeypatch, view=UNAVAILABLE)
    assert f.cause_code == "s3_no_answer"
    assert "not proven" in f.cause and "the route, then the instance security group" in f.cause
    assert "--add-route-table-ids" in f.fix and "authorize-security-group-egress" in f.fix
    assert "cannot reference prefix lists" in f.fix
    assert f.evidence["dialled"]["addresses"] == [S3_IPS[0]]  # what botocore dialled, not the resolver's
    assert not re.search(r"\{[a-z_]+\}", f.fix)  # unknown ids are <placeholders>, never raw template fields


def test_timeout_with_route_known_and_rules_unknown_puts_the_sg_first(aws_env, monkeypatch, drop_ns):
    view = lab_view(security_group_rules={})
    f, _ = timeout_run(drop_ns, monkeypatch, view=view)
    assert f.cause_code == "s3_no_answer" and "the instance security group's egress, then the route" in f.cause


def test_timeout_to_a_pinned_address_names_the_pin(aws_env, monkeypatch, drop_ns):
    """/etc/hosts sends the bucket's name somewhere S3 is not: that is the cause, not the route."""
    from vpce_doctor.checks import dialled

    pinned = dialled.Dialled("b.s3.us-east-1.amazonaws.com", ("10.0.1.150",), dialled.HOSTS_PATH)
    monkeypatch.setattr(s3errors, "resolve", lambda host, timeout: pinned)
    f, _ = timeout_run(drop_ns, monkeypatch, view=lab_view())
    assert f.cause_code == "system_dns_differs"
    assert "10.0.1.150" in f.summary and "/etc/hosts" in f.cause


def test_timeout_with_route_blames_the_security_group(aws_env, monkeypatch, drop_ns):
    view = lab_view(security_group_rules={INST_SG: (SecurityGroupRule("outbound", "tcp", 22, 22, cidrs=("0.0.0.0/0",)),)})
    f, _ = timeout_run(drop_ns, monkeypatch, view=view)
    assert f.cause_code == "s3_sg_no_outbound_443"
    assert f"--group-id {INST_SG}" in f.fix and f"PrefixListId={LAB_PL}" in f.fix


def test_timeout_with_route_and_sg_open_is_path_blocked(aws_env, monkeypatch, drop_ns):
    f, _ = timeout_run(drop_ns, monkeypatch, view=lab_view())
    assert f.cause_code == "s3_path_blocked" and GW in f.cause and RTB in f.cause
    assert f.evidence["gateway_route"] == f"{LAB_PL} -> {GW}"


def test_object_timeout_too(aws_env, monkeypatch, drop_ns):
    settings = Settings(connect_timeout_s=0.5, s3_bucket="vdt-lab-bucket", s3_key="hello.txt")
    f, _ = timeout_run(drop_ns, monkeypatch, "s3.object", view=UNAVAILABLE, settings=settings)
    assert f.status == Status.CRITICAL and f.cause_code == "s3_no_answer"


def test_access_denied_cause_texts():
    assert s3errors.access_denied_cause("... because no VPC endpoint policy allows the s3:GetObject action") == \
        "s3_access_denied_endpoint_policy"
    assert s3errors.access_denied_cause("... because no resource-based policy allows the s3:GetObject action") == \
        "s3_access_denied_bucket_policy"
    assert s3errors.access_denied_cause("... with an explicit deny in an identity-based policy") == "s3_access_denied_iam"
    assert s3errors.access_denied_cause("... with an explicit deny in a service control policy") == "s3_access_denied"


def test_timeout_with_a_nacl_that_allows_only_the_vpc_names_the_entry(aws_env, monkeypatch, drop_ns):
    """Route and SG allow S3; the instance subnet's NACL (which cannot reference the prefix list)
    allows only the VPC CIDR: the entry is named, with the prefix list's CIDRs to add."""
    import dataclasses

    from vpce_doctor.checks.nacls import NaclEntry, NaclView

    acl = NaclView("acl-0vdt", (NaclEntry(100, True, "-1", "allow", "10.0.0.0/16"),
                                NaclEntry(100, False, "-1", "allow", "10.0.0.0/16")))
    view = lab_view(network_acls={"subnet-0a": acl})
    monkeypatch.setattr(sys.modules[__name__], "FACTS", dataclasses.replace(FACTS, local_ipv4="10.0.1.10"))
    f, _ = timeout_run(drop_ns, monkeypatch, view=view)
    assert f.cause_code == "nacl_blocks" and "acl-0vdt" in f.cause and "outbound" in f.cause
    assert "198.51.100.0/28" in f.fix and "cannot reference prefix lists" in f.fix and "--egress" in f.fix


def test_not_tried_when_the_instances_own_resolver_fails_the_name():
    """resolver.system: this instance's nameserver fails s3's name (too slow, dead): botocore would
    fail the same way, later; the S3 calls name that root instead of timing out themselves."""
    data = dict(call_data(), **{"resolver.system": {"misled_hosts": ["s3.us-east-1.amazonaws.com"]}})
    settings = Settings(s3_bucket="vdt-lab-bucket", s3_key="hello.txt")
    for cid in ("s3.api", "s3.object"):
        start = time.monotonic()
        f = run_check(checks(settings)[cid], FACTS, settings, data).findings[0]
        assert time.monotonic() - start < 0.5
        assert (f.status, f.blocked_by, f.cause_code) == (Status.CRITICAL, "resolver.system", "aws_call_blocked")
