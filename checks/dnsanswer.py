"""One DNS answer, as every check sees it; no dnspython here, so the isolation probe (which starts
before dnspython is imported, checks.dnswire) returns the same type as checks.dnsquery."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple


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
