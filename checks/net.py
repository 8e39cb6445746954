"""TCP connect and TLS handshake probes with the facts a diagnosis needs."""
from __future__ import annotations

import errno
import os
import socket
import ssl
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Dict, Mapping, Optional


@dataclass(frozen=True)
class TcpResult:
    """``outcome``: "connected", "timeout" (no answer: a drop — SG, NACL, missing route),
    "refused" (RST: nothing listens), "unreachable" (ICMP/no route), "error"."""

    ip: str
    port: int
    outcome: str
    connect_s: float
    error: Optional[str] = None

    def to_evidence(self) -> Dict[str, Any]:
        return {"ip": self.ip, "port": self.port, "tcp": self.outcome,
                "connect_ms": round(self.connect_s * 1000, 1), "tcp_error": self.error}


@dataclass(frozen=True)
class TlsResult:
    ok: bool
    handshake_s: float
    version: Optional[str] = None
    subject: Optional[str] = None
    issuer: Optional[str] = None
    error: Optional[str] = None
    verify_error: bool = False  # the certificate did not verify / match (vs a protocol failure)

    def to_evidence(self) -> Dict[str, Any]:
        return {"tls": "ok" if self.ok else "failed", "tls_ms": round(self.handshake_s * 1000, 1),
                "tls_version": self.version, "cert_subject": self.subject, "cert_issuer": self.issuer,
                "tls_error": self.error}


def tcp_connect(ip: str, port: int, timeout_s: float) -> "tuple[TcpResult, Optional[socket.socket]]":
    """Connect once; returns the result and, when connected, the open socket (caller closes)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    start = time.monotonic()
    try:
        sock.connect((ip, port))
    except socket.timeout:
        sock.close()
        return TcpResult(ip, port, "timeout", time.monotonic() - start, f"no answer within {timeout_s:g} s"), None
    except ConnectionRefusedError as exc:
        sock.close()
        return TcpResult(ip, port, "refused", time.monotonic() - start, str(exc)), None
    except OSError as exc:
        sock.close()
        kind = "unreachable" if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH) else "error"
        if exc.errno == errno.ETIMEDOUT:
            kind = "timeout"
        return TcpResult(ip, port, kind, time.monotonic() - start, f"{exc.__class__.__name__}: {os.strerror(exc.errno) if exc.errno else exc}"), None
    return TcpResult(ip, port, "connected", time.monotonic() - start), sock


def tls_context(ca_bundle: Optional[str]) -> ssl.SSLContext:
    """The system trust store plus an extra bundle (AWS_CA_BUNDLE / ca_bundle), hostname checked.
    Cached per bundle file and its mtime: loading the system store costs ~20 ms of CPU."""
    try:
        stamp = os.stat(ca_bundle).st_mtime_ns if ca_bundle else None
    except OSError:
        stamp = None  # let load_verify_locations report the missing file
    return _tls_context(ca_bundle, stamp)


@lru_cache(maxsize=8)
def _tls_context(ca_bundle: Optional[str], _stamp: Optional[int]) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if ca_bundle:
        ctx.load_verify_locations(cafile=ca_bundle)
    return ctx


def _name(cert_part: Any) -> Optional[str]:
    try:
        return ", ".join(f"{k}={v}" for rdn in cert_part for (k, v) in rdn)
    except (TypeError, ValueError):
        return None


def tls_handshake(sock: socket.socket, hostname: str, ctx: ssl.SSLContext, timeout_s: float) -> TlsResult:
    """TLS with SNI=hostname over a connected socket; the certificate must verify and match."""
    sock.settimeout(timeout_s)
    start = time.monotonic()
    try:
        with ctx.wrap_socket(sock, server_hostname=hostname) as tls:
            cert = tls.getpeercert() or {}
            return TlsResult(True, time.monotonic() - start, tls.version(), _name(cert.get("subject", ())),
                             _name(cert.get("issuer", ())))
    except ssl.SSLCertVerificationError as exc:
        return TlsResult(False, time.monotonic() - start, error=f"certificate: {exc.verify_message or exc}",
                         verify_error=True)
    except socket.timeout:
        return TlsResult(False, time.monotonic() - start, error=f"no TLS answer within {timeout_s:g} s")
    except (ssl.SSLError, OSError) as exc:
        return TlsResult(False, time.monotonic() - start, error=f"{exc.__class__.__name__}: {exc}")
    finally:
        sock.close()


def ca_bundle_from(setting: Optional[str]) -> Optional[str]:
    """The extra bundle: the config's ``ca_bundle`` wins, else ``AWS_CA_BUNDLE`` (the AWS convention)."""
    return setting or os.environ.get("AWS_CA_BUNDLE") or None


PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy",
              "NO_PROXY", "no_proxy")


def proxy_environment(environ: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """Proxy variables that are set, with any user:password in them redacted (NO_PROXY as it is)."""
    from .redact import redact_proxy

    env = os.environ if environ is None else environ
    return {k: env[k] if k.lower() == "no_proxy" else redact_proxy(env[k]) for k in PROXY_VARS if env.get(k)}
