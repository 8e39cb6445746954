"""egress.<host> against a real dnsmasq and real addresses in a test namespace: dropped (timeout),
refused (a closed port: the kernel's RST), and listening stand-ins for "the internet"
(203.0.113.0/24), plus a loopback listener and a closed loopback port; the probe started early."""
from __future__ import annotations

import socket
import time

import pytest

from vpce_doctor.checks import egress, isolation_probe
from vpce_doctor.checks import net as netmod
from vpce_doctor.checks.model import Settings, Status, Target

try:
    from tests.unit.moto_fixture import by_id, dump, facts_for, netns, require_root_tools, run_check
except ImportError:  # tests/unit on sys.path
    from moto_fixture import by_id, dump, facts_for, netns, require_root_tools, run_check  # type: ignore

RESOLVER = "10.0.0.2"
DROPPED, DROPPED_2, REFUSED, OPEN = "203.0.113.10", "203.0.113.13", "203.0.113.11", "203.0.113.12"
FACTS = facts_for({"vpc_id": "vpc-0vdt"})


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    require_root_tools("dnsmasq")
    records = [f"--host-record=google.com,{DROPPED}", f"--host-record=two.vdt.test,{DROPPED}",
               f"--host-record=two.vdt.test,{DROPPED_2}", f"--host-record=open.vdt.test,{OPEN}",
               f"--host-record=refused.vdt.test,{REFUSED}", "--local=/vdt.test/"]
    with netns("eg", [RESOLVER, DROPPED, DROPPED_2, REFUSED, OPEN]) as ns:
        # "No route": the VPC router drops what its route table doesn't allow -> a timeout.
        ns.nft([f"ip daddr {{ {DROPPED}, {DROPPED_2} }} tcp dport 443 drop"])
        ns.dnsmasq(RESOLVER, records, str(tmp_path_factory.mktemp("dnsmasq")))
        listener = ns.listener(OPEN, 443)  # an "internet" host that answers
        try:
            yield ns
        finally:
            listener.close()


@pytest.fixture(autouse=True)
def no_proxy_env(monkeypatch):
    for var in netmod.PROXY_VARS:
        monkeypatch.delenv(var, raising=False)


def run(ns, host, port=443, timeout=1.0):
    settings = Settings(egress_targets=(Target(host, port),), egress_timeout_s=timeout)
    check = by_id(egress.checks(settings))[f"egress.{host}"]
    start = time.monotonic()
    out = ns.call(lambda: run_check(check, FACTS, settings, {"resolver": {"server": RESOLVER}}))
    return out.findings[0], time.monotonic() - start


def test_dropped_is_isolated(net):
    f, elapsed = run(net, "google.com")
    assert f.status == Status.OK and f.cause_code is None
    assert f.summary == f"isolated: google.com resolves to {DROPPED} but TCP 443 fails (timeout after 1 s)"
    assert f.evidence["dns"]["answers"] == [DROPPED] and f.evidence["attempts"][0]["tcp"] == "timeout"
    assert 0.9 <= elapsed < 1.8, elapsed
    dump(f.evidence)


def test_all_answers_are_tried_at_once(net):
    f, elapsed = run(net, "two.vdt.test", timeout=1.0)
    assert f.status == Status.OK and {a["ip"] for a in f.evidence["attempts"]} == {DROPPED, DROPPED_2}
    assert elapsed < 1.8, elapsed  # concurrent: not 2 x 1 s


def test_connection_is_an_internet_path(net):
    f, _ = run(net, "open.vdt.test")
    assert f.status == Status.CRITICAL and f.cause_code == "internet_path"
    assert f"open.vdt.test:443 ({OPEN})" in f.cause and "0.0.0.0/0" in f.fix


def test_rst_from_an_internet_address_is_not_isolated(net):
    """A closed port on an "internet" host: its kernel answers the SYN with an RST. Something
    answered, so the SYN was not dropped as it is in a VPC without an internet path."""
    f, elapsed = run(net, "refused.vdt.test")
    assert f.status == Status.CRITICAL and f.cause_code == "internet_path_refused", f
    assert f"TCP 443 to refused.vdt.test ({REFUSED}) was refused: an RST came back in" in f.cause
    assert "0.0.0.0/0" in f.fix and "nft list ruleset" in f.fix
    assert f.evidence["attempts"][0]["tcp"] == "refused" and elapsed < 0.9


def test_rst_from_loopback_is_local_not_an_internet_path():
    """A closed loopback port refuses too, but nothing left the host: no internet path shown."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # now nothing listens there: the kernel answers RST
    settings = Settings(egress_targets=(Target("127.0.0.1", port),), egress_timeout_s=1.0)
    check = by_id(egress.checks(settings))["egress.127.0.0.1"]
    f = run_check(check, FACTS, settings, {"resolver": {"server": "127.0.0.9"}}).findings[0]
    assert f.status == Status.OK and f.cause_code is None and "(refused)" in f.summary, f


def test_prestarted_probe_is_collected_by_the_check(net):
    """prestart dials before the run; the check (still after the resolver) collects that result:
    one wait of egress_timeout_s in all, not two."""
    settings = Settings(egress_targets=(Target("google.com", 443),), egress_timeout_s=1.0, resolver=RESOLVER)
    check = by_id(egress.checks(settings))["egress.google.com"]
    start = time.monotonic()

    def both():
        isolation_probe.prestart(settings)
        return run_check(check, FACTS, settings, {"resolver": {"server": RESOLVER}})

    f = net.call(both).findings[0]
    elapsed = time.monotonic() - start
    assert f.status == Status.OK and f.evidence["started_early"] is True, f
    assert f.evidence["dns"]["server"] == RESOLVER and f.evidence["attempts"][0]["tcp"] == "timeout"
    assert 0.9 <= elapsed < 1.8, elapsed


def test_prestart_without_dns_answer_resolves_through_the_resolver_checks_server(net):
    """The early lookup went to a server that said nothing: the check asks the server the resolver
    check found answering, as without a head start (same result, only later)."""
    settings = Settings(egress_targets=(Target("open.vdt.test", 443),), egress_timeout_s=1.0,
                        resolver="10.0.0.9", dns_timeout_s=0.3)
    check = by_id(egress.checks(settings))["egress.open.vdt.test"]

    def both():
        isolation_probe.prestart(settings)
        return run_check(check, FACTS, settings, {"resolver": {"server": RESOLVER}})

    f = net.call(both).findings[0]
    assert f.evidence["started_early"] is False and f.evidence["dns"]["server"] == RESOLVER
    assert f.status == Status.CRITICAL and f.cause_code == "internet_path"


def test_prestarted_probe_of_other_settings_is_not_used(net):
    early = Settings(egress_targets=(Target("open.vdt.test", 443),), egress_timeout_s=0.5, resolver=RESOLVER)
    later = Settings(egress_targets=(Target("open.vdt.test", 443),), egress_timeout_s=1.0, resolver=RESOLVER)
    check = by_id(egress.checks(later))["egress.open.vdt.test"]

    def both():
        isolation_probe.prestart(early)
        return run_check(check, FACTS, later, {"resolver": {"server": RESOLVER}})

    f = net.call(both).findings[0]
    assert f.evidence["started_early"] is False and f.cause_code == "internet_path"


def test_link_local_resolver_is_the_resolver_checks_fallback():
    from vpce_doctor.checks import resolver

    assert isolation_probe.LINK_LOCAL_RESOLVER == resolver.FALLBACK_RESOLVER == "169.254.169.253"


def test_nxdomain_is_isolated(net):
    f, _ = run(net, "nx.vdt.test")
    assert f.status == Status.OK and f.summary == "isolated: nx.vdt.test does not resolve (NXDOMAIN)"


def test_proxy_variable_is_noted_not_failed(net, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://user:secret@proxy.vdt.test:3128")
    monkeypatch.setenv("NO_PROXY", "169.254.169.254")
    f, _ = run(net, "google.com")
    assert f.status == Status.OK
    assert f.summary.endswith("; HTTPS_PROXY is set: an internet path may exist through the proxy")
    assert f.evidence["proxy_env"] == {"HTTPS_PROXY": "http://***@proxy.vdt.test:3128", "NO_PROXY": "169.254.169.254"}


def test_loopback_listener_proves_internet_path():
    """An address literal skips DNS; a listening socket is an open path."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    try:
        port = srv.getsockname()[1]
        settings = Settings(egress_targets=(Target("127.0.0.1", port),), egress_timeout_s=1.0)
        check = by_id(egress.checks(settings))["egress.127.0.0.1"]
        f = run_check(check, FACTS, settings, {"resolver": {"server": "127.0.0.9"}}).findings[0]
    finally:
        srv.close()
    assert f.status == Status.CRITICAL and f.cause_code == "internet_path" and f.evidence["dns"] == {"literal": True}


def test_one_check_per_target_needing_the_resolver():
    settings = Settings(egress_targets=(Target("google.com", 443), Target("example.com", 80)))
    found = by_id(egress.checks(settings))
    assert set(found) == {"egress.google.com", "egress.example.com"}
    assert all(c.needs == ("resolver",) for c in found.values())
    assert found["egress.google.com"].timeout_s >= settings.egress_timeout_s + settings.dns_timeout_s
