"""``egress.<host>``: the instance must NOT reach the internet.

The name resolving is expected (the Amazon resolver answers public names even in an isolated VPC);
what matters is that TCP to every answer fails. Any connection that succeeds proves an internet path
(an IGW or NAT route, or a proxy on the way). All answers are tried at once, so the check takes
about ``egress_timeout_s`` however many addresses the name has.
"""
from __future__ import annotations

import ipaddress
import time
from concurrent import futures
from functools import partial
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import workers
from .causes import explain
from .dnsquery import query_a
from .model import Check, Context, Finding, Outcome, Settings, Status, Target, outcome
from .net import TcpResult, proxy_environment, tcp_connect
from .s3 import resolver_address

MAX_ADDRESSES = 8  # a name with more answers is tested on its first eight


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


def _describe(res: TcpResult, timeout_s: float) -> str:
    if res.outcome == "timeout":
        return f"timeout after {timeout_s:g} s"
    if res.outcome in ("unreachable", "error") and res.error:
        return f"{res.outcome} ({res.error})"
    return res.outcome


def _resolve(ctx: Context, host: str) -> Tuple[List[str], Dict[str, Any], Optional[str]]:
    """(addresses, dns evidence, why there are none)."""
    try:
        ipaddress.ip_address(host)
        return [host], {"literal": True}, None
    except ValueError:
        pass
    server, port = resolver_address(ctx)
    ans = query_a(host, server, ctx.budget(ctx.settings.dns_timeout_s), port=port)
    ev = ans.to_evidence()
    if ans.outcome == "answer":
        return list(ans.addresses), ev, None
    why = {"nxdomain": "NXDOMAIN", "nodata": "no A record"}.get(ans.outcome, f"{ans.outcome}: {ans.error or ans.rcode}")
    return [], ev, why


def run_target(ctx: Context, target: Target) -> Outcome:
    start = time.monotonic()
    host, port = target.host, target.port
    proxies = proxy_environment()
    proxy_note = ""
    set_proxies = [k for k in proxies if not k.lower().startswith("no_")]
    if set_proxies:
        proxy_note = f"; {set_proxies[0]} is set: an internet path may exist through the proxy"
    addresses, dns_ev, why = _resolve(ctx, host)
    ev: Dict[str, Any] = {"host": host, "port": port, "dns": dns_ev, "proxy_env": proxies}

    def done(status: Status, summary: str, data: Dict[str, Any], **cause: Any) -> Outcome:
        return outcome(Finding(f"egress.{host}", status, summary + proxy_note, evidence=ev,
                               duration_s=time.monotonic() - start, **cause), data=data)

    if not addresses:
        # A name that doesn't resolve can't be reached by name: isolated as far as names go.
        return done(Status.OK, f"isolated: {host} does not resolve ({why})", {"isolated": True})
    tried = addresses[:MAX_ADDRESSES]
    timeout = ctx.budget(ctx.settings.egress_timeout_s)
    results = _connect_all(tried, port, timeout)
    ev["attempts"] = [r.to_evidence() for r in results]
    ev["timeout_s"] = timeout
    connected = [r for r in results if r.outcome == "connected"]
    if connected:
        ip = connected[0].ip
        return done(Status.CRITICAL, f"internet path: TCP {port} to {host} ({ip}) connected in "
                    f"{round(connected[0].connect_s * 1000, 1)} ms",
                    {"isolated": False},
                    **explain("internet_path", host=host, port=port, ip=", ".join(r.ip for r in connected)))
    failures = sorted({_describe(r, timeout) for r in results})
    return done(Status.OK, f"isolated: {host} resolves to {', '.join(tried)} but TCP {port} fails "
                f"({'; '.join(failures)})", {"isolated": True})


def checks(settings: Settings) -> List[Check]:
    return [Check(f"egress.{t.host}", partial(run_target, target=t), needs=("resolver",),
                  timeout_s=settings.dns_timeout_s + settings.egress_timeout_s + 2.0)
            for t in settings.egress_targets]
