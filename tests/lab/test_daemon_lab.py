"""``vpce-doctor daemon`` in the lab, against the lab's SSM and CloudWatch (moto behind TLS).

The daemon runs inside the instance namespace with every publisher on; faults are switched on and
off in the running lab (tests/lab/live.py) and must show up — and clear — on the next cycle in SSM
inventory (read back with GetInventory/ListInventoryEntries from the instance, with its IMDS
credentials and the lab CA), the SSM agent's inventory file, CloudWatch (ListMetrics,
GetMetricData), ``/metrics``, ``/healthz`` and the last report.

Synchronisation is the daemon's own JSON log: one ``"event": "cycle"`` line per cycle, written
after every publisher of that cycle returned. A fault switched on while cycle N+1 may be running
must show in cycle N+2, the first one that surely started after the switch. No sleeps: every wait
polls with a deadline. Needs root, ip, nft, dnsmasq and the AWS layer (skipped otherwise).
Everything stays inside the lab's namespaces, the instance's loopback and a temp dir (the
inventory root is never the host's /var/lib/amazon/ssm).
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
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Set, Tuple

import pytest
import yaml

from tests.lab import lab as labmod, live
from tests.lab.processes import REPO_ROOT, LabError, netns_socket, tcp_connect

LAB = "dmnlab"
SCENARIO = Path(__file__).resolve().parent / "scenarios" / "healthy-monitoring.yaml"
TYPE = "Custom:VpceDoctor"
VERDICT_TYPE = TYPE + "Verdict"
NAMESPACE = "VpceDoctorLab"
CYCLE_TIMEOUT_S = 20.0  # a cycle here takes ~1-4 s (egress 0.5 s, EC2 API connect 0.5 s, publishers)
FAULT = {"endpoints.ssmmessages.unreachable_azs": "a,b"}
CLEAR = {"endpoints.ssmmessages.unreachable_azs": "none"}
SSM_BROKEN = {"endpoints.ssm.unreachable_azs": "a,b"}
SSM_FIXED = {"endpoints.ssm.unreachable_azs": "none"}


def _why_not() -> str:
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, nftables)"
    missing = [t for t in labmod.REQUIRED_TOOLS if shutil.which(t) is None]
    if missing:
        return f"missing tools: {', '.join(missing)}"
    if not (REPO_ROOT / "tests" / "lab" / "aws" / "__main__.py").exists():
        return "the lab's AWS layer (tests/lab/aws) is not there"
    return ""


pytestmark = pytest.mark.skipif(bool(_why_not()), reason=_why_not() or "lab available")


@pytest.fixture(scope="module")
def lab() -> Iterator[labmod.Lab]:
    built = labmod.up(SCENARIO, LAB)
    try:
        yield built
    finally:
        labmod.down(LAB)


# --- the daemon on the instance -------------------------------------------------------------------

def _free_port(netns: str) -> int:
    sock = netns_socket(netns)
    try:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
    finally:
        sock.close()


class Daemon:
    """``vpce-doctor daemon`` in the instance namespace; its JSON log lines are collected as they come."""

    def __init__(self, lab: labmod.Lab, workdir: Path, inventory_timeout_s: float = 2.0) -> None:
        self.lab = lab
        self.state_dir = workdir / "state"
        self.ssm_root = workdir / "ssm"  # stands in for /var/lib/amazon/ssm
        self.ssm_root.mkdir(parents=True)
        self.port = _free_port(lab.names.instance_ns)
        config = {
            "s3": {"bucket": "vpce-lab-bucket", "key": "hello.txt"},
            "egress": {"timeout_s": 0.5},
            # The lab's front closes idle connections after 30 s and the fake SSM agent reconnects
            # after 1 s, so ssm_agent reads WARNING in ~3% of cycles: not what these tests are about.
            "checks": {"ssm_agent": False},
            "daemon": {"interval_s": 1, "jitter_s": 0, "state_dir": str(self.state_dir), "log_format": "json"},
            "publish": {
                "publishers": ["last_report", "inventory", "inventory_file", "cloudwatch", "http"],
                "inventory": {"type_name": TYPE, "timeout_s": inventory_timeout_s},
                "inventory_file": {"root": str(self.ssm_root), "timeout_s": 2},
                "cloudwatch": {"namespace": NAMESPACE, "timeout_s": 2},
                "http": {"bind": "127.0.0.1", "port": self.port},
            },
        }
        self.config_path = workdir / "agent.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.lines: List[str] = []
        self.events: List[Dict[str, Any]] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            labmod.instance_argv(lab.names, ["vpce-doctor", "daemon", "--config", str(self.config_path)]),
            env=labmod.instance_env(lab.names), cwd=str(REPO_ROOT), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._readers = [threading.Thread(target=self._read, args=(s,), daemon=True)
                         for s in (self.proc.stdout, self.proc.stderr)]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                if isinstance(event, dict):
                    self.events.append(event)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def cycles(self) -> int:
        with self._cond:
            return max([e["cycle"] for e in self.events if e.get("event") == "cycle"], default=0)

    def log_tail(self, n: int = 8) -> str:
        with self._cond:
            return "\n".join(self.lines[-n:])

    def wait_cycle(self, n: int, timeout_s: float = CYCLE_TIMEOUT_S) -> Dict[str, Any]:
        """The log event of cycle ``n`` (all its publishers have returned by then)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                found = [e for e in self.events if e.get("event") == "cycle" and e.get("cycle") == n]
                if found:
                    return found[0]
                if self.proc.poll() is not None:
                    pytest.fail(f"the daemon exited ({self.proc.returncode}) before cycle {n}:\n{self.log_tail()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    pytest.fail(f"no cycle {n} within {timeout_s:g} s:\n{self.log_tail()}")
                self._cond.wait(min(remaining, 0.5))

    def next_full_cycle(self) -> Dict[str, Any]:
        """Waits for the first cycle that started after this call (the one in progress may not have)."""
        return self.wait_cycle(self.cycles + 2)

    def last_report(self) -> Dict[str, Any]:
        return json.loads((self.state_dir / "last-report.json").read_text())

    def inventory_file(self, instance_id: str, type_name: str = TYPE) -> Dict[str, Any]:
        stem = type_name.split(":", 1)[1]
        return json.loads((self.ssm_root / instance_id / "inventory" / "custom" / f"{stem}.json").read_text())

    def http_get(self, path: str) -> Tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        conn.sock = tcp_connect(self.lab.names.instance_ns, "127.0.0.1", self.port, 5)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        finally:
            conn.close()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=6)  # the daemon promises < 5 s
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        for reader in self._readers:
            reader.join(timeout=2)
        return self.proc.returncode


@pytest.fixture
def daemon(lab: labmod.Lab, tmp_path: Path) -> Iterator[Daemon]:
    run = Daemon(lab, tmp_path)
    try:
        yield run
    finally:
        run.stop()
        for knobs in (CLEAR, SSM_FIXED):  # leave the lab as built for the next test
            live.set(LAB, knobs)


def test_a_healthy_lab_with_every_publisher_logs_no_failure(lab: labmod.Lab) -> None:
    """Issue 14: at the default settings (the scenario's agent config, every publisher switched on),
    a healthy run publishes everywhere and logs no failure."""
    assert lab.agent_config is not None
    config = yaml.safe_load(lab.agent_config.read_text()) or {}
    config.setdefault("publish", {})["publishers"] = ["last_report", "inventory", "inventory_file", "cloudwatch", "http"]
    path = lab.state_dir / "every-publisher.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    proc = subprocess.run(labmod.instance_argv(lab.names, ["vpce-doctor", "daemon", "--once", "--config", str(path)]),
                          env=labmod.instance_env(lab.names), cwd=str(REPO_ROOT), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "fail" not in proc.stderr.lower(), proc.stderr[-2000:]
    assert "published: last_report ok, inventory ok, inventory_file ok, cloudwatch ok, http ok" in proc.stderr


# --- reading back from the lab's AWS, on the instance ---------------------------------------------

READBACK = r'''
import json, sys, time
from datetime import datetime, timedelta
import boto3
from botocore.config import Config

req = json.loads(sys.argv[1])
cfg = Config(retries={"max_attempts": 1}, connect_timeout=3, read_timeout=5)
ssm = boto3.client("ssm", region_name=req["region"], config=cfg)
cw = boto3.client("cloudwatch", region_name=req["region"], config=cfg)
iid, ns = req["instance_id"], req["namespace"]
out = {"entries": {}, "capture_time": {}}
for t in req["types"]:
    out["entries"][t], token = [], None
    while True:
        page = ssm.list_inventory_entries(InstanceId=iid, TypeName=t, MaxResults=50, **({"NextToken": token} if token else {}))
        out["entries"][t] += page["Entries"]
        out["capture_time"][t] = page.get("CaptureTime")
        token = page.get("NextToken")
        if not token:
            break

def get_inventory(filters, type_name):
    found, token = {}, None
    while True:
        page = ssm.get_inventory(Filters=filters, ResultAttributes=[{"TypeName": type_name}], **({"NextToken": token} if token else {}))
        for e in page["Entities"]:
            found[e["Id"]] = e["Data"][type_name]["Content"]
        token = page.get("NextToken")
        if not token:
            return found

out["get_inventory"] = get_inventory([{"Key": "AWS:InstanceInformation.InstanceId", "Values": [iid], "Type": "Equal"}], req["types"][0])
out["critical_instances"] = sorted(get_inventory([{"Key": req["types"][0] + ".Status", "Values": ["CRITICAL"], "Type": "Equal"}], req["types"][0]))
out["metrics"] = sorted(
    [m["MetricName"], sorted([d["Name"], d["Value"]] for d in m["Dimensions"])]
    for page in cw.get_paginator("list_metrics").paginate(Namespace=ns) for m in page["Metrics"])
at = datetime.strptime(req["at"], "%Y-%m-%dT%H:%M:%SZ")
vpc = req["vpc_id"]
series = ([("Healthy", [{"Name": "InstanceId", "Value": iid}])]
          + [("ServiceHealthy", [{"Name": "VpcId", "Value": vpc}, {"Name": "Service", "Value": s}]) for s in req["services"]]
          + [("VerdictWorks", [{"Name": "VpcId", "Value": vpc}, {"Name": "Verdict", "Value": v}]) for v in req["verdicts"]])
queries = [{"Id": "q%d" % i, "MetricStat": {"Metric": {"Namespace": ns, "MetricName": name, "Dimensions": dims},
            "Period": 1, "Stat": "Minimum"}} for i, (name, dims) in enumerate(series)]
deadline = time.monotonic() + 10  # the report may be a step ahead of its own PutMetricData
while True:
    res = cw.get_metric_data(MetricDataQueries=queries, StartTime=at, EndTime=at + timedelta(seconds=1))
    values = {r["Id"]: r["Values"] for r in res["MetricDataResults"]}
    if all(values.get(q["Id"]) for q in queries) or time.monotonic() > deadline:
        break
    time.sleep(0.2)
out["health_at"] = {name + ":" + dims[-1]["Value"]: (values.get("q%d" % i) or [None])[0]
                    for i, (name, dims) in enumerate(series)}
print(json.dumps(out))
'''


def readback(lab: labmod.Lab, report: Dict[str, Any]) -> Dict[str, Any]:
    """SSM inventory and CloudWatch as the lab's AWS holds them, for the cycle of ``report``."""
    request = {"region": report["facts"]["region"], "instance_id": report["facts"]["instance_id"],
               "namespace": NAMESPACE, "types": [TYPE, VERDICT_TYPE], "at": report["checked_at"],
               "vpc_id": report["facts"]["vpc_id"], "verdicts": sorted(report["verdicts"]),
               "services": sorted({f["id"][4:] for f in report["findings"] if f["id"].startswith("dns.")})}
    proc = subprocess.run(labmod.instance_argv(lab.names, [sys.executable, "-c", READBACK, json.dumps(request)]),
                          env=labmod.instance_env(lab.names), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.strip().splitlines()[-3:]
    return json.loads(proc.stdout)


# --- comparing ------------------------------------------------------------------------------------

def diagnosis(report: Dict[str, Any]) -> Set[Tuple[str, str]]:
    return {(f["id"], f["status"]) for f in report["findings"]}


def entries_diagnosis(entries: List[Dict[str, str]]) -> Set[Tuple[str, str]]:
    return {(e["CheckId"], e["Status"]) for e in entries}


def status_of(report: Dict[str, Any], check: str) -> str:
    return next(f["status"] for f in report["findings"] if f["id"] == check)


def metric_lines(text: str, name: str) -> Dict[str, float]:
    """``vpce_doctor_check_success{check="dns.ssm"} 1.0`` → {"dns.ssm": 1.0}."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line[len(name) + 1:].rsplit("} ", 1)
            check = dict(kv.split("=", 1) for kv in labels.split(",")).get("check", '""').strip('"')
            out[check] = float(value)
    return out


def assert_everywhere(daemon: Daemon, lab: labmod.Lab, cycle: Dict[str, Any], check: str, ok: bool) -> None:
    """``check`` is OK (or not) in the last report, SSM inventory (API and file), CloudWatch,
    /metrics and /healthz, and the inventory holds exactly the report's findings."""
    assert all(cycle["published"].values()), cycle["published"]
    report = daemon.last_report()
    assert (status_of(report, check) == "OK") is ok, (check, status_of(report, check))
    assert (report["status"] == "OK") is ok
    iid = report["facts"]["instance_id"]
    assert iid == json.loads((lab.state_dir / "aws-ids.json").read_text())["instance_id"]

    aws = readback(lab, report)
    # SSM inventory: exactly this cycle's findings, one entry each, the same attributes in every entry.
    entries = aws["entries"][TYPE]
    assert len(entries) == len(report["findings"])
    assert entries_diagnosis(entries) == diagnosis(report)
    assert entries_diagnosis(aws["get_inventory"][iid]) == diagnosis(report)
    assert len({tuple(sorted(e)) for e in entries}) == 1
    assert all(isinstance(json.loads(e["Evidence"]), dict) for e in entries)
    assert {e["Verdict"]: e["Status"] for e in aws["entries"][VERDICT_TYPE]} == {
        name: v["status"] for name, v in report["verdicts"].items()}
    assert aws["critical_instances"] == ([] if ok else [iid])
    # The SSM agent's custom inventory file: what customGatherer.go parses.
    doc = daemon.inventory_file(iid)
    assert set(doc) == {"SchemaVersion", "TypeName", "Content"}
    assert doc["SchemaVersion"] == "1.0" and doc["TypeName"] == TYPE and isinstance(doc["Content"], list)
    assert all(isinstance(e, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in e.items())
               for e in doc["Content"])
    assert entries_diagnosis(doc["Content"]) == diagnosis(report)
    assert daemon.inventory_file(iid, VERDICT_TYPE)["TypeName"] == VERDICT_TYPE
    # CloudWatch: a bounded set of series (per instance, per VPC verdict and service), this cycle's values.
    vpc, services = report["facts"]["vpc_id"], {f["id"][4:] for f in report["findings"] if f["id"].startswith("dns.")}
    names = {m[0] for m in aws["metrics"]}
    assert names <= {"Healthy", "VerdictWorks", "ServiceHealthy", "ConnectTime"}, names
    # (moto lists a metric once per datum: count distinct series)
    ours = {json.dumps(m) for m in aws["metrics"] if ["VpcId", vpc] in m[1] or ["InstanceId", iid] in m[1]}
    assert len(ours) <= 1 + 4 + 2 * len(services), ours
    assert aws["health_at"][f"Healthy:{iid}"] == (1.0 if ok else 0.0)
    service = check.split(".")[1]
    assert aws["health_at"][f"ServiceHealthy:{service}"] == (1.0 if ok else 0.0)
    assert {k: v for k, v in aws["health_at"].items() if k.startswith("VerdictWorks:")} == {
        f"VerdictWorks:{name}": (1.0 if v["status"] == "works" else 0.0) for name, v in report["verdicts"].items()}
    assert vpc
    # The local endpoint.
    status, text = daemon.http_get("/metrics")
    assert status == 200
    success = metric_lines(text, "vpce_doctor_check_success")
    assert success[check] == (1.0 if ok else 0.0) and len(success) == len(report["findings"])
    assert "vpce_doctor_last_run_timestamp_seconds " in text
    status, body = daemon.http_get("/healthz")
    assert status == (200 if ok else 503), body


# --- the tests ------------------------------------------------------------------------------------

def test_a_cycle_reaches_every_publisher_and_a_fault_comes_and_goes(lab: labmod.Lab, daemon: Daemon) -> None:
    assert_everywhere(daemon, lab, daemon.wait_cycle(1), "reach.ssmmessages", ok=True)
    healthy = diagnosis(daemon.last_report())

    # ssmmessages unreachable: a fault the checks see while the publishers' own paths (ssm for
    # PutInventory, monitoring for PutMetricData) stay open, so every publisher must carry it.
    live.set(LAB, FAULT)
    cycle = daemon.next_full_cycle()
    assert_everywhere(daemon, lab, cycle, "reach.ssmmessages", ok=False)
    assert status_of(daemon.last_report(), "reach.ssmmessages") == "CRITICAL"
    assert any(e.get("event") == "transition" and e.get("check") == "reach.ssmmessages" and e.get("to") == "CRITICAL"
               for e in daemon.events)

    live.set(LAB, CLEAR)
    cycle = daemon.next_full_cycle()
    assert_everywhere(daemon, lab, cycle, "reach.ssmmessages", ok=True)
    assert diagnosis(daemon.last_report()) == healthy
    assert daemon.proc.poll() is None


def test_with_the_ssm_endpoint_broken_putinventory_fails_and_the_diagnosis_still_lands(
        lab: labmod.Lab, daemon: Daemon) -> None:
    first = daemon.wait_cycle(1)
    assert first["published"]["inventory"] is True
    healthy_ids = {f["id"] for f in daemon.last_report()["findings"]}

    # Both ssm ENIs drop everything (a NACL: the publisher's open connection stalls as well).
    live.set(LAB, SSM_BROKEN)
    failed = daemon.next_full_cycle()
    assert failed["published"]["inventory"] is False
    assert all(ok for name, ok in failed["published"].items() if name != "inventory"), failed["published"]
    why = [line for line in daemon.lines if "publisher inventory failed" in line]
    assert why, daemon.log_tail()
    assert any(s in why[-1] for s in ("timed out", "timeout", "PutInventory failed")), why[-1]

    # It keeps running; the next report names the failed publisher, and the file has the whole diagnosis.
    daemon.wait_cycle(failed["cycle"] + 1)
    assert daemon.proc.poll() is None
    report = daemon.last_report()
    assert any(n.startswith("publisher inventory failed") for n in report["notes"]), report["notes"]
    assert status_of(report, "reach.ssm") == "CRITICAL" and report["status"] == "CRITICAL"
    assert {f["id"] for f in report["findings"]} == healthy_ids
    doc = daemon.inventory_file(report["facts"]["instance_id"])
    assert entries_diagnosis(doc["Content"]) == diagnosis(report)
    assert ("reach.ssm", "CRITICAL") in entries_diagnosis(doc["Content"])
    # The service still holds the last diagnosis that got through (the AWS layer's own record).
    stored = json.loads((lab.state_dir / "inventory.json").read_text())[report["facts"]["instance_id"]][TYPE]
    assert ("reach.ssm", "OK") in entries_diagnosis(stored["Content"])
    status, _ = daemon.http_get("/healthz")
    assert status == 503

    live.set(LAB, SSM_FIXED)
    fixed = daemon.next_full_cycle()
    assert fixed["published"]["inventory"] is True, daemon.log_tail()
    assert daemon.stop() == 0


def test_live_set_changes_a_running_lab(lab: labmod.Lab) -> None:
    """The knobs without a daemon: DNS answers and reachability follow `set`, errors are one line."""
    import dns.message
    import dns.query

    def answers(name: str) -> List[str]:
        sock = netns_socket(lab.names.instance_ns, kind=socket.SOCK_DGRAM)
        sock.setblocking(False)
        with sock:
            reply = dns.query.udp(dns.message.make_query(name, "A"), "10.0.0.2", timeout=2, sock=sock)
        return sorted(r.to_text() for rrset in reply.answer for r in rrset)

    def reach(ip: str) -> str:
        try:
            tcp_connect(lab.names.instance_ns, ip, 443, 0.3).close()
            return "connected"
        except OSError:
            return "timeout"

    def api() -> Dict[str, Any]:
        """What moto's EC2 API says now (asked inside the VPC namespace, where moto listens)."""
        code = ("import boto3, json, sys; ids = json.load(open(sys.argv[1])); "
                "ec2 = boto3.client('ec2', endpoint_url=ids['moto_url'], region_name='us-east-1', "
                "aws_access_key_id='AKIAVPCELABADMIN0001', aws_secret_access_key='lab'); "
                "ep = ec2.describe_vpc_endpoints(VpcEndpointIds=[ids['endpoints']['ssm']])['VpcEndpoints'][0]; "
                "sg = ec2.describe_security_groups(GroupIds=[ids['endpoint_sg_id']])['SecurityGroups'][0]; "
                "rt = ec2.describe_route_tables(RouteTableIds=[ids['route_table_id']])['RouteTables'][0]; "
                "print(json.dumps({'private_dns': ep['PrivateDnsEnabled'], 'sg_in': len(sg['IpPermissions']), "
                "'default_route': any(r.get('DestinationCidrBlock') == '0.0.0.0/0' for r in rt['Routes'])}))")
        out = subprocess.run(["ip", "netns", "exec", lab.names.vpc_ns, sys.executable, "-c", code,
                              str(lab.state_dir / "aws-ids.json")], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr[-500:]
        return json.loads(out.stdout)

    name = "ssm.us-east-1.amazonaws.com"
    try:
        result = live.set(LAB, ["endpoints.ssm.private_dns=false", "endpoint_sg_inbound_443=false"])
        assert result.firewall_replaced and result.resolver_restarted
        assert answers(name) == ["198.51.100.64"]  # the public address: Private DNS is off
        assert reach("10.0.1.104") == "timeout"  # every ENI: the endpoint SG has no 443
        # The EC2 API follows (issue 12): what the agent's ec2.api view reads agrees with the network.
        assert api() == {"private_dns": False, "sg_in": 0, "default_route": False}
        assert "EC2 API updated" in result.summary()
        assert live.set(LAB, ["endpoints.ssm.private_dns=false"]).summary().startswith(
            f"lab '{LAB}': already so, nothing changed")
        live.set(LAB, {"endpoints.ssm.private_dns": True, "endpoint_sg_inbound_443": True, "internet": "igw"})
        assert answers(name) == ["10.0.1.101", "10.0.2.101"]
        assert reach("10.0.1.104") == "connected" and reach("203.0.113.10") == "connected"
        assert api() == {"private_dns": True, "sg_in": 1, "default_route": True}
    finally:
        live.set(LAB, {"endpoints.ssm.private_dns": True, "endpoint_sg_inbound_443": True, "internet": "none"})
    assert reach("203.0.113.10") == "timeout"
    assert api()["default_route"] is False

    for assignment, message in [
        ("nosuch=1", "nosuch: not a knob that can change at runtime"),
        ("internet=maybe", "internet: expected one of none, igw, nat, got 'maybe'"),
        ("endpoints.ssm.unreachable_azs=c", "endpoints.ssm.unreachable_azs: AZ c is not in azs"),
        ("endpoints.kms.private_dns=false", "endpoints.kms.private_dns: this lab has no kms endpoint"),
        ("endpoint_sg_inbound_443", "expected KEY=VALUE"),
    ]:
        with pytest.raises(LabError) as err:
            live.set(LAB, [assignment])
        assert message in str(err.value) and "\n" not in str(err.value), str(err.value)
    out = subprocess.run([sys.executable, "-m", "tests.lab", "set", "--name", LAB, "bogus=1"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "bogus: not a knob" in out.stderr
