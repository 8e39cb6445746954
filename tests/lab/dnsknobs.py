"""The resolver the instance really uses, and names the Amazon resolver shadows: two scenario keys.

``dhcp_options`` — the VPC's DHCP option set. ``domain_name_servers`` is what DHCP hands the
instance (and so /etc/resolv.conf, unless ``resolv_conf_nameservers`` overrides it):
``AmazonProvidedDNS`` is the Amazon resolver; an address in 10.0.0.0/24 (a shared-services range
outside the lab's subnets) runs a second DNS server there, in the VPC namespace. That server does
what a corporate DNS server without conditional forwarding does: it answers the AWS service names
with their **public** addresses, except the services in ``custom_dns_forwards``, whose names it
forwards to the Amazon resolver (a conditional forwarder for just those names).

    dhcp_options:
      domain_name_servers: [10.0.0.53]
      custom_dns_forwards: [ec2]

``dns_shadow_zone`` — a Route 53 private hosted zone associated with the VPC, authoritative for its
whole namespace: a name under ``zone`` that ``records`` lacks is NXDOMAIN at the Amazon resolver.
Route 53 Resolver answers from the most specific zone, so an endpoint's own Private DNS zone (its
service name) still wins where it applies.

    dns_shadow_zone:
      zone: us-east-1.amazonaws.com
      records: {ssm.us-east-1.amazonaws.com: [10.0.1.101, 10.0.2.101]}
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

AMAZON_PROVIDED_DNS = "AmazonProvidedDNS"
AMAZON_RESOLVER = "10.0.0.2"  # what AmazonProvidedDNS means in resolv.conf (the VPC CIDR base + 2)
CUSTOM_DNS_NET = ipaddress.ip_network("10.0.0.0/24")
_RESERVED = {ipaddress.ip_address(f"10.0.0.{i}") for i in (0, 1, 2, 3, 255)}  # AWS reserves these
RECORD_NETS = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/16", "198.51.100.0/24", "203.0.113.0/24"))
MAX_SERVERS = 4  # a DHCP option set holds up to four domain name servers
RESOLV_CONF_TIMEOUT_S = 2  # the lab instance's resolv.conf "options timeout:2" (as Amazon Linux 2 writes it)
_ZONE_RE = re.compile(r"^([a-z0-9-]+\.)+amazonaws\.com$")


@dataclass(frozen=True)
class DhcpOptions:
    domain_name_servers: Tuple[str, ...] = (AMAZON_PROVIDED_DNS,)
    custom_dns_forwards: Tuple[str, ...] = ()  # services the custom server forwards to the Amazon resolver

    @property
    def custom_servers(self) -> Tuple[str, ...]:
        return tuple(s for s in self.domain_name_servers if s != AMAZON_PROVIDED_DNS)

    @property
    def resolv_conf(self) -> Tuple[str, ...]:
        """The nameservers DHCP writes into /etc/resolv.conf (glibc reads three)."""
        return tuple(dict.fromkeys(AMAZON_RESOLVER if s == AMAZON_PROVIDED_DNS else s
                                   for s in self.domain_name_servers))[:3]


@dataclass(frozen=True)
class ShadowZone:
    zone: str
    records: Mapping[str, Tuple[str, ...]] = field(default_factory=dict)

    def shadows(self, name: str) -> bool:
        name = name.lower().rstrip(".")
        return name == self.zone or name.endswith("." + self.zone)


Fail = Callable[[str, str], None]


def parse_dhcp(data: Any, fail: Fail) -> DhcpOptions:
    if data is None:
        return DhcpOptions()
    if not isinstance(data, dict) or set(data) - {"domain_name_servers", "custom_dns_forwards"}:
        fail("dhcp_options", "expected a mapping with domain_name_servers and/or custom_dns_forwards")
    servers = data.get("domain_name_servers", [AMAZON_PROVIDED_DNS])
    if not isinstance(servers, list) or not 1 <= len(servers) <= MAX_SERVERS:
        fail("dhcp_options.domain_name_servers", f"expected a list of 1-{MAX_SERVERS} entries "
                                                 f"({AMAZON_PROVIDED_DNS} or addresses in {CUSTOM_DNS_NET})")
    for s in servers:
        if s == AMAZON_PROVIDED_DNS:
            continue
        try:
            ip = ipaddress.IPv4Address(s)
        except (ValueError, TypeError):
            ip = None
        if ip is None or ip not in CUSTOM_DNS_NET or ip in _RESERVED:
            fail("dhcp_options.domain_name_servers",
                 f"{s!r}: expected {AMAZON_PROVIDED_DNS} or an address in {CUSTOM_DNS_NET} other than .0-.3 and "
                 f".255 (where the lab runs the custom DNS server)")
    forwards = data.get("custom_dns_forwards", [])
    if not isinstance(forwards, list) or not all(isinstance(f, str) for f in forwards):
        fail("dhcp_options.custom_dns_forwards", "expected a list of endpoint service names like [ec2]")
    out = DhcpOptions(tuple(str(s) for s in servers), tuple(forwards))
    if forwards and not out.custom_servers:
        fail("dhcp_options.custom_dns_forwards", "there is no custom DNS server to forward (domain_name_servers)")
    return out


def parse_shadow(data: Any, fail: Fail) -> Optional[ShadowZone]:
    if data is None:
        return None
    if not isinstance(data, dict) or set(data) - {"zone", "records"} or "zone" not in data:
        fail("dns_shadow_zone", "expected a mapping with zone and optional records")
    zone = data["zone"]
    if not isinstance(zone, str) or not _ZONE_RE.match(zone.lower().rstrip(".")):
        fail("dns_shadow_zone.zone", f"expected a zone under amazonaws.com like us-east-1.amazonaws.com, got {zone!r}")
    zone = zone.lower().rstrip(".")
    records: Dict[str, Tuple[str, ...]] = {}
    raw = data.get("records") or {}
    if not isinstance(raw, dict):
        fail("dns_shadow_zone.records", "expected a mapping of names to lists of IPv4 addresses")
    for name, ips in raw.items():
        where = f"dns_shadow_zone.records.{name}"
        if not isinstance(name, str) or not ShadowZone(zone).shadows(name):
            fail(where, f"expected a name inside the zone {zone}")
        if not isinstance(ips, list) or not ips:
            fail(where, "expected a non-empty list of IPv4 addresses")
        for ip in ips:
            try:
                ok = any(ipaddress.IPv4Address(ip) in n for n in RECORD_NETS)
            except (ValueError, TypeError):
                ok = False
            if not ok:
                fail(where, f"{ip!r}: expected an address in 10.0.0.0/16, 198.51.100.0/24 or 203.0.113.0/24")
        records[name.lower().rstrip(".")] = tuple(str(ip) for ip in ips)
    return ShadowZone(zone, records)


# --- what the knobs do to answers -------------------------------------------------------------------

def amazon_answers(shadow: Optional[ShadowZone], hostname: str, answers: Tuple[str, ...],
                   private_dns: bool) -> Tuple[str, ...]:
    """The Amazon resolver's answer for a service name under a shadow zone: the endpoint's Private DNS
    zone is more specific and wins; otherwise the shadow zone's record, or nothing (NXDOMAIN)."""
    if shadow is None or private_dns or not shadow.shadows(hostname):
        return answers
    return shadow.records.get(hostname.lower(), ())


def system_answers(nameservers: Tuple[str, ...], dhcp: DhcpOptions, resolver_ips: Tuple[str, ...],
                   dns_support: bool, service: str, answers: Tuple[str, ...], public_ip: str,
                   resolver_latency_ms: int = 0) -> Tuple[str, ...]:
    """What the SSM agent gets for a service name: the first resolv.conf nameserver that answers in
    time. Its resolver (Go's) asks each try on a fresh socket, so an Amazon resolver slower than
    resolv.conf's timeout never answers it in time."""
    amazon_ok = dns_support and resolver_latency_ms <= RESOLV_CONF_TIMEOUT_S * 1000
    for ns in nameservers:
        if ns in resolver_ips:
            if amazon_ok:
                return answers
        elif ns in dhcp.custom_servers:
            if service not in dhcp.custom_dns_forwards:
                return (public_ip,)
            if amazon_ok:
                return answers
    return ()
