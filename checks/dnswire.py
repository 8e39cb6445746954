"""A minimal DNS A / AAAA query over UDP with the standard library only.

Only for the isolation probe, which starts before anything heavy is imported: dnspython's import
alone costs ~80 ms of a run that should take about a second, and the probe's own wait (1 s) is the
longest of the run. It asks one question (A or AAAA, recursion desired) and reads the address and CNAME records
of the answer section; anything else — truncation, an unknown rcode, a reply that does not parse,
a mismatched id or question — is "no answer", and the ``egress.<host>`` check then asks again
through dnspython (checks.dnsquery) as it always did. Replies are bounded (one 1,232-byte datagram,
the EDNS-safe size; name pointers may only point backwards), so garbage cannot make it loop.
"""
from __future__ import annotations

import os
import socket
import struct
import time
from typing import List, Optional, Tuple

from .dnsanswer import DnsAnswer

MAX_REPLY = 1232
TYPE_A, TYPE_CNAME, TYPE_AAAA, CLASS_IN = 1, 5, 28, 1
_SIZES = {TYPE_A: (4, socket.AF_INET), TYPE_AAAA: (16, socket.AF_INET6)}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


class _Malformed(ValueError):
    pass


def encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode("idna") if label else b""
        if not 0 < len(raw) < 64:
            raise ValueError(f"not a DNS name: {name!r}")
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def _read_name(msg: bytes, pos: int) -> Tuple[str, int]:
    """(the name at ``pos``, the position after it); pointers must go backwards (no loops)."""
    labels: List[str] = []
    end: Optional[int] = None
    limit = pos
    for _ in range(128):
        if pos >= len(msg):
            raise _Malformed("name runs past the reply")
        length = msg[pos]
        if length & 0xC0 == 0xC0:
            if pos + 1 >= len(msg):
                raise _Malformed("truncated pointer")
            target = ((length & 0x3F) << 8) | msg[pos + 1]
            if target >= limit:
                raise _Malformed("forward pointer")
            end = pos + 2 if end is None else end
            pos = limit = target
            continue
        if length & 0xC0:
            raise _Malformed("unknown label type")
        if length == 0:
            return ".".join(labels).lower(), (end if end is not None else pos + 1)
        labels.append(msg[pos + 1:pos + 1 + length].decode("ascii", "replace"))
        pos += 1 + length
    raise _Malformed("name too long")


def parse(msg: bytes, qid: int, host: str,
          qtype: int = TYPE_A) -> Tuple[str, Tuple[str, ...], Tuple[str, ...], Optional[int]]:
    """(rcode text, addresses, CNAME targets, min TTL of the address records) of a reply to our query."""
    if len(msg) < 12:
        raise _Malformed("shorter than a header")
    rid, flags, qd, an, _ns, _ar = struct.unpack("!6H", msg[:12])
    if rid != qid or not flags & 0x8000:
        raise _Malformed("not the reply to our query")
    if flags & 0x0200:
        raise _Malformed("truncated (TC)")
    rcode = RCODES.get(flags & 0x000F)
    if rcode is None or qd != 1:
        raise _Malformed("unexpected rcode or question count")
    qname, pos = _read_name(msg, 12)
    if qname != host.rstrip(".").lower() or msg[pos:pos + 4] != struct.pack("!2H", qtype, CLASS_IN):
        raise _Malformed("answers another question")
    pos += 4
    addresses: List[str] = []
    cnames: List[str] = []
    ttls: List[int] = []
    for _ in range(min(an, 64)):
        _, pos = _read_name(msg, pos)
        if pos + 10 > len(msg):
            raise _Malformed("record header past the reply")
        rtype, rclass, ttl, rdlen = struct.unpack("!2HIH", msg[pos:pos + 10])
        pos += 10
        if pos + rdlen > len(msg):
            raise _Malformed("record data past the reply")
        size, family = _SIZES[qtype]
        if rclass == CLASS_IN and rtype == qtype and rdlen == size:
            addresses.append(socket.inet_ntop(family, msg[pos:pos + size]))
            ttls.append(ttl)
        elif rclass == CLASS_IN and rtype == TYPE_CNAME:
            cnames.append(_read_name(msg, pos)[0])
        pos += rdlen
    return rcode, tuple(dict.fromkeys(addresses)), tuple(cnames), (min(ttls) if ttls else None)


def query_a(host: str, server: str, timeout_s: float, port: int = 53, qtype: int = TYPE_A) -> DnsAnswer:
    """Ask ``server`` for A (or ``qtype``: AAAA) records of ``host``; never raises for network
    trouble or garbage."""
    start = time.monotonic()
    qid = struct.unpack("!H", os.urandom(2))[0]
    try:
        question = struct.pack("!6H", qid, 0x0100, 1, 0, 0, 0) + encode_name(host) + struct.pack("!2H", qtype, CLASS_IN)
    except (ValueError, UnicodeError) as exc:
        return DnsAnswer(host, server, "error", error=str(exc))
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((server, port))  # a connected socket accepts replies from the server only
            sock.send(question)
            while True:
                left = timeout_s - (time.monotonic() - start)
                if left <= 0:
                    return DnsAnswer(host, server, "timeout", latency_s=time.monotonic() - start,
                                     error=f"no reply within {timeout_s:g} s")
                sock.settimeout(left)
                reply = sock.recv(MAX_REPLY)
                try:
                    rcode, addresses, cnames, ttl = parse(reply, qid, host, qtype)
                    break
                except _Malformed as exc:
                    if "not the reply" in str(exc):
                        continue  # a stray datagram: keep waiting for ours
                    return DnsAnswer(host, server, "error", latency_s=time.monotonic() - start,
                                     error=f"reply not understood ({exc})")
        except socket.timeout:
            return DnsAnswer(host, server, "timeout", latency_s=time.monotonic() - start,
                             error=f"no reply within {timeout_s:g} s")
        except OSError as exc:
            return DnsAnswer(host, server, "unreachable", latency_s=time.monotonic() - start,
                             error=exc.strerror or str(exc))
    latency = time.monotonic() - start
    if rcode == "NXDOMAIN":
        return DnsAnswer(host, server, "nxdomain", rcode=rcode, latency_s=latency)
    if rcode != "NOERROR":
        return DnsAnswer(host, server, "error", rcode=rcode, latency_s=latency)
    if not addresses:
        return DnsAnswer(host, server, "nodata", cnames=cnames, rcode=rcode, latency_s=latency)
    return DnsAnswer(host, server, "answer", addresses=addresses, ttl=ttl, cnames=cnames, rcode=rcode,
                     latency_s=latency)


def query_aaaa(host: str, server: str, timeout_s: float, port: int = 53) -> DnsAnswer:
    return query_a(host, server, timeout_s, port=port, qtype=TYPE_AAAA)
