"""TCP connect and TLS handshake probes with the facts a diagnosis needs."""
from __future__ import annotations

import errno
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
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
    verify_code: Optional[int] = None  # OpenSSL's X509_V_ERR_* when verify_error
    timed_out: bool = False  # connected, but no complete TLS answer in time (a stall)
    # Set by checks.tlsprobe after a failure: the sharper cause, its explain() params, what it saw.
    cause: Optional[str] = None
    cause_params: Mapping[str, Any] = field(default_factory=dict)
    diagnosis: Mapping[str, Any] = field(default_factory=dict)

    def to_evidence(self) -> Dict[str, Any]:
        return {"tls": "ok" if self.ok else "failed", "tls_ms": round(self.handshake_s * 1000, 1),
                "tls_version": self.version, "cert_subject": self.subject, "cert_issuer": self.issuer,
                "tls_error": self.error, **dict(self.diagnosis)}


def tcp_connect(ip: str, port: int, timeout_s: float,
                mss: Optional[int] = None) -> "tuple[TcpResult, Optional[socket.socket]]":
    """Connect once; returns the result and, when connected, the open socket (caller closes).
    ``mss``: advertise this MSS in the SYN (TCP_MAXSEG before connect), so the peer sends segments
    no bigger than that whatever the link MTU says (checks.tlsprobe's path-MTU test)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    if mss is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
        except OSError:
            sock.close()
            raise
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
    with _tls_context_lock:  # the reach checks of every service ask at once: build it once, not N times
        return _tls_context(ca_bundle, stamp)


_tls_context_lock = threading.Lock()


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
                         verify_error=True, verify_code=exc.verify_code)
    except socket.timeout:
        return TlsResult(False, time.monotonic() - start, error=f"no TLS answer within {timeout_s:g} s",
                         timed_out=True)
    except (ssl.SSLError, OSError) as exc:
        return TlsResult(False, time.monotonic() - start, error=f"{exc.__class__.__name__}: {exc}")
    finally:
        sock.close()


@lru_cache(maxsize=1)
def _unverified_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def peer_certificate(sock: socket.socket, hostname: str, timeout_s: float) -> "tuple[Optional[bytes], Optional[str]]":
    """(the peer's leaf certificate as DER, error): a handshake that trusts nothing and checks nothing,
    only to read who issued what the peer presents. Nothing is sent after the handshake; closes sock."""
    sock.settimeout(timeout_s)
    try:
        with _unverified_context().wrap_socket(sock, server_hostname=hostname) as tls:
            return tls.getpeercert(binary_form=True), None
    except socket.timeout:
        return None, f"no TLS answer within {timeout_s:g} s"
    except (ssl.SSLError, OSError) as exc:
        return None, f"{exc.__class__.__name__}: {exc}"
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
