"""resolver and resolver.system against real dnsmasq instances inside a private network namespace
(see fixtures_net); /etc/hosts and /etc/resolv.conf are files written by the test."""
from __future__ import annotations

import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import pytest

from vpce_doctor.checks import resolver
from vpce_doctor.checks.model import Facts, MissingFact, Outcome, Settings, Status

try:
    from .fixtures_net import LAB_FACTS, Dnsmasq, Netns, by_id, nft_table, require_netns_tools, run_check
except ImportError:  # tests/unit is not a package
    from fixtures_net import LAB_FACTS, Dnsmasq, Netns, by_id, nft_table, require_netns_tools, run_check

AMAZON = "10.0.0.2"  # the Amazon resolver: primary CIDR 10.0.0.0/16 base + 2 ...
LINK_LOCAL = "169.254.169.253"  # ... and its link-local address (same dnsmasq)
CUSTOM = "10.0.0.3"  # a custom DNS server with its own opinion
SILENT = "10.0.0.9"  # assigned, nothing listens: queries time out
SSM = "ssm.us-east-1.amazonaws.com"
S3 = "s3.us-east-1.amazonaws.com"
ENIS = ("10.0.1.101", "10.0.2.101")

AMAZON_RECORDS = [
    f"--host-record={SSM},{ENIS[0]}", f"--host-record={SSM},{ENIS[1]}",
    f"--host-record={S3},198.51.100.10",
    "--address=/nxsvc.us-east-1.amazonaws.com/",  # NXDOMAIN; other unknown names are REFUSED
]
CUSTOM_RECORDS = [
    f"--host-record={SSM},198.51.100.64",  # the public address: bypasses the endpoint
    f"--host-record={S3},198.51.100.11",  # another public S3 address: load balancing, not a problem
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, Any]]:
    require_netns_tools()
    work = tmp_path_factory.mktemp("resolver")
    ns = Netns("rs")
    servers = []
    try:
        ns.create([AMAZON, LINK_LOCAL, CUSTOM, SILENT])
        servers.append(Dnsmasq(ns, [AMAZON, LINK_LOCAL], AMAZON_RECORDS, str(work), "amazon").start())
        servers.append(Dnsmasq(ns, [CUSTOM], CUSTOM_RECORDS, str(work), "custom").start())
        yield {"ns": ns}
    finally:
        for s in servers:
            s.stop()
        ns.delete()


SETTINGS = Settings(services=("ssm",), dns_timeout_s=0.4)


def run(world: Dict[str, Any], check_id: str, settings: Settings = SETTINGS, facts: Facts = LAB_FACTS,
        data: Optional[Dict[str, Any]] = None, **kw: Any) -> Outcome:
    check = by_id(resolver.checks(settings))[check_id]
    with world["ns"].entered():
        if kw:  # resolver.system with test files instead of /etc/hosts, /etc/resolv.conf
            ctx_check = type(check)(check.id, lambda ctx: resolver.run_system(ctx, **kw), check.needs, check.timeout_s)
            return run_check(ctx_check, facts, settings, data or {})
        return run_check(check, facts, settings, data or {})


# --- resolver ------------------------------------------------------------------------------------

def test_primary_cidr_base_plus_two_answers(world: Dict[str, Any]) -> None:
    out = run(world, "resolver")
    f = out.findings[0]
    assert (f.id, f.status, f.cause_code) == ("resolver", Status.OK, None)
    assert out.data == {"server": AMAZON}
    assert f.evidence["server"] == AMAZON and sorted(f.evidence["answers"]) == sorted(ENIS)
    assert isinstance(f.evidence["latency_ms"], float) and f.evidence["host"] == SSM


def test_configured_resolver_needs_no_facts(world: Dict[str, Any]) -> None:
    out = run(world, "resolver", settings=Settings(services=("ssm",), dns_timeout_s=0.4, resolver=AMAZON),
              facts=Facts())
    assert out.findings[0].status == Status.OK and out.data == {"server": AMAZON}


def test_missing_vpc_cidr_is_missing_fact(world: Dict[str, Any]) -> None:
    with pytest.raises(MissingFact) as exc:
        run(world, "resolver", facts=Facts(region="us-east-1"))
    assert exc.value.name == "vpc_cidr"


def test_falls_back_to_link_local_address(world: Dict[str, Any]) -> None:
    # A primary CIDR whose base + 2 has no route here: the fallback answers.
    facts = Facts(region="us-east-1", vpc_cidr="10.9.0.0/16", vpc_cidrs=("10.9.0.0/16",))
    out = run(world, "resolver", facts=facts)
    f = out.findings[0]
    assert f.status == Status.OK and out.data == {"server": LINK_LOCAL}
    assert [t["server"] for t in f.evidence["tried"]] == ["10.9.0.2", LINK_LOCAL]
    assert "after 10.9.0.2 gave no answer" in f.summary


def test_both_addresses_silent_is_resolver_unreachable(world: Dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resolver, "LATE_WAIT_S", 0.8)  # the late-reply window, shortened for the test
    settings = Settings(services=("ssm",), dns_timeout_s=0.3, resolver=SILENT)
    start = time.monotonic()
    drops = [f"ip daddr {LINK_LOCAL} udp dport 53 drop", f"ip daddr {LINK_LOCAL} tcp dport 53 drop"]
    with nft_table(world["ns"], drops):
        out = run(world, "resolver", settings=settings)
    assert time.monotonic() - start < 2.0  # two bounded waits
    f = out.findings[0]
    assert (f.status, f.cause_code, out.data) == (Status.CRITICAL, "resolver_unreachable", None)
    assert [t["outcome"] for t in f.evidence["tried"]] == ["timeout", "timeout"]
    assert "aws ec2 modify-vpc-attribute --vpc-id vpc-0lab --enable-dns-support" in f.fix


def test_error_rcode_is_resolver_error(world: Dict[str, Any]) -> None:
    out = run(world, "resolver", settings=Settings(services=("refusedsvc",), dns_timeout_s=0.4))
    f = out.findings[0]
    assert (f.status, f.cause_code) == (Status.CRITICAL, "resolver_error")
    assert f.evidence["rcode"] == "REFUSED"
    assert out.data == {"server": AMAZON}  # reachable: dns.<svc> still says what each name does


def test_nxdomain_still_means_the_resolver_answers(world: Dict[str, Any]) -> None:
    out = run(world, "resolver", settings=Settings(services=("nxsvc",), dns_timeout_s=0.4))
    f = out.findings[0]
    assert (f.status, f.cause_code) == (Status.OK, None)
    assert f.evidence["outcome"] == "nxdomain" and out.data == {"server": AMAZON}


def test_slow_answer_is_resolver_slow(world: Dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    # No delay line exists here (no netem); lower the threshold so a real answer counts as slow.
    monkeypatch.setattr(resolver, "SLOW_S", 0.0)
    out = run(world, "resolver")
    f = out.findings[0]
    assert (f.status, f.cause_code) == (Status.WARNING, "resolver_slow")
    assert out.data == {"server": AMAZON} and str(f.evidence["latency_ms"]) in f.cause


# --- a slow resolver is not a silent one ---------------------------------------------------------

SLOW = "10.0.0.5"  # the lab's delaying forwarder (tests/lab/dns_delay.py) in front of AMAZON
SLOW_MS = 1100
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def slow(world: Dict[str, Any]) -> Iterator[str]:
    ns = world["ns"]
    ns.exec("ip", "addr", "add", f"{SLOW}/32", "dev", "lo")
    proc = subprocess.Popen(["ip", "netns", "exec", ns.name, sys.executable, "-m", "tests.lab.dns_delay",
                             "--listen", SLOW, "--upstream", AMAZON, "--delay-ms", str(SLOW_MS)], cwd=str(REPO),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:  # ready once its TCP listener accepts (bound together with the UDP one)
            with ns.entered():
                try:
                    socket.create_connection((SLOW, 53), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise
            select.select([], [], [], 0.05)  # poll interval of a bounded readiness wait
        yield SLOW
    finally:
        proc.terminate()
        proc.wait(10)


def _resolv(tmp_path: Path, options: str) -> str:
    path = tmp_path / "resolv.conf"
    path.write_text(f"nameserver {AMAZON}\noptions {options}\n")
    return str(path)


@pytest.mark.parametrize("options,status", [("timeout:1 attempts:2", Status.CRITICAL),
                                            ("timeout:2", Status.WARNING)])
def test_late_reply_is_slow_not_silent(world: Dict[str, Any], slow: str, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch, options: str, status: Status) -> None:
    monkeypatch.setattr(resolver, "LATE_WAIT_S", 3.0)
    monkeypatch.setattr(resolver, "RESOLV_CONF_PATH", _resolv(tmp_path, options))
    settings = Settings(services=("ssm",), dns_timeout_s=0.3, resolver=slow)
    drops = [f"ip daddr {LINK_LOCAL} udp dport 53 drop", f"ip daddr {LINK_LOCAL} tcp dport 53 drop"]
    start = time.monotonic()
    with nft_table(world["ns"], drops):
        out = run(world, "resolver", settings=settings)
    assert time.monotonic() - start < SLOW_MS / 1000 + 1.0  # it stops at the late reply, not at LATE_WAIT_S
    f = out.findings[0]
    # Past resolv.conf's timeout the SSM agent (Go: a fresh socket per try) never sees the answer.
    assert (f.status, f.cause_code) == (status, "resolver_slow_beyond_timeout")
    assert f.evidence["server"] == slow and f.evidence["latency_ms"] >= SLOW_MS
    assert sorted(f.evidence["answers"]) == sorted(ENIS) and "enableDnsSupport is not the cause" in f.cause
    assert out.data["server"] == slow and out.data["query_timeout_s"] >= SLOW_MS / 1000


def test_dependents_wait_as_long_as_the_resolver_needs(world: Dict[str, Any], slow: str) -> None:
    from vpce_doctor.checks import endpoints

    settings = Settings(services=("ssm",), dns_timeout_s=0.3)
    check = by_id(endpoints.checks(settings))["dns.ssm"]
    view = {"ec2.api": None}
    with world["ns"].entered():
        measured = run_check(check, LAB_FACTS, settings, dict(view, resolver={"server": slow, "query_timeout_s": 1.8}))
        unmeasured = run_check(check, LAB_FACTS, settings, dict(view, resolver={"server": slow}))
    assert measured.findings[0].status == Status.OK, measured.findings[0].summary
    assert unmeasured.findings[0].cause_code == "dns_timeout"


def test_programs_time_out_on_a_resolver_slower_than_resolv_conf(world: Dict[str, Any], tmp_path: Path) -> None:
    slow_data = {"server": AMAZON, "query_timeout_s": 1.8,
                 "slow_for_clients": {"latency_ms": 1200.0, "resolv_conf_timeout_s": 1.0, "clients": "longer than"}}
    out = run(world, "resolver.system", data={"resolver": slow_data},
              **files(tmp_path, hosts=f"{ENIS[0]} {S3}\n", resolv=f"nameserver {AMAZON}\noptions timeout:1\n"))
    f = out.findings[0]
    assert (f.status, f.cause_code) == (Status.CRITICAL, "resolver_slow_beyond_timeout")
    assert out.data["misled_hosts"] == [SSM]  # the /etc/hosts line for S3 still answers at once
    # A custom nameserver next to it is compared as usual (it may answer in time).
    other = run(world, "resolver.system", data={"resolver": slow_data},
                **files(tmp_path, resolv=f"nameserver {AMAZON}\nnameserver {CUSTOM}\n"))
    assert other.findings[0].cause_code == "custom_dns_public_answers"


def test_read_resolv_options(tmp_path: Path) -> None:
    assert resolver.read_resolv_options(_resolv(tmp_path, "rotate timeout:1 attempts:5")) == (1.0, 5)
    assert resolver.read_resolv_options(str(tmp_path / "missing")) == (5.0, 2)  # glibc's defaults
    assert resolver.read_resolv_options(_resolv(tmp_path, "timeout:99 attempts:9")) == (30.0, 5)  # glibc's caps


# --- resolver.system -----------------------------------------------------------------------------

def files(tmp_path: Path, hosts: str = "", resolv: str = "") -> Dict[str, str]:
    h, r = tmp_path / "hosts", tmp_path / "resolv.conf"
    h.write_text("127.0.0.1 localhost\n::1 localhost ip6-localhost\n" + hosts)
    r.write_text(resolv)
    return {"hosts_path": str(h), "resolv_conf_path": str(r)}


def system(world: Dict[str, Any], tmp_path: Path, hosts: str = "", resolv: str = "") -> Outcome:
    return run(world, "resolver.system", data={"resolver": {"server": AMAZON}}, **files(tmp_path, hosts, resolv))


def test_system_uses_the_amazon_resolver(world: Dict[str, Any], tmp_path: Path) -> None:
    out = system(world, tmp_path, resolv=f"# generated\nnameserver {AMAZON}\nsearch ec2.internal\n")
    f = out.findings[0]
    assert (f.id, f.status, f.cause_code) == ("resolver.system", Status.OK, None)
    assert f.evidence["nameservers_are_amazon_resolver"] == [AMAZON] and "uses the Amazon resolver" in f.summary
    assert f.evidence["hosts"][SSM][f"nameserver {AMAZON}"] == "the Amazon resolver itself"
    # Nothing to compare with: the Amazon resolver is not asked again here (dns.<service> asks it).
    assert f.evidence["hosts"][SSM]["amazon"].startswith("not asked")


def test_system_agrees_through_another_amazon_address(world: Dict[str, Any], tmp_path: Path) -> None:
    out = system(world, tmp_path, resolv=f"nameserver {LINK_LOCAL}\n")
    f = out.findings[0]
    assert f.status == Status.OK
    row = f.evidence["hosts"][SSM]
    assert sorted(row["amazon"]) == sorted(row[f"nameserver {LINK_LOCAL}"]) == sorted(ENIS)


def test_hosts_file_override_is_critical(world: Dict[str, Any], tmp_path: Path) -> None:
    out = system(world, tmp_path, hosts=f"198.51.100.64  {SSM.upper()}  # pinned long ago\n",
                 resolv=f"nameserver {AMAZON}\n")
    f = out.findings[0]
    hosts_path = str(tmp_path / "hosts")
    assert (f.status, f.cause_code) == (Status.CRITICAL, "system_dns_differs")
    assert hosts_path in f.cause and "198.51.100.64" in f.cause and f"Remove the {hosts_path} entry" in f.fix
    assert f.evidence["differences"] == [{"host": SSM, "source": hosts_path, "system_answers": ["198.51.100.64"],
                                          "amazon_answers": list(f.evidence["hosts"][SSM]["amazon"]),
                                          "status": "CRITICAL"}]


def test_custom_nameserver_differing_is_critical(world: Dict[str, Any], tmp_path: Path) -> None:
    out = system(world, tmp_path, resolv=f"nameserver {CUSTOM}\n")
    f = out.findings[0]
    assert (f.status, f.cause_code) == (Status.CRITICAL, "custom_dns_public_answers")
    assert f"nameserver {CUSTOM}" in f.cause
    # No EC2 view here: the DHCP option set is named as the likely origin, unconfirmed.
    assert f.evidence["dhcp_options"]["known"] is False and "DHCP option set" in f.cause
    assert "aws ec2 associate-dhcp-options --dhcp-options-id <amazon-dhcp-options-id> --vpc-id vpc-0lab" in f.fix
    # Only ssm differs: two public S3 answers are load balancing, not a disagreement.
    assert [(d["host"], d["source"]) for d in f.evidence["differences"]] == [(SSM, f"nameserver {CUSTOM}")]
    assert f.evidence["hosts"][S3][f"nameserver {CUSTOM}"] == ["198.51.100.11"]


def test_hosts_pin_of_a_public_name_warns(world: Dict[str, Any], tmp_path: Path) -> None:
    out = system(world, tmp_path, hosts=f"198.51.100.11 {S3}\n", resolv=f"nameserver {AMAZON}\n")
    f = out.findings[0]
    assert (f.status, f.cause_code) == (Status.WARNING, "system_dns_differs")


def test_hosts_pin_to_one_eni_warns(world: Dict[str, Any], tmp_path: Path) -> None:
    # Still the endpoint, but one AZ only: not a bypass.
    out = system(world, tmp_path, hosts=f"{ENIS[0]} {SSM}\n", resolv=f"nameserver {AMAZON}\n")
    assert (out.findings[0].status, out.findings[0].cause_code) == (Status.WARNING, "system_dns_differs")


def test_hosts_pin_to_another_private_address_is_critical(world: Dict[str, Any], tmp_path: Path) -> None:
    out = system(world, tmp_path, hosts=f"10.0.1.199 {SSM}\n", resolv=f"nameserver {AMAZON}\n")
    assert (out.findings[0].status, out.findings[0].cause_code) == (Status.CRITICAL, "system_dns_differs")


def test_silent_nameserver(world: Dict[str, Any], tmp_path: Path) -> None:
    start = time.monotonic()
    only = system(world, tmp_path, resolv=f"nameserver {SILENT}\n").findings[0]
    assert time.monotonic() - start < 2.0  # all queries concurrent and bounded
    assert (only.status, only.cause_code) == (Status.CRITICAL, "system_dns_unreachable")
    second = system(world, tmp_path, resolv=f"nameserver {AMAZON}\nnameserver {SILENT}\n").findings[0]
    assert (second.status, second.cause_code) == (Status.WARNING, "system_dns_unreachable")


# --- parsing -------------------------------------------------------------------------------------

def test_read_nameservers_like_glibc(tmp_path: Path) -> None:
    p = tmp_path / "resolv.conf"
    p.write_text("; comment\n# comment\nnameserver 10.0.0.2 # trailing\nnameserver bogus\nnameserver fe80::1%eth0\n"
                 "nameserver 10.0.0.2\nnameserver 10.0.0.3\nnameserver 10.0.0.4\noptions timeout:1\n")
    assert resolver.read_nameservers(str(p)) == (["10.0.0.2", "fe80::1", "10.0.0.3"], True)
    assert resolver.read_nameservers(str(tmp_path / "absent")) == (["127.0.0.1"], False)


def test_read_hosts(tmp_path: Path) -> None:
    p = tmp_path / "hosts"
    p.write_text(f"# x\n10.0.1.5 {SSM} alias.\n10.0.1.6 {SSM.upper()}\nnot-an-ip {S3}\n::1 {S3}\n")
    assert resolver.read_hosts(str(p)) == {SSM: ["10.0.1.5", "10.0.1.6"], "alias": ["10.0.1.5"]}
    assert resolver.read_hosts(str(tmp_path / "absent")) == {}


def test_address_kind_treats_documentation_ranges_as_public() -> None:
    nets = LAB_FACTS.networks()
    assert resolver.address_kind("10.0.1.101", nets) == "vpc"
    assert resolver.address_kind("172.31.0.5", nets) == "private"
    assert resolver.address_kind("198.51.100.64", nets) == "public"
    assert resolver.address_kind("203.0.113.10", nets) == "public"
