"""Names the Amazon resolver shadows (a private hosted zone without the record), the VPC attribute
that AWS wants on before Private DNS, and the DHCP option set behind a custom nameserver: real
dnsmasq in a private namespace (fixtures_net), moto as a real server for DescribeVpcs /
DescribeDhcpOptions."""
from __future__ import annotations

from typing import Any, Dict, Iterator

import pytest

from vpce_doctor.checks import dhcpdns, dnsshadow, endpoints, s3
from vpce_doctor.checks.ec2view import Ec2View, EndpointView
from vpce_doctor.checks.model import Check, Facts, Outcome, Settings, Status

try:
    from .fixtures_net import LAB_FACTS, Dnsmasq, Netns, by_id, require_netns_tools, run_check
    from .moto_fixture import aws_env, boto, moto_reset, moto_url, seed_vpc, use_endpoints
except ImportError:  # tests/unit is not a package
    from fixtures_net import LAB_FACTS, Dnsmasq, Netns, by_id, require_netns_tools, run_check  # type: ignore
    from moto_fixture import aws_env, boto, moto_reset, moto_url, seed_vpc, use_endpoints  # type: ignore

__all__ = ["aws_env", "moto_url"]  # fixtures used by name

SHADOW = "10.0.0.2"  # a resolver with a private hosted zone us-east-1.amazonaws.com holding only ssm
BUCKETS = "10.0.0.4"  # a resolver with a zone s3.us-east-1.amazonaws.com holding only its apex
MIXED = "10.0.0.6"  # the us-east-1.amazonaws.com zone with ssm private and ec2messages public
REGION_ZONE = "us-east-1.amazonaws.com"
S3 = f"s3.{REGION_ZONE}"
ENIS = ("10.0.1.101", "10.0.2.101")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, Any]]:
    require_netns_tools()
    work = tmp_path_factory.mktemp("shadow")
    ns = Netns("sh")
    servers = []
    try:
        ns.create([SHADOW, BUCKETS, MIXED])
        # local=/zone/: names under the zone without a record are NXDOMAIN, as in a Route 53 private zone.
        servers.append(Dnsmasq(ns, [SHADOW], [f"--host-record=ssm.{REGION_ZONE},{ENIS[0]}",
                                              f"--local=/{REGION_ZONE}/"], str(work), "phz").start())
        servers.append(Dnsmasq(ns, [BUCKETS], [f"--host-record={S3},198.51.100.10", f"--local=/{S3}/",
                                               f"--host-record=ssm.{REGION_ZONE},{ENIS[0]}"],
                               str(work), "buckets").start())
        servers.append(Dnsmasq(ns, [MIXED], [f"--host-record=ssm.{REGION_ZONE},{ENIS[0]}",
                                             f"--host-record=ec2messages.{REGION_ZONE},198.51.100.65",
                                             f"--local=/{REGION_ZONE}/"], str(work), "mixed").start())
        yield {"ns": ns}
    finally:
        for s in servers:
            s.stop()
        ns.delete()


SETTINGS = Settings(services=("ssm", "ec2messages", "ssmmessages"), dns_timeout_s=0.5)
NO_VIEW = Ec2View(available=False, reason="not in this test")


def _run(world: Dict[str, Any], check: Check, server: str, settings: Settings = SETTINGS,
         view: Ec2View = NO_VIEW) -> Outcome:
    with world["ns"].entered():
        return run_check(check, LAB_FACTS, settings, {"resolver": {"server": server}, "ec2.api": view})


# --- the zone from the pattern -------------------------------------------------------------------------

def test_deepest_common_parent_of_the_failing_names() -> None:
    assert dnsshadow.shadow_zone([f"ec2messages.{REGION_ZONE}", f"ssmmessages.{REGION_ZONE}", S3]) == REGION_ZONE
    # NXDOMAIN means a proper parent: a zone named like the name itself would hold its apex.
    assert dnsshadow.shadow_zone([f"my-bucket.{S3}"]) == S3
    assert dnsshadow.shadow_zone([]) is None
    assert dnsshadow.bucket_hostname(S3, "a.b", "us-east-1") == f"aws-ssm-us-east-1.{S3}"  # dotted: path-style


def test_nxdomain_with_resolving_siblings_names_the_zone(world: Dict[str, Any]) -> None:
    check = by_id(endpoints.checks(SETTINGS))["dns.ec2messages"]
    f = _run(world, check, SHADOW).findings[0]
    assert (f.status, f.cause_code) == (Status.CRITICAL, "dns_shadow_zone")
    assert f.evidence["shadow_zone"] == REGION_ZONE
    assert f.evidence["siblings"][f"ssm.{REGION_ZONE}"] == [ENIS[0]]
    assert f"for {REGION_ZONE} associated with the VPC" in f.cause and f"ssm.{REGION_ZONE}" in f.cause
    assert "aws route53 list-hosted-zones-by-vpc --vpc-id vpc-0lab --vpc-region us-east-1" in f.fix


def test_public_record_of_a_shadowing_zone(world: Dict[str, Any]) -> None:
    check = by_id(endpoints.checks(SETTINGS))["dns.ec2messages"]
    f = _run(world, check, MIXED).findings[0]
    assert (f.status, f.cause_code) == (Status.CRITICAL, "dns_shadow_zone_public_record")
    assert f.evidence["shadow_zone"] == REGION_ZONE and "198.51.100.65" in f.cause
    assert f.evidence["siblings"][f"ssmmessages.{REGION_ZONE}"] == "nxdomain"


def test_nxdomain_with_nothing_resolving_stays_plain_nxdomain(world: Dict[str, Any]) -> None:
    settings = Settings(services=("ec2messages", "ssmmessages"), dns_timeout_s=0.5)
    f = _run(world, by_id(endpoints.checks(settings))["dns.ec2messages"], SHADOW, settings).findings[0]
    assert (f.status, f.cause_code) == (Status.CRITICAL, "dns_nxdomain")  # a wrong region fits as well


def test_bucket_names_nxdomain_while_the_regional_name_resolves(world: Dict[str, Any]) -> None:
    settings = Settings(services=("ssm",), dns_timeout_s=0.5, s3_bucket="vdt-lab-bucket")
    out = _run(world, by_id(s3.checks(settings))["s3.dns"], BUCKETS, settings)
    f = out.findings[0]
    assert (f.status, f.cause_code, out.data) == (Status.CRITICAL, "dns_shadow_zone", None)
    assert f.evidence["bucket_host"] == f"vdt-lab-bucket.{S3}" and f.evidence["shadow_zone"] == S3
    assert f.evidence["answers"] == ["198.51.100.10"]  # the regional name itself resolved


def test_regional_nxdomain_skips_the_bucket_probe(world: Dict[str, Any]) -> None:
    settings = Settings(services=("ssm",), dns_timeout_s=0.5)
    # The PHZ resolver answers nothing for S3's regional name: NXDOMAIN there, bucket names not asked.
    f = _run(world, by_id(s3.checks(settings))["s3.dns"], SHADOW, settings).findings[0]
    assert f.cause_code in ("dns_shadow_zone", "dns_nxdomain") and "bucket_host" not in f.evidence


# --- the VPC attribute before Private DNS --------------------------------------------------------------

def _view(hostnames: bool, private_dns: bool, support: bool = True) -> Ec2View:
    ep = EndpointView(id="vpce-0ssm", service_name="com.amazonaws.us-east-1.ssm", type="Interface",
                      state="available", private_dns_enabled=private_dns)
    return Ec2View(available=True, vpc_id="vpc-0lab", enable_dns_support=support, enable_dns_hostnames=hostnames,
                   endpoints=(ep,))


PARAMS = {"host": f"ssm.{REGION_ZONE}", "service": "ssm", "region": "us-east-1", "vpc_id": "vpc-0lab",
          "resolver": "10.0.0.2", "answers": "198.51.100.64"}


def test_attribute_first_then_private_dns() -> None:
    cause = endpoints._public_cause(_view(hostnames=False, private_dns=False), "ssm", LAB_FACTS, PARAMS)
    assert cause["cause_code"] == "vpc_dns_attribute_before_private_dns"
    fix = cause["fix"] or ""
    assert fix.index("enableDnsHostnames to true") < fix.index("enable Private DNS on vpce-0ssm")
    assert ("Enabling private DNS requires both enableDnsSupport and enableDnsHostnames VPC attributes set to true "
            "for vpc-0lab") in fix
    cli = fix.split("CLI: ", 1)[1]
    assert cli.index("--enable-dns-hostnames") < cli.index("modify-vpc-endpoint --vpc-endpoint-id vpce-0ssm")


def test_missing_endpoint_with_attribute_off_creates_it_second() -> None:
    view = Ec2View(available=True, vpc_id="vpc-0lab", enable_dns_support=True, enable_dns_hostnames=False)
    cause = endpoints._public_cause(view, "ssm", LAB_FACTS, PARAMS)
    assert cause["cause_code"] == "vpc_dns_attribute_before_private_dns"
    assert "create-vpc-endpoint" in (cause["fix"] or "") and "--subnet-ids subnet-0a" in (cause["fix"] or "")


def test_attribute_alone_and_private_dns_alone_keep_their_causes() -> None:
    assert endpoints._public_cause(_view(False, True), "ssm", LAB_FACTS, PARAMS)["cause_code"] == \
        "dns_hostnames_disabled"
    assert endpoints._public_cause(_view(True, False), "ssm", LAB_FACTS, PARAMS)["cause_code"] == \
        "private_dns_disabled"


# --- the DHCP option set behind a custom nameserver (moto) ----------------------------------------------

def _dhcp(facts: Facts, view: Ec2View) -> Dict[str, Any]:
    check = Check("t.dhcp", lambda ctx: Outcome((), dhcpdns.dhcp_options(ctx)), wants=("ec2.api",), timeout_s=10)
    return run_check(check, facts, Settings(), {"ec2.api": view}).data


def test_dhcp_option_set_and_an_amazon_one_from_the_api(aws_env: Any, moto_url: str, monkeypatch: Any) -> None:
    moto_reset(moto_url)
    ids = seed_vpc(moto_url)
    ec2 = boto("ec2", moto_url)
    amazon = ec2.create_dhcp_options(DhcpConfigurations=[
        {"Key": "domain-name-servers", "Values": ["AmazonProvidedDNS"]}])["DhcpOptions"]["DhcpOptionsId"]
    custom = ec2.create_dhcp_options(DhcpConfigurations=[
        {"Key": "domain-name-servers", "Values": ["10.0.0.53"]}])["DhcpOptions"]["DhcpOptionsId"]
    ec2.associate_dhcp_options(DhcpOptionsId=custom, VpcId=ids["vpc_id"])
    use_endpoints(monkeypatch, ec2=moto_url)
    facts = Facts(region="us-east-1", vpc_id=ids["vpc_id"], vpc_cidr="10.0.0.0/16", vpc_cidrs=("10.0.0.0/16",))
    got = _dhcp(facts, Ec2View(available=True, vpc_id=ids["vpc_id"]))
    assert got == {"known": True, "dhcp_options_id": custom, "domain_name_servers": ["10.0.0.53"],
                   "amazon_dhcp_options_id": amazon}


def test_dhcp_unknown_without_a_view() -> None:
    got = _dhcp(LAB_FACTS, Ec2View(available=False, reason="no ec2 endpoint"))
    assert got == {"known": False, "reason": "no ec2 endpoint"}
