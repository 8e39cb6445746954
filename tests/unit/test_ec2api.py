"""ec2.api against moto as a real server, an EC2-shaped listener for denied calls, and a namespace
whose nftables drop makes the API address a blackhole (the reference lab without an ec2 endpoint)."""
from __future__ import annotations

import time

import pytest

from vpce_doctor.checks import awsclient, ec2api
from vpce_doctor.checks.ec2view import Ec2View
from vpce_doctor.checks.model import Settings, Status

try:
    from tests.unit.moto_fixture import (aws_env, boto, by_id, dump, ec2_error_xml, facts_for, fake_aws, forward,
                                         moto_reset, moto_url, netns, query_action, require_root_tools,
                                         run_check, seed_vpc, use_endpoints)
except ImportError:  # tests/unit on sys.path (pytest's rootdir-less import mode)
    from moto_fixture import (aws_env, boto, by_id, dump, ec2_error_xml, facts_for, fake_aws, forward,  # type: ignore
                              moto_reset, moto_url, netns, query_action, require_root_tools, run_check,
                              seed_vpc, use_endpoints)

__all__ = ["aws_env", "moto_url"]  # fixtures used by name


def ec2_check(settings: Settings = Settings()):
    return by_id(ec2api.checks(settings))["ec2.api"]


@pytest.fixture
def lab(aws_env, moto_url, monkeypatch):
    moto_reset(moto_url)
    ids = seed_vpc(moto_url)
    use_endpoints(monkeypatch, ec2=moto_url)
    return ids


def test_full_view_from_moto(lab, moto_url):
    out = run_check(ec2_check(), facts_for(lab), Settings())
    finding, view = out.findings[0], out.data
    assert isinstance(view, Ec2View) and view.available, finding.summary
    assert finding.status == Status.OK and finding.id == "ec2.api"
    assert view.enable_dns_support is True and view.enable_dns_hostnames is True
    assert view.errors == {}
    # Endpoints with the ENI IPs that DescribeNetworkInterfaces reports (moto's are random).
    ssm = view.endpoint_for("ssm")
    assert ssm is not None and ssm.id == lab["endpoints"]["ssm"] and ssm.private_dns_enabled
    assert ssm.state == "available" and ssm.security_group_ids == (lab["endpoint_sg"],)
    enis = {e["NetworkInterfaceId"]: e for e in boto("ec2", moto_url).describe_network_interfaces(
        NetworkInterfaceIds=list(ssm.eni_ids))["NetworkInterfaces"]}
    assert set(ssm.eni_ips) == {e["PrivateIpAddress"] for e in enis.values()} and len(ssm.eni_ips) == 2
    assert {ssm.eni_azs[ip] for ip in ssm.eni_ips} == {"us-east-1a", "us-east-1b"}
    gw = view.endpoint_for("s3", "Gateway")
    assert gw is not None and gw.id == lab["s3_gateway"] and gw.route_table_ids == (lab["route_table_id"],)
    # The subnet's own table (explicit association), with the gateway route to the prefix list.
    assert view.route_table_id == lab["route_table_id"]
    assert any(r.destination == lab["prefix_list_id"] and r.target == gw.id for r in view.routes)
    assert view.s3_prefix_list_id == lab["prefix_list_id"] and view.s3_prefix_list_cidrs  # via GetManagedPrefixListEntries
    # Security groups: the instance's (outbound 443 only) and the endpoints' (inbound 443 from it).
    inst = view.security_group_rules[lab["instance_sg"]]
    assert [(r.direction, r.protocol, r.from_port, r.to_port) for r in inst] == [("outbound", "tcp", 443, 443)]
    ep = view.security_group_rules[lab["endpoint_sg"]]
    assert any(r.direction == "inbound" and r.covers_tcp_port(443) and lab["instance_sg"] in r.group_ids for r in ep)
    ev = finding.evidence
    dump(ev)
    assert ev["available"] is True and ev["route_table_id"] == lab["route_table_id"]
    assert "ssm/interface" in finding.summary and "enableDnsHostnames=true" in finding.summary


def test_subnet_without_association_uses_main_table(lab, moto_url):
    out = run_check(ec2_check(), facts_for(lab, subnet_id=lab["subnet_b"]), Settings())
    view = out.data
    assert view.available and view.route_table_id not in (None, lab["route_table_id"], lab["other_rtb"])
    assert all(not r.destination.startswith("pl-") for r in view.routes)  # main table: local only


def test_dns_hostnames_false_is_reported(lab, moto_url):
    boto("ec2", moto_url).modify_vpc_attribute(
        VpcId=lab["vpc_id"], EnableDnsHostnames={"Value": False})
    view = run_check(ec2_check(), facts_for(lab), Settings()).data
    assert view.available and view.enable_dns_hostnames is False and view.enable_dns_support is True


def test_partial_permission_keeps_the_rest(aws_env, moto_url, monkeypatch):
    moto_reset(moto_url)
    ids = seed_vpc(moto_url)
    denied = {"DescribeRouteTables", "DescribeSecurityGroups"}

    def ec2(method, path, headers, body):
        action = query_action(body)
        if action in denied:
            return 403, {"Content-Type": "text/xml"}, ec2_error_xml(
                "UnauthorizedOperation", "You are not authorized to perform this operation. User: "
                "arn:aws:sts::123456789012:assumed-role/SSMInstanceRole/i-0vdt is not authorized to perform: "
                f"ec2:{action} because no identity-based policy allows the ec2:{action} action")
        return forward(moto_url, method, path, headers, body)

    with fake_aws(ec2) as fake:
        use_endpoints(monkeypatch, ec2=fake.url)
        out = run_check(ec2_check(), facts_for(ids), Settings())
    view, finding = out.data, out.findings[0]
    assert view.available and finding.status == Status.OK
    assert set(view.errors) == {"DescribeRouteTables", "DescribeSecurityGroups"}
    assert view.errors["DescribeRouteTables"].startswith("UnauthorizedOperation")
    assert view.route_table_id is None and view.security_group_rules == {}
    assert view.endpoint_for("ssm") is not None and view.enable_dns_support is True
    assert "partial view" in finding.summary and "DescribeRouteTables (UnauthorizedOperation)" in finding.summary


def test_every_call_denied_is_unavailable(aws_env, moto_url, monkeypatch):
    moto_reset(moto_url)
    ids = seed_vpc(moto_url)

    def deny(method, path, headers, body):
        return 403, {"Content-Type": "text/xml"}, ec2_error_xml(
            "UnauthorizedOperation", "You are not authorized to perform this operation.")

    with fake_aws(deny) as fake:
        use_endpoints(monkeypatch, ec2=fake.url)
        out = run_check(ec2_check(), facts_for(ids), Settings())
    assert isinstance(out.data, Ec2View) and out.data.available is False
    finding = out.findings[0]
    assert finding.status == Status.OK and "UnauthorizedOperation" in finding.summary
    assert finding.summary.startswith("EC2 API not reachable from here (")
    assert finding.evidence["available"] is False and "UnauthorizedOperation" in finding.evidence["reason"]
    assert finding.evidence["cause_code"] == "ec2_api_unavailable"


def test_auth_failure_stops_at_first_call(aws_env, monkeypatch):
    def auth(method, path, headers, body):
        return 401, {"Content-Type": "text/xml"}, ec2_error_xml("AuthFailure", "AWS was not able to validate the "
                                                                "provided access credentials")

    with fake_aws(auth) as fake:
        use_endpoints(monkeypatch, ec2=fake.url)
        out = run_check(ec2_check(), facts_for({"vpc_id": "vpc-0vdt", "subnet_id": "subnet-0vdt"}), Settings())
    assert out.data.available is False and out.data.reason.startswith("AuthFailure")
    assert len(fake.requests) == 1  # no point in the other calls


def test_refused_port_is_unavailable_at_once(aws_env, monkeypatch):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: RST
    use_endpoints(monkeypatch, ec2=f"http://127.0.0.1:{port}")
    start = time.monotonic()
    out = run_check(ec2_check(), facts_for({"vpc_id": "vpc-0vdt"}), Settings())
    assert time.monotonic() - start < 1.0
    assert out.data.available is False and "EndpointConnectionError" in out.data.reason
    assert out.findings[0].status == Status.OK


def test_hanging_api_still_gives_a_view_before_the_deadline(aws_env, monkeypatch):
    """A server that accepts and never answers: the check reports an unavailable view before its
    own deadline instead of being cut off by the runner (which would block every dependent)."""
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)  # the kernel accepts; nobody ever answers
    try:
        use_endpoints(monkeypatch, ec2=f"http://127.0.0.1:{srv.getsockname()[1]}")
        start = time.monotonic()
        out = run_check(ec2_check(Settings(api_timeout_s=30)), facts_for({"vpc_id": "vpc-0vdt"}),
                        Settings(api_timeout_s=30), deadline_s=1.5)
        elapsed = time.monotonic() - start
    finally:
        srv.close()
    assert elapsed < 1.5, elapsed
    assert isinstance(out.data, Ec2View) and out.data.available is False
    assert "no complete answer within" in out.data.reason and out.findings[0].status == Status.OK


def test_no_credentials_is_unavailable(aws_env, monkeypatch, moto_url):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    use_endpoints(monkeypatch, ec2=moto_url)
    out = run_check(ec2_check(), facts_for({"vpc_id": "vpc-0vdt"}), Settings())
    assert out.data.available is False and out.data.reason.startswith("NoCredentialsError")


def test_blackholed_api_gives_up_after_one_short_connect(aws_env, monkeypatch):
    """The healthy reference lab: no ec2 endpoint, the public API address is dropped (as a VPC does
    without a route). One attempt with the short connect timeout, no retries."""
    require_root_tools()
    api_ip = "198.51.100.64"
    with netns("ec2", [api_ip]) as ns:
        ns.nft([f"ip daddr {api_ip} tcp dport 443 drop"])
        use_endpoints(monkeypatch, ec2=f"https://{api_ip}")
        start = time.monotonic()
        out = ns.call(lambda: run_check(ec2_check(), facts_for({"vpc_id": "vpc-0vdt"}), Settings()))
        elapsed = time.monotonic() - start
    assert out.data.available is False and "connect timeout" in out.data.reason
    from vpce_doctor.checks.ec2api import CONNECT_TIMEOUT_S

    # exactly one attempt: a retry would take at least two connect timeouts
    assert 0.9 * CONNECT_TIMEOUT_S <= elapsed < 2 * CONNECT_TIMEOUT_S, elapsed
    f = out.findings[0]
    assert f.status == Status.OK and f.summary.startswith("EC2 API not reachable from here (")
    assert f.summary.endswith("identity checks rest on CIDR evidence")
    assert f.evidence["endpoint_url"] == f"https://{api_ip}"


def test_imds_credential_fetch_is_bounded(aws_env, monkeypatch):
    """No credentials in the environment: botocore asks IMDS. Where IMDS doesn't answer (dropped
    inside a test namespace) the fetch gives up after our 1 s x 1 attempt per step."""
    require_root_tools()
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED")
    monkeypatch.setenv("AWS_METADATA_SERVICE_TIMEOUT", "30")  # must not stretch our bound
    monkeypatch.setenv("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "5")
    with netns("imds", ["169.254.169.254", "198.51.100.64"]) as ns:
        ns.nft(["ip daddr 169.254.169.254 tcp dport 80 drop"])
        # The API address answers TCP (a dropped one is found before any client is built): the
        # client is built, and signing the first call needs the credentials IMDS never gives.
        listener = ns.listener("198.51.100.64", 443)
        use_endpoints(monkeypatch, ec2="https://198.51.100.64")
        start = time.monotonic()
        try:
            out = ns.call(lambda: run_check(ec2_check(), facts_for({"vpc_id": "vpc-0vdt"}), Settings()))
        finally:
            listener.close()
        elapsed = time.monotonic() - start
    assert out.data.available is False and out.data.reason.startswith("NoCredentialsError")
    assert elapsed < 4.0, elapsed  # token PUT + role GET, 1 s each at most


def test_missing_facts_give_an_unavailable_view_not_a_block(aws_env):
    out = run_check(ec2_check(), facts_for({}, vpc_id=None), Settings())
    assert isinstance(out.data, Ec2View) and out.data.available is False and out.data.reason == "vpc_id unknown"
    out = run_check(ec2_check(), facts_for({"vpc_id": "vpc-1"}, region=None), Settings())
    assert out.data.available is False and out.data.reason == "region unknown"


def test_disabled_in_config():
    out = run_check(ec2_check(Settings(check_ec2_api=False)), facts_for({}), Settings(check_ec2_api=False))
    assert out.findings[0].status == Status.OK and "disabled in config" in out.findings[0].summary
    assert out.data.available is False and out.data.reason == "disabled in config"


def test_no_client_at_import_and_endpoint_env_hook(monkeypatch):
    monkeypatch.setattr(awsclient, "ENDPOINT_URLS", {})
    monkeypatch.setenv("VPCE_DOCTOR_ENDPOINT_URL_EC2", "http://127.0.0.1:9")
    assert awsclient.endpoint_url("ec2") == "http://127.0.0.1:9"
    monkeypatch.delenv("VPCE_DOCTOR_ENDPOINT_URL_EC2")
    assert awsclient.endpoint_url("ec2") is None  # production: botocore's own resolution


def test_client_has_retries_off_and_bounded_timeouts(aws_env):
    from vpce_doctor.checks.model import Context

    ctx = Context(facts_for({}), Settings(connect_timeout_s=2.0, api_timeout_s=3.0), {},
                  deadline=time.monotonic() + 1.5, check_timeout_s=10)
    c = awsclient.client(ctx, "ec2", connect_timeout=1.0)
    cfg = c.meta.config
    assert cfg.connect_timeout == 1.0 and cfg.read_timeout <= 1.5  # capped by the deadline
    assert cfg.retries["total_max_attempts"] == 1
    assert c.meta.region_name == "us-east-1" and c.meta.endpoint_url == "https://ec2.us-east-1.amazonaws.com"
    s3 = awsclient.client(ctx, "s3")
    assert s3.meta.endpoint_url == "https://s3.us-east-1.amazonaws.com"  # regional, also in us-east-1
