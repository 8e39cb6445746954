"""The lab's DNS knobs (tests/lab/dnsknobs.py): the DHCP option set with a custom DNS server and a
private hosted zone that shadows AWS names — what they do to answers, resolv.conf and the dnsmasq
configurations (no root needed; the scenarios run them for real)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.lab import dns
from tests.lab.scenario import ScenarioError, parse
from tests.lab.world import build

SSM = "ssm.us-east-1.amazonaws.com"
EC2MESSAGES = "ec2messages.us-east-1.amazonaws.com"


@pytest.mark.parametrize("data, message", [
    ({"dhcp_options": {"domain_name_servers": ["192.0.2.53"]}}, "x.yaml:dhcp_options.domain_name_servers: '192.0.2.53'"),
    ({"dhcp_options": {"domain_name_servers": ["10.0.0.2"]}}, "other than .0-.3"),
    ({"dhcp_options": {"custom_dns_forwards": ["ec2"]}}, "x.yaml:dhcp_options.custom_dns_forwards: there is no custom"),
    ({"dhcp_options": {"servers": []}}, "x.yaml:dhcp_options: expected a mapping"),
    ({"dns_shadow_zone": {"zone": "example.com"}}, "x.yaml:dns_shadow_zone.zone: expected a zone under amazonaws.com"),
    ({"dns_shadow_zone": {"zone": "s3.us-east-1.amazonaws.com", "records": {SSM: ["10.0.1.101"]}}},
     f"x.yaml:dns_shadow_zone.records.{SSM}: expected a name inside the zone"),
    ({"dns_shadow_zone": {"zone": "us-east-1.amazonaws.com", "records": {SSM: ["192.0.2.53"]}}}, "'192.0.2.53': expected"),
])
def test_errors_are_one_line_with_the_key(data: dict, message: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse(data, "x.yaml")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_dhcp_custom_server_sets_resolv_conf_and_answers_publicly() -> None:
    world = build(parse({"dhcp_options": {"domain_name_servers": ["10.0.0.53"], "custom_dns_forwards": ["ec2"]},
                         "endpoints": {"ec2": {}}}, "x.yaml"), "t")
    sc = world.scenario
    assert sc.resolv_conf_nameservers == ("10.0.0.53",)  # DHCP writes resolv.conf
    assert "10.0.0.53" in world.vpc_addresses
    assert world.instance_answers("ssm") == ("198.51.100.64",)  # public: the agent bypasses the endpoint
    assert world.instance_answers("ec2") == tuple(s.answers for s in world.services if s.name == "ec2")[0]
    conf = dns.custom_dnsmasq_config(world)
    assert f"host-record={SSM},198.51.100.64,60" in conf and "listen-address=10.0.0.53" in conf
    assert "server=/ec2.us-east-1.amazonaws.com/10.0.0.2" in conf and conf.rstrip().endswith("address=/#/")
    assert world.to_json(Path("/x"))["dhcp_options"] == {"domain_name_servers": ["10.0.0.53"]}


def test_resolv_conf_set_by_hand_wins_over_dhcp() -> None:
    sc = parse({"dhcp_options": {"domain_name_servers": ["10.0.0.53"]}, "resolv_conf_nameservers": ["10.0.0.2"]},
               "x.yaml")
    assert sc.resolv_conf_nameservers == ("10.0.0.2",)
    assert parse({}, "x.yaml").resolv_conf_nameservers == ("10.0.0.2",)  # AmazonProvidedDNS by default


def test_shadow_zone_empties_names_without_their_own_private_dns() -> None:
    world = build(parse({"endpoints": {"ec2messages": {"private_dns": False}},
                         "dns_shadow_zone": {"zone": "us-east-1.amazonaws.com",
                                             "records": {SSM: ["10.0.1.101"]}}}, "x.yaml"), "t")
    answers = {s.name: s.answers for s in world.services}
    assert answers["ssm"] == ("10.0.1.101", "10.0.2.101")  # its endpoint's zone is more specific
    assert answers["ec2messages"] == ()  # NXDOMAIN
    conf = dns.dnsmasq_config(world, ["10.0.0.2"])
    assert f"host-record={EC2MESSAGES}" not in conf
    assert "address=/s3.us-east-1.amazonaws.com/" not in conf  # S3's regional name is shadowed too
    assert world.instance_answers("ec2messages") == ()


def test_shadow_zone_of_s3_keeps_only_the_apex() -> None:
    world = build(parse({"dns_shadow_zone": {"zone": "s3.us-east-1.amazonaws.com",
                                             "records": {"s3.us-east-1.amazonaws.com": ["198.51.100.10"]}}},
                        "x.yaml"), "t")
    conf = dns.dnsmasq_config(world, ["10.0.0.2"])
    assert "host-record=s3.us-east-1.amazonaws.com,198.51.100.10,60" in conf
    assert "address=/s3.us-east-1.amazonaws.com/" not in conf  # no wildcard: bucket names NXDOMAIN
    assert "address=/s3.us-west-2.amazonaws.com/198.51.100.200" in conf  # outside the zone: untouched
