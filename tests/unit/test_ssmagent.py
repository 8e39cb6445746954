"""ssm_agent against real processes: a child that names itself like the agent (/proc/self/comm,
cut to 15 chars as the kernel does) and holds a real TCP connection to a loopback listener on port
443; the agent's evidence findings (ssm_agent.*) against real files in tmp dirs."""
from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
from typing import Iterator, Optional

import pytest

from vpce_doctor.checks import ssmagent
from vpce_doctor.checks.model import Facts, Settings, Status

try:
    from tests.unit.moto_fixture import by_id, dump, run_check
except ImportError:  # tests/unit on sys.path
    from moto_fixture import by_id, dump, run_check  # type: ignore


def check(cid: str, settings: Settings = Settings()):
    return by_id(ssmagent.checks(settings))[cid]


def finding(cid: str, facts: Facts, settings: Settings = Settings()):
    return run_check(check(cid, settings), facts, settings).findings[0]


# --- ssm_agent: real processes ------------------------------------------------------------------------

CHILD = r"""
import socket, sys
with open("/proc/self/comm", "w") as fh:
    fh.write(sys.argv[1])
conn = socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=5) if sys.argv[2] != "-" else None
print("ready", flush=True)
sys.stdin.read()  # until the test closes our stdin
"""


class Agent:
    """A child process named ``comm`` (optionally connected to ip:port), ready when constructed."""

    def __init__(self, comm: str, ip: str = "-", port: int = 0, extra_arg: Optional[str] = None) -> None:
        args = [sys.executable, "-c", CHILD, comm, ip, str(port)] + ([extra_arg] if extra_arg else [])
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        ready, _, _ = select.select([self.proc.stdout], [], [], 10)
        assert ready and self.proc.stdout.readline().strip() == b"ready", "child did not start"

    def stop(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=5)
        self.proc.stdout.close()


@pytest.fixture
def listener_443() -> Iterator[str]:
    """TCP 443 on a loopback address of our own (127.0.0.0/8 is all local on Linux)."""
    if os.geteuid() != 0:
        pytest.skip("binding port 443 needs root")
    ip = f"127.77.{os.getpid() % 250}.1"
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((ip, 443))
    srv.listen(8)  # the kernel completes the handshake: the child's connection is ESTABLISHED
    try:
        yield ip
    finally:
        srv.close()


@pytest.fixture(autouse=True)
def no_real_agent():
    if ssmagent.find_agents():
        pytest.skip("a real SSM agent runs on this machine")


LOOPBACK_VPC = Facts(region="us-east-1", vpc_cidrs=("127.0.0.0/8",), imds_state="ok")


def test_agent_connected_to_vpc_address(listener_443):
    agent = Agent("amazon-ssm-agent", listener_443, 443)  # the kernel cuts it to "amazon-ssm-agen"
    try:
        f = finding("ssm_agent", LOOPBACK_VPC)
    finally:
        agent.stop()
    assert f.status == Status.OK, f.summary
    assert agent.proc.pid in f.evidence["pids"] and f.evidence["endpoint_connections"] == [f"{listener_443}:443"]
    assert f.evidence["processes"][0]["name"] == "amazon-ssm-agen"
    dump(f.evidence)


def test_worker_name_counts_too(listener_443):
    agent = Agent("ssm-agent-worker", listener_443, 443)
    try:
        f = finding("ssm_agent", LOOPBACK_VPC)
    finally:
        agent.stop()
    assert f.status == Status.OK and f.evidence["processes"][0]["name"] == "ssm-agent-worke"


def test_agent_without_connection_warns():
    agent = Agent("amazon-ssm-agent")
    try:
        f = finding("ssm_agent", LOOPBACK_VPC)
    finally:
        agent.stop()
    assert f.status == Status.WARNING and f.cause_code == "ssm_agent_not_connected"
    assert "TCP 443 to the ssm/ec2messages/ssmmessages ENIs" in f.cause and "restart amazon-ssm-agent" in f.fix


def test_agent_without_connection_and_failing_endpoints_blames_the_network():
    """Our own probe of ssm failed: a restart would not help, the network must be fixed first."""
    agent = Agent("amazon-ssm-agent")
    try:
        out = run_check(check("ssm_agent", Settings()), LOOPBACK_VPC, Settings(),
                        data={"reach.ssm": None, "reach.ec2messages": {"ok_ips": ["127.0.0.9"]}})
    finally:
        agent.stop()
    f = out.findings[0]
    assert f.status == Status.WARNING and f.cause_code == "ssm_agent_endpoints_failing"
    assert "reach.ssm" in f.cause and f.evidence["endpoints_failing"] == ["reach.ssm"]


def test_a_held_connection_is_not_ok_when_the_path_fails_now(listener_443):
    """Issue 14: ssm_agent was OK (old connections) while dns.ssm was CRITICAL."""
    agent = Agent("amazon-ssm-agent", listener_443, 443)
    try:
        out = run_check(check("ssm_agent", Settings()), LOOPBACK_VPC, Settings(),
                        data={"reach.ssm": None, "reach.ec2messages": {"ok_ips": ["127.0.0.9"]}})  # blocked by dns.ssm
    finally:
        agent.stop()
    f = out.findings[0]
    assert f.status == Status.WARNING and f.cause_code == "ssm_agent_connected_path_failing"
    assert "new connections would fail (reach.ssm failed)" in f.summary and "reach.ssm" in f.fix


def test_agent_connected_outside_the_vpc_warns(listener_443):
    agent = Agent("amazon-ssm-agent", listener_443, 443)
    try:
        f = finding("ssm_agent", Facts(region="us-east-1", vpc_cidrs=("10.0.0.0/16",), imds_state="ok"))
    finally:
        agent.stop()
    assert f.status == Status.WARNING and f.cause_code == "ssm_agent_not_connected"
    assert f.evidence["other_443_connections"] == [f"{listener_443}:443"]


def test_agent_not_running_is_critical():
    # A process that merely mentions the agent in its arguments is not the agent.
    bystander = Agent("vdt-bystander", extra_arg="amazon-ssm-agent")
    try:
        f = finding("ssm_agent", LOOPBACK_VPC)
    finally:
        bystander.stop()
    assert f.status == Status.CRITICAL and f.cause_code == "ssm_agent_not_running"
    assert "systemctl enable --now amazon-ssm-agent" in f.fix


def test_agent_check_can_be_disabled():
    settings = Settings(check_ssm_agent=False)
    f = finding("ssm_agent", LOOPBACK_VPC, settings)
    assert f.status == Status.OK and f.summary.startswith("not checked")


@pytest.mark.parametrize("name,cmdline,expected", [
    ("amazon-ssm-agen", [], True), ("amazon-ssm-agent", [], True), ("ssm-agent-worke", [], True),
    ("python3", ["/usr/bin/amazon-ssm-agent"], True), ("grep", ["grep", "amazon-ssm-agent"], False),
    ("ssm-session-wor", ["/usr/bin/ssm-session-worker"], False),
])
def test_is_agent(name, cmdline, expected):
    assert ssmagent.is_agent(name, cmdline) is expected


def test_agent_without_connection_and_aws_refusing_blames_the_refusal():
    """auth.ssm failed (AccessDenied): the agent backs off because of it; no restart advice."""
    agent = Agent("amazon-ssm-agent")
    try:
        out = run_check(check("ssm_agent", Settings()), LOOPBACK_VPC, Settings(),
                        data={"auth.ssm": None, "reach.ssm": {"ok_ips": ["127.0.0.9"]}})
    finally:
        agent.stop()
    f = out.findings[0]
    assert f.status == Status.WARNING and f.cause_code == "ssm_agent_not_accepted"
    assert "auth.ssm" in f.cause and f.evidence["not_accepted"] == ["auth.ssm"]
