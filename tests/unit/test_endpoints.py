"""dns.<svc>, eni.<svc>, reach.<svc>: against a real dnsmasq, real TLS listeners (trustme CA) and
nftables drops, all inside a private network namespace (see fixtures_net)."""
from __future__ import annotations

import time
from typing import Any, Dict, Iterator, Optional, Tuple

import pytest

from vpce_doctor.checks import endpoints
from vpce_doctor.checks.ec2view import Ec2View, EndpointView, SecurityGroupRule
from vpce_doctor.checks.model import Facts, Outcome, Settings, Status

try:
    from .fixtures_net import LAB_FACTS, Dnsmasq, Netns, TlsListener, by_id, nft_table, require_netns_tools, run_check
except ImportError:  # tests/unit is not a package
    from fixtures_net import LAB_FACTS, Dnsmasq, Netns, TlsListener, by_id, nft_table, require_netns_tools, run_check

trustme = pytest.importorskip("trustme")

RESOLVER = "10.0.0.2"
SILENT_RESOLVER = "10.0.0.9"  # assigned, nothing listens: queries time out
SSM_IPS = ("10.0.1.101", "10.0.2.101")  # ENIs with a valid certificate
HALF_IPS = ("10.0.1.102", "10.0.2.102")  # 10.0.2.102 drops TCP 443 (one AZ unreachable)
REFUSED_IPS = ("10.0.1.103", "10.0.2.103")  # assigned, nothing listens: RST
WRONG_CERT_IP = "10.0.1.104"  # serves a certificate for another name
DROPPED_IPS = ("10.0.1.106", "10.0.2.106")  # both drop TCP 443
NO_ROUTE_IP = "10.99.0.1"  # no route in the namespace
STALE_IP = "10.0.1.110"  # kms answers this; assigned, nothing listens (a deleted endpoint's address)
PUBLIC_OK_IP = "198.51.100.70"  # a public service address that answers (as through a NAT)

HOST = "{}.us-east-1.amazonaws.com".format

RECORDS = [
    f"--host-record={HOST('ssm')},{SSM_IPS[0]}", f"--host-record={HOST('ssm')},{SSM_IPS[1]}",
    f"--host-record={HOST('ssmmessages')},198.51.100.66",  # public: Private DNS not in effect
    f"--host-record={HOST('mixsvc')},10.0.1.105", f"--host-record={HOST('mixsvc')},198.51.100.65",
    f"--address=/{HOST('nxsvc')}/",  # NXDOMAIN
    f"--local=/{HOST('nodatasvc')}/", f"--txt-record={HOST('nodatasvc')},x",  # name exists, no A
    f"--host-record={HOST('sharedsvc')},172.31.5.10",  # private, outside the VPC
    f"--host-record={HOST('kms')},{STALE_IP}",  # stale: not the endpoint's ENI
    f"--host-record={HOST('logs')},10.0.1.120",  # one of two ENIs
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, Any]]:
    require_netns_tools()
    work = tmp_path_factory.mktemp("endpoints")
    ns = Netns("ep")
    dns: Optional[Dnsmasq] = None
    listeners = []
    try:
        ns.create([RESOLVER, SILENT_RESOLVER, *SSM_IPS, *HALF_IPS, *REFUSED_IPS, WRONG_CERT_IP, *DROPPED_IPS, STALE_IP,
                   PUBLIC_OK_IP])
        dns = Dnsmasq(ns, [RESOLVER], RECORDS, str(work), "amazon").start()
        ca = trustme.CA()
        ca_path = str(work / "ca.pem")
        ca.cert_pem.write_to_path(ca_path)
        good = ca.issue_cert("*.us-east-1.amazonaws.com", common_name="*.us-east-1.amazonaws.com")
        for ip in (*SSM_IPS, *HALF_IPS, *DROPPED_IPS, PUBLIC_OK_IP):
            listeners.append(TlsListener(ns, ip, good))
        listeners.append(TlsListener(ns, WRONG_CERT_IP, ca.issue_cert("www.example.org")))
        ns.nft("table inet vdt_ep {\n chain input {\n  type filter hook input priority 0; policy accept;\n"
               f"  ip daddr {{ {HALF_IPS[1]}, {DROPPED_IPS[0]}, {DROPPED_IPS[1]} }} tcp dport 443 drop\n }}\n}}\n")
        yield {"ns": ns, "ca_path": ca_path}
    finally:
        for listener in listeners:
            listener.close()
        if dns is not None:
            dns.stop()
        ns.delete()


def settings_for(world: Dict[str, Any], *services: str) -> Settings:
    return Settings(services=services, dns_timeout_s=0.5, connect_timeout_s=0.4, tls_timeout_s=2.0,
                    ca_bundle=world["ca_path"])


def endpoint(service: str, ips: Tuple[str, ...] = (), **kw: Any) -> EndpointView:
    base: Dict[str, Any] = dict(
        id=f"vpce-0{service}", service_name=f"com.amazonaws.us-east-1.{service}", type="Interface",
        state="available", private_dns_enabled=True, subnet_ids=("subnet-0a", "subnet-0b"),
        eni_ids=tuple(f"eni-0{service}{i}" for i in range(len(ips))), eni_ips=ips,
        eni_azs={ip: f"us-east-1{'ab'[i % 2]}" for i, ip in enumerate(ips)}, security_group_ids=("sg-0ep",))
    base.update(kw)
    return EndpointView(**base)


ALLOW_RULES = {
    "sg-0inst": (SecurityGroupRule("outbound", "-1", None, None, cidrs=("0.0.0.0/0",)),),
    "sg-0ep": (SecurityGroupRule("inbound", "tcp", 443, 443, group_ids=("sg-0inst",)),),
}


def view(*eps: EndpointView, **kw: Any) -> Ec2View:
    base: Dict[str, Any] = dict(available=True, vpc_id="vpc-0lab", enable_dns_support=True,
                                enable_dns_hostnames=True, endpoints=eps, instance_sg_ids=("sg-0inst",),
                                security_group_rules=ALLOW_RULES)
    base.update(kw)
    return Ec2View(**base)


UNAVAILABLE = Ec2View(available=False, reason="ec2.us-east-1.amazonaws.com: connect timeout")


def run(world: Dict[str, Any], check_id: str, data: Dict[str, Any], settings: Optional[Settings] = None,
        facts: Facts = LAB_FACTS) -> Outcome:
    service = check_id.split(".", 1)[1]
    settings = settings or settings_for(world, service)
    check = by_id(endpoints.checks(settings))[check_id]
    with world["ns"].entered():
        return run_check(check, facts, settings, {k: v for k, v in data.items() if k in check.needs})


def dns_data(service: str, *answers: str) -> Dict[str, Any]:
    return {"host": HOST(service), "answers": list(answers), "ttl": 60, "resolver": RESOLVER}


# --- registry ----------------------------------------------------------------------------------

def test_checks_per_service_and_needs() -> None:
    got = by_id(endpoints.checks(Settings(services=("ssm", "logs"))))
    assert list(got) == ["dns.ssm", "eni.ssm", "reach.ssm", "dns.logs", "eni.logs", "reach.logs"]
    assert got["dns.ssm"].needs == ("resolver", "ec2.api")
    assert got["eni.ssm"].needs == ("dns.ssm", "ec2.api")
    assert got["reach.ssm"].needs == ("dns.ssm", "ec2.api")  # reach does not wait for eni


# --- the healthy path, end to end ----------------------------------------------------------------

def test_healthy_private_dns_identity_and_reach(world: Dict[str, Any]) -> None:
    v = view(endpoint("ssm", SSM_IPS))
    dns = run(world, "dns.ssm", {"resolver": {"server": RESOLVER}, "ec2.api": v})
    f = dns.findings[0]
    assert (f.id, f.status, f.cause_code) == ("dns.ssm", Status.OK, None)
    assert sorted(dns.data["answers"]) == sorted(SSM_IPS) and dns.data["ttl"] == 60
    assert f.evidence["resolver"] == RESOLVER and "latency_ms" in f.evidence

    eni = run(world, "eni.ssm", {"dns.ssm": dns.data, "ec2.api": v})
    e = eni.findings[0]
    assert e.status == Status.OK and e.evidence["confirmed"] is True
    assert e.evidence["endpoint_id"] == "vpce-0ssm" and e.evidence["eni_ids"] == ["eni-0ssm0", "eni-0ssm1"]
    assert eni.data is v.endpoints[0]

    reach = run(world, "reach.ssm", {"dns.ssm": dns.data, "ec2.api": v})
    ids = [x.id for x in reach.findings]
    assert ids[0] == "reach.ssm" and sorted(ids[1:]) == sorted(f"reach.ssm.{ip}" for ip in SSM_IPS)
    assert all(x.status == Status.OK for x in reach.findings)
    per_ip = reach.findings[1]
    assert per_ip.evidence["tls"] == "ok" and per_ip.evidence["tls_version"].startswith("TLS")
    assert "us-east-1.amazonaws.com" in per_ip.evidence["cert_subject"]
    assert per_ip.evidence["az"] in ("us-east-1a", "us-east-1b")
    assert isinstance(per_ip.evidence["connect_ms"], float) and isinstance(per_ip.evidence["tls_ms"], float)
    assert sorted(reach.data["ok_ips"]) == sorted(SSM_IPS)


@pytest.mark.parametrize("ec2", ["not configured", "unavailable"])
def test_reference_lab_without_ec2_endpoint_is_ok_unconfirmed(world: Dict[str, Any], ec2: str) -> None:
    # The reference lab has no ec2 endpoint: identity rests on CIDR evidence, and that is OK.
    data: Dict[str, Any] = {"resolver": {"server": RESOLVER}}
    if ec2 == "unavailable":
        data["ec2.api"] = UNAVAILABLE
    dns = run(world, "dns.ssm", data)
    assert dns.findings[0].status == Status.OK
    eni = run(world, "eni.ssm", dict(data, **{"dns.ssm": dns.data}))
    e = eni.findings[0]
    assert e.status == Status.OK and e.evidence["confirmed"] is False and e.evidence["reason"]
    assert "identity not confirmed" in e.summary and "inside the VPC CIDRs" in e.summary
    reach = run(world, "reach.ssm", dict(data, **{"dns.ssm": dns.data}))
    assert reach.findings[0].status == Status.OK


# --- dns.<svc> failure modes ---------------------------------------------------------------------

@pytest.mark.parametrize("ec2, code", [
    (view(endpoint("ssm", SSM_IPS)), "endpoint_missing"),
    (view(endpoint("ssmmessages", ("10.0.1.103",), private_dns_enabled=False)), "private_dns_disabled"),
    (view(endpoint("ssmmessages", ("10.0.1.103",)), enable_dns_hostnames=False), "dns_hostnames_disabled"),
    (view(endpoint("ssmmessages", ("10.0.1.103",), state="pendingAcceptance")), "endpoint_not_available"),
    (UNAVAILABLE, "private_dns_not_effective"),
], ids=["no-endpoint", "private-dns-off", "dns-hostnames-off", "pending", "ec2-api-unavailable"])
def test_public_answers_name_the_sharpest_cause(world: Dict[str, Any], ec2: Ec2View, code: str) -> None:
    out = run(world, "dns.ssmmessages", {"resolver": {"server": RESOLVER}, "ec2.api": ec2})
    f = out.findings[0]
    assert (f.status, f.cause_code) == (Status.CRITICAL, code)
    assert out.data["public"] is True  # reach.<svc> dials them (a NAT or a pin may carry the service)
    assert out.data["finding"]["cause_code"] == code
    assert f.evidence["answers"] == ["198.51.100.66"] and f.evidence["address_kinds"] == {"198.51.100.66": "public"}
    assert f.cause and f.fix
    if code == "endpoint_missing":  # ids known: the fix carries the exact CLI command
        assert "aws ec2 create-vpc-endpoint --vpc-id vpc-0lab" in f.fix
        assert "com.amazonaws.us-east-1.ssmmessages --subnet-ids subnet-0a" in f.fix
    if code == "private_dns_disabled":
        assert "modify-vpc-endpoint --vpc-endpoint-id vpce-0ssmmessages --private-dns-enabled" in f.fix


def test_mixed_private_and_public_answers(world: Dict[str, Any]) -> None:
    out = run(world, "dns.mixsvc", {"resolver": {"server": RESOLVER}, "ec2.api": UNAVAILABLE})
    f = out.findings[0]
    assert (f.status, f.cause_code, out.data) == (Status.CRITICAL, "dns_mixed_answers", None)


def test_nxdomain(world: Dict[str, Any]) -> None:
    out = run(world, "dns.nxsvc", {"resolver": {"server": RESOLVER}, "ec2.api": UNAVAILABLE})
    f = out.findings[0]
    assert (f.status, f.cause_code, out.data) == (Status.CRITICAL, "dns_nxdomain", None)
    assert f.evidence["rcode"] == "NXDOMAIN" and "us-east-1.amazonaws.com" in f.fix


def test_name_without_address_is_no_answer(world: Dict[str, Any]) -> None:
    out = run(world, "dns.nodatasvc", {"resolver": {"server": RESOLVER}, "ec2.api": UNAVAILABLE})
    f = out.findings[0]
    assert (f.status, f.cause_code, out.data) == (Status.CRITICAL, "dns_no_answer", None)
    assert f.evidence["outcome"] == "nodata"


@pytest.mark.parametrize("ec2, code", [(UNAVAILABLE, "dns_timeout"),
                                       (view(enable_dns_support=False), "dns_support_disabled")])
def test_resolver_silent_for_the_service(world: Dict[str, Any], ec2: Ec2View, code: str) -> None:
    start = time.monotonic()
    out = run(world, "dns.ssm", {"resolver": {"server": SILENT_RESOLVER}, "ec2.api": ec2})
    f = out.findings[0]
    assert (f.status, f.cause_code, out.data) == (Status.CRITICAL, code, None)
    assert f.evidence["outcome"] == "timeout" and f.evidence["resolver"] == SILENT_RESOLVER
    assert time.monotonic() - start < 2.0  # bounded by dns_timeout_s
    if code == "dns_support_disabled":
        assert "--vpc-id vpc-0lab --enable-dns-support" in f.fix


def test_private_answers_outside_the_vpc_warn_but_let_reach_run(world: Dict[str, Any]) -> None:
    out = run(world, "dns.sharedsvc", {"resolver": {"server": RESOLVER}, "ec2.api": UNAVAILABLE})
    f = out.findings[0]
    assert (f.status, f.cause_code) == (Status.WARNING, "dns_private_outside_vpc")
    assert out.data["answers"] == ["172.31.5.10"]


# --- eni.<svc> -----------------------------------------------------------------------------------

def test_stale_answer_is_eni_mismatch(world: Dict[str, Any]) -> None:
    v = view(endpoint("kms", ("10.0.1.111", "10.0.2.111")))
    dns = run(world, "dns.kms", {"resolver": {"server": RESOLVER}, "ec2.api": v})
    assert dns.findings[0].status == Status.OK  # inside the VPC CIDRs, so DNS alone looks fine
    eni = run(world, "eni.kms", {"dns.kms": dns.data, "ec2.api": v})
    e = eni.findings[0]
    assert (e.status, e.cause_code, eni.data) == (Status.CRITICAL, "eni_mismatch", None)
    assert e.evidence["foreign"] == ["10.0.1.110"] and e.evidence["endpoint_id"] == "vpce-0kms"
    assert "10.0.1.111" in e.cause


def test_private_answers_without_an_endpoint_is_eni_mismatch(world: Dict[str, Any]) -> None:
    v = view(endpoint("ssm", SSM_IPS))  # no kms endpoint in the VPC
    eni = run(world, "eni.kms", {"dns.kms": dns_data("kms", "10.0.1.110"), "ec2.api": v})
    e = eni.findings[0]
    assert (e.status, e.cause_code) == (Status.CRITICAL, "eni_mismatch")
    assert "no interface endpoint for kms" in e.summary


def test_answers_missing_an_eni_warn(world: Dict[str, Any]) -> None:
    v = view(endpoint("logs", ("10.0.1.120", "10.0.2.120")))
    dns = run(world, "dns.logs", {"resolver": {"server": RESOLVER}, "ec2.api": v})
    eni = run(world, "eni.logs", {"dns.logs": dns.data, "ec2.api": v})
    e = eni.findings[0]
    assert (e.status, e.cause_code) == (Status.WARNING, "eni_mismatch")
    assert e.evidence["missing"] == ["10.0.2.120"] and eni.data is v.endpoints[0]


# --- reach.<svc> ---------------------------------------------------------------------------------

def test_own_subnet_eni_works_other_subnet_times_out_suspects_a_nacl(world: Dict[str, Any]) -> None:
    """Issue 12: NACLs never filter inside a subnet, security groups don't care about subnets: the ENI in
    the instance's own subnet (10.0.1.0/24) working while the other subnet's times out points at a NACL."""
    v = view(endpoint("ec2messages", HALF_IPS))
    start = time.monotonic()
    out = run(world, "reach.ec2messages", {"dns.ec2messages": dns_data("ec2messages", *HALF_IPS), "ec2.api": v})
    assert time.monotonic() - start < 1.5  # concurrent, bounded by connect_timeout_s
    summary, *per_ip = out.findings
    assert (summary.id, summary.status, summary.cause_code) == ("reach.ec2messages", Status.WARNING, "nacl_suspected")
    assert "10.0.1.0/24" in summary.cause and HALF_IPS[1] in summary.cause
    assert summary.evidence["bad_ips"] == [HALF_IPS[1]] and summary.evidence["total"] == 2
    by = {f.id: f for f in per_ip}
    bad = by[f"reach.ec2messages.{HALF_IPS[1]}"]
    assert (bad.status, bad.cause_code) == (Status.WARNING, "tcp_timeout")  # rules allow 443: not sharpened
    assert bad.evidence["tcp"] == "timeout" and bad.evidence["az"] == "us-east-1b"
    assert by[f"reach.ec2messages.{HALF_IPS[0]}"].status == Status.OK
    assert out.data["ok_ips"] == [HALF_IPS[0]]


def test_all_refused(world: Dict[str, Any]) -> None:
    out = run(world, "reach.ssm", {"dns.ssm": dns_data("ssm", *REFUSED_IPS), "ec2.api": UNAVAILABLE})
    summary, *per_ip = out.findings
    assert (summary.status, summary.cause_code, out.data) == (Status.CRITICAL, "tcp_refused", None)
    assert [(f.status, f.cause_code) for f in per_ip] == [(Status.CRITICAL, "tcp_refused")] * 2
    assert all(f.evidence["tls"] == "not attempted" for f in per_ip)


def test_certificate_for_another_name_is_tls_failed(world: Dict[str, Any]) -> None:
    out = run(world, "reach.ssm", {"dns.ssm": dns_data("ssm", WRONG_CERT_IP), "ec2.api": UNAVAILABLE})
    summary, only = out.findings
    assert (summary.status, summary.cause_code, out.data) == (Status.CRITICAL, "tls_failed", None)
    assert (only.id, only.status, only.cause_code) == (f"reach.ssm.{WRONG_CERT_IP}", Status.CRITICAL, "tls_failed")
    assert only.evidence["tcp"] == "connected" and "certificate" in only.evidence["tls_error"]


def test_untrusted_ca_is_a_foreign_issuer(world: Dict[str, Any]) -> None:
    # trustme's CA (O=trustme …) is not Amazon's: more in test_tls_causes.py
    settings = Settings(services=("ssm",), connect_timeout_s=0.4, tls_timeout_s=2.0, ca_bundle=None)
    out = run(world, "reach.ssm", {"dns.ssm": dns_data("ssm", SSM_IPS[0]), "ec2.api": UNAVAILABLE},
              settings=settings)
    assert (out.findings[0].status, out.findings[0].cause_code) == (Status.CRITICAL, "tls_foreign_issuer")


def test_no_route_is_tcp_unreachable(world: Dict[str, Any]) -> None:
    out = run(world, "reach.ssm", {"dns.ssm": dns_data("ssm", NO_ROUTE_IP), "ec2.api": UNAVAILABLE})
    assert (out.findings[0].status, out.findings[0].cause_code) == (Status.CRITICAL, "tcp_unreachable")


@pytest.mark.parametrize("rules, code, cli", [
    ({"sg-0inst": ALLOW_RULES["sg-0inst"],
      "sg-0ep": (SecurityGroupRule("inbound", "tcp", 22, 22, cidrs=("10.0.0.0/16",)),)},
     "endpoint_sg_no_inbound_443",
     "authorize-security-group-ingress --group-id sg-0ep --protocol tcp --port 443 --cidr 10.0.1.0/24"),
    ({"sg-0inst": (SecurityGroupRule("outbound", "tcp", 80, 80, cidrs=("0.0.0.0/0",)),),
      "sg-0ep": ALLOW_RULES["sg-0ep"]},
     "instance_sg_no_outbound_443", "authorize-security-group-egress --group-id sg-0inst"),
    (ALLOW_RULES, "tcp_timeout", None),
    ({"sg-0inst": ALLOW_RULES["sg-0inst"]}, "tcp_timeout", None),  # endpoint SG rules unknown
], ids=["endpoint-sg-inbound", "instance-sg-outbound", "rules-allow", "rules-unknown"])
def test_timeouts_sharpened_only_by_rules_that_prove_it(world: Dict[str, Any], rules: Any, code: str,
                                                        cli: Optional[str]) -> None:
    v = view(endpoint("ssm", DROPPED_IPS), security_group_rules=rules)
    out = run(world, "reach.ssm", {"dns.ssm": dns_data("ssm", *DROPPED_IPS), "ec2.api": v})
    summary, *per_ip = out.findings
    assert (summary.status, summary.cause_code, out.data) == (Status.CRITICAL, code, None)
    assert [(f.status, f.cause_code) for f in per_ip] == [(Status.CRITICAL, code)] * 2
    if cli:
        assert cli in summary.fix


def test_timeout_fixture_is_a_real_drop(world: Dict[str, Any]) -> None:
    # A further drop added and removed at run time: the same IP flips from OK to timeout and back.
    data = {"dns.ssm": dns_data("ssm", SSM_IPS[0]), "ec2.api": UNAVAILABLE}
    with nft_table(world["ns"], [f"ip daddr {SSM_IPS[0]} tcp dport 443 drop"]):
        out = run(world, "reach.ssm", data)
        assert (out.findings[0].status, out.findings[0].cause_code) == (Status.CRITICAL, "tcp_timeout")
    assert run(world, "reach.ssm", data).findings[0].status == Status.OK


# --- through the real runner ---------------------------------------------------------------------

def test_runner_flow_healthy_and_blocked(world: Dict[str, Any], tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """resolver -> dns -> eni/reach run concurrently in the runner's threads; a service whose DNS
    fails blocks its reach (data None) but not the others; eni never blocks reach."""
    from vpce_doctor.checks import resolver
    from vpce_doctor.checks.model import Check, Finding, outcome
    from vpce_doctor.runner import Runner

    (tmp_path / "hosts").write_text("127.0.0.1 localhost\n")
    (tmp_path / "resolv.conf").write_text(f"nameserver {RESOLVER}\n")
    monkeypatch.setattr(resolver, "HOSTS_PATH", str(tmp_path / "hosts"))
    monkeypatch.setattr(resolver, "RESOLV_CONF_PATH", str(tmp_path / "resolv.conf"))
    settings = settings_for(world, "ssm", "ssmmessages", "kms")
    v = view(endpoint("ssm", SSM_IPS), endpoint("kms", ("10.0.1.111",)))
    ec2 = Check("ec2.api", lambda ctx: outcome(Finding("ec2.api", Status.OK, "stub view"), data=v))
    checks = [*resolver.checks(settings), ec2, *endpoints.checks(settings)]
    with world["ns"].entered():
        found = {f.id: f for f in Runner(checks, LAB_FACTS, settings, time.monotonic() + 20).run()}
    assert found["resolver"].status == Status.OK and found["resolver.system"].status == Status.OK
    assert [found[i].status for i in ("dns.ssm", "eni.ssm", "reach.ssm")] == [Status.OK] * 3
    assert found[f"reach.ssm.{SSM_IPS[0]}"].status == Status.OK
    assert found["dns.ssmmessages"].cause_code == "endpoint_missing"
    assert found["reach.ssmmessages"].blocked_by == "dns.ssmmessages"
    assert found["eni.kms"].cause_code == "eni_mismatch"  # 10.0.1.110 is not the ENI 10.0.1.111 ...
    assert found["reach.kms"].blocked_by is None  # ... yet reach still ran: refused, nothing listens there
    assert found["reach.kms"].cause_code == "tcp_refused"


def _nacl(acl_id: str, *entries: Any) -> Any:
    from vpce_doctor.checks.nacls import NaclView

    return NaclView(acl_id, tuple(entries))


def _entry(rule: int, egress: bool, action: str, ports: Tuple[int, int] = (0, 65535), protocol: str = "6",
           cidr: str = "0.0.0.0/0") -> Any:
    from vpce_doctor.checks.nacls import NaclEntry

    return NaclEntry(rule, egress, protocol, action, cidr, ports[0], ports[1])


ALLOW_ALL = (_entry(100, False, "allow", protocol="-1"), _entry(100, True, "allow", protocol="-1"))


def test_nacl_entry_proven_by_the_view_is_named(world: Dict[str, Any]) -> None:
    """With DescribeNetworkAcls: subnet b's NACL lets 443 in but no ephemeral ports back out."""
    ep = endpoint("ec2messages", HALF_IPS, eni_subnets={HALF_IPS[0]: "subnet-0a", HALF_IPS[1]: "subnet-0b"})
    acls = {"subnet-0a": _nacl("acl-0a", *ALLOW_ALL),
            "subnet-0b": _nacl("acl-0b", _entry(100, False, "allow", (443, 443), cidr="10.0.0.0/16"),
                               _entry(100, True, "allow", (443, 443), cidr="10.0.0.0/16"))}
    out = run(world, "reach.ec2messages", {"dns.ec2messages": dns_data("ec2messages", *HALF_IPS),
                                           "ec2.api": view(ep, network_acls=acls)})
    summary, *per_ip = out.findings
    assert (summary.status, summary.cause_code) == (Status.WARNING, "nacl_blocks")
    assert "acl-0b" in summary.cause and "outbound" in summary.cause and "final * deny" in summary.cause
    assert "reply" in summary.cause and "--egress" in summary.fix and "--network-acl-id acl-0b" in summary.fix
    bad = by_id(per_ip)[f"reach.ec2messages.{HALF_IPS[1]}"]
    assert bad.cause_code == "nacl_blocks"


def test_nacls_that_allow_rule_a_nacl_out(world: Dict[str, Any]) -> None:
    ep = endpoint("ec2messages", HALF_IPS, eni_subnets={HALF_IPS[0]: "subnet-0a", HALF_IPS[1]: "subnet-0b"})
    acls = {"subnet-0a": _nacl("acl-0a", *ALLOW_ALL), "subnet-0b": _nacl("acl-0b", *ALLOW_ALL)}
    out = run(world, "reach.ec2messages", {"dns.ec2messages": dns_data("ec2messages", *HALF_IPS),
                                           "ec2.api": view(ep, network_acls=acls)})
    assert out.findings[0].cause_code == "az_unreachable"


def test_a_refused_stale_record_next_to_working_enis_is_not_an_az(world: Dict[str, Any]) -> None:
    ips = (SSM_IPS[0], REFUSED_IPS[0])
    out = run(world, "reach.ssm", {"dns.ssm": dns_data("ssm", *ips), "ec2.api": UNAVAILABLE})
    summary = out.findings[0]
    assert (summary.status, summary.cause_code) == (Status.WARNING, "stale_answer_refused")
    assert REFUSED_IPS[0] in summary.cause


def test_nacl_evaluation_order_and_scope() -> None:
    from vpce_doctor.checks.nacls import tcp_drop

    acls = {"subnet-a": _nacl("acl-a", _entry(90, True, "deny", (443, 443), cidr="10.0.2.0/24"), *ALLOW_ALL)}
    drop = tcp_drop(acls, "subnet-a", "10.0.1.10", "subnet-b", "10.0.2.5", 443)
    assert drop is not None and (drop.nacl_id, drop.direction, drop.rule, drop.leg) == ("acl-a", "outbound", "90", "request")
    assert tcp_drop(acls, "subnet-a", "10.0.1.10", "subnet-a", "10.0.1.5", 443) is None  # inside one subnet
    assert tcp_drop(acls, "subnet-a", "10.0.1.10", "subnet-b", "10.0.3.5", 443) is None  # rule 90 doesn't match


def _public(service: str, *answers: str) -> Dict[str, Any]:
    return {"host": HOST(service), "answers": list(answers), "ttl": 60, "resolver": RESOLVER, "public": True,
            "finding": {"cause_code": "private_dns_disabled", "cause": "Private DNS is off", "fix": "turn it on"}}


def test_public_answers_that_answer_mean_the_service_works_over_the_internet(world: Dict[str, Any]) -> None:
    """Issue 12: with a NAT or IGW, SSM works without Private DNS; reach says how, the verdict can say works."""
    out = run(world, "reach.ssm", {"dns.ssm": _public("ssm", PUBLIC_OK_IP), "ec2.api": UNAVAILABLE})
    f = out.findings[0]
    assert (f.status, f.cause_code) == (Status.WARNING, "reach_via_internet"), f
    assert f.evidence["path"] == "internet" and out.data["ok_ips"] == [PUBLIC_OK_IP]


def test_public_answers_that_do_not_answer_read_as_blocked_by_dns(world: Dict[str, Any]) -> None:
    out = run(world, "reach.ssm", {"dns.ssm": _public("ssm", "198.51.100.66"), "ec2.api": UNAVAILABLE})
    f = out.findings[0]
    assert (f.status, f.blocked_by, f.cause_code) == (Status.CRITICAL, "dns.ssm", "private_dns_disabled")
    assert out.data is None and len(out.findings) == 1
    eni = run(world, "eni.ssm", {"dns.ssm": _public("ssm", "198.51.100.66"), "ec2.api": UNAVAILABLE})
    assert eni.findings[0].blocked_by == "dns.ssm" and eni.data is None


def test_nacl_entries_of_another_shape_are_dropped_not_fatal() -> None:
    from vpce_doctor.checks.nacls import parse_acls

    acls = parse_acls([{"NetworkAclId": "acl-1", "Associations": [{"SubnetId": "subnet-1"}, {}], "Entries": [
        {"RuleNumber": "x"}, {"RuleNumber": 90, "Egress": True, "Protocol": "6", "PortRange": {"From": "a"}},
        {"RuleNumber": 100, "Egress": False, "Protocol": "-1", "RuleAction": "ALLOW", "CidrBlock": "0.0.0.0/0"}]}])
    assert list(acls) == ["subnet-1"] and [e.rule_number for e in acls["subnet-1"].entries] == [100]
    assert acls["subnet-1"].entries[0].action == "allow"
