"""Network ACLs from the EC2 API, and which entry drops a TCP flow.

AWS facts relied on (VPC user guide, "Control subnet traffic with network access control lists"):
a NACL belongs to a subnet and filters only traffic that crosses that subnet's boundary — never
traffic between two addresses of the same subnet, and never traffic to the Amazon DNS server or
the instance metadata service. It is stateless: a reply is judged on its own, so the return
traffic of a client's connection needs an entry for the client's ephemeral ports (Linux uses
32768-60999). Entries are evaluated lowest rule number first; the first match decides; no match
hits the final ``*`` deny. NACLs cannot reference prefix lists, only CIDRs.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

TCP = "6"
EPHEMERAL_DEFAULT = (32768, 60999)  # Linux net.ipv4.ip_local_port_range
PORT_RANGE_PATH = "/proc/sys/net/ipv4/ip_local_port_range"


@dataclass(frozen=True)
class NaclEntry:
    rule_number: int  # 32767 is the final "*" entry
    egress: bool
    protocol: str  # "-1" (all), "6" (tcp), "17", "1", … (DescribeNetworkAcls gives numbers as strings)
    action: str  # allow | deny
    cidr: Optional[str]
    from_port: Optional[int] = None
    to_port: Optional[int] = None

    @property
    def label(self) -> str:
        return "*" if self.rule_number >= 32767 else str(self.rule_number)

    def matches(self, port: int, peer: str) -> bool:
        if self.protocol not in ("-1", TCP, "tcp"):
            return False
        if self.protocol != "-1" and self.from_port is not None and self.to_port is not None:
            if not self.from_port <= port <= self.to_port:
                return False
        if not self.cidr:
            return False  # an IPv6 entry: our flows are IPv4
        try:
            return ipaddress.ip_address(peer) in ipaddress.ip_network(self.cidr, strict=False)
        except ValueError:
            return False


@dataclass(frozen=True)
class NaclView:
    id: str
    entries: Tuple[NaclEntry, ...]


@dataclass(frozen=True)
class NaclDrop:
    """The entry of a NACL that drops one leg of a flow."""

    nacl_id: str
    subnet_id: str
    direction: str  # inbound | outbound
    rule: str  # "100" or "*"
    port: int  # the destination port of the dropped packet
    peer: str  # the other address of the dropped packet
    leg: str  # "request" (to port 443) | "reply" (to an ephemeral port)

    def words(self) -> str:
        what = ("no entry allows it (the final * deny)" if self.rule == "*" else f"rule {self.rule} denies it")
        arrow = "to" if self.direction == "outbound" else "from"
        return (f"{self.nacl_id} ({self.subnet_id}) {self.direction}: TCP port {self.port} {arrow} {self.peer}: "
                f"{what}")


def parse_acls(items: Iterable[Mapping[str, Any]]) -> Dict[str, NaclView]:
    """subnet id -> its NACL, from DescribeNetworkAcls items (each lists its subnet associations)."""
    out: Dict[str, NaclView] = {}
    for acl in items:
        entries = []
        for e in acl.get("Entries") or ():
            ports = e.get("PortRange") or {}
            try:  # an answer of another shape drops that entry, never the view
                entries.append(NaclEntry(
                    rule_number=int(e.get("RuleNumber", 32767)), egress=bool(e.get("Egress")),
                    protocol=str(e.get("Protocol", "-1")), action=str(e.get("RuleAction", "deny")).lower(),
                    cidr=str(e["CidrBlock"]) if e.get("CidrBlock") else None,
                    from_port=_port(ports.get("From")), to_port=_port(ports.get("To"))))
            except (TypeError, ValueError, AttributeError):
                continue
        view = NaclView(str(acl.get("NetworkAclId")), tuple(sorted(entries, key=lambda x: x.rule_number)))
        for assoc in acl.get("Associations") or ():
            if assoc.get("SubnetId"):
                out[str(assoc["SubnetId"])] = view
    return out


def _port(value: object) -> Optional[int]:
    return None if value is None else int(value)  # type: ignore[call-overload]


def first_match(acl: NaclView, egress: bool, port: int, peer: str) -> Tuple[bool, str]:
    """(allowed, rule label) for one packet leg."""
    for entry in acl.entries:
        if entry.egress == egress and entry.matches(port, peer):
            return entry.action == "allow", entry.label
    return False, "*"


def ephemeral_ports(path: str = PORT_RANGE_PATH) -> Tuple[int, int]:
    try:
        with open(path) as fh:
            lo, hi = (int(x) for x in fh.read().split()[:2])
        return (lo, hi) if 0 < lo <= hi <= 65535 else EPHEMERAL_DEFAULT
    except (OSError, ValueError):
        return EPHEMERAL_DEFAULT


def tcp_drop(acls: Mapping[str, NaclView], client_subnet: Optional[str], client_ip: str,
             server_subnet: Optional[str], server_ip: str, port: int,
             ephemeral: Sequence[int] = EPHEMERAL_DEFAULT) -> Optional[NaclDrop]:
    """The first NACL entry that drops a TCP connection from client to server:port, in the order
    the packets meet them (request out of the client's subnet, into the server's; reply out of the
    server's, into the client's). ``server_subnet`` None: the server is outside the VPC. Replies
    are checked at both ends of the ephemeral range; a NACL unknown to the view is not judged."""
    if client_subnet is not None and client_subnet == server_subnet:
        return None  # inside one subnet: no NACL applies
    legs: List[Tuple[Optional[str], bool, int, str, str]] = [
        (client_subnet, True, port, server_ip, "request"), (server_subnet, False, port, client_ip, "request")]
    legs += [(server_subnet, True, p, client_ip, "reply") for p in dict.fromkeys(ephemeral)]
    legs += [(client_subnet, False, p, server_ip, "reply") for p in dict.fromkeys(ephemeral)]
    for subnet, egress, leg_port, peer, leg in legs:
        acl = acls.get(subnet) if subnet else None
        if acl is None:
            continue
        allowed, rule = first_match(acl, egress, leg_port, peer)
        if not allowed:
            return NaclDrop(acl.id, str(subnet), "outbound" if egress else "inbound", rule, leg_port, peer, leg)
    return None
