"""The isolation probe: resolve each egress target and dial its answers, started first.

Split from ``checks.egress`` so that ``vpce-doctor check`` can start it before anything heavy is
imported (dnspython, botocore, the other checks): it needs no instance facts, and its wait
(``egress.timeout_s``) is the longest of the run. The early probe resolves through the standard
library (``checks.dnswire``); ``checks.egress`` collects the result, and asks again through
dnspython when the early lookup got no answer.
"""
from __future__ import annotations

import ipaddress
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from . import dnswire, workers
from .dnsanswer import DnsAnswer
from .model import Settings, Target
from .net import TcpResult, tcp_connect

Query = Callable[..., DnsAnswer]  # (host, server, timeout_s, port=) -> DnsAnswer

# The Amazon resolver's link-local address (AWS-FACTS "DNS"); resolver.FALLBACK_RESOLVER says the
# same (not imported from there: this module loads first, before the other checks).
LINK_LOCAL_RESOLVER = "169.254.169.253"

MAX_ADDRESSES = 8  # a name with more answers is tested on its first eight
_NO_DNS_ANSWER = ("timeout", "unreachable")  # the server said nothing: ask the resolver check's server


@dataclass(frozen=True)
class Probe:
    """What resolving one target and dialling its answers showed."""

    addresses: Tuple[str, ...]  # what was dialled (at most MAX_ADDRESSES)
    dns: Dict[str, Any]  # the DNS evidence ({"literal": True} for an address)
    why_none: Optional[str]  # why there is no address ("NXDOMAIN", ...), when there is none
    dns_outcome: str  # "answer", "nxdomain", ..., "timeout", "unreachable"; "literal"
    results: Tuple[TcpResult, ...]
    timeout_s: float  # the wait for each SYN's answer
    started: float  # monotonic
    finished: float


def _connect_all(ips: Sequence[str], port: int, timeout_s: float) -> List[TcpResult]:
    """TCP connect to every address concurrently; each attempt is bounded by ``timeout_s``."""
    results: Dict[str, TcpResult] = {}

    def attempt(ip: str) -> None:
        res, sock = tcp_connect(ip, port, timeout_s)
        if sock is not None:
            sock.close()
        results[ip] = res

    futures.wait([workers.run(attempt, ip) for ip in ips], timeout=timeout_s + 1.0)
    return [results.get(ip) or TcpResult(ip, port, "timeout", timeout_s, "no result in time") for ip in ips]


def ipv6_default_route(routes: str = "/proc/net/ipv6_route", addrs: str = "/proc/net/if_inet6") -> bool:
    """Does this host have an IPv6 default route on an interface with a global (or ULA) address?
    Then an internet path may exist over IPv6 alone (an egress-only internet gateway), and the
    probe must dial the targets' AAAA answers as well."""
    try:
        with open(routes) as fh:
            route_lines = fh.read().splitlines()
        with open(addrs) as fh:
            addr_lines = fh.read().splitlines()
    except OSError:
        return False
    # if_inet6: address, ifindex, prefix length, scope (00 = global), flags, interface name
    global_ifaces = {f[5] for f in (line.split() for line in addr_lines) if len(f) >= 6 and f[3] == "00"}
    for line in route_lines:
        f = line.split()
        # ipv6_route: dest, dest prefix length, source, source prefix, next hop, metric, refcnt, use, flags, iface
        if len(f) >= 10 and f[0] == "0" * 32 and f[1] == "00" and f[9] != "lo" and f[9] in global_ifaces:
            return True
    return False


def probe(host: str, port: int, server: str, dns_port: int, dns_timeout_s: float,
          egress_timeout_s: float, query: Query = dnswire.query_a, ipv6: Optional[bool] = None) -> Probe:
    """Resolve ``host`` through ``server`` (an address literal is dialled as is), then dial every
    answer at once — its AAAA answers too when this host has an IPv6 default route (``ipv6``
    None: look). Bounded by ``dns_timeout_s + egress_timeout_s`` (+ thread start-up)."""
    started = time.monotonic()
    try:
        ipaddress.ip_address(host)
        addresses: Tuple[str, ...] = (host,)
        dns: Dict[str, Any] = {"literal": True}
        why: Optional[str] = None
        dns_outcome = "literal"
    except ValueError:
        ask6 = ipv6_default_route() if ipv6 is None else ipv6
        aaaa = workers.run(dnswire.query_aaaa, host, server, dns_timeout_s, dns_port) if ask6 else None
        ans = query(host, server, dns_timeout_s, port=dns_port)
        dns, dns_outcome = ans.to_evidence(), ans.outcome
        found = list(ans.addresses[:MAX_ADDRESSES]) if ans.outcome == "answer" else []
        if aaaa is not None:
            try:
                ans6 = aaaa.result(timeout=dns_timeout_s + 1.0)
            except futures.TimeoutError:
                ans6 = DnsAnswer(host, server, "timeout", error=f"no reply within {dns_timeout_s:g} s")
            dns["aaaa"] = ans6.to_evidence()
            if ans6.outcome == "answer":
                found += list(ans6.addresses[:MAX_ADDRESSES])
                dns_outcome = "answer"
        addresses = tuple(found)
        why = None if addresses else {"nxdomain": "NXDOMAIN", "nodata": "no A record"}.get(
            ans.outcome, f"{ans.outcome}: {ans.error or ans.rcode}")
    results = tuple(_connect_all(addresses, port, egress_timeout_s)) if addresses else ()
    return Probe(addresses, dns, why, dns_outcome, results, egress_timeout_s, started, time.monotonic())


# --- started first ----------------------------------------------------------------------------------

_prestarted: Dict[Tuple[str, int], Tuple[Tuple[Any, ...], "futures.Future[Probe]"]] = {}
_prestarted_lock = threading.Lock()


def _probe_key(settings: Settings) -> Tuple[Any, ...]:
    """What shapes a probe: a prestarted one only counts for a run with the same settings."""
    return (settings.resolver or LINK_LOCAL_RESOLVER, settings.dns_timeout_s, settings.egress_timeout_s)


def prestart(settings: Settings, targets: Optional[Sequence[Target]] = None) -> int:
    """Start the probe of each target (default: every configured one) in worker threads, now;
    the ``egress.<host>`` check of the next run with these settings collects it. Returns how many
    were started. Needs no instance facts: the Amazon resolver answers at 169.254.169.253."""
    server = settings.resolver or LINK_LOCAL_RESOLVER
    key = _probe_key(settings)
    chosen = list(settings.egress_targets if targets is None else targets)
    with _prestarted_lock:
        for t in chosen:
            _prestarted[(t.host, t.port)] = (key, workers.run(
                probe, t.host, t.port, server, 53, settings.dns_timeout_s, settings.egress_timeout_s))
    return len(chosen)


def _claim(settings: Settings, target: Target) -> "Optional[futures.Future[Probe]]":
    with _prestarted_lock:
        entry = _prestarted.pop((target.host, target.port), None)
    if entry is None or entry[0] != _probe_key(settings):
        return None
    return entry[1]
