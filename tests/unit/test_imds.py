"""IMDSv2 facts against a real HTTP server on loopback, and a blackholed IMDS in a network namespace."""
from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from typing import Iterator

import pytest

from vpce_doctor.checks.model import Status
from vpce_doctor.config import ImdsSettings
from vpce_doctor.imds import NEEDED, gather_facts, imds_finding, remember_static_facts

try:
    from .imds_server import DEFAULT_DATA, MAC, ImdsServer, closed_port
except ImportError:  # tests/unit is not a package
    from imds_server import DEFAULT_DATA, MAC, ImdsServer, closed_port  # type: ignore[no-redef]

FAST = dict(timeout_s=0.5, connect_timeout_s=0.5)
ALL_FACTS = {
    "region": "us-east-1", "instance_id": "i-0123456789abcdef0", "vpc_id": "vpc-0a1b2c3d4e5f60718",
    "subnet_id": "subnet-0a1b2c3d4e5f60718", "vpc_cidr": "10.0.0.0/16", "subnet_cidr": "10.0.1.0/24",
    "local_ipv4": "10.0.1.10", "public_ipv4": None, "instance_profile_arn": None,
}


def _gather(server: ImdsServer, overrides: dict = {}, budget_s: float = 2.5, **settings: float):  # noqa: B006
    opts = {**FAST, **settings}
    start = time.monotonic()
    facts = gather_facts(ImdsSettings(endpoint=server.endpoint, **opts), overrides, budget_s)
    return facts, time.monotonic() - start


def _assert_tokens_on_gets(server: ImdsServer) -> None:
    assert server.gets(), "no GET reached the server"
    assert all(s.token_sent for s in server.gets()), "a GET went out without X-aws-ec2-metadata-token"


def test_ok_all_facts_from_imds() -> None:
    with ImdsServer("ok") as srv:
        facts, elapsed = _gather(srv)
    assert facts.imds_state == "ok" and facts.imds_cause_code is None and facts.imds_error is None
    assert facts.region == "us-east-1" and facts.partition == "aws" and facts.domain == "amazonaws.com"
    assert facts.instance_id == "i-0123456789abcdef0" and facts.mac == MAC
    assert facts.vpc_id == "vpc-0a1b2c3d4e5f60718" and facts.subnet_id == "subnet-0a1b2c3d4e5f60718"
    assert facts.vpc_cidr == "10.0.0.0/16"
    assert facts.vpc_cidrs == ("10.0.0.0/16", "100.64.0.0/16")  # the primary first, whatever IMDS's order
    assert facts.subnet_cidr == "10.0.1.0/24" and facts.local_ipv4 == "10.0.1.10"
    assert facts.public_ipv4 is None  # 404: none, as expected on a private instance
    assert facts.instance_profile_arn == "arn:aws:iam::123456789012:instance-profile/SSMInstanceProfile"
    assert facts.security_group_ids == ("sg-0123456789abcdef0", "sg-0fedcba9876543210")
    assert set(facts.sources.values()) == {"imds"} and set(NEEDED) <= set(facts.sources)
    assert [p.ttl_header for p in srv.puts()] == ["21600"]  # one token for the whole gather
    _assert_tokens_on_gets(srv)
    assert all(s.token_valid for s in srv.gets())
    assert elapsed < 1.5
    finding = imds_finding(facts, elapsed)
    assert finding.id == "imds" and finding.status == Status.OK and finding.cause_code is None
    assert finding.evidence["state"] == "ok" and finding.evidence["missing"] == []
    assert "region" in finding.evidence["sources"]["imds"]


def test_paths_are_fetched_concurrently() -> None:
    # The server answers the 8 top-level GETs only when all 8 are in flight together.
    with ImdsServer("barrier") as srv:
        facts, _ = _gather(srv, timeout_s=1.0)
    assert facts.imds_state == "ok", facts.imds_error


@pytest.mark.parametrize("mode", ["disabled", "token_403"])
def test_403_on_token_means_disabled_and_is_not_retried(mode: str) -> None:
    with ImdsServer(mode) as srv:
        facts, elapsed = _gather(srv, {"instance_id": "i-0123456789abcdef0"})
    assert facts.imds_state == "disabled" and facts.imds_cause_code == "imds_disabled"
    assert len(srv.puts()) == 1 and srv.gets() == []  # no retry, no IMDSv1 fallback
    assert facts.region is None and facts.instance_id == "i-0123456789abcdef0"
    finding = imds_finding(facts, elapsed)
    assert finding.status == Status.CRITICAL and finding.cause_code == "imds_disabled"
    assert finding.cause and finding.fix
    # the instance id is known (from the config): the fix carries the exact CLI command
    assert "--instance-id i-0123456789abcdef0 --http-endpoint enabled" in finding.fix


def test_hop_limit_put_unanswered_times_out() -> None:
    with ImdsServer("hop_limit") as srv:
        facts, elapsed = _gather(srv, timeout_s=0.3)
        assert len(srv.puts()) == 1  # a timeout is not retried
    assert facts.imds_state == "timeout" and facts.imds_cause_code == "imds_hop_limit"
    assert 0.25 <= elapsed < 1.0
    finding = imds_finding(facts, elapsed)
    assert finding.status == Status.CRITICAL and finding.cause_code == "imds_hop_limit"
    assert "hop limit" in (finding.cause or "")


def test_budget_bounds_the_gather_even_with_long_timeouts() -> None:
    with ImdsServer("hop_limit") as srv:
        facts, elapsed = _gather(srv, budget_s=0.4, timeout_s=30.0)
    assert facts.imds_state == "timeout" and facts.imds_cause_code == "imds_hop_limit"
    assert elapsed < 0.9


def test_expired_token_is_replaced_once() -> None:
    with ImdsServer("token_expiry") as srv:
        facts, _ = _gather(srv)
    assert facts.imds_state == "ok", facts.imds_error
    assert facts.region == "us-east-1" and facts.vpc_cidr == "10.0.0.0/16"
    assert len(srv.puts()) == 2  # the 401s of concurrent GETs share ONE new token
    first = [s for s in srv.gets() if not s.token_valid]
    assert first, "the first token was never refused"
    _assert_tokens_on_gets(srv)


def test_garbage_answers_are_rejected_and_named() -> None:
    with ImdsServer("garbage") as srv:
        facts, elapsed = _gather(srv)
    assert facts.imds_state == "error" and facts.imds_cause_code == "imds_bad_answer"
    assert facts.region is None and facts.vpc_cidr is None  # never accept HTML as a fact
    assert "placement/region" in facts.imds_error and "vpc-ipv4-cidr-block" in facts.imds_error
    assert facts.instance_id == "i-0123456789abcdef0"  # the good answers are kept
    assert "region" not in facts.sources
    finding = imds_finding(facts, elapsed)
    assert finding.status == Status.CRITICAL and finding.cause_code == "imds_bad_answer"
    assert "placement/region" in (finding.cause or "") and "region" in finding.evidence["missing"]


def test_too_long_answer_is_rejected() -> None:
    with ImdsServer("too_long") as srv:
        facts, _ = _gather(srv)
    assert facts.imds_state == "error" and facts.imds_cause_code == "imds_bad_answer"
    assert "placement/region" in facts.imds_error and "longer" in facts.imds_error
    assert facts.region is None


def test_no_instance_profile() -> None:
    with ImdsServer("no_profile") as srv:
        facts, _ = _gather(srv)
    assert facts.imds_state == "ok"
    assert facts.instance_profile_arn is None and facts.sources["instance_profile_arn"] == "imds"


def test_no_security_group_ids_is_an_empty_list_not_none() -> None:
    """Issue 11: IMDS answering 404 for security-group-ids left None in the facts, and the EC2 view
    raised TypeError on tuple(None)."""
    data = {k: v for k, v in DEFAULT_DATA.items() if not k.endswith("security-group-ids")}
    with ImdsServer("ok", data=data) as srv:
        facts, _ = _gather(srv)
    assert facts.imds_state == "ok"
    assert facts.security_group_ids == ()
    assert list(facts.security_group_ids) + ["sg-0fedcba9876543210"]  # what checks/ec2api.py does with it


def test_public_ip() -> None:
    with ImdsServer("public_ip") as srv:
        facts, _ = _gather(srv)
    assert facts.imds_state == "ok" and facts.public_ipv4 == "203.0.113.25"


def test_partition_and_domain_derived_from_region_when_imds_lacks_them() -> None:
    data = dict(DEFAULT_DATA, **{"placement/region": "cn-north-1"})
    with ImdsServer("no_services", data=data) as srv:
        facts, _ = _gather(srv)
    assert facts.imds_state == "ok"
    assert (facts.partition, facts.domain) == ("aws-cn", "amazonaws.com.cn")
    assert facts.sources["partition"] == "derived" and facts.sources["domain"] == "derived"


def test_server_errors_are_unreachable() -> None:
    with ImdsServer("server_error") as srv:
        facts, elapsed = _gather(srv)
    assert facts.imds_state == "unreachable" and facts.imds_cause_code == "imds_unreachable"
    assert "HTTP 500" in facts.imds_error
    assert imds_finding(facts, elapsed).cause_code == "imds_unreachable"


def test_connection_refused_is_unreachable() -> None:
    settings = ImdsSettings(endpoint=f"http://127.0.0.1:{closed_port()}", **FAST)
    start = time.monotonic()
    facts = gather_facts(settings, {})
    elapsed = time.monotonic() - start
    assert facts.imds_state == "unreachable" and facts.imds_cause_code == "imds_unreachable"
    assert "refused" in facts.imds_error.lower()
    assert elapsed < 1.0
    finding = imds_finding(facts, elapsed)
    assert finding.status == Status.CRITICAL and finding.cause_code == "imds_unreachable"
    assert "refused" in (finding.cause or "").lower()


class _NotHttp:
    """A TCP listener on loopback that answers every connection with bytes that are not HTTP
    (another service squatting on the address, a broken middlebox)."""

    def __init__(self, answer: bytes) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.endpoint = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.answer, self.connections, self._stop = answer, 0, threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                self.connections += 1
                conn.settimeout(1.0)
                try:
                    conn.recv(4096)
                    self._answer(conn)
                except OSError:
                    pass

    def _answer(self, conn: socket.socket) -> None:
        conn.sendall(self.answer)

    def close(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.mark.parametrize("answer", [b"SSH-2.0-OpenSSH_9.2\r\n", b"\x00\xff garbage \x01\x02\r\n\r\n"])
def test_an_answer_that_is_not_http_is_a_bad_answer(answer: bytes) -> None:
    squatter = _NotHttp(answer)
    try:
        start = time.monotonic()
        facts = gather_facts(ImdsSettings(endpoint=squatter.endpoint, **FAST), {})
        elapsed = time.monotonic() - start
    finally:
        squatter.close()
    assert facts.imds_state == "error" and facts.imds_cause_code == "imds_bad_answer", facts.imds_error
    assert "PUT /latest/api/token: the answer is not HTTP" in facts.imds_error
    assert squatter.connections == 1  # not retried: the same squatter would answer the same
    assert elapsed < 1.0
    assert imds_finding(facts, elapsed).cause_code == "imds_bad_answer"


class _Trickle(_NotHttp):
    """Answers with a valid-looking HTTP head, one byte every 20 ms: each byte arrives well
    within the read timeout, so only an overall deadline can end the wait."""

    def __init__(self, answer: bytes) -> None:
        self.sent = 0
        super().__init__(answer)

    def _answer(self, conn: socket.socket) -> None:
        for i in range(len(self.answer)):
            if self._stop.wait(0.02):
                return
            conn.sendall(self.answer[i:i + 1])
            self.sent += 1


@pytest.mark.parametrize("where", ["status line", "headers", "body"])
def test_a_trickling_answer_cannot_stretch_the_budget(where: str) -> None:
    head = b"HTTP/1.1 200 OK\r\n"
    answer = {"status line": b"HTTP/1.1 200 " + b"O" * 500 + b"\r\n",
              "headers": head + b"X-Slow: " + b"x" * 500 + b"\r\n\r\n",
              "body": head + b"Content-Length: 600\r\n\r\n" + b"t" * 600}[where]
    server = _Trickle(answer)
    try:
        facts = gather_facts(ImdsSettings(endpoint=server.endpoint, **FAST), {}, budget_s=1.0)
        sent = server.sent
    finally:
        server.close()
    assert facts.imds_state == "timeout", (facts.imds_state, facts.imds_error)
    assert sent < len(answer) // 2  # it gave up long before the answer was complete (~10 s of bytes)


def test_proxy_environment_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    # IMDS is link-local: HTTP_PROXY must never capture it (the proxy here does not exist)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with ImdsServer("ok") as srv:
        facts, _ = _gather(srv)
    assert facts.imds_state == "ok", facts.imds_error


@pytest.mark.parametrize("mode", ["ok", "token_expiry", "echo_token", "garbage"])
def test_token_never_logged_or_in_evidence(mode: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # urllib3's and ours
    with ImdsServer(mode) as srv:
        facts, elapsed = _gather(srv)
        tokens = list(srv.tokens)
    assert tokens
    finding = imds_finding(facts, elapsed)
    dumped = json.dumps(finding.to_dict()) + json.dumps(facts.to_dict()) + caplog.text
    for token in tokens:
        assert token not in dumped
    if mode == "echo_token":  # the server echoed the token into an answer: redacted in the error
        assert facts.imds_state == "error" and "<redacted>" in facts.imds_error


def test_overrides_win_and_are_marked() -> None:
    overrides = {"region": "eu-west-1", "vpc_cidrs": ["10.0.0.0/16"], "public_ipv4": None}
    with ImdsServer("public_ip") as srv:
        facts, _ = _gather(srv, overrides)
        asked = {s.path for s in srv.gets()}
    assert facts.imds_state == "ok"
    assert facts.region == "eu-west-1" and facts.sources["region"] == "config"
    assert facts.public_ipv4 is None and facts.sources["public_ipv4"] == "config"  # beats IMDS's address
    assert facts.vpc_cidrs == ("10.0.0.0/16",) and facts.sources["vpc_cidrs"] == "config"
    assert facts.vpc_cidr == "10.0.0.0/16" and facts.sources["vpc_cidr"] == "config"
    assert facts.instance_id == "i-0123456789abcdef0" and facts.sources["instance_id"] == "imds"
    assert "/latest/meta-data/placement/region" not in asked and "/latest/meta-data/public-ipv4" not in asked
    finding = imds_finding(facts, 0.01)
    assert finding.status == Status.OK and "region" in finding.evidence["sources"]["config"]


def test_all_needed_facts_overridden_contacts_nothing() -> None:
    with ImdsServer("ok") as srv:
        facts, _ = _gather(srv, ALL_FACTS)
        assert srv.seen == []
    assert facts.imds_state == "skipped" and facts.imds_cause_code is None
    assert facts.partition == "aws" and facts.domain == "amazonaws.com"  # derived from the region
    assert facts.vpc_cidrs == ("10.0.0.0/16",)
    finding = imds_finding(facts, 0.0)
    assert finding.status == Status.OK and finding.summary.startswith("IMDS not used")


def test_imds_disabled_in_config_contacts_nothing() -> None:
    with ImdsServer("ok") as srv:
        settings = ImdsSettings(enabled=False, endpoint=srv.endpoint)
        facts = gather_facts(settings, ALL_FACTS)
        partial = gather_facts(settings, {"region": "us-east-1"})
        assert srv.seen == []
    assert facts.imds_state == "skipped"
    finding = imds_finding(facts, 0.0)
    assert finding.status == Status.OK and finding.summary.startswith("IMDS not used: facts from the config")
    # disabled in the config with facts unset: still OK (a choice), but the summary says what is unset;
    # the checks that need those facts report missing_fact themselves
    partial_finding = imds_finding(partial, 0.0)
    assert partial_finding.status == Status.OK and partial_finding.cause_code is None
    assert "vpc_cidr" in partial_finding.evidence["missing"] and "not set: " in partial_finding.summary


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_endpoint() -> None:
    with ImdsServer("ok", host="::1") as srv:
        assert srv.endpoint.startswith("http://[::1]:")
        facts, _ = _gather(srv)
    assert facts.imds_state == "ok" and facts.region == "us-east-1"


# --- a blackholed IMDS: the real address 169.254.169.254, default settings, in a namespace -----------
@pytest.fixture
def blackhole_netns() -> Iterator[str]:
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("nft"):
        pytest.skip("needs root, iproute2 and nftables")
    name = f"vdt-imds-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=10)
    try:
        for cmd in (["ip", "-n", name, "link", "set", "lo", "up"],
                    ["ip", "-n", name, "addr", "add", "169.254.169.254/32", "dev", "lo"]):
            subprocess.run(cmd, check=True, capture_output=True, timeout=10)
        # Drop on input, not output: the SYN vanishes silently (a timeout, as when IMDS is
        # firewalled), instead of connect() failing at once with EPERM.
        rules = ("table inet vdt {\n chain input {\n  type filter hook input priority 0; policy accept;\n"
                 "  ip daddr 169.254.169.254 drop\n }\n}\n")
        subprocess.run(["ip", "netns", "exec", name, "nft", "-f", "-"], input=rules.encode(), check=True,
                       capture_output=True, timeout=10)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def test_blackholed_imds_returns_within_3_seconds(blackhole_netns: str) -> None:
    code = textwrap.dedent("""
        import json, time
        from vpce_doctor.config import ImdsSettings
        from vpce_doctor.imds import gather_facts
        start = time.monotonic()
        facts = gather_facts(ImdsSettings(), {})  # the defaults: http://169.254.169.254, budget 2.5 s
        print(json.dumps({"elapsed": time.monotonic() - start, "state": facts.imds_state,
                          "cause": facts.imds_cause_code, "error": facts.imds_error}))
    """)
    proc = subprocess.run(["ip", "netns", "exec", blackhole_netns, sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["state"] == "timeout" and result["cause"] == "imds_hop_limit", result
    assert result["elapsed"] < 3.0


# --- the daemon remembers what cannot change ------------------------------------------------------------
@pytest.fixture
def remembering() -> Iterator[None]:
    remember_static_facts(True)
    try:
        yield
    finally:
        remember_static_facts(False)


def test_static_facts_are_asked_once_the_rest_every_time(remembering: None) -> None:
    with ImdsServer("ok") as srv:
        first, _ = _gather(srv)
        asked_first = {s.path for s in srv.gets()}
        before = len(srv.gets())
        second, _ = _gather(srv)
        asked_second = [s.path for s in srv.gets()[before:]]
        puts = len(srv.puts())
    assert first == second and second.imds_state == "ok"
    assert puts == 2  # the token PUT, which proves IMDS answers, every time
    assert len(asked_second) < len(asked_first)
    again = {p.rsplit("/meta-data/", 1)[-1] for p in asked_second}
    mac_paths = {p.replace(MAC, "{mac}") for p in again}
    # The role's credentials too: the SSM agent gets fresh ones from IMDS, so they are asked each time.
    assert mac_paths == {"public-ipv4", "iam/info", "network/interfaces/macs/{mac}/vpc-ipv4-cidr-blocks",
                         "network/interfaces/macs/{mac}/security-group-ids", "iam/security-credentials/",
                         # IPv6 addresses and CIDRs can be assigned while the instance runs (agent/imds6.py)
                         "network/interfaces/macs/{mac}/ipv6s", "network/interfaces/macs/{mac}/vpc-ipv6-cidr-blocks",
                         "network/interfaces/macs/{mac}/subnet-ipv6-cidr-blocks"}, again


def test_changeable_facts_follow_imds(remembering: None) -> None:
    with ImdsServer("ok") as srv:
        first, _ = _gather(srv)
        srv.data["public-ipv4"] = "203.0.113.25"  # an Elastic IP gets associated
        srv.data.pop("iam/info")  # the instance profile gets detached
        srv.data[f"network/interfaces/macs/{MAC}/vpc-ipv4-cidr-blocks"] = "10.0.0.0/16\n100.64.0.0/16"
        second, _ = _gather(srv)
    assert first.public_ipv4 is None and second.public_ipv4 == "203.0.113.25"
    assert first.instance_profile_arn and second.instance_profile_arn is None
    assert second.vpc_cidrs == ("10.0.0.0/16", "100.64.0.0/16")
    assert (second.region, second.vpc_id, second.subnet_cidr) == (first.region, first.vpc_id, first.subnet_cidr)


def test_a_failing_imds_is_reported_even_with_remembered_facts(remembering: None) -> None:
    with ImdsServer("ok") as srv:
        _gather(srv)
        endpoint = srv.endpoint
    # The same endpoint, now refusing connections: the token PUT fails, nothing is filled in.
    facts = gather_facts(ImdsSettings(endpoint=endpoint, **FAST), {})
    assert facts.imds_state == "unreachable" and facts.region is None and facts.vpc_id is None


def test_remembering_is_off_by_default() -> None:
    with ImdsServer("ok") as srv:
        _gather(srv)
        n = len(srv.gets())
        _gather(srv)
        assert len(srv.gets()) == 2 * n
