"""Network ACLs of the lab's subnets: the scenario's ``nacls`` key, their nftables chains and their
entries for moto.

A NACL as AWS has it: per subnet, numbered inbound and outbound entries (protocol, port range,
CIDR, allow|deny), evaluated lowest number first, the first match decides, and an implicit final
deny (``*``). It is stateless: a reply is judged again on its way back (the ephemeral ports). It
filters only traffic that crosses the subnet's boundary — never traffic inside one subnet — and
never traffic to the Amazon DNS server or the instance metadata service (AWS: "Network ACLs
cannot block DNS requests to or from the Route 53 Resolver … or IMDS").

A subnet without an entry in ``nacls`` has the VPC's default NACL, which allows everything.

    nacls:
      b:                                   # the subnet of AZ b (10.0.2.0/24)
        inbound:  [{rule: 100, protocol: tcp, ports: 443, cidr: 10.0.0.0/16, action: allow}]
        outbound: [{rule: 100, protocol: tcp, ports: 443, cidr: 10.0.0.0/16, action: allow}]
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Tuple

PROTOCOLS = {"tcp": "6", "udp": "17", "icmp": "1", "all": "-1"}
ACTIONS = ("allow", "deny")
DIRECTIONS = ("inbound", "outbound")
MAX_ENTRIES = 20  # AWS's default quota per direction


@dataclass(frozen=True)
class Entry:
    rule: int
    protocol: str  # tcp | udp | icmp | all
    ports: Tuple[int, int]  # (from, to); (0, 65535) for all
    cidr: str
    action: str  # allow | deny


@dataclass(frozen=True)
class Nacl:
    inbound: Tuple[Entry, ...] = ()
    outbound: Tuple[Entry, ...] = ()


def parse(data: Any, fail: Callable[[str, str], None], letters: Tuple[str, ...]) -> Mapping[str, Nacl]:
    """``nacls`` of a scenario; ``fail(key, problem)`` raises the scenario's one-line error."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        fail("nacls", f"expected a mapping of subnet letters ({', '.join(letters)}) to NACLs")
    out: Dict[str, Nacl] = {}
    for letter, spec in data.items():
        where = f"nacls.{letter}"
        if letter not in letters:
            fail(where, f"expected a subnet letter ({', '.join(letters)})")
        if not isinstance(spec, dict) or set(spec) - set(DIRECTIONS):
            fail(where, "expected a mapping with inbound and/or outbound lists of entries")
        out[letter] = Nacl(**{d: _entries(spec.get(d) or [], f"{where}.{d}", fail) for d in DIRECTIONS})
    return out


def _entries(items: Any, where: str, fail: Callable[[str, str], None]) -> Tuple[Entry, ...]:
    if not isinstance(items, list) or len(items) > MAX_ENTRIES:
        fail(where, f"expected a list of at most {MAX_ENTRIES} entries")
    entries: List[Entry] = []
    for i, item in enumerate(items):
        key = f"{where}[{i}]"
        if not isinstance(item, dict) or set(item) - {"rule", "protocol", "ports", "cidr", "action"}:
            fail(key, "expected {rule, protocol, ports, cidr, action}")
        rule = item.get("rule")
        if isinstance(rule, bool) or not isinstance(rule, int) or not 1 <= rule <= 32766:
            fail(f"{key}.rule", "expected a rule number 1..32766")
        protocol = item.get("protocol", "tcp")
        if protocol not in PROTOCOLS:
            fail(f"{key}.protocol", f"expected one of {', '.join(PROTOCOLS)}")
        action = item.get("action", "allow")
        if action not in ACTIONS:
            fail(f"{key}.action", "expected allow or deny")
        try:
            cidr = str(ipaddress.IPv4Network(item.get("cidr", "0.0.0.0/0")))
        except (ValueError, TypeError):
            fail(f"{key}.cidr", "expected an IPv4 CIDR")
            raise
        entries.append(Entry(rule, protocol, _ports(item.get("ports"), protocol, f"{key}.ports", fail), cidr, action))
    if len({e.rule for e in entries}) != len(entries):
        fail(where, "rule numbers must be unique (AWS refuses a duplicate: NetworkAclEntryAlreadyExists)")
    return tuple(sorted(entries, key=lambda e: e.rule))


def _ports(value: Any, protocol: str, where: str, fail: Callable[[str, str], None]) -> Tuple[int, int]:
    if protocol in ("all", "icmp"):
        return (0, 65535)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535:
        return (value, value)
    if isinstance(value, str) and "-" in value:
        lo, _, hi = value.partition("-")
        if lo.strip().isdigit() and hi.strip().isdigit() and int(lo) <= int(hi) <= 65535:
            return (int(lo), int(hi))
    fail(where, f"expected a port or a range like 1024-65535 (needed for {protocol})")
    raise AssertionError  # unreachable: fail() raises


# --- nftables --------------------------------------------------------------------------------

def chain_name(letter: str, direction: str) -> str:
    return f"nacl_{letter}_{direction[:-5] or direction}"  # nacl_b_in / nacl_b_out


def chains(nacls: Mapping[str, Nacl]) -> str:
    """One chain per subnet and direction. An allowing entry ``return``s to the calling chain (the
    security groups and the route table still decide); a deny or no match drops."""
    out: List[str] = []
    for letter, nacl in sorted(nacls.items()):
        for direction in DIRECTIONS:
            # inbound entries match the packet's source, outbound entries its destination
            field = "saddr" if direction == "inbound" else "daddr"
            rules = [_nft_rule(e, field) for e in getattr(nacl, direction)]
            rules.append(f'drop comment "{letter} {direction}: * deny"')
            body = "\n".join(f"    {r}" for r in rules)
            out.append(f"  chain {chain_name(letter, direction)} {{\n{body}\n  }}\n")
    return "".join(out)


def _nft_rule(e: Entry, field: str) -> str:
    verdict = "return" if e.action == "allow" else "drop"
    match = [f"ip {field} {e.cidr}"] if e.cidr != "0.0.0.0/0" else []
    if e.protocol in ("tcp", "udp"):
        port = str(e.ports[0]) if e.ports[0] == e.ports[1] else f"{e.ports[0]}-{e.ports[1]}"
        match.append(f"{e.protocol} dport {port}")
    elif e.protocol == "icmp":
        match.append("meta l4proto icmp")
    return " ".join(match + [verdict, f'comment "rule {e.rule} {e.action}"'])


def jumps(nacls: Mapping[str, Nacl], subnets: Mapping[str, str], instance_letter: str,
          exempt: Tuple[str, ...], toward_instance: bool) -> List[str]:
    """The rules that send a packet through the NACLs it crosses. From the instance: its subnet's
    outbound, then the destination subnet's inbound. Toward the instance (a reply, or anything
    else): the source subnet's outbound, then the instance subnet's inbound."""
    own = subnets[instance_letter]
    peer = "saddr" if toward_instance else "daddr"
    leaving_own = f"ip {peer} != {{ {', '.join((own,) + exempt)} }}"
    rules: List[str] = []
    first, second = ("outbound", "inbound")
    if not toward_instance and instance_letter in nacls:
        rules.append(f"{leaving_own} jump {chain_name(instance_letter, first)}")
    for letter, nacl in sorted(nacls.items()):
        if letter == instance_letter:
            continue
        direction = first if toward_instance else second
        rules.append(f"ip {peer} {subnets[letter]} jump {chain_name(letter, direction)}")
    if toward_instance and instance_letter in nacls:
        rules.append(f"{leaving_own} jump {chain_name(instance_letter, second)}")
    return rules


# --- moto ------------------------------------------------------------------------------------

def to_json(nacls: Mapping[str, Nacl]) -> Dict[str, Any]:
    return {letter: {d: [{"rule": e.rule, "protocol": e.protocol, "ports": list(e.ports), "cidr": e.cidr,
                          "action": e.action} for e in getattr(n, d)] for d in DIRECTIONS}
            for letter, n in nacls.items()}


def api_entries(raw: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """CreateNetworkAclEntry arguments (without NetworkAclId) for one subnet's NACL from world.json."""
    out: List[Dict[str, Any]] = []
    for direction in DIRECTIONS:
        for e in raw.get(direction, []):
            args: Dict[str, Any] = {"RuleNumber": e["rule"], "Protocol": PROTOCOLS[e["protocol"]],
                                    "RuleAction": e["action"], "Egress": direction == "outbound",
                                    "CidrBlock": e["cidr"]}
            if e["protocol"] in ("tcp", "udp"):
                args["PortRange"] = {"From": e["ports"][0], "To": e["ports"][1]}
            if e["protocol"] == "icmp":
                args["IcmpTypeCode"] = {"Type": -1, "Code": -1}
            out.append(args)
    return out
