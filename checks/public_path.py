"""``reach.<svc>`` when the Amazon resolver gives public answers (no Private DNS in effect).

That is a finding of ``dns.<svc>`` either way, but whether the service *works* depends on what the
instance really dials: a NAT or IGW route (or a proxy) carries the public path, and an /etc/hosts
pin to the endpoint's ENI bypasses DNS altogether. So the public answers and glibc's own answer are
dialled once; if one of them accepts TLS for the service name, the service works — not privately,
and the finding says how — and a verdict need not call it broken. If none does, the result reads
exactly as "blocked by dns.<svc>": the DNS finding stays the root cause.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from . import workers
from .causes import explain
from .dialled import resolve
from .model import Context, Finding, Outcome, Status
from .net import TcpResult, TlsResult
from .resolver import address_kind

Probe = Callable[[str], Tuple[TcpResult, Optional[TlsResult]]]


def public_reach(ctx: Context, service: str, dns: Mapping[str, Any], probe: Probe) -> Outcome:
    fid = f"reach.{service}"
    host = str(dns["host"])
    public = list(dns.get("answers") or ())
    system = resolve(host, min(ctx.settings.dns_timeout_s, max(0.1, ctx.remaining() / 4)))
    pinned = [ip for ip in system.addresses if ip not in public]
    targets = public + pinned
    results = workers.map_all(probe, targets)
    ok = [tcp.ip for tcp, tls in results if tls is not None and tls.ok]
    attempts: Dict[str, str] = {tcp.ip: ("ok" if tls is not None and tls.ok else
                                          f"{tcp.outcome}" + (f"/{tls.error}" if tls is not None else ""))
                                for tcp, tls in results}
    ev: Dict[str, Any] = {"host": host, "public_answers": public, "system": system.to_evidence(),
                          "attempts": attempts, "ok_ips": ok}
    blocker = dns.get("finding") or {}
    if not ok:
        return Outcome((Finding(fid, Status.CRITICAL, f"not usable: blocked by dns.{service} (its public "
                                f"addresses {', '.join(public) or 'none'} do not answer either)",
                                cause_code=blocker.get("cause_code"),
                                cause=f"blocked by dns.{service}: {blocker.get('cause')}" if blocker.get("cause")
                                else f"blocked by dns.{service}",
                                fix=blocker.get("fix") or f"fix dns.{service} first", evidence=ev,
                                blocked_by=f"dns.{service}"),), None)
    networks = ctx.facts.networks()
    via_pin = [ip for ip in ok if ip in pinned and address_kind(ip, networks) == "vpc"]
    if via_pin:
        path, how = "pinned", f"{system.source} pins {host} to {', '.join(via_pin)}, which accepts TLS"
        code = explain("reach_via_pinned_address", host=host, ips=", ".join(via_pin), source=system.source,
                       service=service)
    else:
        path, how = "internet", f"{', '.join(ok)} (public) accepts TLS: an internet path (IGW/NAT route or a proxy)"
        code = explain("reach_via_internet", host=host, ips=", ".join(ok), service=service)
    ev["path"] = path
    return Outcome((Finding(fid, Status.WARNING, f"{service} works, but not through an interface endpoint: {how}",
                            evidence=ev, **code),), {"ok_ips": ok, "host": host, "path": path})


def blocked_eni(service: str, dns: Mapping[str, Any]) -> Outcome:
    """``eni.<svc>`` has nothing to compare when the answers are public: the DNS finding says why."""
    blocker: Mapping[str, Any] = dns.get("finding") or {}
    return Outcome((Finding(f"eni.{service}", Status.CRITICAL, f"not run: blocked by dns.{service}",
                            cause_code=blocker.get("cause_code"),
                            cause=f"blocked by dns.{service}: {blocker.get('cause')}" if blocker.get("cause")
                            else f"blocked by dns.{service}",
                            fix=blocker.get("fix") or f"fix dns.{service} first", blocked_by=f"dns.{service}"),),
                   None)


def public_data(host: str, answers: List[str], ttl: Any, server: str, cause: Mapping[str, Any]) -> Dict[str, Any]:
    """dns.<svc>'s data when every answer is public: reach.<svc> dials them, eni.<svc> stands down."""
    return {"host": host, "answers": answers, "ttl": ttl, "resolver": server, "public": True,
            "finding": {k: cause.get(k) for k in ("cause_code", "cause", "fix")}}
