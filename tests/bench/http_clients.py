"""The HTTP publisher under a slowloris attack: 1,000 slow clients, and fresh /healthz meanwhile.

    .venv/bin/python -m tests.bench.http_clients [--clients 1000] [--seconds 10] [--interval 1.0]
                                                 [--requests 20]

The publisher runs in a child process (so /proc/<pid> counts only its threads and fds), with a
sample report and the RLIMIT_NOFILE soft limit this process started with (as a daemon would have;
this process raises its own soft limit to the hard one to hold the clients). The attacker opens
``--clients`` connections that each send a partial request head and then one more byte every
``--interval`` seconds, reconnecting whenever the publisher closes one (a real attacker keeps up the
pressure, so the publisher's eviction churns). Meanwhile ``--requests`` fresh clients each GET
/healthz on a new connection, one after another across the attack, and ``close()`` is timed with
the attackers still attached. One JSON line per figure, the targets of issue 11 alongside; nothing
is asserted. Network: 127.0.0.1 only.
"""
from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

REPO_ROOT = Path(__file__).resolve().parents[2]
PARTIAL = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
TARGETS = {"http_threads_max": 32, "http_healthz_fresh_s": 1.0, "http_close_s": 1.0}


def emit(figure: str, value: Any, **extra: Any) -> None:
    print(json.dumps({"figure": figure, "value": value, "target": TARGETS.get(figure), **extra}), flush=True)


# --- the publisher (child process) ---------------------------------------------------------------------

def sample_report() -> Any:
    from vpce_doctor.checks.model import Facts, Finding, Status
    from vpce_doctor.report import Report, verdicts

    findings = [Finding("imds", Status.OK, "IMDSv2 answered in 2 ms", duration_s=0.002),
                Finding("resolver", Status.OK, "10.0.0.2 answered", evidence={"latency_ms": 0.8})]
    for service in ("ssm", "ec2messages", "ssmmessages"):
        findings.append(Finding(f"dns.{service}", Status.OK, f"{service} resolves to 10.0.1.21, 10.0.2.21",
                                evidence={"answers": ["10.0.1.21", "10.0.2.21"], "latency_ms": 1.1}))
        for ip in ("10.0.1.21", "10.0.2.21"):
            findings.append(Finding(f"reach.{service}.{ip}", Status.OK, f"{ip}:443 accepts TLS",
                                    evidence={"ip": ip, "connect_ms": 0.6, "tls_ms": 3.1}))
    findings.append(Finding("egress.google.com", Status.CRITICAL, "google.com:443 connected: an internet path exists",
                            cause="an IGW or NAT route", fix="remove the 0.0.0.0/0 route"))
    return Report(tuple(findings), Facts(region="us-east-1"), verdicts(findings), time.time(), 1.25)


def serve(nofile: int) -> int:
    from vpce_doctor.publishers import PublishSettings
    from vpce_doctor.publishers.http import HttpPublisher

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    publisher = HttpPublisher(replace(PublishSettings(), http_port=0, http_bind="127.0.0.1"))
    if publisher.address is None:
        return 1
    publisher.publish(sample_report())
    print(json.dumps({"port": publisher.address[1], "max_connections": getattr(publisher, "max_connections", None)}), flush=True)
    sys.stdin.read()  # until the bench closes our stdin, with its attackers still attached
    started = time.monotonic()
    publisher.close()
    print(json.dumps({"close_s": time.monotonic() - started}), flush=True)
    return 0


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime, all threads


def threads_and_fds(pid: int) -> Tuple[int, int]:
    threads = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            threads = int(line.split()[1])
    return threads, len(os.listdir(f"/proc/{pid}/fd"))


# --- the attacker and the fresh clients (this process) -------------------------------------------------

class Attack:
    """``clients`` slow connections, one byte each per ``interval_s``, reconnecting when dropped."""

    def __init__(self, address: Tuple[str, int], clients: int, interval_s: float, pid: int) -> None:
        self.address, self.interval_s, self.pid = address, interval_s, pid
        self.socks: List[Optional[socket.socket]] = [None] * clients
        self.connects = 0
        self.dropped = 0          # connections the publisher closed
        self.connect_failures = 0
        self.samples: List[Tuple[int, int]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="attack", daemon=True)

    def _connect(self, i: int) -> None:
        try:
            s = socket.create_connection(self.address, timeout=2)
            s.sendall(PARTIAL)
            s.setblocking(False)
        except OSError:
            self.connect_failures += 1
            return
        self.socks[i] = s
        self.connects += 1

    def tick(self) -> None:
        for i, s in enumerate(self.socks):
            if self.stop.is_set():
                return
            if s is not None:
                try:
                    s.recv(4096)  # b"" (EOF) or data: closed by the publisher
                    closed = True
                except BlockingIOError:
                    closed = False
                except OSError:
                    closed = True
                if not closed:
                    try:
                        s.send(b"x")
                        continue
                    except OSError:
                        pass
                s.close()
                self.socks[i] = None
                self.dropped += 1
            self._connect(i)

    def _run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            self.tick()
            try:
                self.samples.append(threads_and_fds(self.pid))
            except OSError:
                return
            self.stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))

    def open_count(self) -> int:
        return sum(1 for s in self.socks if s is not None)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        for s in self.socks:
            if s is not None:
                s.close()


def fresh_healthz(address: Tuple[str, int]) -> Tuple[Optional[int], float]:
    started = time.monotonic()
    conn = http.client.HTTPConnection(address[0], address[1], timeout=10)
    try:
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        response.read()
        return response.status, time.monotonic() - started
    except OSError:
        return None, time.monotonic() - started
    finally:
        conn.close()


def raise_nofile(needed: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE to the hard limit if needed; returns the original soft."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return soft


def bench(args: argparse.Namespace) -> int:
    original = raise_nofile(args.clients + 256)
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < args.clients + 64:
        print(f"http_clients: RLIMIT_NOFILE hard limit too low for {args.clients} clients", file=sys.stderr)
        return 2
    child = subprocess.Popen([sys.executable, "-m", "tests.bench.http_clients", "--serve", str(original)],
                             cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    assert child.stdout is not None and child.stdin is not None
    attack: Optional[Attack] = None
    try:
        hello: Dict[str, Any] = json.loads(child.stdout.readline() or "{}")
        if "port" not in hello:
            print("http_clients: the publisher did not start", file=sys.stderr)
            return 1
        address = ("127.0.0.1", int(hello["port"]))
        idle_threads, idle_fds = threads_and_fds(child.pid)
        attack = Attack(address, args.clients, args.interval, child.pid)
        opening, cpu_before = time.monotonic(), cpu_s(child.pid)
        attack.tick()  # all clients connected before the first fresh request
        opened_s = time.monotonic() - opening
        attack.thread.start()
        pause = args.seconds / (args.requests + 1)
        answers: List[Tuple[Optional[int], float]] = []
        for _ in range(args.requests):
            attack.stop.wait(pause)
            answers.append(fresh_healthz(address))
        held = attack.open_count()
        attack_cpu_s, attack_s = cpu_s(child.pid) - cpu_before, time.monotonic() - opening
        child.stdin.close()  # close() with the attackers attached
        closed: Dict[str, Any] = json.loads(child.stdout.readline() or "{}")
        attack.close()
        child.wait(timeout=30)
        err = child.stderr.read() if child.stderr else ""
    finally:
        if attack is not None:
            attack.close()
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)

    threads = [t for t, _ in attack.samples] or [0]
    fds = [f for _, f in attack.samples] or [0]
    times = [t for _, t in answers]
    statuses = sorted({s for s, _ in answers}, key=str)
    emit("http_threads_max", max(threads), idle=idle_threads, samples=len(attack.samples))
    emit("http_fds_max", max(fds), idle=idle_fds, max_connections=hello["max_connections"],
         rlimit_nofile=original)
    emit("http_healthz_fresh_s", round(statistics.median(times), 4), max=round(max(times), 4),
         requests=len(times), statuses=statuses, failed=sum(1 for s, _ in answers if s is None))
    emit("http_cpu_share", round(attack_cpu_s / attack_s, 3), cpu_s=round(attack_cpu_s, 2),
         wall_s=round(attack_s, 2))
    emit("http_close_s", round(closed.get("close_s", float("nan")), 4), attached=held)
    emit("http_attack", args.clients, connects=attack.connects, dropped_by_publisher=attack.dropped,
         connect_failures=attack.connect_failures, first_connects_s=round(opened_s, 2),
         seconds=args.seconds, interval_s=args.interval)
    emit("http_stderr", len(err.splitlines()), tracebacks=err.count("Traceback"),
         warnings=sum(1 for line in err.splitlines() if line.startswith("WARNING")))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.http_clients", description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=1000, help="slow clients (default %(default)s)")
    p.add_argument("--seconds", type=float, default=10.0, help="attack duration (default %(default)g)")
    p.add_argument("--interval", type=float, default=1.0,
                   help="each slow client sends one byte this often (default %(default)g)")
    p.add_argument("--requests", type=int, default=20, help="fresh /healthz requests (default %(default)s)")
    p.add_argument("--serve", type=int, metavar="NOFILE", help=argparse.SUPPRESS)  # the child process
    args = p.parse_args(argv)
    if args.serve is not None:
        return serve(args.serve)
    return bench(args)


if __name__ == "__main__":
    raise SystemExit(main())
