"""One DNS question to one server, with the facts a diagnosis needs (dnspython 2.1+)."""
from __future__ import annotations

import ipaddress
import select
import socket
import time
from typing import Optional, Sequence

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from .dnsanswer import DnsAnswer  # noqa: F401 - defined there (no dnspython), used here and by callers


class Exchange:
    """One UDP question kept open, so that its reply can be awaited in steps: a reply that comes
    after the per-query timeout is still evidence (a slow resolver is not a silent one)."""

    def __init__(self, host: str, server: str, port: int = 53, rdtype: str = "A") -> None:
        self.host, self.server, self.port = host, server, port
        self.query = dns.message.make_query(host, dns.rdatatype.from_text(rdtype))  # AAAA: checks/ipv6.py
        self.answer: Optional[DnsAnswer] = None
        family = socket.AF_INET6 if ":" in server else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.start = time.monotonic()
        try:
            # Not connected, as glibc and dnspython: an ICMP port unreachable is not reported, the
            # query times out (what a dropped packet looks like too).
            self.sock.sendto(self.query.to_wire(), (server, port))
        except OSError as exc:
            self.answer = DnsAnswer(host, server, "unreachable", latency_s=time.monotonic() - self.start,
                                    error=str(exc))

    def wait(self, until: float) -> Optional[DnsAnswer]:
        """The answer, once one came (it is kept); None when none came before ``until`` (monotonic)."""
        while self.answer is None:
            left = max(0.0, until - time.monotonic())  # 0: take what has arrived, do not wait
            try:
                readable, _, _ = select.select([self.sock], [], [], left)
                if not readable:
                    return None
                wire, source = self.sock.recvfrom(65535)
            except OSError as exc:
                self.answer = DnsAnswer(self.host, self.server, "unreachable",
                                        latency_s=time.monotonic() - self.start, error=str(exc))
                break
            if not _same_address(source[0], self.server) or source[1] != self.port:
                continue  # not from the server asked: ignore, as a stub resolver does
            self.answer = self._parse(wire, until)
        return self.answer

    def _parse(self, wire: bytes, until: float) -> Optional[DnsAnswer]:
        latency = time.monotonic() - self.start
        try:
            reply = dns.message.from_wire(wire)
        except dns.exception.DNSException as exc:  # malformed reply
            return DnsAnswer(self.host, self.server, "error", rcode="FORMERR", latency_s=latency,
                             error=f"garbage reply: {exc.__class__.__name__}: {exc}")
        if not self.query.is_response(reply):
            return None  # another query's reply (wrong id or question): keep waiting
        if reply.flags & dns.flags.TC:
            try:
                reply = dns.query.tcp(self.query, self.server, timeout=max(0.05, until - time.monotonic()),
                                      port=self.port)
            except dns.exception.Timeout:
                return DnsAnswer(self.host, self.server, "timeout", latency_s=time.monotonic() - self.start,
                                 error="truncated over UDP, no TCP reply in time")
            except OSError as exc:
                return DnsAnswer(self.host, self.server, "unreachable", latency_s=time.monotonic() - self.start,
                                 error=str(exc))
            except dns.exception.DNSException as exc:
                return DnsAnswer(self.host, self.server, "error", rcode="FORMERR",
                                 latency_s=time.monotonic() - self.start,
                                 error=f"garbage reply: {exc.__class__.__name__}: {exc}")
            latency = time.monotonic() - self.start
        return _from_reply(self.host, self.server, reply, latency)

    def timed_out(self, timeout_s: float) -> DnsAnswer:
        return DnsAnswer(self.host, self.server, "timeout", latency_s=time.monotonic() - self.start,
                         error=f"no reply within {timeout_s:g} s")

    def close(self) -> None:
        self.sock.close()


def wait_any(exchanges: Sequence[Exchange], until: float) -> Optional[Exchange]:
    """The first exchange with a reply from its server (any rcode), or None when none came before
    ``until``; exchanges whose socket failed ("unreachable") never count as replied."""
    while True:
        for ex in exchanges:
            if ex.answer is not None and ex.answer.outcome != "unreachable":
                return ex
        pending = [ex for ex in exchanges if ex.answer is None]
        left = until - time.monotonic()
        if not pending or left <= 0:
            return None
        try:
            readable, _, _ = select.select([ex.sock for ex in pending], [], [], left)
        except OSError:
            readable = [ex.sock for ex in pending]  # let wait() record the socket's error
        for ex in pending:
            if ex.sock in readable:
                ex.wait(time.monotonic())  # reads what arrived; a stray packet leaves it pending


def _same_address(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a.split("%", 1)[0]) == ipaddress.ip_address(b.split("%", 1)[0])
    except ValueError:
        return a == b


def query_a(host: str, server: str, timeout_s: float, port: int = 53) -> DnsAnswer:
    """Ask ``server`` for A records of ``host`` over UDP (TCP when truncated). Never raises for
    network trouble or garbage replies: those become ``outcome`` values."""
    ex = Exchange(host, server, port)
    try:
        return ex.wait(ex.start + timeout_s) or ex.timed_out(timeout_s)
    finally:
        ex.close()


def _from_reply(host: str, server: str, reply: dns.message.Message, latency: float) -> DnsAnswer:
    rcode = dns.rcode.to_text(reply.rcode())
    if reply.rcode() == dns.rcode.NXDOMAIN:
        return DnsAnswer(host, server, "nxdomain", rcode=rcode, latency_s=latency)
    if reply.rcode() != dns.rcode.NOERROR:
        return DnsAnswer(host, server, "error", rcode=rcode, latency_s=latency)
    addresses, cnames, ttls = [], [], []
    for rrset in reply.answer:
        if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):  # only the type asked comes back
            addresses.extend(r.address for r in rrset)
            ttls.append(rrset.ttl)
        elif rrset.rdtype == dns.rdatatype.CNAME:
            cnames.extend(str(r.target).rstrip(".") for r in rrset)
    if not addresses:
        return DnsAnswer(host, server, "nodata", cnames=tuple(cnames), rcode=rcode, latency_s=latency)
    return DnsAnswer(host, server, "answer", tuple(dict.fromkeys(addresses)), min(ttls), tuple(cnames),
                     rcode, latency)
