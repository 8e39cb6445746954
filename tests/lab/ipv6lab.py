"""IPv6 in the lab (scenario ``ipv6: none | dual_stack | ipv6_only``, per endpoint ``ip_address_type``).

ULA addresses only (fd00::/8): nothing here is ever routable outside the two namespaces, which are
never connected to the host's. The plan (docs/lab-contract.md keeps the IPv4 one):

    VPC IPv6 CIDR   fd0e:5a00::/56; subnet a/b/c fd0e:5a00:0:1::/64, …:2::/64, …:3::/64
    instance        fd0e:5a00:0:1::10/128 on ens5, default via fe80::1 (the VPC router's link-local)
    router          fe80::1 + fd0e:5a00:0:1::1/64 on vpc-rtr
    Amazon resolver fd00:ec2::253, IMDS fd00:ec2::254 (on aws0, as every AWS address)
    endpoint ENIs   fd0e:5a00:0:<subnet>::<101+index> for dual-stack endpoints

As on AWS (EC2 API VpcEndpointIpAddressType, DnsOptions.DnsRecordIpType):
* ``ipv6_only``: the instance's subnet (a) is IPv6-only: its ENI has no IPv4 address and no IPv4
  route, so 169.254.169.254 and 10.0.0.2 are unreachable; subnets b and c stay dual-stack.
  /etc/resolv.conf names fd00:ec2::253 (unless the scenario sets resolv_conf_nameservers).
* ``ip_address_type: dualstack`` needs every endpoint subnet to have IPv4 and IPv6 (so not the
  IPv6-only subnet a) and gives A and AAAA records; ``ipv4`` (the default) gives A records only and
  needs IPv4 in every subnet. ``ipv6`` endpoints (IPv6-only ENIs) are not modelled (ScenarioError).
* IMDS answers on [fd00:ec2::254] whenever the instance has IPv6 (http-protocol-ipv6 enabled) and
  serves ``ipv6s``, ``subnet-ipv6-cidr-blocks``, ``vpc-ipv6-cidr-blocks`` for the ENI.
Addresses get ``nodad``: duplicate address detection would hold them "tentative" for a second.
Not modelled: IPv6-only ENIs (``ip_address_type: ipv6``); DNS64 (subnet enableDns64: AWS does not say
whether Route 53 synthesizes AAAA for private IPv4 answers; the agent's handling of 64:ff9b:: answers
is tested in tests/unit/test_ipv6.py); moto 5.2.5 has no IpAddressType/DnsOptions for VPC endpoints.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Tuple

if TYPE_CHECKING:  # world imports scenario; this module is imported by both at run time
    from .world import World

MODES = ("none", "dual_stack", "ipv6_only")
IP_ADDRESS_TYPES = ("ipv4", "dualstack")  # ipv6 (IPv6-only ENIs) is not modelled
VPC_CIDR6 = "fd0e:5a00::/56"
SUBNETS6 = {"a": "fd0e:5a00:0:1::/64", "b": "fd0e:5a00:0:2::/64", "c": "fd0e:5a00:0:3::/64"}
INSTANCE_IP6 = "fd0e:5a00:0:1::10"
ROUTER_IP6 = "fd0e:5a00:0:1::1"
ROUTER_LL, INSTANCE_LL = "fe80::1", "fe80::10"
RESOLVER6 = "fd00:ec2::253"
IMDS6 = "fd00:ec2::254"
AWS_LINK6 = "fd00:ec2::/64"  # the resolver, IMDS (AWS's own addresses, never filtered)


def eni_ip6(index: int, letter: str) -> str:
    return f"fd0e:5a00:0:{'abc'.index(letter) + 1}::{101 + index}"


def mode(world: "World") -> str:
    return getattr(world.scenario, "ipv6", "none")


def validate(world: "World", fail: Any) -> None:
    """AWS's rules for endpoint IP address types against the subnets' kinds (``fail(msg)`` raises)."""
    kind = mode(world)
    for ep in world.scenario.endpoints:
        ip_type = getattr(ep, "ip_address_type", "ipv4")
        if not ep.present:
            continue
        if ip_type == "dualstack" and kind == "none":
            fail(f"endpoints.{ep.service}.ip_address_type: dualstack needs subnets with IPv6 (ipv6: dual_stack or ipv6_only)")
        if kind == "ipv6_only" and "a" in ep.azs:
            fail(f"endpoints.{ep.service}.azs: subnet a is IPv6-only; AWS puts {ip_type} endpoint ENIs only in "
                 f"subnets with {'IPv4 and IPv6' if ip_type == 'dualstack' else 'IPv4'} (use azs [b, c])")


def eni_ips6(world: "World") -> Dict[str, Tuple[str, ...]]:
    """Service name -> the IPv6 addresses of its ENIs (dual-stack endpoints only)."""
    out: Dict[str, Tuple[str, ...]] = {}
    if mode(world) == "none":
        return out
    by_name = {ep.service: ep for ep in world.scenario.endpoints}
    for svc in world.services:
        ep = by_name.get(svc.name)
        if ep is not None and getattr(ep, "ip_address_type", "ipv4") == "dualstack":
            out[svc.name] = tuple(eni_ip6(svc.index, e.az[-1]) for e in svc.enis)
    return out


def unreachable_ips6(world: "World") -> Tuple[str, ...]:
    v6 = eni_ips6(world)
    return tuple(eni_ip6(s.index, e.az[-1]) for s in world.services if s.name in v6 for e in s.enis
                 if not e.reachable)


def aaaa_records(world: "World") -> Dict[str, Tuple[str, ...]]:
    """Private DNS AAAA records: dual-stack endpoints whose A records are their ENIs (Private DNS on)."""
    v6 = eni_ips6(world)
    return {s.hostname: v6[s.name] for s in world.services
            if s.name in v6 and s.enis and set(s.answers) == {e.ip for e in s.enis}}


def instance_answers(world: "World", service: str) -> Tuple[str, ...]:
    """What a program on an IPv6-only instance dials (AAAA); otherwise world.instance_answers."""
    svc = next(s for s in world.services if s.name == service)
    if mode(world) == "ipv6_only" and svc.hostname not in world.scenario.etc_hosts:
        return aaaa_records(world).get(svc.hostname, ())
    return world.instance_answers(service)


def listen_ips(world: "World") -> Tuple[str, ...]:
    return tuple(ip for ips in eni_ips6(world).values() for ip in ips)


def vpc_addresses(world: "World") -> Tuple[str, ...]:
    """The /128s on aws0 (none without IPv6: nothing changes for IPv4-only scenarios)."""
    if mode(world) == "none":
        return ()
    return (RESOLVER6, IMDS6) + listen_ips(world)


def dnsmasq_lines(world: "World", ttl_s: int) -> List[str]:
    if mode(world) == "none":
        return []
    lines = [f"listen-address={RESOLVER6}"]
    lines += [f"host-record={name},{ip},{ttl_s}" for name, ips in aaaa_records(world).items() for ip in ips]
    return lines


def instance_ipv4(world: "World", commands: List[str]) -> List[str]:
    """The instance's IPv4 address and route go, in an IPv6-only subnet (its ENI has no IPv4)."""
    if mode(world) != "ipv6_only":
        return commands
    return [c for c in commands if not c.startswith(("address add", "route add"))]


def resolv_conf(world: "World", configured: Tuple[str, ...]) -> Tuple[str, ...]:
    """An IPv6-only instance gets fd00:ec2::253 from DHCPv6 unless the scenario names servers."""
    if mode(world) == "ipv6_only" and configured == ("10.0.0.2",):
        return (RESOLVER6,)
    return configured


def topology_commands(world: "World") -> Tuple[List[str], List[str]]:
    """(VPC namespace, instance namespace) `ip -batch` lines; run after the IPv4 ones."""
    kind = mode(world)
    if kind == "none":
        return [], []
    vpc = [f"address add {ROUTER_LL}/64 dev vpc-rtr nodad", f"address add {ROUTER_IP6}/64 dev vpc-rtr nodad"]
    vpc += [f"address add {ip}/128 dev aws0 nodad" for ip in vpc_addresses(world)]
    inst = [f"address add {INSTANCE_LL}/64 dev ens5 nodad", f"address add {INSTANCE_IP6}/128 dev ens5 nodad",
            f"route add ::/0 via {ROUTER_LL} dev ens5"]
    return vpc, inst


def firewall_sg_rules(world: "World") -> List[str]:
    """The endpoint SG and unreachable AZs (NACL stand-in) for the IPv6 ENIs, as their IPv4 rules."""
    rules: List[str] = []
    if mode(world) == "none":
        return rules
    v6 = listen_ips(world)
    if getattr(world.scenario, "imds_ipv6", "enabled") == "disabled":  # AWS does not say what a client sees
        rules.append(f"ip6 daddr {IMDS6} drop comment \"http-protocol-ipv6 disabled: [fd00:ec2::254] does not answer\"")
    if not world.scenario.enable_dns_support:
        rules.append(f"ip6 daddr {RESOLVER6} meta l4proto {{ tcp, udp }} th dport 53 drop "
                     "comment \"enableDnsSupport=false (IPv6)\"")
    no_v6_rule = not getattr(world.scenario, "endpoint_sg_inbound_443_ipv6", True)
    if (not world.scenario.endpoint_sg_inbound_443 or no_v6_rule) and v6:
        rules.append(f"ip6 daddr {{ {', '.join(v6)} }} tcp dport 443 drop comment \"endpoint SG: no inbound TCP 443 (IPv6)\"")
    return rules


def firewall_unreachable_rules(world: "World") -> List[str]:
    bad = unreachable_ips6(world)
    return [f"ip6 daddr {{ {', '.join(bad)} }} drop comment \"ENIs of unreachable AZs (IPv6)\""] if bad else []


def firewall_route_rules(world: "World") -> List[str]:
    """The route table's local IPv6 route, the resolver and IMDS, and neighbour discovery."""
    if mode(world) == "none":
        return []
    return ["icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } accept "
            "comment \"neighbour discovery\"",
            f"ip6 daddr {{ {VPC_CIDR6}, {AWS_LINK6} }} accept comment \"local (IPv6); IMDS and resolver\""]


def to_json(world: "World") -> Dict[str, Any]:
    kind = mode(world)
    if kind == "none":
        return {"mode": kind}
    letters = world.subnet_letters
    return {"mode": kind, "vpc_cidr": VPC_CIDR6, "instance_ip": INSTANCE_IP6,
            "endpoint_sg_inbound_443": bool(getattr(world.scenario, "endpoint_sg_inbound_443_ipv6", True)),
            "subnet_cidrs": {x: SUBNETS6[x] for x in letters}, "imds": IMDS6, "resolver": RESOLVER6,
            "eni_ips": {k: list(v) for k, v in eni_ips6(world).items()}}


def sg_egress(ipv6: Mapping[str, Any]) -> Dict[str, Any]:
    """moto's instance SG: 443 to ::/0 as well (the router lets IPv6 443 out as it does IPv4)."""
    if not ipv6 or ipv6.get("mode", "none") == "none":
        return {}
    return {"Ipv6Ranges": [{"CidrIpv6": "::/0", "Description": "HTTPS to endpoints (IPv6)"}]}


def sg_ingress(ipv6: Mapping[str, Any]) -> Dict[str, Any]:
    """moto's endpoint SG: 443 from the instance subnet's IPv6 CIDR, unless the scenario leaves it out."""
    if not ipv6 or ipv6.get("mode", "none") == "none" or not ipv6.get("endpoint_sg_inbound_443", True):
        return {}
    return {"Ipv6Ranges": [{"CidrIpv6": SUBNETS6["a"], "Description": "HTTPS from the instance subnet (IPv6)"}]}


def imds_paths(ipv6: Optional[Dict[str, Any]], nic: str, az_letter: str) -> Tuple[Dict[str, str], List[str]]:
    """(paths to add, paths to drop) for tests/lab/imds.metadata from world.json's ``ipv6``."""
    if not ipv6 or ipv6.get("mode", "none") == "none":
        return {}, []
    add = {f"{nic}/ipv6s": ipv6["instance_ip"], f"{nic}/vpc-ipv6-cidr-blocks": ipv6["vpc_cidr"],
           f"{nic}/subnet-ipv6-cidr-blocks": SUBNETS6[az_letter]}
    drop = ([] if ipv6["mode"] != "ipv6_only" else
            ["meta-data/local-ipv4", f"{nic}/local-ipv4s", f"{nic}/subnet-ipv4-cidr-block"])
    return add, drop
