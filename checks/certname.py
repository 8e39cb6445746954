"""The issuer and subject names of an X.509 certificate, read from its DER bytes without trusting it.

The bytes come from the network (a peer that may be an inspection appliance or anything else), so the
reader is strict and bounded: definite lengths only, at most 4 length octets, every element inside its
parent, a size cap, and any violation gives None — never an exception, never a guess. It reads just the
path Certificate → tbsCertificate → (version, serial, signature, issuer, validity, subject) of RFC 5280
§4.1 and, in a Name, the attributes a person recognises (C, O, OU, CN).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

MAX_CERT_BYTES = 64 * 1024  # real certificates are a few KiB; anything bigger is not worth reading
MAX_VALUE_CHARS = 128  # one attribute value as shown to a person
MAX_ATTRIBUTES = 64  # per Name

SEQUENCE, SET, OID, INTEGER, VERSION_TAG = 0x30, 0x31, 0x06, 0x02, 0xA0
# id-at-* (2.5.4.x) as DER OID contents, in the order a Name is usually written
ATTRIBUTES = {b"\x55\x04\x06": "C", b"\x55\x04\x0a": "O", b"\x55\x04\x0b": "OU", b"\x55\x04\x03": "CN"}
_STRINGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1", 0x1E: "utf-16-be", 0x1C: "utf-32-be"}


class _Malformed(ValueError):
    pass


@dataclass(frozen=True)
class CertNames:
    issuer: Tuple[Tuple[str, str], ...]  # (("O", "Amazon"), ("CN", "Amazon RSA 2048 M01")) in certificate order
    subject: Tuple[Tuple[str, str], ...]

    def issuer_get(self, key: str) -> Optional[str]:
        return next((v for k, v in self.issuer if k == key), None)

    @property
    def issuer_text(self) -> str:
        return name_text(self.issuer)

    @property
    def subject_text(self) -> str:
        return name_text(self.subject)


def name_text(name: Tuple[Tuple[str, str], ...]) -> str:
    """``CN=Amazon RSA 2048 M01, O=Amazon, C=US`` (most specific first, as OpenSSL's RFC 2253 form)."""
    return ", ".join(f"{k}={v}" for k, v in reversed(name)) or "(empty name)"


def _element(buf: bytes, pos: int, end: int) -> Tuple[int, int, int]:
    """(tag, start, end) of the value of the element at ``pos``, which must lie within ``end``."""
    if pos + 2 > end:
        raise _Malformed("truncated header")
    tag, first = buf[pos], buf[pos + 1]
    if tag & 0x1F == 0x1F:
        raise _Malformed("multi-byte tag")
    pos += 2
    if first & 0x80:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > end:
            raise _Malformed("indefinite or oversized length")
        length = int.from_bytes(buf[pos:pos + count], "big")
        pos += count
    else:
        length = first
    if pos + length > end:
        raise _Malformed("element runs past its parent")
    return tag, pos, pos + length


def _expect(buf: bytes, pos: int, end: int, tag: int) -> Tuple[int, int]:
    got, start, stop = _element(buf, pos, end)
    if got != tag:
        raise _Malformed(f"tag {got:#x} where {tag:#x} belongs")
    return start, stop


def _text(tag: int, raw: bytes) -> Optional[str]:
    encoding = _STRINGS.get(tag)
    if encoding is None:
        return None
    text = raw.decode(encoding, errors="replace")
    # Shown to people and written to logs: no control characters, bounded length.
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text[:MAX_VALUE_CHARS]


def _name(buf: bytes, start: int, end: int) -> Tuple[Tuple[str, str], ...]:
    """RDNSequence: SEQUENCE OF SET OF AttributeTypeAndValue {OID, value}."""
    out: List[Tuple[str, str]] = []
    pos = start
    seen = 0
    while pos < end:
        set_start, set_end = _expect(buf, pos, end, SET)
        pos = set_end
        inner = set_start
        while inner < set_end:
            seen += 1
            if seen > MAX_ATTRIBUTES:
                raise _Malformed("too many attributes")
            atv_start, atv_end = _expect(buf, inner, set_end, SEQUENCE)
            inner = atv_end
            oid_start, oid_end = _expect(buf, atv_start, atv_end, OID)
            tag, value_start, value_end = _element(buf, oid_end, atv_end)
            if value_end != atv_end:
                raise _Malformed("trailing bytes in an attribute")
            key = ATTRIBUTES.get(buf[oid_start:oid_end])
            value = _text(tag, buf[value_start:value_end]) if key else None
            if key and value is not None:
                out.append((key, value))
    return tuple(out)


def parse(der: Optional[bytes]) -> Optional[CertNames]:
    """The issuer and subject of a DER certificate, or None when the bytes are not one."""
    if not der or len(der) > MAX_CERT_BYTES:
        return None
    buf = bytes(der)
    try:
        cert_start, cert_end = _expect(buf, 0, len(buf), SEQUENCE)
        if cert_end != len(buf):
            raise _Malformed("trailing bytes after the certificate")
        tbs_start, tbs_end = _expect(buf, cert_start, cert_end, SEQUENCE)
        pos = tbs_start
        tag, _, stop = _element(buf, pos, tbs_end)
        if tag == VERSION_TAG:  # [0] EXPLICIT Version, absent in v1 certificates
            pos = stop
        _, pos = _expect(buf, pos, tbs_end, INTEGER)  # serialNumber
        _, pos = _expect(buf, pos, tbs_end, SEQUENCE)  # signature AlgorithmIdentifier
        issuer_start, issuer_end = _expect(buf, pos, tbs_end, SEQUENCE)
        _, pos = _expect(buf, issuer_end, tbs_end, SEQUENCE)  # validity
        subject_start, subject_end = _expect(buf, pos, tbs_end, SEQUENCE)
        return CertNames(issuer=_name(buf, issuer_start, issuer_end), subject=_name(buf, subject_start, subject_end))
    except _Malformed:
        return None
