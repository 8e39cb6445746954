"""Why TLS failed after TCP connected, told apart by what the instance can observe.

* The certificate does not chain to anything trusted here and its issuer is **not Amazon's**: a
  TLS-inspecting firewall or proxy answers in the endpoint's place → ``tls_foreign_issuer``
  (for ``*.amazonaws.com`` only: Amazon Trust Services issues those; elsewhere the issuer is shown).
* The issuer **is Amazon's** (every Amazon Trust Services CA has O=Amazon: "Amazon Root CA 1",
  "Amazon RSA 2048 M01", …) yet it does not verify here: the local CA bundle lacks Amazon's roots or
  is empty/damaged → ``tls_ca_bundle_broken``.
* The handshake **stalls**: the server's first big packets (its certificate flight) never arrive. A
  second connection that advertises a small MSS (TCP_MAXSEG before connect) makes the server send
  small segments; when that handshake answers, packets above that size are dropped on the way and no
  ICMP "fragmentation needed" comes back: a path-MTU black hole → ``tls_path_mtu``; when it does not,
  ``tls_handshake_stalled``.

The issuer is read with a second handshake that trusts nothing (checks.net.peer_certificate) and a
small DER reader (checks.certname). Each extra look happens only after a failure and is one connect
plus one handshake within the check's own connect/TLS budgets: the healthy path costs nothing.
"""
from __future__ import annotations

import ipaddress
import ssl
import struct
from dataclasses import replace
from typing import Any, Callable, Dict, Optional, Tuple

from . import certname
from .net import TlsResult, peer_certificate, tcp_connect, tls_handshake

AMAZON_ORGANIZATION = "Amazon"  # O= of Amazon Trust Services' roots and intermediates
# Names whose certificates Amazon Trust Services issues (aws, aws-us-gov); elsewhere (amazonaws.com.cn)
# an issuer that is not O=Amazon proves nothing, so the issuer is only shown.
AMAZON_ISSUED_SUFFIX = ".amazonaws.com"
SMALL_MSS = 1200  # fits any path that carries 1280-byte packets (the IPv6 minimum) with headers
# OpenSSL X509_V_ERR_* codes that mean "the chain leads to nothing trusted" (not: expired, wrong name…)
UNTRUSTED_CHAIN = frozenset({2, 18, 19, 20, 21})
ROUTES = "/proc/net/route"

Budget = Callable[[float], float]  # wanted seconds -> what the check's deadline allows


def is_amazon_issuer(names: certname.CertNames) -> bool:
    return names.issuer_get("O") == AMAZON_ORGANIZATION


def trust_stores(ca_bundle: Optional[str]) -> str:
    """The CA files this process verifies with (checks.net.tls_context: the system store plus the
    extra bundle), as a person would look for them."""
    paths = ssl.get_default_verify_paths()
    system = paths.cafile or paths.capath or paths.openssl_cafile or "the system store"
    return f"{ca_bundle} (ca_bundle / AWS_CA_BUNDLE) and {system}" if ca_bundle else system


def route_link(ip: str, routes: str = ROUTES) -> Tuple[Optional[str], Optional[int]]:
    """(interface, its MTU) of the IPv4 route the kernel would pick for ``ip`` (longest prefix)."""
    try:
        target = int(ipaddress.IPv4Address(ip))
        with open(routes) as f:
            lines = f.read(64 * 1024).splitlines()[1:]
    except (OSError, ValueError):
        return None, None
    best: Tuple[int, Optional[str]] = (-1, None)
    for line in lines:
        cols = line.split()
        try:
            # /proc/net/route prints each address as the u32 read from network-order bytes
            # on this (little-endian) host
            dest, mask = (int.from_bytes(struct.pack("<I", int(c, 16)), "big") for c in (cols[1], cols[7]))
        except (IndexError, ValueError, struct.error):
            continue
        if target & mask == dest & mask and bin(mask).count("1") > best[0]:
            best = (bin(mask).count("1"), cols[0])
    iface = best[1]
    if iface is None or "/" in iface:
        return None, None
    try:
        with open(f"/sys/class/net/{iface}/mtu") as f:
            return iface, int(f.read(16).strip())
    except (OSError, ValueError):
        return iface, None


def diagnose(ip: str, port: int, host: str, failed: TlsResult, tls_ctx: ssl.SSLContext, budget: Budget,
             connect_s: float, tls_s: float, ca_bundle: Optional[str]) -> TlsResult:
    """``failed`` with a sharper cause when one is proven (else as it was, plus what was seen)."""
    if failed.verify_error:
        return _by_issuer(ip, port, host, failed, budget, connect_s, tls_s, ca_bundle)
    if failed.timed_out:
        return _by_small_mss(ip, port, host, failed, tls_ctx, budget, connect_s, tls_s)
    return failed


def _by_issuer(ip: str, port: int, host: str, failed: TlsResult, budget: Budget, connect_s: float,
               tls_s: float, ca_bundle: Optional[str]) -> TlsResult:
    tcp, sock = tcp_connect(ip, port, budget(connect_s))
    if sock is None:
        return replace(failed, diagnosis={"issuer_read": f"second connect: TCP {tcp.outcome}"})
    der, error = peer_certificate(sock, host, budget(tls_s))
    names = certname.parse(der)
    if names is None:
        return replace(failed, diagnosis={"issuer_read": error or "the certificate is not readable DER"})
    amazon = is_amazon_issuer(names)
    seen = replace(failed, issuer=names.issuer_text, subject=names.subject_text,
                   diagnosis={"issuer_is_amazon": amazon, "verify_code": failed.verify_code})
    if failed.verify_code not in UNTRUSTED_CHAIN:
        return seen  # the chain was trusted (a wrong name, an expired certificate): not a trust problem
    if not host.rstrip(".").endswith(AMAZON_ISSUED_SUFFIX):
        return seen
    params: Dict[str, Any] = {"issuer": names.issuer_text, "error": failed.error}
    if amazon:
        return replace(seen, cause="tls_ca_bundle_broken", cause_params=dict(params, bundle=trust_stores(ca_bundle)))
    organization = names.issuer_get("O") or names.issuer_get("CN") or names.issuer_text
    return replace(seen, cause="tls_foreign_issuer", cause_params=dict(params, issuer_org=organization))


def _by_small_mss(ip: str, port: int, host: str, failed: TlsResult, tls_ctx: ssl.SSLContext, budget: Budget,
                  connect_s: float, tls_s: float) -> TlsResult:
    seen: Dict[str, Any] = {"small_mss": SMALL_MSS}
    params: Dict[str, Any] = {"mss": SMALL_MSS, "error": failed.error}
    try:
        tcp, sock = tcp_connect(ip, port, budget(connect_s), mss=SMALL_MSS)
    except OSError as exc:  # TCP_MAXSEG refused by this kernel: no second opinion
        return replace(failed, diagnosis=dict(seen, small_mss_tls=f"not tried: {exc}"))
    if sock is None:
        seen["small_mss_tls"] = f"not tried: TCP {tcp.outcome}"
        return replace(failed, cause="tls_handshake_stalled", cause_params=params, diagnosis=seen)
    retry = tls_handshake(sock, host, tls_ctx, budget(tls_s))
    seen["small_mss_tls"] = "ok" if retry.ok else retry.error
    seen["small_mss_tls_ms"] = round(retry.handshake_s * 1000, 1)
    if not (retry.ok or retry.verify_error):  # no certificate came back this way either
        return replace(failed, cause="tls_handshake_stalled", cause_params=params, diagnosis=seen)
    iface, mtu = route_link(ip) if ":" not in ip else (None, None)
    seen.update(link=iface, link_mtu=mtu)
    return replace(failed, version=retry.version, subject=retry.subject, issuer=retry.issuer, cause="tls_path_mtu",
                   cause_params=dict(params, iface=iface or "eth0", mtu=mtu if mtu is not None else "unknown"),
                   diagnosis=seen)



def handshake_cause(ctx: Any, host: str, ip: Optional[str], shown_ips: str, text: str,
                    ev: Dict[str, Any]) -> Dict[str, Any]:
    """explain(...) for an SDK call whose TLS failed (S3, DynamoDB): the same diagnosis as
    reach.<svc>, from one more handshake with the address the SDK dialled (``ip``), within the
    check's budget; ``tls_failed`` with the SDK's error when that is not possible."""
    from .causes import explain
    from .net import ca_bundle_from, tls_context

    s = ctx.settings
    if ip is None or ctx.remaining() < s.connect_timeout_s + s.tls_timeout_s:
        return explain("tls_failed", host=host, ip=shown_ips, error=text)
    bundle = ca_bundle_from(s.ca_bundle)
    tls_ctx = tls_context(bundle)
    _, sock = tcp_connect(ip, 443, ctx.budget(s.connect_timeout_s))
    if sock is None:
        return explain("tls_failed", host=host, ip=shown_ips, error=text)
    tls = tls_handshake(sock, host, tls_ctx, ctx.budget(s.tls_timeout_s))
    if not tls.ok:
        tls = diagnose(ip, 443, host, tls, tls_ctx, ctx.budget, s.connect_timeout_s, s.tls_timeout_s, bundle)
    ev["tls"] = tls.to_evidence()
    if tls.cause:
        return explain(tls.cause, **dict({"host": host, "ip": ip}, **tls.cause_params))
    return explain("tls_failed", host=host, ip=shown_ips, error=tls.error or text)
