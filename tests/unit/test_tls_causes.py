"""TLS after TCP (issue 12): a foreign issuer, Amazon's issuer with a CA bundle that lacks its root, a
handshake that stalls unless the MSS is small (a path-MTU black hole), one that always stalls — each
with its own cause — against real loopback TLS listeners and real certificates; and the DER name
reader against real and malformed certificates."""
from __future__ import annotations

import random
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

import pytest

from vpce_doctor.checks import certname, endpoints, tlsprobe
from vpce_doctor.checks.ec2view import Ec2View
from vpce_doctor.checks.model import Outcome, Settings, Status

try:
    from .fixtures_net import LAB_FACTS, by_id, run_check
except ImportError:  # tests/unit is not a package
    from fixtures_net import LAB_FACTS, by_id, run_check

trustme = pytest.importorskip("trustme")
from tests.lab import certs  # noqa: E402 - needs trustme

HOST = "ssm.us-east-1.amazonaws.com"
UNAVAILABLE = Ec2View(available=False, reason="ec2.us-east-1.amazonaws.com: connect timeout")
HOLD_S = 10.0  # a silent listener holds a connection at most this long (the client gives up first)


class Listener:
    """TCP on 127.0.0.x:port. ``mode``: "tls" (handshake with ``leaf``), "silent" (accept, never
    answer the ClientHello), "small_mss_only" (TLS only when the client advertised a small MSS —
    what a path that drops big packets without ICMP lets through)."""

    def __init__(self, ip: str, port: int, mode: str, leaf: Any = None) -> None:
        self.mode, self.accepted = mode, 0
        self.context: Optional[ssl.SSLContext] = None
        if leaf is not None:
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            leaf.configure_cert(self.context)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ip, port))
        self.sock.listen(16)
        self.address = self.sock.getsockname()
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            mss = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
            if self.mode == "silent" or (self.mode == "small_mss_only" and mss > 1500):
                self.stop.wait(HOLD_S)
                return
            try:
                assert self.context is not None
                self.context.wrap_socket(conn, server_side=True).close()
            except (ssl.SSLError, OSError):
                pass

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture(scope="module")
def pki() -> Dict[str, Any]:
    root, intermediate = certs.amazon_like_ca()
    return {"root": root, "amazon_leaf": intermediate.issue_cert(HOST, "*.us-east-1.amazonaws.com"),
            "wrong_name_leaf": intermediate.issue_cert("www.example.org"),
            "inspection_leaf": certs.named_ca(*certs.INSPECTION_CA).issue_cert(HOST),
            "other_root": certs.named_ca(*certs.OTHER_ROOT)}


@pytest.fixture(scope="module")
def lab(pki: Dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, Any]]:
    """One listener per behaviour, all on one port (endpoints.PORT is patched to it)."""
    work = tmp_path_factory.mktemp("tls")
    bundles = {"amazon": work / "amazon-root.pem", "other": work / "other-root.pem"}
    pki["root"].cert_pem.write_to_path(str(bundles["amazon"]))
    pki["other_root"].cert_pem.write_to_path(str(bundles["other"]))
    first = Listener("127.0.0.2", 0, "tls", pki["amazon_leaf"])
    port = first.address[1]
    listeners = {"ok": first,
                 "inspection": Listener("127.0.0.3", port, "tls", pki["inspection_leaf"]),
                 "silent": Listener("127.0.0.4", port, "silent"),
                 "mtu": Listener("127.0.0.5", port, "small_mss_only", pki["amazon_leaf"]),
                 "wrong_name": Listener("127.0.0.6", port, "tls", pki["wrong_name_leaf"])}
    try:
        yield {"port": port, "bundles": bundles, "listeners": listeners}
    finally:
        for listener in listeners.values():
            listener.close()


def reach(lab: Dict[str, Any], monkeypatch: pytest.MonkeyPatch, which: str, bundle: str = "amazon",
          tls_timeout_s: float = 1.0) -> Outcome:
    monkeypatch.setattr(endpoints, "PORT", lab["port"])
    settings = Settings(services=("ssm",), connect_timeout_s=1.0, tls_timeout_s=tls_timeout_s,
                        ca_bundle=str(lab["bundles"][bundle]))
    ip = lab["listeners"][which].address[0]
    data = {"dns.ssm": {"host": HOST, "answers": [ip], "ttl": 60, "resolver": "10.0.0.2"}, "ec2.api": UNAVAILABLE}
    check = by_id(endpoints.checks(settings))["reach.ssm"]
    return run_check(check, LAB_FACTS, settings, {k: v for k, v in data.items() if k in check.needs})


# --- the causes, through reach.<svc> -------------------------------------------------------------

def test_the_healthy_path_makes_exactly_one_connection(lab: Dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    before = lab["listeners"]["ok"].accepted
    out = reach(lab, monkeypatch, "ok")
    assert out.findings[0].status == Status.OK
    assert lab["listeners"]["ok"].accepted == before + 1  # no second look when nothing failed


def test_a_foreign_issuer_names_the_inspection_ca(lab: Dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    out = reach(lab, monkeypatch, "inspection")
    summary, one = out.findings
    assert (summary.status, summary.cause_code) == (Status.CRITICAL, "tls_foreign_issuer")
    assert one.cause_code == "tls_foreign_issuer"
    assert "O=Corp TLS Inspection CA" in one.cause and "not by Amazon" in one.cause
    assert "*.amazonaws.com" in one.fix and "update-ca-trust" in one.fix
    assert one.evidence["issuer_is_amazon"] is False and one.evidence["verify_code"] == 20
    assert one.evidence["cert_issuer"].startswith("CN=Corp TLS Inspection CA")


def test_amazon_issuer_with_a_bundle_lacking_its_root_is_the_ca_bundle(
        lab: Dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    out = reach(lab, monkeypatch, "ok", bundle="other")
    summary, one = out.findings
    assert (summary.cause_code, one.cause_code) == ("tls_ca_bundle_broken", "tls_ca_bundle_broken")
    assert "Amazon ECDSA 256 M02" in one.cause and str(lab["bundles"]["other"]) in one.cause
    assert "ca-certificates" in one.fix
    assert one.evidence["issuer_is_amazon"] is True


def test_a_wrong_name_under_a_trusted_chain_stays_tls_failed(
        lab: Dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    out = reach(lab, monkeypatch, "wrong_name")
    one = out.findings[1]
    assert one.cause_code == "tls_failed"  # trust is fine: the address serves another name
    assert one.evidence["cert_issuer"].startswith("CN=Amazon ECDSA 256 M02")


def test_a_stall_that_a_small_mss_cures_is_a_path_mtu_black_hole(
        lab: Dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    out = reach(lab, monkeypatch, "mtu", tls_timeout_s=0.5)
    summary, one = out.findings
    assert (summary.status, summary.cause_code, one.cause_code) == (Status.CRITICAL, "tls_path_mtu", "tls_path_mtu")
    assert one.evidence["small_mss"] == tlsprobe.SMALL_MSS and one.evidence["small_mss_tls"] == "ok"
    assert "type 3 code 4" in one.fix and "mtu 1500" in one.fix
    assert "no TLS answer within" in one.evidence["tls_error"]


def test_a_stall_that_a_small_mss_does_not_cure_is_a_stalled_handshake(
        lab: Dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    started = time.monotonic()
    out = reach(lab, monkeypatch, "silent", tls_timeout_s=0.4)
    took = time.monotonic() - started
    summary, one = out.findings
    assert (summary.cause_code, one.cause_code) == ("tls_handshake_stalled", "tls_handshake_stalled")
    assert "no TLS answer within" in one.evidence["small_mss_tls"]
    assert took < 0.4 * 2 + 1.0  # two handshake budgets (the retry's is the same), connects are instant


def test_the_retry_stays_inside_the_check_deadline(lab: Dict[str, Any]) -> None:
    """The second look gets what the check's deadline leaves, not a fresh budget."""
    ip, port = lab["listeners"]["silent"].address
    deadline = time.monotonic() + 0.6
    budget: Callable[[float], float] = lambda wanted: max(0.05, min(wanted, deadline - time.monotonic()))  # noqa: E731
    tcp, sock = endpoints.tcp_connect(ip, port, 1.0)
    assert sock is not None
    started = time.monotonic()
    first = endpoints.tls_handshake(sock, HOST, ssl.create_default_context(), budget(0.5))
    out = tlsprobe.diagnose(ip, port, HOST, first, ssl.create_default_context(), budget, 5.0, 5.0, None)
    assert out.cause == "tls_handshake_stalled"
    assert time.monotonic() - started < 0.6 + 0.3


# --- the DER reader ------------------------------------------------------------------------------

def der_of(leaf: Any) -> bytes:
    return ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())


def test_reads_issuer_and_subject_of_real_certificates(pki: Dict[str, Any]) -> None:
    names = certname.parse(der_of(pki["amazon_leaf"]))
    assert names is not None
    assert names.issuer_text == "CN=Amazon ECDSA 256 M02, OU=vpce-doctor lab, O=Amazon, C=US"
    assert names.issuer_get("O") == "Amazon" and tlsprobe.is_amazon_issuer(names)
    assert "O=trustme" in names.subject_text
    foreign = certname.parse(der_of(pki["inspection_leaf"]))
    assert foreign is not None and not tlsprobe.is_amazon_issuer(foreign)
    assert foreign.issuer_get("CN") == "Corp TLS Inspection CA"
    plain = certname.parse(der_of(trustme.CA().issue_cert("x.example")))  # trustme's own: O and OU only
    assert plain is not None and plain.issuer_get("CN") is None and (plain.issuer_get("O") or "").startswith("trustme")


def tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + body


def name(*attrs: Tuple[bytes, int, bytes]) -> bytes:
    return tlv(0x30, b"".join(tlv(0x31, tlv(0x30, tlv(0x06, oid) + tlv(tag, value))) for oid, tag, value in attrs))


CN, O = b"\x55\x04\x03", b"\x55\x04\x0a"


def cert(issuer: bytes, subject: bytes = b"\x30\x00", version: bool = True) -> bytes:
    tbs = (tlv(0xA0, tlv(0x02, b"\x02")) if version else b"") + tlv(0x02, b"\x01") + tlv(0x30, b"") + issuer \
        + tlv(0x30, b"") + subject
    return tlv(0x30, tlv(0x30, tbs) + tlv(0x30, b"") + tlv(0x03, b"\x00"))


def test_string_types_v1_certificates_and_control_characters() -> None:
    issuer = name((O, 0x1E, "Änderung".encode("utf-16-be")), (CN, 0x14, b"caf\xe9"), (b"\x55\x04\x07", 0x0C, b"x"))
    names = certname.parse(cert(issuer, version=False))
    assert names is not None and names.issuer == (("O", "Änderung"), ("CN", "café"))  # L= is not read
    evil = certname.parse(cert(name((CN, 0x0C, b"Corp\x1b[2J\x07CA\n" + b"A" * 500))))
    assert evil is not None
    value = evil.issuer_get("CN") or ""
    assert value.startswith("Corp?[2J?CA?") and len(value) == certname.MAX_VALUE_CHARS
    assert certname.parse(cert(name((CN, 0x04, b"octets")))).issuer == ()  # not a string type: skipped


@pytest.mark.parametrize("blob", [
    None, b"", b"\x30", b"\x30\x80\x00\x00",  # indefinite length
    b"\x30\x85\x00\x00\x00\x00\x01",  # 5 length octets
    b"\x30\x04\x30\x02\x02",  # runs past its parent
    b"\x31\x00",  # not a SEQUENCE
    b"\x1f\x81\x01\x00",  # a multi-byte tag
    b"\x30\x84\xff\xff\xff\xff" + b"\x00" * 16,  # a 4 GiB claim
    b"\x30\x00\x00",  # trailing bytes
    b"\x30" + b"\x82\xff\xff" + b"\x00" * 0xFFFF,  # bigger than any real certificate
], ids=lambda b: repr(b)[:24])
def test_malformed_input_gives_none(blob: Optional[bytes]) -> None:
    assert certname.parse(blob) is None


def test_malformed_names_give_none() -> None:
    bad_rdn = tlv(0x30, tlv(0x30, b""))  # a SEQUENCE where a SET belongs
    assert certname.parse(cert(bad_rdn)) is None
    extra = tlv(0x30, tlv(0x31, tlv(0x30, tlv(0x06, CN) + tlv(0x0C, b"a") + tlv(0x0C, b"b"))))
    assert certname.parse(cert(extra)) is None
    many = tlv(0x30, b"".join(tlv(0x31, tlv(0x30, tlv(0x06, CN) + tlv(0x0C, b"a"))) for _ in range(100)))
    assert certname.parse(cert(many)) is None


def test_every_truncation_and_random_damage_is_safe(pki: Dict[str, Any]) -> None:
    der = der_of(pki["amazon_leaf"])
    for n in range(len(der)):
        assert certname.parse(der[:n]) is None
    rng = random.Random(12)
    for _ in range(3000):
        damaged = bytearray(der)
        for _ in range(rng.randint(1, 4)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        result = certname.parse(bytes(damaged))
        assert result is None or isinstance(result, certname.CertNames)


# --- small pieces --------------------------------------------------------------------------------

def test_route_link_takes_the_longest_prefix(tmp_path: Path) -> None:
    routes = tmp_path / "route"
    routes.write_text("Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"
                      "nosuch0\t00000000\t0101000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
                      "lo\t0001000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
                      "garbage line\n")
    assert tlsprobe.route_link("10.0.1.101", str(routes))[0] == "lo"
    iface, mtu = tlsprobe.route_link("10.0.1.101", str(routes))
    assert isinstance(mtu, int) and mtu > 0
    assert tlsprobe.route_link("10.0.2.101", str(routes)) == ("nosuch0", None)
    assert tlsprobe.route_link("10.0.2.101", str(tmp_path / "missing")) == (None, None)


def test_trust_stores_name_the_extra_bundle() -> None:
    assert tlsprobe.trust_stores("/etc/x.pem").startswith("/etc/x.pem (ca_bundle / AWS_CA_BUNDLE) and ")


# --- the lab's knobs ---------------------------------------------------------------------------

@pytest.mark.parametrize("data, message", [
    ({"tls_inspection": ["nosuch"]}, "x.yaml:tls_inspection: nosuch: not an interface endpoint service"),
    ({"tls_inspection": "ssm"}, "x.yaml:tls_inspection: expected a list of distinct"),
    ({"instance_ca_bundle": "empty"}, "x.yaml:instance_ca_bundle: expected one of ok, missing_amazon_root"),
    ({"path_mtu": 576}, "x.yaml:path_mtu: expected an integer 1280..9000"),
    ({"path_mtu": True}, "x.yaml:path_mtu: expected an integer"),
])
def test_lab_knob_errors_are_one_line(data: Dict[str, Any], message: str) -> None:
    from tests.lab.scenario import ScenarioError, parse

    with pytest.raises(ScenarioError) as err:
        parse(data, "x.yaml")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_lab_inspection_takes_the_enis_from_the_aws_layer_and_mtu_drops_only_eni_packets(tmp_path: Path) -> None:
    from tests.lab import tlspath
    from tests.lab.scenario import parse
    from tests.lab.world import build

    world = build(parse({"tls_inspection": ["ssm"], "path_mtu": 1500}), "t")
    listen = world.to_json(tmp_path)["listen_ips"]
    assert tlspath.inspected_ips(world) == ("10.0.1.101", "10.0.2.101")
    assert "10.0.1.101" not in listen and "10.0.1.102" in listen and "198.51.100.64" in listen
    rules = tlspath.mtu_ruleset(world, "vpc-rtr")
    assert 'oifname "vpc-rtr" ip saddr { 10.0.1.101, 10.0.2.101, 10.0.1.102' in rules and "meta length > 1500 drop" in rules
    assert tlspath.mtu_ruleset(build(parse({}), "t"), "vpc-rtr") == ""


def test_outside_amazon_trust_services_names_the_issuer_only(lab: Dict[str, Any]) -> None:
    """amazonaws.com.cn certificates need not be Amazon-issued: an untrusted chain there is shown, not judged."""
    ip, port = lab["listeners"]["inspection"].address
    host = "ssm.cn-north-1.amazonaws.com.cn"
    tcp, sock = endpoints.tcp_connect(ip, port, 1.0)
    assert sock is not None
    ctx = endpoints.tls_context(str(lab["bundles"]["amazon"]))
    first = endpoints.tls_handshake(sock, host, ctx, 1.0)
    out = tlsprobe.diagnose(ip, port, host, first, ctx, lambda wanted: wanted, 1.0, 1.0, None)
    assert first.verify_code == 20 and out.cause is None
    assert out.issuer is not None and "Corp TLS Inspection CA" in out.issuer
