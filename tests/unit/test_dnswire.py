"""checks.dnswire (the isolation probe's standard-library A query): the same answers as dnspython's
against a real dnsmasq, and garbage from a hostile server is "no answer", never a hang or a crash."""
from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Callable, Iterator, Optional

import pytest

from vpce_doctor.checks import dnsquery, dnswire

try:
    from .fixtures_net import Dnsmasq, Netns, require_netns_tools
except ImportError:  # tests/unit is not a package
    from fixtures_net import Dnsmasq, Netns, require_netns_tools

SERVER = "10.0.0.2"
RECORDS = ["--host-record=google.com,203.0.113.10", "--host-record=google.com,203.0.113.11",
           "--cname=www.example.com,google.com", "--address=/nx.example.com/",
           "--local=/nodata.example.com/", "--txt-record=nodata.example.com,x"]


@pytest.fixture(scope="module")
def dns_ns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Netns]:
    require_netns_tools()
    ns = Netns("wire")
    server: Optional[Dnsmasq] = None
    try:
        ns.create([SERVER])
        server = Dnsmasq(ns, [SERVER], RECORDS, str(tmp_path_factory.mktemp("wire")), "wire").start()
        yield ns
    finally:
        if server is not None:
            server.stop()
        ns.delete()


@pytest.mark.parametrize("host", ["google.com", "www.example.com", "nx.example.com", "nodata.example.com"])
def test_same_outcome_and_addresses_as_dnspython(dns_ns: Netns, host: str) -> None:
    with dns_ns.entered():
        wire = dnswire.query_a(host, SERVER, 1.0)
        full = dnsquery.query_a(host, SERVER, 1.0)
    assert (wire.outcome, sorted(wire.addresses), wire.rcode) == (full.outcome, sorted(full.addresses), full.rcode)
    if host == "www.example.com":
        assert wire.cnames == ("google.com",)


def test_silence_is_a_bounded_timeout(dns_ns: Netns) -> None:
    start = time.monotonic()
    with dns_ns.entered():
        ans = dnswire.query_a("google.com", "10.0.0.9", 0.3)  # no route in the namespace: an error at once
    assert ans.outcome in ("timeout", "unreachable") and time.monotonic() - start < 1.0


def _serve(reply_for: Callable[[bytes], bytes]) -> "tuple[socket.socket, int]":
    """A UDP server on loopback answering each query with ``reply_for(query)`` (hostile replies)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(3.0)

    def loop() -> None:
        try:
            data, peer = sock.recvfrom(512)
            for reply in reply_for(data).split(b"--NEXT--"):
                sock.sendto(reply, peer)
        except OSError:
            pass

    threading.Thread(target=loop, daemon=True).start()
    return sock, sock.getsockname()[1]


def _header(query: bytes, flags: int = 0x8180, an: int = 1) -> bytes:
    return query[:2] + struct.pack("!5H", flags, 1, an, 0, 0)


def _question(query: bytes) -> bytes:
    return query[12:]


@pytest.mark.parametrize("make, outcome", [
    # a pointer to itself: a loop that must not spin
    (lambda q: _header(q) + _question(q) + b"\xc0\x0c" + struct.pack("!2HIH", 5, 1, 60, 2) + b"\xc0\x28", "error"),
    # a record claiming more data than the datagram has
    (lambda q: _header(q) + _question(q) + b"\xc0\x0c" + struct.pack("!2HIH", 1, 1, 60, 400) + b"\x01", "error"),
    # truncated: dnspython would retry over TCP; the probe leaves that to the check
    (lambda q: _header(q, flags=0x8380, an=0) + _question(q), "error"),
    # an answer to another question
    (lambda q: _header(q) + b"\x03bad\x00\x00\x01\x00\x01", "error"),
    # a stray datagram with the wrong id first, then the real (empty) answer
    (lambda q: b"\x00\x00" + _header(q)[2:] + _question(q) + b"--NEXT--" + _header(q, an=0) + _question(q), "nodata"),
    (lambda q: b"\x01", "error"),
])
def test_garbage_is_no_answer_never_a_hang(make: Callable[[bytes], bytes], outcome: str) -> None:
    sock, port = _serve(make)
    with sock:
        start = time.monotonic()
        ans = dnswire.query_a("google.com", "127.0.0.1", 1.0, port=port)
        assert time.monotonic() - start < 1.5
    assert ans.outcome == outcome and not ans.addresses, ans


def test_a_name_that_cannot_be_a_dns_name_is_an_error_not_a_crash() -> None:
    assert dnswire.query_a("a" * 70 + ".com", "127.0.0.1", 0.2).outcome == "error"
