"""The daemon: real ``python -m vpce_doctor daemon`` processes talking sd_notify to sockets the test
binds, plus the loop in-process where a test must make a check or a publisher misbehave.

Network safety: every daemon process runs inside a network namespace made by the test that has
only a loopback device (``ip netns exec``), so even a fallback address (169.254.169.253, the host's
resolv.conf nameserver, an AWS API name) cannot leave it: such packets fail with "network
unreachable". The config also pins every fact to loopback and turns IMDS off. In-process daemons
run injected checks and publishers that do no networking at all.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import pytest
import yaml

from vpce_doctor import config as config_mod
from vpce_doctor import logging_setup
from vpce_doctor.checks.model import Facts, Finding, Status
from vpce_doctor.config import DaemonSettings, load_config, parse_config
from vpce_doctor.daemon import Daemon, summary
from vpce_doctor.publishers import PublishResult, PublishSettings
from vpce_doctor.report import Report, verdicts
from vpce_doctor.sdnotify import Notifier

try:
    from .fixtures_net import Netns
except ImportError:  # tests/unit is not a package
    from fixtures_net import Netns

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"
STOP_LIMIT_S = 5.0  # the issue: SIGTERM stops within 5 s, mid-cycle included

# Facts from the config, IMDS off, everything on loopback; no ssm_agent (psutil walks every process)
# and no EC2 API call. The resolver 127.0.0.1 has no server: the cycle fails fast and offline.
BASE_CONFIG: Dict[str, Any] = {
    "imds": {"enabled": False},
    "facts": {
        "region": "us-east-1", "partition": "aws", "domain": "amazonaws.com",
        "instance_id": "i-0123456789abcdef0", "vpc_id": "vpc-0123456789abcdef0",
        "subnet_id": "subnet-0123456789abcdef0", "vpc_cidr": "127.0.0.0/8", "vpc_cidrs": ["127.0.0.0/8"],
        "subnet_cidr": "127.0.0.0/24", "local_ipv4": "127.0.0.1", "public_ipv4": None,
        "instance_profile_arn": "arn:aws:iam::123456789012:instance-profile/SSMInstanceProfile",
        "security_group_ids": ["sg-0123456789abcdef0"],
    },
    "resolver": "127.0.0.1",
    "services": ["ssm"],
    "egress": {"targets": ["vdt-egress.invalid:443"], "timeout_s": 0.5},
    "timeouts": {"deadline_s": 5, "dns_s": 0.2, "connect_s": 0.5, "tls_s": 0.5, "api_s": 0.5},
    "checks": {"ssm_agent": False, "ec2_api": False},
    "daemon": {"interval_s": 3600, "jitter_s": 0},
    "publish": {"publishers": ["last_report"]},
}


def _merge(base: Dict[str, Any], extra: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def write_config(path: Path, state_dir: Path, **extra: Any) -> Path:
    doc = _merge(BASE_CONFIG, {"daemon": {"state_dir": str(state_dir)}})
    path.write_text(yaml.safe_dump(_merge(doc, extra), sort_keys=False), encoding="utf-8")
    return path


# --- the notify socket, as systemd holds it ---------------------------------------------------------
class NotifyListener:
    """A bound AF_UNIX datagram socket; every datagram is kept as a dict of its KEY=VALUE lines."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock, self.address = sock, address
        self.messages: List[Dict[str, str]] = []
        self.times: List[float] = []

    @classmethod
    def at(cls, path: Path) -> "NotifyListener":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        return cls(sock, str(path))

    def receive(self, timeout: float) -> Optional[Dict[str, str]]:
        self.sock.settimeout(max(0.001, timeout))
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return None
        msg = dict(line.split("=", 1) for line in data.decode("utf-8").split("\n") if line)
        self.messages.append(msg)
        self.times.append(time.monotonic())
        return msg

    def wait_for(self, predicate: Callable[[Dict[str, str]], bool], timeout: float, what: str) -> Dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            msg = self.receive(remaining) if remaining > 0 else None
            if msg is not None and predicate(msg):
                return msg
            if msg is None:
                raise AssertionError(f"no {what} within {timeout:g} s; got {self.messages[-8:]}")

    def close(self) -> None:
        self.sock.close()


# --- daemon processes --------------------------------------------------------------------------------
def _require_netns() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: daemon processes run in a private network namespace")
    if shutil.which("ip") is None:
        pytest.skip("needs ip (iproute2) for a private network namespace")


@pytest.fixture(scope="module")
def netns() -> Iterator[Netns]:
    _require_netns()
    ns = Netns("dmn")
    try:
        yield ns.create([])
    finally:
        ns.delete()


class DaemonProcess:
    """``ip netns exec NS python -m vpce_doctor daemon …`` (ip execs: the pid is python's), with a
    thread collecting stderr lines."""

    def __init__(self, ns: Netns, args: Sequence[str], env: Dict[str, str]) -> None:
        full_env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("NOTIFY_SOCKET", "WATCHDOG_", "AWS_", "VPCE_DOCTOR_", "JOURNAL_STREAM"))}
        # Credentials that exist nowhere, and no credential file or IMDS lookups.
        full_env.update({"AWS_ACCESS_KEY_ID": "AKIAVDTTESTING000000", "AWS_SECRET_ACCESS_KEY": "vdt-test-secret",
                         "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.devnull,
                         "AWS_SHARED_CREDENTIALS_FILE": os.devnull, **env})
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns.name, sys.executable, "-m", "vpce_doctor", "daemon",
                                      *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=full_env)
        self.lines: List[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_line(self, predicate: Callable[[str], bool], timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if predicate(line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no log line with {what}; got {self.lines[-10:]}")
                self._cond.wait(remaining)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(5)


@pytest.fixture
def daemons() -> Iterator[List[DaemonProcess]]:
    started: List[DaemonProcess] = []
    yield started
    for d in started:
        d.kill()
        print(f"--- daemon {d.proc.pid} stderr (shown when the test fails) ---", *d.lines, sep="\n")


def start(daemons: List[DaemonProcess], ns: Netns, args: Sequence[str], **env: str) -> DaemonProcess:
    d = DaemonProcess(ns, args, env)
    daemons.append(d)
    return d


def read_report(state: Path) -> Dict[str, Any]:
    return json.loads((state / "last-report.json").read_text(encoding="utf-8"))


# --- real processes ------------------------------------------------------------------------------------
def test_ready_after_first_report_then_status_and_watchdog_pings(
        netns: Netns, daemons: List[DaemonProcess], tmp_path: Path) -> None:
    state = tmp_path / "state"
    cfg = write_config(tmp_path / "c.yaml", state, daemon={"interval_s": 0.3, "jitter_s": 0})
    notify = NotifyListener.at(tmp_path / "notify.sock")
    try:
        d = start(daemons, netns, ["--config", str(cfg)], NOTIFY_SOCKET=notify.address, WATCHDOG_USEC="200000")
        first = notify.wait_for(lambda m: "STATUS" in m, 30, "first STATUS")
        assert first == {"STATUS": "running the first checks"}

        ready = notify.wait_for(lambda m: m.get("READY") == "1", 30, "READY=1")
        report = read_report(state)  # READY=1 comes after the first report is published
        assert report["findings"] and report["status"] == "CRITICAL"  # no resolver on 127.0.0.1
        assert ready["STATUS"].startswith("CRITICAL: ") and "next run in 0 s" in ready["STATUS"]
        assert "Session Manager broken" in ready["STATUS"]

        later = notify.wait_for(lambda m: "STATUS" in m and "READY" not in m, 30, "a second cycle's STATUS")
        assert later["STATUS"].startswith("CRITICAL: ")
        pings_before = sum(1 for m in notify.messages if m == {"WATCHDOG": "1"})
        for _ in range(3):
            notify.wait_for(lambda m: m == {"WATCHDOG": "1"}, 5, "WATCHDOG=1")
        assert pings_before + 3 <= sum(1 for m in notify.messages if m == {"WATCHDOG": "1"})
        d.wait_line(lambda s: "cycle 2:" in s, 30, "the cycle 2 summary")

        d.signal(signal.SIGTERM)
        stopping = notify.wait_for(lambda m: m.get("STOPPING") == "1", STOP_LIMIT_S, "STOPPING=1")
        assert "SIGTERM" in stopping["STATUS"]
        assert d.wait(STOP_LIMIT_S) == 0
    finally:
        notify.close()
    # One line per event: the summary of each cycle, and the initial state of what is wrong.
    assert any(" INFO vpce_doctor.daemon: cycle 1: CRITICAL in " in s for s in d.lines)
    assert any("WARNING vpce_doctor.daemon: resolver is CRITICAL" in s for s in d.lines)
    assert not any("Traceback" in s for s in d.lines)


def test_abstract_notify_socket_once_and_json_logs(netns: Netns, daemons: List[DaemonProcess],
                                                   tmp_path: Path) -> None:
    """``@name``: the abstract namespace (it belongs to the network namespace, so bind it there)."""
    state = tmp_path / "state"
    cfg = write_config(tmp_path / "c.yaml", state)
    name = f"vdt-notify-{uuid.uuid4().hex[:12]}"
    with netns.entered():
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    notify = NotifyListener(sock, "@" + name)
    try:
        d = start(daemons, netns, ["--config", str(cfg), "--once", "--log-format", "json"], NOTIFY_SOCKET=f"@{name}")
        code = d.wait(60)
        ready = notify.wait_for(lambda m: m.get("READY") == "1", 5, "READY=1")
        notify.wait_for(lambda m: m.get("STOPPING") == "1", 5, "STOPPING=1")
    finally:
        notify.close()
    report = read_report(state)
    assert code == report["exit_code"] == 2
    assert ready["STATUS"].startswith("CRITICAL: ") and "next run" not in ready["STATUS"]
    docs = [json.loads(line) for line in d.lines]  # every stderr line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(doc) for doc in docs)
    cycle = next(doc for doc in docs if doc.get("event") == "cycle")
    assert cycle["status"] == "CRITICAL" and cycle["published"] == {"last_report": True}
    assert cycle["counts"]["CRITICAL"] == sum(1 for f in report["findings"] if f["status"] == "CRITICAL")
    assert any(doc.get("event") == "stopped" and doc["exit_code"] == 2 for doc in docs)


def test_sigterm_mid_cycle_stops_within_5_s(netns: Netns, daemons: List[DaemonProcess], tmp_path: Path) -> None:
    """A resolver that receives the query and never answers keeps the cycle busy for 20 s."""
    state = tmp_path / "state"
    cfg = write_config(tmp_path / "c.yaml", state, timeouts={"deadline_s": 30, "dns_s": 20})
    with netns.entered():
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 53))
    silent.settimeout(30)
    notify = NotifyListener.at(tmp_path / "notify.sock")
    try:
        d = start(daemons, netns, ["--config", str(cfg)], NOTIFY_SOCKET=notify.address)
        notify.wait_for(lambda m: m.get("STATUS") == "running the first checks", 30, "the first cycle starting")
        silent.recvfrom(4096)  # the resolver check's query: the cycle is mid-flight now
        sent = time.monotonic()
        d.signal(signal.SIGTERM)
        assert d.wait(STOP_LIMIT_S) == 0
        elapsed = time.monotonic() - sent
        notify.wait_for(lambda m: m.get("STOPPING") == "1", 1, "STOPPING=1")
    finally:
        silent.close()
        notify.close()
    assert elapsed < STOP_LIMIT_S
    assert not any(m.get("READY") == "1" for m in notify.messages)  # never finished a cycle
    assert not (state / "last-report.json").exists()


def test_sighup_refuses_a_broken_config_then_applies_a_good_one(
        netns: Netns, daemons: List[DaemonProcess], tmp_path: Path) -> None:
    state = tmp_path / "state"
    cfg = write_config(tmp_path / "c.yaml", state)  # interval 3600: cycles only at start and after reloads
    notify = NotifyListener.at(tmp_path / "notify.sock")
    try:
        d = start(daemons, netns, ["--config", str(cfg)], NOTIFY_SOCKET=notify.address)
        notify.wait_for(lambda m: m.get("READY") == "1", 30, "READY=1")
        first = read_report(state)
        assert {f["id"] for f in first["findings"]} >= {"dns.ssm", "egress.vdt-egress.invalid"}

        cfg.write_text(cfg.read_text() + "\nservices: [ssm, kms]\n")  # a duplicate key: invalid
        d.signal(signal.SIGHUP)
        notify.wait_for(lambda m: m.get("RELOADING") == "1", 10, "RELOADING=1")
        refused = notify.wait_for(lambda m: m.get("READY") == "1", 10, "READY=1 after the refused reload")
        assert refused["STATUS"].startswith("reload refused: ") and "duplicate key" in refused["STATUS"]
        assert "still running with the previous config" in refused["STATUS"]
        line = d.wait_line(lambda s: "reload refused" in s, 10, "the refusal")
        assert "ERROR" in line and f"{cfg}: services: duplicate key" in line
        assert d.proc.poll() is None

        write_config(cfg, state, extra_services=["kms"])  # good, and visible: dns.kms appears
        d.signal(signal.SIGHUP)
        notify.wait_for(lambda m: m.get("STATUS", "").startswith("config reloaded from "), 10, "the reload")
        after = notify.wait_for(lambda m: "next run in" in m.get("STATUS", ""), 30, "the cycle after the reload")
        assert "reload refused" not in after["STATUS"]
        ids = {f["id"] for f in read_report(state)["findings"]}
        assert "dns.kms" in ids and "dns.ssm" in ids
        d.wait_line(lambda s: "config reloaded from" in s, 5, "the reload in the log")

        d.signal(signal.SIGINT)
        assert d.wait(STOP_LIMIT_S) == 0
    finally:
        notify.close()


def test_a_failing_publisher_is_logged_and_noted_in_the_next_report(
        netns: Netns, daemons: List[DaemonProcess], tmp_path: Path) -> None:
    """PutInventory cannot work in a namespace without a network: the daemon keeps cycling, says so
    in STATUS, the log and the next report (last_report still publishes)."""
    state = tmp_path / "state"
    cfg = write_config(tmp_path / "c.yaml", state, daemon={"interval_s": 0, "jitter_s": 0},
                       publish={"publishers": ["inventory", "last_report"], "inventory": {"timeout_s": 2}})
    notify = NotifyListener.at(tmp_path / "notify.sock")
    try:
        d = start(daemons, netns, ["--config", str(cfg)], NOTIFY_SOCKET=notify.address)
        ready = notify.wait_for(lambda m: m.get("READY") == "1", 30, "READY=1")
        assert "publish failed: inventory" in ready["STATUS"]
        d.wait_line(lambda s: "cycle 3:" in s, 60, "a third cycle")
        line = d.wait_line(lambda s: "publisher inventory failed: " in s, 5, "the publisher failure")
        assert "WARNING" in line
        d.signal(signal.SIGTERM)
        assert d.wait(STOP_LIMIT_S) == 0
    finally:
        notify.close()
    notes = read_report(state)["notes"]
    assert any(n.startswith("publisher inventory failed: ") for n in notes), notes


def test_bad_config_at_start_is_one_line_exit_3(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("daemon:\n  interval_s: soon\n")
    proc = subprocess.run([sys.executable, "-m", "vpce_doctor", "daemon", "--config", str(cfg), "--once"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "daemon.interval_s" in err and '"soon" is a string' in err


# --- in-process: injected checks and publishers ---------------------------------------------------------
def make_report(status: Status = Status.OK, n: int = 3) -> Report:
    findings = [Finding("resolver", Status.OK, "answers")]
    findings.append(Finding("dns.ssm", status, "ssm resolves" if status == Status.OK else "no answer",
                            cause=None if status == Status.OK else "Private DNS is off"))
    findings += [Finding(f"x.{i}", Status.OK, "fine") for i in range(n - 2)]
    facts = Facts(region="us-east-1", instance_id="i-0123456789abcdef0")
    return Report(tuple(findings), facts, verdicts(findings), time.time(), 0.01)


def inprocess_config(tmp_path: Path, **daemon: Any) -> Any:
    values = {"interval_s": 0, "jitter_s": 0, "state_dir": str(tmp_path / "state"), **daemon}
    return parse_config({"daemon": values, "timeouts": {"deadline_s": 0.5}, "publish": {"publishers": []}}, "test")


class Recorder:
    name = "recorder"

    def __init__(self) -> None:
        self.reports: List[Report] = []
        self.cond = threading.Condition()

    def publish(self, report: Report) -> PublishResult:
        with self.cond:
            self.reports.append(report)
            self.cond.notify_all()
        return PublishResult(self.name, True, "recorded", 0.0)

    def wait_for(self, count: int, timeout: float = 20) -> List[Report]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.reports) >= count, timeout), len(self.reports)
            return list(self.reports)

    def close(self) -> None:
        pass


class Raiser:
    name = "boom"

    def publish(self, report: Report) -> PublishResult:
        raise RuntimeError("kaboom")

    def close(self) -> None:
        raise RuntimeError("close kaboom")


class Hanger:
    name = "hang"
    timeout_s = 0.2

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def publish(self, report: Report) -> PublishResult:
        self.calls += 1
        self.release.wait(60)  # ignores its own timeout: the daemon must not care
        return PublishResult(self.name, True, "late", 60.0)

    def close(self) -> None:
        pass


class InProcess:
    """``Daemon.run`` in a thread (signal handlers only work in the main thread; stop via the API)."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.code: Optional[int] = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.code = self.daemon.run()

    def stop(self) -> int:
        self.daemon.request_stop()
        self.thread.join(STOP_LIMIT_S)
        assert not self.thread.is_alive(), "the daemon did not stop"
        assert self.code is not None
        return self.code


def test_raising_and_hanging_publishers_do_not_stop_cycles(tmp_path: Path) -> None:
    recorder, hanger = Recorder(), Hanger()
    daemon = Daemon(inprocess_config(tmp_path), None, check=lambda c: make_report(),
                    publishers_factory=lambda s, d, ca: [Raiser(), hanger, recorder])
    running = InProcess(daemon)
    try:
        reports = recorder.wait_for(3)
        assert running.stop() == 0
    finally:
        hanger.release.set()
    assert reports[0].notes == ()
    second, third = reports[1].notes, reports[2].notes
    assert "publisher boom failed: raised RuntimeError: kaboom" in second
    assert "publisher hang failed: no result within 1.2 s" in second
    assert any(n.startswith("publisher hang failed: skipped: its previous call has not returned") for n in third)
    assert hanger.calls == 1  # not called again while its first call is stuck
    assert daemon.abandoned_work  # the stuck publisher thread is left behind, not waited for


def test_a_failing_check_keeps_the_last_good_report(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder()
    good = make_report()
    calls = []

    def check(config: Any) -> Report:
        calls.append(1)
        if len(calls) == 2:
            raise ValueError("a bug in a check's plumbing")
        return good

    notify_path = tmp_path / "n.sock"
    notify = NotifyListener.at(notify_path)
    daemon = Daemon(inprocess_config(tmp_path), None, check=check, notifier=Notifier(str(notify_path)),
                    publishers_factory=lambda s, d, ca: [recorder])
    with caplog.at_level(logging.INFO, logger="vpce_doctor"):
        running = InProcess(daemon)
        try:
            failed = notify.wait_for(lambda m: "failed" in m.get("STATUS", ""), 10, "the failed cycle's STATUS")
            recorder.wait_for(2)
            assert running.stop() == 0
        finally:
            notify.close()
    assert failed["STATUS"].startswith("cycle 2 failed (see the log); last: OK: 3 checks OK")
    assert daemon.last_report is not None and daemon.last_report.status == Status.OK
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "cycle 2 failed" in errors[0].getMessage() and errors[0].exc_info


def test_transitions_are_called_out(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sequence = [Status.OK, Status.CRITICAL, Status.OK]
    recorder = Recorder()

    def check(config: Any) -> Report:
        return make_report(sequence.pop(0) if sequence else Status.OK)

    daemon = Daemon(inprocess_config(tmp_path), None, check=check, publishers_factory=lambda s, d, ca: [recorder])
    with caplog.at_level(logging.INFO, logger="vpce_doctor"):
        running = InProcess(daemon)
        recorder.wait_for(3)
        running.stop()
    text = [r.getMessage() for r in caplog.records]
    down = [r for r in caplog.records if r.getMessage().startswith("transition dns.ssm: OK -> CRITICAL")]
    assert down and down[0].levelno == logging.WARNING and "Private DNS is off" in down[0].getMessage()
    assert down[0].__dict__["event"] == "transition" and down[0].__dict__["to"] == "CRITICAL"
    assert any(t.startswith("transition dns.ssm: CRITICAL -> OK") for t in text)
    assert any(t.startswith("overall transition: OK -> CRITICAL") for t in text)
    assert any(t.startswith("overall transition: CRITICAL -> OK") for t in text)


def test_published_reports_carry_when_each_status_began(tmp_path: Path) -> None:
    """agent/transitions.py through the loop: the inventory's StatusSince/PreviousStatus come from here."""
    sequence = [Status.OK, Status.OK, Status.CRITICAL, Status.CRITICAL]
    recorder = Recorder()

    def check(config: Any) -> Report:
        return make_report(sequence.pop(0) if sequence else Status.CRITICAL)

    daemon = Daemon(inprocess_config(tmp_path), None, check=check, publishers_factory=lambda s, d, ca: [recorder])
    running = InProcess(daemon)
    reports = recorder.wait_for(4)[:4]
    running.stop()
    first = reports[0].started_at
    assert reports[0].transitions["dns.ssm"] == (first, "")  # the first cycle: starts now, previous unknown
    assert reports[1].transitions["dns.ssm"] == (first, "") and reports[1].transitions["resolver"] == (first, "")
    assert reports[2].transitions["dns.ssm"] == (reports[2].started_at, "OK")
    assert reports[3].transitions["dns.ssm"] == (reports[2].started_at, "OK")
    assert reports[3].transitions["resolver"] == (first, "")


def test_watchdog_pings_stop_while_the_loop_is_stalled_and_resume(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """The second cycle's check hangs: once its lease (deadline 0.5 s + grace 0.3 s) is over, no
    WATCHDOG=1 goes out; when it returns, the pings resume."""
    entered, release = threading.Event(), threading.Event()
    calls = []

    def check(config: Any) -> Report:
        calls.append(1)
        if len(calls) == 2:
            entered.set()
            release.wait(60)
        return make_report()

    notify_path = tmp_path / "n.sock"
    notify = NotifyListener.at(notify_path)
    daemon = Daemon(inprocess_config(tmp_path), None, check=check, notifier=Notifier(str(notify_path)),
                    watchdog_interval_s=0.05, stall_grace_s=0.3, publishers_factory=lambda s, d, ca: [])
    with caplog.at_level(logging.INFO, logger="vpce_doctor"):
        running = InProcess(daemon)
        try:
            notify.wait_for(lambda m: m.get("READY") == "1", 10, "READY=1")
            assert entered.wait(10)
            stalled_at = time.monotonic() + 0.5 + 0.3  # the lease of cycle 2 ends by then
            while time.monotonic() < stalled_at + 0.2:  # drain what was sent before
                notify.receive(stalled_at + 0.2 - time.monotonic())
            quiet_from = time.monotonic()
            while time.monotonic() < quiet_from + 0.6:  # twelve ping intervals
                msg = notify.receive(quiet_from + 0.6 - time.monotonic())
                assert msg != {"WATCHDOG": "1"}, "a ping while the loop is stalled"
            release.set()
            notify.wait_for(lambda m: m == {"WATCHDOG": "1"}, 5, "pings again")
            running.stop()
        finally:
            release.set()
            notify.close()
    pings = [t for m, t in zip(notify.messages, notify.times) if m == {"WATCHDOG": "1"}]
    assert len([t for t in pings if t < stalled_at]) >= 3  # it did ping while healthy
    text = " | ".join(r.getMessage() for r in caplog.records)
    assert "the loop is stalled: watchdog pings stop" in text and "cycle 2 stalled" in text
    assert "watchdog pings resume" in text


def test_a_stalled_cycle_without_watchdog_exits_3(tmp_path: Path) -> None:
    """No systemd watchdog to restart us: the daemon leaves itself (Restart=on-failure applies)."""
    release = threading.Event()
    daemon = Daemon(inprocess_config(tmp_path), None, check=lambda c: release.wait(60) and make_report(),
                    stall_grace_s=0.2, publishers_factory=lambda s, d, ca: [])
    running = InProcess(daemon)
    try:
        running.thread.join(10)
        assert running.code == 3 and daemon.abandoned_work
    finally:
        release.set()


def test_first_cycle_runs_at_start_and_jitter_is_added(tmp_path: Path) -> None:
    import random

    notify_path = tmp_path / "n.sock"
    notify = NotifyListener.at(notify_path)
    config = inprocess_config(tmp_path, interval_s=3600, jitter_s=600)
    expected = 3600 + random.Random(7).uniform(0, 600)
    daemon = Daemon(config, None, check=lambda c: make_report(), notifier=Notifier(str(notify_path)),
                    publishers_factory=lambda s, d, ca: [], rng=random.Random(7))
    running = InProcess(daemon)
    try:
        ready = notify.wait_for(lambda m: m.get("READY") == "1", 10, "READY=1")
        assert running.stop() == 0
    finally:
        notify.close()
    assert ready["STATUS"].startswith("OK: 3 checks OK; Session Manager ")
    assert ready["STATUS"].endswith(f"; next run in {expected:.0f} s")


# --- summary, config sections, log formats -----------------------------------------------------------------------
def test_summary_names_the_root_cause_not_what_it_blocked() -> None:
    findings = [Finding("resolver", Status.CRITICAL, "no answer", cause="The Amazon resolver does not answer"),
                Finding("dns.ssm", Status.CRITICAL, "not run", cause="blocked by resolver", blocked_by="resolver"),
                Finding("instance.profile", Status.OK, "attached")]
    report = Report(tuple(findings), Facts(), verdicts(findings), time.time(), 0.1)
    text = summary(report)
    assert text.startswith("CRITICAL: 2 of 3 checks not OK (resolver: The Amazon resolver does not answer); ")
    assert "Session Manager broken" in text


def test_config_sections_daemon_and_publish() -> None:
    cfg = parse_config({"daemon": {"interval_s": 0, "jitter_s": 0, "state_dir": "/run/x/../vdt", "log_format": "json"},
                        "publish": {"publishers": ["http", "last_report"], "http": {"port": 19464},
                                    "inventory": {"type_name": "Custom:Mine"},
                                    "last_report": {"path": "/tmp/vdt/last.json"}}}, "inline")
    assert cfg.daemon == DaemonSettings(interval_s=0.0, jitter_s=0.0, state_dir="/run/vdt", log_format="json")
    assert cfg.publish == PublishSettings(publishers=("http", "last_report"), inventory_type_name="Custom:Mine",
                                          http_port=19464, last_report_path="/tmp/vdt/last.json")
    assert cfg.values["daemon"]["interval_s"] == 0.0  # the validated tree too
    default = parse_config(None, "defaults")
    assert default.daemon == DaemonSettings() and default.publish == PublishSettings()
    example = load_config(str(EXAMPLE))  # config.example.yaml documents the defaults
    assert example.daemon == default.daemon and example.publish == default.publish
    assert set(config_mod.SCHEMA.fields) >= {"daemon", "publish"}


def test_json_log_lines_carry_extras_and_tracebacks_in_one_line() -> None:
    record = logging.LogRecord("vpce_doctor.daemon", logging.ERROR, __file__, 1, "cycle %d failed", (3,), None)
    record.__dict__.update({"event": "cycle_failed", "cycle": 3})
    try:
        raise ValueError("two\nlines")
    except ValueError:
        record.exc_info = sys.exc_info()
    line = logging_setup.JsonFormatter().format(record)
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["message"] == "cycle 3 failed" and doc["event"] == "cycle_failed" and doc["cycle"] == 3
    assert doc["level"] == "ERROR" and doc["exception"] == "ValueError: two\nlines" and "Traceback" in doc["traceback"]
    text = logging_setup.TextFormatter().format(record)
    assert "\n" not in text and text.endswith("ERROR vpce_doctor.daemon: cycle 3 failed | ValueError: two\\nlines")
    journal = logging_setup.TextFormatter(journal=True).format(record)
    assert journal.startswith("<3>ERROR vpce_doctor.daemon: ")  # syslog priority, no timestamp


def test_journal_stream_detection(tmp_path: Path) -> None:
    with open(tmp_path / "log", "w") as fh:
        st = os.fstat(fh.fileno())
        assert logging_setup.stream_is_journal(fh, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not logging_setup.stream_is_journal(fh, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
        assert not logging_setup.stream_is_journal(fh, {})


def test_daemon_help_explains_the_service(capsys: pytest.CaptureFixture) -> None:
    from vpce_doctor.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["daemon", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for words in ("--once", "--log-format", "READY=1", "WATCHDOG=1", "SIGHUP", "SIGTERM", "publish.publishers"):
        assert words in out, words


def test_a_slow_reload_never_delays_a_stop(tmp_path: Path) -> None:
    """Issue 11: a hostile file parsed on SIGHUP ran on the main loop and held SIGTERM 11.9 s.
    The parse now runs off the loop: a stop during a reload that never finishes is prompt."""
    recorder = Recorder()
    entered, release = threading.Event(), threading.Event()

    def stuck_loader(path: Optional[str]) -> Any:
        entered.set()
        release.wait(60)
        raise AssertionError("never reached")

    daemon = Daemon(inprocess_config(tmp_path, interval_s=3600), None, check=lambda c: make_report(),
                    publishers_factory=lambda s, d, ca: [recorder], loader=stuck_loader)
    runner = InProcess(daemon)
    try:
        recorder.wait_for(1)
        daemon.request_reload()
        assert entered.wait(10), "the reload never started"
        sent = time.monotonic()
        assert runner.stop() == 0
        assert time.monotonic() - sent < 2.0
    finally:
        release.set()
