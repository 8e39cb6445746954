"""``egress.<host>``: the instance must NOT reach the internet.

The name resolving is expected (the Amazon resolver answers public names even in an isolated VPC);
what matters is what happens to a SYN sent to each answer. In a VPC without an internet path the
router drops it, so the only isolated outcome is silence (a timeout; an ICMP "unreachable" says the
same). A connection proves an internet path (an IGW or NAT route, or a proxy on the way). An RST
from an internet address proves that the SYN reached something that answered: an internet path
whose host refuses the port, or a firewall or proxy that rejects instead of dropping — never
isolation. All answers are tried at once, so the check takes about ``egress_timeout_s`` however
many addresses the name has.

The wait is the longest of the run, and it needs no instance facts, so it starts first:
``prestart`` (called by the CLI before the heavy imports and the IMDS round trips) resolves each
target through the Amazon resolver at its link-local address 169.254.169.253 (AWS-FACTS "DNS": the
same Route 53 Resolver as the VPC's base + 2, reachable from every instance without knowing the
CIDR) — or the configured ``resolver`` — and dials the answers in worker threads. The check itself
keeps its place in the run (it still ``needs`` the resolver check, so it is still "blocked by
resolver" when the Amazon resolver does not answer) and only collects what the early probe found.
When the early name lookup got no answer, the check resolves again through the server the resolver
check chose, as it always did: the result never depends on having started early.
"""
from __future__ import annotations

import ipaddress
from concurrent import futures
from functools import partial
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from .causes import explain
from .dnsquery import query_a
from .model import Check, Context, Finding, MissingFact, Outcome, Settings, Status, Target, outcome
from .isolation_probe import _NO_DNS_ANSWER, Probe, _claim, probe
from .net import TcpResult, proxy_environment
from .resolver import query_timeout

def _collect(ctx: Context, target: Target) -> Tuple[Probe, bool]:
    """(the probe, whether it was started early). The early probe's name lookup counts only when
    the resolver answered it; otherwise ask the server the resolver check found, as before."""
    early = _claim(ctx.settings, target)
    if early is not None:
        try:
            found = early.result(timeout=ctx.remaining())
        except futures.TimeoutError:
            found = None
        if found is not None and found.dns_outcome not in _NO_DNS_ANSWER:
            return found, True
    data = ctx.data("resolver")  # the server the resolver check found answering (as s3.resolver_address)
    get = data.get if isinstance(data, Mapping) else (lambda k, d=None: getattr(data, k, d))
    server, dns_port = str(get("server")), int(get("port", 53) or 53)
    # query_timeout: as long as the resolver check measured it needs (slow is not silent)
    return probe(target.host, target.port, server, dns_port, query_timeout(ctx),
                 ctx.budget(ctx.settings.egress_timeout_s), query=query_a), False


# --- the check ----------------------------------------------------------------------------------------

def _describe(res: TcpResult, timeout_s: float) -> str:
    if res.outcome == "timeout":
        return f"timeout after {timeout_s:g} s"
    if res.outcome in ("unreachable", "error") and res.error:
        return f"{res.outcome} ({res.error})"
    return res.outcome


def is_internet_address(ip: str, ctx: Context) -> bool:
    """Neither this VPC, nor private (RFC 1918 / 6598), loopback, link-local, multicast or
    unspecified: an address only an internet path (IGW, NAT, proxy) leads to. The documentation
    ranges the lab uses for "the internet" count as public, as resolver.address_kind has it."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if addr.is_loopback or addr.is_link_local or addr.is_multicast or addr.is_unspecified:
        return False
    from .resolver import address_kind

    try:
        networks: Sequence[Any] = ctx.facts.networks()
    except MissingFact:
        networks = ()
    return address_kind(ip, networks) == "public"


def run_target(ctx: Context, target: Target) -> Outcome:
    host, port = target.host, target.port
    proxies = proxy_environment()
    proxy_note = ""
    set_proxies = [k for k in proxies if not k.lower().startswith("no_")]
    if set_proxies:
        proxy_note = f"; {set_proxies[0]} is set: an internet path may exist through the proxy"
    found, early = _collect(ctx, target)
    ev: Dict[str, Any] = {"host": host, "port": port, "dns": found.dns, "proxy_env": proxies,
                          "started_early": early}

    def done(status: Status, summary: str, data: Dict[str, Any], **cause: Any) -> Outcome:
        # The probe's own time (it may have started before this run's other checks).
        return outcome(Finding(f"egress.{host}", status, summary + proxy_note, evidence=ev,
                               duration_s=found.finished - found.started, **cause), data=data)

    if not found.addresses:
        # A name that doesn't resolve can't be reached by name: isolated as far as names go.
        return done(Status.OK, f"isolated: {host} does not resolve ({found.why_none})", {"isolated": True})
    tried, results, timeout = list(found.addresses), found.results, found.timeout_s
    ev["attempts"] = [r.to_evidence() for r in results]
    ev["timeout_s"] = timeout
    connected = [r for r in results if r.outcome == "connected"]
    if connected:
        ip = connected[0].ip
        return done(Status.CRITICAL, f"internet path: TCP {port} to {host} ({ip}) connected in "
                    f"{round(connected[0].connect_s * 1000, 1)} ms",
                    {"isolated": False},
                    **explain("internet_path", host=host, port=port, ip=", ".join(r.ip for r in connected)))
    refused = [r for r in results if r.outcome == "refused" and is_internet_address(r.ip, ctx)]
    if refused:
        first = refused[0]
        ms = round(first.connect_s * 1000, 1)
        return done(Status.CRITICAL, f"not isolated: TCP {port} to {host} ({first.ip}) was refused: an RST came "
                    f"back in {ms} ms (an isolated VPC drops the SYN)", {"isolated": False},
                    **explain("internet_path_refused", host=host, port=port,
                              ip=", ".join(r.ip for r in refused), rst_ms=ms))
    failures = sorted({_describe(r, timeout) for r in results})
    return done(Status.OK, f"isolated: {host} resolves to {', '.join(tried)} but TCP {port} fails "
                f"({'; '.join(failures)})", {"isolated": True})


def checks(settings: Settings) -> List[Check]:
    return [Check(f"egress.{t.host}", partial(run_target, target=t), needs=("resolver",),
                  timeout_s=settings.dns_timeout_s + settings.egress_timeout_s + 2.0)
            for t in settings.egress_targets]
