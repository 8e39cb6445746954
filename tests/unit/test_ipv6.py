"""IPv6: IMDS's IPv6 fallback (loopback IMDS stand-ins on 127.0.0.1 and ::1), the ENI's IPv6 facts,
and the IPv6 side of the endpoints (real dnsmasq answering AAAA, real TLS listeners on IPv6
addresses inside a private network namespace; see fixtures_net)."""
from __future__ import annotations

import dataclasses
import socket
import time
from typing import Any, Dict, Iterator, Optional

import pytest

from vpce_doctor import imds6
from vpce_doctor.checks import endpoints, ipv6
from vpce_doctor.checks.model import Facts, Settings, Status
from vpce_doctor.config import ImdsSettings
from vpce_doctor.imds import gather_facts, imds_finding

try:
    from .fixtures_net import (LAB_FACTS, Dnsmasq, Netns, TlsListener, by_id, require_netns_tools, run_check)
    from .imds_server import DEFAULT_DATA, MAC, ImdsServer, closed_port
except ImportError:  # tests/unit is not a package
    from fixtures_net import LAB_FACTS, Dnsmasq, Netns, TlsListener, by_id, require_netns_tools, run_check
    from imds_server import DEFAULT_DATA, MAC, ImdsServer, closed_port

FAST = dict(timeout_s=0.5, connect_timeout_s=0.3)
NIC = f"network/interfaces/macs/{MAC}"
V6_PATHS = {f"{NIC}/ipv6s": "fd0e:5a00:0:1::10", f"{NIC}/vpc-ipv6-cidr-blocks": "fd0e:5a00::/56",
            f"{NIC}/subnet-ipv6-cidr-blocks": "fd0e:5a00:0:1::/64"}
IPV6_ONLY_DATA = {k: v for k, v in {**DEFAULT_DATA, **V6_PATHS}.items()
                  if k not in ("local-ipv4", f"{NIC}/subnet-ipv4-cidr-block")}


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.fixture
def endpoints_on_loopback(monkeypatch: pytest.MonkeyPatch) -> Iterator[Dict[str, Any]]:
    """The IPv4 IMDS address is a closed loopback port (refused: "unreachable", as with no IPv4
    route); the IPv6 one is an IMDS stand-in on ::1 serving an IPv6-only ENI."""
    if not _has_ipv6_loopback():
        pytest.skip("no IPv6 loopback")
    with ImdsServer("ok", data=IPV6_ONLY_DATA, host="::1") as srv6:
        v4 = f"http://127.0.0.1:{closed_port()}"
        monkeypatch.setattr(imds6, "IPV4_ENDPOINT", v4)
        monkeypatch.setattr(imds6, "IPV6_ENDPOINT", srv6.endpoint)
        monkeypatch.setattr(imds6, "ssm_agent_env", lambda: {})  # no SSM agent here (the lab has one)
        try:
            yield {"v4": v4, "srv6": srv6}
        finally:
            ipv6.use_imds_endpoint(None)


def test_imds_falls_back_to_ipv6_when_ipv4_is_unreachable(endpoints_on_loopback: Dict[str, Any]) -> None:
    start = time.monotonic()
    facts = gather_facts(ImdsSettings(endpoint=endpoints_on_loopback["v4"], **FAST), {}, budget_s=2.5)
    elapsed = time.monotonic() - start
    assert facts.imds_state == "ok" and facts.imds_endpoint == imds6.IPV6_ENDPOINT
    assert facts.ipv6s == ("fd0e:5a00:0:1::10",) and facts.vpc_ipv6_cidrs == ("fd0e:5a00::/56",)
    assert facts.ipv6_only and facts.local_ipv4 is None and facts.subnet_cidr is None
    assert "refused" in (facts.imds_error or "").lower()
    assert elapsed < 1.5  # refused at once, then one IPv6 conversation: no timeout paid
    finding = imds_finding(facts, elapsed)
    assert (finding.status, finding.cause_code) == (Status.WARNING, "imds_ipv6_only")
    assert "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6" in (finding.fix or "")
    # The checks' AWS clients now fetch the role's credentials from the IPv6 endpoint too.
    assert ipv6._imds_endpoint == imds6.IPV6_ENDPOINT


def test_no_ipv6_try_when_ipv4_imds_is_disabled(endpoints_on_loopback: Dict[str, Any],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with ImdsServer("disabled") as srv4:
        monkeypatch.setattr(imds6, "IPV4_ENDPOINT", srv4.endpoint)
        facts = gather_facts(ImdsSettings(endpoint=srv4.endpoint, **FAST), {}, budget_s=2.5)
    assert (facts.imds_state, facts.imds_cause_code) == ("disabled", "imds_disabled")
    assert endpoints_on_loopback["srv6"].puts() == []  # 403 holds for IPv6 too: never asked


@pytest.fixture
def no_ipv4_route() -> Iterator[Netns]:
    """A namespace with loopback only: 169.254.169.254 has no route (ENETUNREACH), as on an
    IPv6-only ENI; ::1 works."""
    require_netns_tools()
    ns = Netns("v6imds").create([])
    try:
        yield ns
    finally:
        ns.delete()


def test_ipv6_only_imds_with_the_ipv6_endpoint_off_is_named(no_ipv4_route: Netns,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with no_ipv4_route.entered():
        port = closed_port()  # nothing listens on [::1]:port either: IMDS's IPv6 endpoint is off
        monkeypatch.setattr(imds6, "IPV6_ENDPOINT", f"http://[::1]:{port}")
        start = time.monotonic()
        facts = gather_facts(ImdsSettings(**FAST), {}, budget_s=2.5)  # the real 169.254.169.254
        elapsed = time.monotonic() - start
    assert (facts.imds_state, facts.imds_cause_code) == ("unreachable", "imds_ipv6_disabled"), facts.imds_error
    assert "Network is unreachable" in (facts.imds_error or "") and elapsed < 1.0
    finding = imds_finding(facts, elapsed)
    assert finding.status == Status.CRITICAL and "--http-protocol-ipv6 enabled" in (finding.fix or "")


def test_ipv6_only_imds_answers_over_ipv6(no_ipv4_route: Netns, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        with no_ipv4_route.entered():
            with ImdsServer("ok", data=IPV6_ONLY_DATA, host="::1") as srv6:
                monkeypatch.setattr(imds6, "IPV6_ENDPOINT", srv6.endpoint)
                facts = gather_facts(ImdsSettings(**FAST), {}, budget_s=2.5)
    finally:
        ipv6.use_imds_endpoint(None)
        imds6.announce(imds6.IPV4_ENDPOINT)
    assert facts.imds_state == "ok" and facts.ipv6_only and "Network is unreachable" in (facts.imds_error or "")
    assert imds_finding(facts, 0.1).cause_code == "imds_ipv6_only"


def test_dual_stack_facts_and_absent_ipv6() -> None:
    with ImdsServer("ok", data={**DEFAULT_DATA, **V6_PATHS}) as srv:
        dual = gather_facts(ImdsSettings(endpoint=srv.endpoint, **FAST), {}, budget_s=2.5)
    with ImdsServer("ok") as srv:  # ipv6s etc. answer 404: no IPv6, which is normal
        plain = gather_facts(ImdsSettings(endpoint=srv.endpoint, **FAST), {}, budget_s=2.5)
    assert dual.imds_state == "ok" and dual.ipv6s == ("fd0e:5a00:0:1::10",) and not dual.ipv6_only
    assert ipv6.mode(dual) == "dual_stack" and dual.local_ipv4 == "10.0.1.10"
    assert plain.imds_state == "ok" and plain.ipv6s == () and ipv6.mode(plain) == "none"


def test_missing_local_ipv4_without_ipv6_is_still_a_bad_answer() -> None:
    data = {k: v for k, v in DEFAULT_DATA.items() if k != "local-ipv4"}
    with ImdsServer("ok", data=data) as srv:
        facts = gather_facts(ImdsSettings(endpoint=srv.endpoint, **FAST), {}, budget_s=2.5)
    assert (facts.imds_state, facts.imds_cause_code) == ("error", "imds_bad_answer")
    assert "local-ipv4: 404" in (facts.imds_error or "") and "local_ipv4" not in facts.sources


def test_garbage_in_ipv6s_is_a_bad_answer() -> None:
    with ImdsServer("ok", data={**DEFAULT_DATA, f"{NIC}/ipv6s": "<html>"}) as srv:
        facts = gather_facts(ImdsSettings(endpoint=srv.endpoint, **FAST), {}, budget_s=2.5)
    assert (facts.imds_state, facts.imds_cause_code) == ("error", "imds_bad_answer") and facts.ipv6s == ()


# --- AAAA and IPv6 reach in a private namespace -----------------------------------------------------

RESOLVER = "10.0.0.2"
RESOLVER6 = "fd00:ec2::253"
ENI6 = ("fd0e:5a00:0:2::101", "fd0e:5a00:0:3::101")  # a dual-stack ssm endpoint; TLS listens
DROP6 = "fd0e:5a00:0:2::102"  # ec2messages: its one IPv6 ENI drops TCP 443
OUTSIDE6 = "fd99::1"  # not in the VPC's IPv6 CIDR
HOST = "{}.us-east-1.amazonaws.com".format
RECORDS = [
    f"--host-record={HOST('ssm')},10.0.2.101", f"--host-record={HOST('ssm')},{ENI6[0]}",
    f"--host-record={HOST('ssm')},{ENI6[1]}",
    f"--host-record={HOST('ec2messages')},10.0.2.102", f"--host-record={HOST('ec2messages')},{DROP6}",
    f"--host-record={HOST('ssmmessages')},10.0.2.103",  # IPv4-only endpoint: AAAA has no data
    f"--host-record={HOST('logs')},{OUTSIDE6}",
    # What a DNS64 subnet's resolver answers for an IPv4-only endpoint (10.0.2.104 as 64:ff9b::a00:268)
    f"--host-record={HOST('kms')},10.0.2.104", f"--host-record={HOST('kms')},64:ff9b::a00:268",
    "--address=/#/",  # as tests/lab/dns.py: answered locally, so a name with only A gets NODATA for AAAA
]
DUAL = dataclasses.replace(LAB_FACTS, ipv6s=("fd0e:5a00:0:1::10",), vpc_ipv6_cidrs=("fd0e:5a00::/56",),
                           subnet_ipv6_cidrs=("fd0e:5a00:0:1::/64",))
V6ONLY = dataclasses.replace(DUAL, local_ipv4=None, subnet_cidr=None)


class TlsListener6(TlsListener):
    def __init__(self, ns: Netns, ip: str, cert: Any, port: int = 443) -> None:  # noqa: D107
        import ssl
        import threading

        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(self.ctx)
        with ns.entered():
            self.sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ip, port))
        self.sock.listen(16)
        self.thread = threading.Thread(target=self._serve, daemon=True, name=f"tls-{ip}")
        self.thread.start()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, Any]]:
    require_netns_tools()
    trustme = pytest.importorskip("trustme")
    work = tmp_path_factory.mktemp("ipv6")
    ns = Netns("v6")
    dns: Optional[Dnsmasq] = None
    listeners = []
    try:
        ns.create([RESOLVER])
        for ip in (RESOLVER6, *ENI6, DROP6):  # nodad: usable at once, not "tentative" for a second
            ns.exec("ip", "addr", "add", f"{ip}/128", "dev", "lo", "nodad")
        dns = Dnsmasq(ns, [RESOLVER, RESOLVER6], RECORDS, str(work), "amazon6").start()
        ca = trustme.CA()
        ca_path = str(work / "ca.pem")
        ca.cert_pem.write_to_path(ca_path)
        good = ca.issue_cert("*.us-east-1.amazonaws.com", common_name="*.us-east-1.amazonaws.com")
        listeners = [TlsListener6(ns, ip, good) for ip in (*ENI6, DROP6)]
        ns.nft("table inet vdt_v6 {\n chain input {\n  type filter hook input priority 0; policy accept;\n"
               f"  ip6 daddr {DROP6} tcp dport 443 drop\n }}\n}}\n")
        yield {"ns": ns, "ca_path": ca_path}
    finally:
        for listener in listeners:
            listener.close()
        if dns is not None:
            dns.stop()
        ns.delete()


def _settings(world: Dict[str, Any], *services: str) -> Settings:
    return Settings(services=services, dns_timeout_s=0.5, connect_timeout_s=0.4, tls_timeout_s=2.0,
                    ca_bundle=world["ca_path"])


def test_dual_stack_aaaa_classified_and_dialled(world: Dict[str, Any]) -> None:
    settings = _settings(world, "ssm", "ec2messages", "ssmmessages", "logs")
    check = by_id(ipv6.checks(settings))["instance.ipv6"]
    with world["ns"].entered():
        out = run_check(check, DUAL, settings, {"resolver": {"server": RESOLVER}})
    got = {f.id: f for f in out.findings}
    assert got["instance.ipv6"].status == Status.OK and got["instance.ipv6"].evidence["mode"] == "dual_stack"
    ssm = got["ipv6.ssm"]
    assert ssm.status == Status.OK and sorted(ssm.evidence["answers"]) == sorted(ENI6)
    assert all(d["ok"] and d["tls"] == "ok" for d in ssm.evidence["dials"])
    slow = got["ipv6.ec2messages"]  # a dropped IPv6 ENI: clients fall back to IPv4 (slower, not broken)
    assert (slow.status, slow.cause_code) == (Status.WARNING, "tcp_timeout") and DROP6 in slow.summary
    v4only = got["ipv6.ssmmessages"]
    assert v4only.status == Status.OK and v4only.evidence["outcome"] == "nodata"
    outside = got["ipv6.logs"]
    assert outside.status == Status.WARNING and outside.evidence["outside_vpc"] == [OUTSIDE6]


def test_ipv6_only_dns_reach_over_ipv6(world: Dict[str, Any]) -> None:
    settings = _settings(world, "ssm")
    checks = by_id(endpoints.checks(settings))
    with world["ns"].entered():
        dns = run_check(checks["dns.ssm"], V6ONLY, settings, {"resolver": {"server": RESOLVER6}})
        assert dns.findings[0].status == Status.OK, dns.findings[0].summary
        assert sorted(dns.data["answers"]) == sorted(ENI6)  # AAAA, not A
        reach = run_check(checks["reach.ssm"], V6ONLY, settings, {"dns.ssm": dns.data})
    assert reach.findings[0].status == Status.OK and sorted(reach.data["ok_ips"]) == sorted(ENI6)


def test_ipv6_only_and_an_ipv4_only_endpoint_is_named(world: Dict[str, Any]) -> None:
    settings = _settings(world, "ssmmessages")
    check = by_id(endpoints.checks(settings))["dns.ssmmessages"]
    with world["ns"].entered():
        out = run_check(check, V6ONLY, settings, {"resolver": {"server": RESOLVER6}})
    f = out.findings[0]
    assert (f.status, f.cause_code) == (Status.CRITICAL, "endpoint_ipv4_only"), f.summary
    assert f.evidence["ipv4_answers"] == ["10.0.2.103"]
    assert "--ip-address-type dualstack --dns-options DnsRecordIpType=dualstack" in (f.fix or "")
    assert out.data is None  # eni/reach do not run: there is nothing to dial


def test_ipv6_only_resolver_is_fd00_ec2_253() -> None:
    assert ipv6.resolver_candidates(V6ONLY, None) == [RESOLVER6]
    assert ipv6.resolver_candidates(V6ONLY, "10.0.0.2") == [RESOLVER6]  # no IPv4 route here
    assert ipv6.mode(Facts(ipv6s=())) == "none"


def test_eni_identity_not_compared_across_families() -> None:
    assert ipv6.family_gap(list(ENI6), ("10.0.2.101", "10.0.3.101")) is not None
    assert ipv6.family_gap(["10.0.2.101"], ("10.0.2.101",)) is None


def test_an_ipv4_only_endpoint_sg_rule_is_named_for_ipv6_timeouts() -> None:
    from vpce_doctor.checks.ec2view import Ec2View, EndpointView, SecurityGroupRule

    ep = EndpointView(id="vpce-0ssm", service_name="com.amazonaws.us-east-1.ssm", type="Interface", state="available",
                      private_dns_enabled=True, subnet_ids=("subnet-0b",), eni_ids=("eni-0",), eni_ips=("10.0.2.101",),
                      eni_azs={}, security_group_ids=("sg-0ep",))
    out = (SecurityGroupRule("outbound", "tcp", 443, 443, cidrs=("0.0.0.0/0", "::/0")),)

    def view(inbound: tuple) -> Ec2View:
        return Ec2View(available=True, vpc_id="vpc-0lab", endpoints=(ep,), instance_sg_ids=("sg-0inst",),
                       security_group_rules={"sg-0inst": out, "sg-0ep": inbound})

    v4_only = (SecurityGroupRule("inbound", "tcp", 443, 443, cidrs=("10.0.1.0/24",)),)
    causes = endpoints._sg_causes(view(v4_only), ep, ENI6[0], DUAL)
    assert [c for c, _ in causes] == ["endpoint_sg_no_inbound_443_ipv6"]
    assert causes[0][1]["source"] == "fd0e:5a00:0:1::10" and causes[0][1]["subnet_ipv6_cidr"] == "fd0e:5a00:0:1::/64"
    assert endpoints._sg_causes(view(v4_only), ep, "10.0.2.101", DUAL) == []  # IPv4 is admitted
    both = v4_only + (SecurityGroupRule("inbound", "tcp", 443, 443, cidrs=("fd0e:5a00:0:1::/64",)),)
    assert endpoints._sg_causes(view(both), ep, ENI6[0], DUAL) == []


def test_dns64_synthesized_answers_name_the_ipv4_only_endpoint(world: Dict[str, Any]) -> None:
    settings = _settings(world, "kms")
    check = by_id(endpoints.checks(settings))["dns.kms"]
    with world["ns"].entered():
        out = run_check(check, V6ONLY, settings, {"resolver": {"server": RESOLVER6}})
    f = out.findings[0]
    assert (f.status, f.cause_code) == (Status.CRITICAL, "endpoint_ipv4_only"), f.summary
    assert f.evidence["dns64"] is True and f.evidence["ipv4_answers"] == ["10.0.2.104"]
    assert "DNS64" in (f.cause or "") and "Private DNS is not in effect" not in f.summary
