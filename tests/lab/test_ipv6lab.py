"""The lab's IPv6 knobs, pure parts (no namespaces): addresses, rules, DNS, IMDS paths, AWS's rules
for endpoint IP address types. End to end: tests/lab/scenarios/ipv6-*.yaml."""
from __future__ import annotations

import ipaddress

import pytest

from tests.lab import dns, firewall, ipv6lab
from tests.lab.scenario import ScenarioError, parse
from tests.lab.world import build

DUAL = {"ipv6": "dual_stack", "endpoints": {"ssm": {"ip_address_type": "dualstack"}}}
ONLY = {"ipv6": "ipv6_only", "endpoints": {s: {"ip_address_type": "dualstack", "azs": ["b", "c"]}
                                           for s in ("ssm", "ec2messages", "ssmmessages")}}


def test_default_lab_has_no_ipv6_at_all() -> None:
    world = build(parse({}), "t")
    assert "ip6" not in firewall.ruleset(world) and not any(":" in ip for ip in world.vpc_addresses4)
    assert ipv6lab.topology_commands(world) == ([], []) and ipv6lab.dnsmasq_lines(world, 60) == []
    assert ipv6lab.to_json(world) == {"mode": "none"} and not any(":" in ip for ip in world.listen_ips)


def test_every_ipv6_address_is_unique_local() -> None:
    world = build(parse(ONLY), "t")
    ula = ipaddress.ip_network("fd00::/8")
    for ip in ipv6lab.vpc_addresses(world) + (ipv6lab.INSTANCE_IP6, ipv6lab.ROUTER_IP6):
        assert ipaddress.ip_address(ip) in ula, ip


def test_dual_stack_records_rules_and_imds_paths() -> None:
    world = build(parse(DUAL), "t")
    conf = dns.dnsmasq_config(world, ["10.0.0.2"])
    assert "listen-address=fd00:ec2::253" in conf
    assert "host-record=ssm.us-east-1.amazonaws.com,fd0e:5a00:0:1::101,60" in conf
    assert "ec2messages.us-east-1.amazonaws.com,fd0e" not in conf  # IPv4-only endpoint: A only
    rules = firewall.ruleset(world)
    assert "ip6 daddr { fd0e:5a00::/56, fd00:ec2::/64 } accept" in rules and "nd-neighbor-solicit" in rules
    add, drop = ipv6lab.imds_paths(ipv6lab.to_json(world), "meta-data/network/interfaces/macs/m", "a")
    assert add["meta-data/network/interfaces/macs/m/ipv6s"] == ipv6lab.INSTANCE_IP6 and drop == []


def test_ipv6_only_instance_has_no_ipv4() -> None:
    world = build(parse(ONLY), "t")
    cmds = ipv6lab.instance_ipv4(world, ["link set lo up", "address add 10.0.1.10/24 dev ens5",
                                         "route add default via 10.0.1.1 dev ens5"])
    assert cmds == ["link set lo up"]
    assert ipv6lab.resolv_conf(world, ("10.0.0.2",)) == ("fd00:ec2::253",)
    _, drop = ipv6lab.imds_paths(ipv6lab.to_json(world), "meta-data/network/interfaces/macs/m", "a")
    assert "meta-data/local-ipv4" in drop
    assert ipv6lab.instance_answers(world, "ssm") == ("fd0e:5a00:0:2::101", "fd0e:5a00:0:3::101")


@pytest.mark.parametrize("data, message", [
    ({"endpoints": {"ssm": {"ip_address_type": "dualstack"}}}, "dualstack needs subnets with IPv6"),
    ({"ipv6": "ipv6_only"}, "subnet a is IPv6-only"),
    ({"ipv6": "ipv6_only", "endpoints": {"ssm": {"ip_address_type": "ipv6"}}}, "ip_address_type"),
])
def test_aws_rules_for_ip_address_types(data: dict, message: str) -> None:
    with pytest.raises(ScenarioError) as err:
        build(parse(data, "x.yaml"), "t")
    assert message in str(err.value) and "\n" not in str(err.value)
