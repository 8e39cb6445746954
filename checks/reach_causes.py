"""Why some endpoint addresses fail while others work, from what was observed per address.

A partial failure has many look-alikes, each with its own fix: a stale DNS record next to the real
ENIs (refused: nothing listens), a network ACL between subnets (the ENIs in the instance's own
subnet work — NACLs never filter inside a subnet — and the others time out), a security group or
NACL proven by the EC2 API, or an AZ whose ENIs fail for a reason this instance cannot see.
"""
from __future__ import annotations

import ipaddress
from typing import Any, Dict, Optional, Sequence, Tuple

from .causes import explain
from .ec2view import Ec2View, EndpointView
from .model import Facts
from .nacls import NaclDrop, ephemeral_ports, tcp_drop

Failure = Tuple[str, str, Dict[str, Any]]  # (ip, per-IP cause code, its params)
GENERIC = frozenset({"tcp_timeout"})  # a code that names no single culprit


def nacl_cause(view: Ec2View, ep: Optional[EndpointView], ip: str, facts: Facts) -> Optional[Tuple[str, Dict[str, Any]]]:
    """The NACL entry that drops TCP 443 from this instance to ``ip``, when the view proves one."""
    if not view.available or not view.network_acls or not facts.local_ipv4:
        return None
    server_subnet = ep.eni_subnets.get(ip) if ep else None
    if server_subnet is None and _inside_vpc(ip, facts):
        return None  # an address inside the VPC whose subnet we don't know: no verdict
    drop = tcp_drop(view.network_acls, facts.subnet_id, facts.local_ipv4, server_subnet, ip, 443,
                    ephemeral_ports())
    return ("nacl_blocks", drop_params(drop, ip)) if drop else None


def drop_params(drop: NaclDrop, ip: str) -> Dict[str, Any]:
    lo, hi = ephemeral_ports()
    ports = "443" if drop.leg == "request" else "1024-65535"
    return {"nacl_id": drop.nacl_id, "subnet_id": drop.subnet_id, "leg": drop.leg, "ip": ip,
            "direction": drop.direction, "port": drop.port, "peer": drop.peer,
            "arrow": "to" if drop.direction == "outbound" else "from",
            "rule_words": ("no entry allows it (the final * deny)" if drop.rule == "*" else f"rule {drop.rule} denies it"),
            "rule": drop.rule if drop.rule != "*" else "32767",
            "ports": ports, "from_port": 443 if drop.leg == "request" else 1024,
            "to_port": 443 if drop.leg == "request" else 65535,
            "cidr": f"{drop.peer}/32", "scope": " (or the other subnet's whole CIDR)",
            "flag": "egress" if drop.direction == "outbound" else "ingress",
            "ephemeral": f"{lo}-{hi}"}


def _inside_vpc(ip: str, facts: Facts) -> bool:
    try:
        return any(ipaddress.ip_address(ip) in n for n in facts.networks())
    except Exception:  # noqa: BLE001 - unknown CIDRs: treat as inside (no verdict)
        return True


def _in_own_subnet(ip: str, facts: Facts) -> Optional[bool]:
    if not facts.subnet_cidr:
        return None
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(facts.subnet_cidr, strict=False)
    except ValueError:
        return None


def _nacls_cleared(view: Ec2View, ep: Optional[EndpointView], bad_ips: Sequence[str], facts: Facts) -> bool:
    """The EC2 view holds the NACLs of this subnet and of every failing ENI's subnet, and they
    allow the flows: a NACL is ruled out."""
    if not view.available or ep is None or not facts.subnet_id or facts.subnet_id not in view.network_acls:
        return False
    subnets = [ep.eni_subnets.get(ip) for ip in bad_ips]
    return all(s is not None and s in view.network_acls for s in subnets)


def partial_cause(service: str, ips: Sequence[str], ok_ips: Sequence[str], failures: Sequence[Failure],
                  facts: Facts, view: Optional[Ec2View] = None, ep: Optional[EndpointView] = None) -> Dict[str, Any]:
    """explain(...) for "some addresses work, these fail", from the per-address evidence."""
    bad_ips = [ip for ip, _, _ in failures]
    codes = [code for _, code, _ in failures]
    common = dict(service=service, bad_count=len(bad_ips), total=len(ips), bad_ips=", ".join(bad_ips))
    if len(set(codes)) == 1 and codes[0] not in GENERIC:
        code = codes[0]
        if code == "tcp_refused":  # refused while siblings answer: a stale record, not an AZ
            return explain("stale_answer_refused", **common)
        params = dict(failures[0][2])
        params.update(ip=", ".join(str(p.get("ip")) for _, _, p in failures))
        return explain(code, **params)
    if set(codes) == {"tcp_timeout"}:
        own_ok = [_in_own_subnet(ip, facts) for ip in ok_ips]
        own_bad = [_in_own_subnet(ip, facts) for ip in bad_ips]
        cleared = view is not None and _nacls_cleared(view, ep, bad_ips, facts)
        if own_ok and all(own_ok) and not any(b is not False for b in own_bad) and not cleared:
            return explain("nacl_suspected", subnet_cidr=facts.subnet_cidr, subnet_id=facts.subnet_id, **common)
    return explain("az_unreachable", **common)
