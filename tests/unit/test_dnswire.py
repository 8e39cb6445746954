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


# --- the isolation probe over IPv6 ----------------------------------------------------------------

def test_probe_dials_aaaa_answers_when_the_host_routes_ipv6(tmp_path) -> None:
    """An egress-only internet gateway is an IPv6-only internet path: with an IPv6 default route the
    probe dials the AAAA answers too (here ::1 stands for the internet, inside a test namespace)."""
    from vpce_doctor.checks import isolation_probe

    require_netns_tools()
    ns = Netns("wire6")
    server: Optional[Dnsmasq] = None
    listener = None
    try:
        ns.create([SERVER])
        server = Dnsmasq(ns, [SERVER], ["--host-record=google.com,127.0.0.3,::1"], str(tmp_path), "w6").start()
        with ns.entered():
            listener = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            listener.bind(("::1", 0))
            listener.listen(4)
            port = listener.getsockname()[1]
            found = isolation_probe.probe("google.com", port, SERVER, 53, 1.0, 0.5, ipv6=True)
            without = isolation_probe.probe("google.com", port, SERVER, 53, 1.0, 0.5, ipv6=False)
    finally:
        if listener is not None:
            listener.close()
        if server is not None:
            server.stop()
        ns.delete()
    assert found.addresses == ("127.0.0.3", "::1") and found.dns["aaaa"]["answers"] == ["::1"]
    assert {r.ip: r.outcome for r in found.results} == {"127.0.0.3": "refused", "::1": "connected"}
    assert without.addresses == ("127.0.0.3",) and "aaaa" not in without.dns


def test_ipv6_default_route_needs_a_route_and_a_global_address(tmp_path) -> None:
    from vpce_doctor.checks.isolation_probe import ipv6_default_route

    routes, addrs = tmp_path / "ipv6_route", tmp_path / "if_inet6"
    default = "0" * 32 + " 00 " + "0" * 32 + " 00 fe800000000000000000000000000001 00000400 00000001 0 00000003 ens5\n"
    routes.write_text(default)
    addrs.write_text("fd0e5a00000000010000000000000010 02 40 00 00 ens5\n")
    assert ipv6_default_route(str(routes), str(addrs)) is True
    addrs.write_text("fe80000000000000000000fffe000001 02 40 20 80 ens5\n")  # link-local only
    assert ipv6_default_route(str(routes), str(addrs)) is False
    routes.write_text("")
    assert ipv6_default_route(str(routes), str(addrs)) is False
    assert ipv6_default_route(str(tmp_path / "none"), str(addrs)) is False
