"""One DNS question to one server, with the facts a diagnosis needs (dnspython 2.1+)."""
from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype


@dataclass(frozen=True)
class DnsAnswer:
    """``outcome``: "answer" (addresses), "nxdomain", "nodata" (name exists, no A), "error"
    (another rcode, see ``rcode``), "timeout" (no reply), "unreachable" (ICMP / socket error)."""

    host: str
    server: str
    outcome: str
    addresses: Tuple[str, ...] = ()
    ttl: Optional[int] = None
    cnames: Tuple[str, ...] = ()
    rcode: Optional[str] = None
    latency_s: float = 0.0
    error: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    def to_evidence(self) -> Dict[str, Any]:
        return {"host": self.host, "server": self.server, "outcome": self.outcome,
                "answers": list(self.addresses), "ttl": self.ttl, "cnames": list(self.cnames),
                "rcode": self.rcode, "latency_ms": round(self.latency_s * 1000, 1), "error": self.error}


def query_a(host: str, server: str, timeout_s: float, port: int = 53) -> DnsAnswer:
    """Ask ``server`` for A records of ``host`` over UDP (TCP when truncated). Never raises for
    network trouble or garbage replies: those become ``outcome`` values."""
    q = dns.message.make_query(host, dns.rdatatype.A)
    start = time.monotonic()
    try:
        reply = dns.query.udp(q, server, timeout=timeout_s, port=port)
        if reply.flags & dns.flags.TC:
            reply = dns.query.tcp(q, server, timeout=max(0.05, timeout_s - (time.monotonic() - start)), port=port)
    except dns.exception.Timeout:
        return DnsAnswer(host, server, "timeout", latency_s=time.monotonic() - start,
                         error=f"no reply within {timeout_s:g} s")
    except (OSError, socket.error) as exc:
        return DnsAnswer(host, server, "unreachable", latency_s=time.monotonic() - start, error=str(exc))
    except dns.exception.DNSException as exc:  # malformed reply, wrong id, …
        return DnsAnswer(host, server, "error", rcode="FORMERR", latency_s=time.monotonic() - start,
                         error=f"garbage reply: {exc.__class__.__name__}: {exc}")
    latency = time.monotonic() - start
    rcode = dns.rcode.to_text(reply.rcode())
    if reply.rcode() == dns.rcode.NXDOMAIN:
        return DnsAnswer(host, server, "nxdomain", rcode=rcode, latency_s=latency)
    if reply.rcode() != dns.rcode.NOERROR:
        return DnsAnswer(host, server, "error", rcode=rcode, latency_s=latency)
    addresses, cnames, ttls = [], [], []
    for rrset in reply.answer:
        if rrset.rdtype == dns.rdatatype.A:
            addresses.extend(r.address for r in rrset)
            ttls.append(rrset.ttl)
        elif rrset.rdtype == dns.rdatatype.CNAME:
            cnames.extend(str(r.target).rstrip(".") for r in rrset)
    if not addresses:
        return DnsAnswer(host, server, "nodata", cnames=tuple(cnames), rcode=rcode, latency_s=latency)
    return DnsAnswer(host, server, "answer", tuple(dict.fromkeys(addresses)), min(ttls), tuple(cnames),
                     rcode, latency)
