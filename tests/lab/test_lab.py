"""Tests of the lab itself: the network it builds behaves as docs/lab-contract.md says.

The lab tests need root, ip, nft and dnsmasq (skipped otherwise, with the reason); the scenario and
ruleset tests run anywhere. The AWS layer is the real one when it is there (VPCE_LAB_TEST_AWS=stub
to test the network alone).
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, List

import pytest

from tests.lab import firewall, lab as labmod
from tests.lab.processes import LabError, REPO_ROOT, netns_socket, tcp_connect
from tests.lab.scenario import ScenarioError, load, parse
from tests.lab.world import build

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
AWS = os.environ.get("VPCE_LAB_TEST_AWS") or (
    "real" if (REPO_ROOT / "tests" / "lab" / "aws" / "__main__.py").exists() else "stub")


def _why_not() -> str:
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, nftables)"
    missing = [t for t in labmod.REQUIRED_TOOLS if shutil.which(t) is None]
    return f"missing tools: {', '.join(missing)}" if missing else ""


needs_lab = pytest.mark.skipif(bool(_why_not()), reason=_why_not() or "lab available")


# --- scenarios and rules (no root needed) ------------------------------------------------------

def test_every_shipped_scenario_loads() -> None:
    files = sorted(SCENARIOS.glob("*.yaml"))
    assert len(files) >= 18
    for path in files:
        sc = load(path)
        assert sc.name == path.stem and sc.description, path


@pytest.mark.parametrize("data, message", [
    ({"endpoint": {}}, "x.yaml:endpoint: unknown key"),
    ({"vpc": {"enable_dns_support": "no"}}, "x.yaml:vpc.enable_dns_support: expected true or false, got 'no'"),
    ({"endpoints": {"ssm": {"azs": ["x"]}}}, "x.yaml:endpoints.ssm.azs: expected a list of distinct AZ letters"),
    ({"internet": "yes"}, "x.yaml:internet: expected one of none, igw, nat, got 'yes'"),
    ({"etc_hosts": {"ssm.us-east-1.amazonaws.com": "8.8.4.4"}}, "outside the lab's ranges"),
    ({"stale_answers": {"nosuch": ["10.0.1.150"]}}, "x.yaml:stale_answers.nosuch: not an interface endpoint"),
    ({"expect": {"findings": {"dns.ssm": {"status": "BAD"}}}}, "x.yaml:expect.findings.dns.ssm.status: expected one of OK"),
    ({"expect": {"findings": {"dns.ssm": {"resource_type": "vpce"}}}},
     "x.yaml:expect.findings.dns.ssm.resource_type: expected one of endpoint-eni, endpoint"),
])
def test_scenario_errors_are_one_line_with_the_key(data: dict, message: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse(data, "x.yaml")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_verify_compares_the_resource_type() -> None:
    from tests.lab.verify import AgentRun, compare

    expect = parse({"expect": {"findings": {"reach.ssm": {"resource_type": ["security-group", "endpoint"]}}}},
                   "x.yaml").expect
    report = {"findings": [{"id": "reach.ssm", "status": "CRITICAL",
                            "resource": {"type": "endpoint-eni", "id": "vpc-0a1b2c3d/ssm/10.0.1.101", "name": ""}}]}
    run = AgentRun([], 2, json.dumps(report), "", 1.0)
    assert compare(expect, run) == ["reach.ssm resource.type endpoint-eni != security-group|endpoint"]
    report["findings"][0]["resource"]["type"] = "endpoint"
    assert compare(expect, AgentRun([], 2, json.dumps(report), "", 1.0)) == []


def test_ruleset_models_security_groups_and_routes() -> None:
    healthy = firewall.ruleset(build(parse({}), "t"))
    assert "198.51.100.0/28 accept" in healthy and "203.0.113.0/24" not in healthy
    assert "tcp dport 443 drop" not in healthy
    broken = firewall.ruleset(build(parse({"endpoint_sg_inbound_443": False, "internet": "igw",
                                           "s3": {"route": False}, "vpc": {"enable_dns_support": False}}), "t"))
    assert "ip daddr { 10.0.1.101, 10.0.2.101, 10.0.1.102" in broken and "tcp dport 443 drop" in broken
    assert "198.51.100.0/28 accept" not in broken and "203.0.113.0/24 } accept" in broken
    assert "th dport 53 drop" in broken


NACL_B = {"b": {"inbound": [{"rule": 100, "protocol": "tcp", "ports": 443, "cidr": "10.0.0.0/16", "action": "allow"}],
               "outbound": [{"rule": 100, "protocol": "tcp", "ports": 443, "cidr": "10.0.0.0/16"}]}}


def test_ruleset_models_stateless_nacls_both_ways() -> None:
    text = firewall.ruleset(build(parse({"nacls": NACL_B}), "t"))
    # from the instance: subnet b's inbound, before the conntrack accept (stateless)
    assert text.index("ip daddr 10.0.2.0/24 jump nacl_b_in") < text.index("ct state established,related accept")
    # toward the instance: subnet b's outbound judges the replies (to ephemeral ports)
    assert "hook output" in text and "ip saddr 10.0.2.0/24 jump nacl_b_out" in text
    assert 'ip daddr 10.0.0.0/16 tcp dport 443 return comment "rule 100 allow"' in text
    assert text.index("chain nacl_b_out") < text.index("chain from_instance")  # defined before any jump
    assert "nacl_a" not in text  # the instance's subnet keeps the default NACL
    assert "hook output" not in firewall.ruleset(build(parse({}), "t"))


@pytest.mark.parametrize("nacls, message", [
    ({"d": {}}, "x.yaml:nacls.d: expected a subnet letter"),
    ({"b": {"inbound": [{"rule": 0, "protocol": "tcp", "ports": 443}]}}, "nacls.b.inbound[0].rule: expected a rule"),
    ({"b": {"inbound": [{"rule": 1, "protocol": "tcp"}]}}, "nacls.b.inbound[0].ports: expected a port"),
    ({"b": {"inbound": [{"rule": 1, "protocol": "all"}, {"rule": 1, "protocol": "all"}]}}, "rule numbers must be unique"),
])
def test_nacl_errors_are_one_line(nacls: dict, message: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse({"nacls": nacls}, "x.yaml")
    assert message in str(err.value) and "\n" not in str(err.value)


# --- the lab ---------------------------------------------------------------------------------------

def _dns(lab: labmod.Lab, name: str, rdtype: str = "A", server: str = "10.0.0.2") -> tuple:
    import dns.message
    import dns.query
    import dns.rcode

    sock = netns_socket(lab.names.instance_ns, kind=socket.SOCK_DGRAM)
    sock.setblocking(False)
    with sock:
        reply = dns.query.udp(dns.message.make_query(name, rdtype), server, timeout=2, sock=sock)
    return dns.rcode.to_text(reply.rcode()), sorted(r.to_text() for rrset in reply.answer for r in rrset)


def _connect_result(lab: labmod.Lab, ip: str, port: int = 443, timeout: float = 0.5) -> str:
    try:
        tcp_connect(lab.names.instance_ns, ip, port, timeout).close()
        return "connected"
    except socket.timeout:
        return "timeout"
    except ConnectionRefusedError:
        return "refused"


def _imds(lab: labmod.Lab, method: str, path: str, headers: dict) -> tuple:
    conn = http.client.HTTPConnection("169.254.169.254", 80, timeout=2)
    conn.sock = tcp_connect(lab.names.instance_ns, "169.254.169.254", 80, 2)
    conn.request(method, path, headers=headers)
    resp = conn.getresponse()
    body = resp.read().decode()
    conn.close()
    return resp.status, body


def _lab_pids(lab: labmod.Lab) -> List[int]:
    pids = [int(p.read_text().split()[0]) for p in (lab.state_dir / "pids").glob("*.pid")]
    for ns in lab.names.namespaces:
        out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
        pids += [int(p) for p in out.split()]
    return sorted(set(pids))


@pytest.fixture(scope="module")
def healthy() -> Iterator[labmod.Lab]:
    lab = labmod.up(SCENARIOS / "healthy.yaml", "t-healthy", aws=AWS)
    try:
        yield lab
    finally:
        labmod.down("t-healthy")


@pytest.fixture(scope="module")
def exposed() -> Iterator[labmod.Lab]:
    """Endpoint SG without 443, an IGW, a stale answer and an /etc/hosts pin, in one lab."""
    sc = parse({"endpoint_sg_inbound_443": False, "internet": "igw",
                "stale_answers": {"ssmmessages": ["10.0.1.150"]},
                "etc_hosts": {"ssm.us-east-1.amazonaws.com": "10.0.2.101"}}, "exposed.yaml", "exposed")
    lab = labmod.up(sc, "t-exposed", aws=AWS)
    try:
        yield lab
    finally:
        labmod.down("t-exposed")


@needs_lab
def test_dns_answers_as_the_contract_says(healthy: labmod.Lab) -> None:
    assert _dns(healthy, "ssm.us-east-1.amazonaws.com") == ("NOERROR", ["10.0.1.101", "10.0.2.101"])
    assert _dns(healthy, "ssmmessages.us-east-1.amazonaws.com") == ("NOERROR", ["10.0.1.103", "10.0.2.103"])
    assert _dns(healthy, "ssm.us-east-1.amazonaws.com", "AAAA") == ("NOERROR", [])
    assert _dns(healthy, "ssm.us-east-1.amazonaws.com", server="169.254.169.253")[1] == ["10.0.1.101", "10.0.2.101"]
    # No ec2 endpoint: the public name still resolves, to its public address.
    assert _dns(healthy, "ec2.us-east-1.amazonaws.com") == ("NOERROR", ["198.51.100.67"])
    assert _dns(healthy, "vpce-lab-bucket.s3.us-east-1.amazonaws.com") == (
        "NOERROR", ["198.51.100.10", "198.51.100.11"])
    assert _dns(healthy, "s3.amazonaws.com")[1] == ["198.51.100.10", "198.51.100.11"]
    assert _dns(healthy, "b.s3.us-west-2.amazonaws.com") == ("NOERROR", ["198.51.100.200"])
    assert _dns(healthy, "s3.us-east-1.amazonaws.com", "AAAA") == ("NOERROR", [])
    assert _dns(healthy, "www.google.com") == ("NOERROR", ["203.0.113.10"])
    assert _dns(healthy, "nosuch.example.com") == ("NXDOMAIN", [])


@needs_lab
def test_routes_of_the_healthy_lab(healthy: labmod.Lab) -> None:
    assert _connect_result(healthy, "10.0.2.101") == "connected"  # ENI in the other AZ
    assert _connect_result(healthy, "198.51.100.10") == "connected"  # S3 through the gateway endpoint
    assert _connect_result(healthy, "198.51.100.64") == "timeout"  # ssm's public address: no IGW
    assert _connect_result(healthy, "203.0.113.10") == "timeout"  # google.com: no IGW


@needs_lab
def test_imds_token_flow(healthy: labmod.Lab) -> None:
    assert _imds(healthy, "GET", "/latest/meta-data/instance-id", {})[0] == 401
    assert _imds(healthy, "PUT", "/latest/api/token", {})[0] == 400  # the TTL header is required
    assert _imds(healthy, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "21601"})[0] == 400
    status, token = _imds(healthy, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    assert status == 200 and token
    auth = {"X-aws-ec2-metadata-token": token}
    ids = json.loads((healthy.state_dir / "aws-ids.json").read_text())
    assert _imds(healthy, "GET", "/latest/meta-data/instance-id", auth) == (200, ids["instance_id"])
    assert _imds(healthy, "GET", "/latest/meta-data/placement/region", auth) == (200, "us-east-1")
    assert _imds(healthy, "GET", "/latest/meta-data/public-ipv4", auth)[0] == 404
    mac = _imds(healthy, "GET", "/latest/meta-data/mac", auth)[1]
    assert _imds(healthy, "GET", f"/latest/meta-data/network/interfaces/macs/{mac}/vpc-id", auth) == (200, ids["vpc_id"])
    role = _imds(healthy, "GET", "/latest/meta-data/iam/security-credentials/", auth)[1]
    creds = json.loads(_imds(healthy, "GET", f"/latest/meta-data/iam/security-credentials/{role}", auth)[1])
    assert creds["AccessKeyId"] == ids["credentials"]["AccessKeyId"] and creds["Code"] == "Success"


@needs_lab
def test_exec_gives_the_instance_view(healthy: labmod.Lab) -> None:
    code = ("import os, socket, psutil; "
            "print([l.split()[1] for l in open('/etc/resolv.conf') if l.startswith('nameserver')]); "
            "print(socket.gethostbyname('ssm.us-east-1.amazonaws.com')); "
            "print(sorted(k for k in os.environ if k.startswith('AWS_'))); "
            "print([p.name() for p in psutil.process_iter() if 'ssm' in p.name()])")
    out = subprocess.run([sys.executable, "-m", "tests.lab", "exec", "--name", "t-healthy", "--", "python", "-c",
                          code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "['10.0.0.2']"
    assert lines[1] in ("10.0.1.101", "10.0.2.101")
    assert lines[2] == "['AWS_CA_BUNDLE', 'AWS_CONFIG_FILE', 'AWS_SHARED_CREDENTIALS_FILE']"
    assert "amazon-ssm-agent" in lines[3]


@needs_lab
def test_drops_time_out_and_the_igw_opens_the_internet(exposed: labmod.Lab) -> None:
    started = time.monotonic()
    assert _connect_result(exposed, "10.0.1.101", timeout=0.5) == "timeout"  # endpoint SG: no 443
    assert time.monotonic() - started < 1.5
    assert _connect_result(exposed, "203.0.113.10") == "connected"  # google.com via the IGW
    assert _connect_result(exposed, "198.51.100.64") == "connected"  # ssm's public address too
    assert _connect_result(exposed, "10.0.1.150") == "refused"  # the stale answer: nothing listens
    assert _dns(exposed, "ssmmessages.us-east-1.amazonaws.com") == ("NOERROR", ["10.0.1.150"])
    hosts = (Path("/etc/netns") / exposed.names.instance_ns / "hosts").read_text()
    assert "10.0.2.101 ssm.us-east-1.amazonaws.com" in hosts


@needs_lab
def test_down_leaves_nothing() -> None:
    lab = labmod.up(SCENARIOS / "healthy.yaml", "t-down", aws="stub")
    pids = _lab_pids(lab)
    assert len(pids) >= 5  # aws, dnsmasq, internet, imds, amazon-ssm-agent
    started = time.monotonic()
    assert labmod.down("t-down") is True
    assert time.monotonic() - started < 2.0
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "vdl-t-down-" not in listed
    assert not lab.state_dir.exists() and not (Path("/etc/netns") / lab.names.instance_ns).exists()
    assert [p for p in pids if Path(f"/proc/{p}").exists()] == []
    assert labmod.down("t-down") is False  # idempotent


@needs_lab
def test_a_failing_up_removes_what_it_built(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_wait(*_args: object) -> None:
        raise LabError("injected failure")

    monkeypatch.setattr(labmod.dns, "wait", broken_wait)
    with pytest.raises(LabError, match="injected failure"):
        labmod.up(SCENARIOS / "healthy.yaml", "t-fail", aws="stub")
    assert not Path("/run/netns/vdl-t-fail-v").exists() and not Path("/run/vpce-lab/t-fail").exists()


@needs_lab
def test_ctrl_c_during_up_cleans_up() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "tests.lab", "up", "healthy", "--name", "t-int", "--aws", AWS],
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while not (Path("/run/vpce-lab/t-int/logs/aws.log").exists()) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    labmod.down("t-int")  # in case the up finished before the signal arrived
    assert proc.returncode in (0, 130), err
    if proc.returncode == 130:
        assert "interrupted" in err
    assert not Path("/run/netns/vdl-t-int-v").exists() and not Path("/run/vpce-lab/t-int").exists()
