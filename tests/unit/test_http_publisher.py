"""The HTTP publisher against a hostile local user (issue 11, item 2): real sockets on 127.0.0.1.

The attacks are the demonstrated ones, scaled down to stay fast: clients that trickle a request a
byte at a time (slowloris), hold a partial request, reset their connection, send a huge head or
another method, and a process that has run out of file descriptors. Figures come from /proc: the
process's thread count, and the publisher's own sockets (the fds of this process whose local port
is the publisher's). The paths and bodies themselves are tested in test_publishers.py.
"""
from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Set, Tuple

import pytest

from vpce_doctor.checks.model import Facts, Finding, Status
from vpce_doctor.publishers import PublishSettings
from vpce_doctor.publishers.http import HttpPublisher
from vpce_doctor.report import Report, verdicts

LOGGER = "vpce_doctor.publishers.http"
PARTIAL = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"  # a request head that never ends
FRESH_S = 1.0          # a fresh client's /healthz must be answered within this, whatever the attack
THREAD_BUDGET = 32     # issue 11: the server may use at most this many threads


def sample_report() -> Report:
    findings = [Finding("imds", Status.OK, "IMDSv2 answered in 2 ms"),
                Finding("dns.ssm", Status.CRITICAL, "ssm.us-east-1.amazonaws.com resolves to public 198.51.100.64")]
    return Report(tuple(findings), Facts(region="us-east-1"), verdicts(findings), time.time(), 1.25)


def threads() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads: line in /proc/self/status")


def server_fds(port: int) -> int:
    """Open fds of this process that are TCP sockets on the publisher's port (listener + accepted)."""
    inodes: Set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    ours = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            ours += 1
    return ours


def wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def fresh_get(address: Tuple[str, int], path: str = "/healthz", timeout_s: float = 5.0) -> Tuple[int, bytes, float]:
    """A new connection, one GET: (status, body, seconds from connect to the whole body)."""
    started = time.monotonic()
    conn = http.client.HTTPConnection(address[0], address[1], timeout=timeout_s)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read(), time.monotonic() - started
    finally:
        conn.close()


def read_to_eof(s: socket.socket, timeout_s: float) -> bytes:
    """Everything the server sends until it closes; fails if it does not close within timeout_s."""
    s.settimeout(timeout_s)
    chunks: List[bytes] = []
    while True:
        try:
            data = s.recv(65536)
        except socket.timeout:
            raise AssertionError(f"the server did not close within {timeout_s}s; got {b''.join(chunks)[:200]!r}")
        if not data:
            return b"".join(chunks)
        chunks.append(data)


class SlowClients:
    """N connections that each sent PARTIAL; ``trickle()`` sends each one more byte."""

    def __init__(self, address: Tuple[str, int], count: int) -> None:
        self.opened: List[float] = []
        self.socks: List[socket.socket] = []
        self.closed_at: List[Optional[float]] = []
        for _ in range(count):
            s = socket.create_connection(address, timeout=2)
            s.sendall(PARTIAL)
            s.setblocking(False)
            self.socks.append(s)
            self.opened.append(time.monotonic())
            self.closed_at.append(None)

    def _mark(self, i: int) -> None:
        if self.closed_at[i] is None:
            self.closed_at[i] = time.monotonic()

    def trickle(self) -> None:
        for i, s in enumerate(self.socks):
            if self.closed_at[i] is None:
                try:
                    s.send(b"X")
                except OSError:
                    self._mark(i)

    def poll(self) -> int:
        """Notice connections the server closed; returns how many are still open."""
        for i, s in enumerate(self.socks):
            if self.closed_at[i] is not None:
                continue
            try:
                while s.recv(65536):
                    pass  # an error answer before the close is fine
                self._mark(i)  # EOF
            except BlockingIOError:
                pass
            except OSError:
                self._mark(i)  # reset
        return sum(1 for t in self.closed_at if t is None)

    def close(self) -> None:
        for s in self.socks:
            s.close()


@pytest.fixture
def no_tracebacks(capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Captures the publisher's log at DEBUG; afterwards stderr has no traceback and every record is
    one line without exc_info."""
    caplog.set_level("DEBUG", logger=LOGGER)
    yield caplog
    err = capfd.readouterr().err
    assert "Traceback" not in err, err[:2000]
    for record in caplog.records:
        if record.name == LOGGER:
            assert record.exc_info is None and "\n" not in record.getMessage(), record.getMessage()


def start(**limits: float) -> HttpPublisher:
    publisher = HttpPublisher(replace(PublishSettings(), http_port=0), **limits)  # type: ignore[arg-type]
    assert publisher.address is not None
    publisher.publish(sample_report())
    return publisher


def test_trickling_clients_cost_no_threads_and_a_fresh_client_is_served(no_tracebacks: pytest.LogCaptureFixture) -> None:
    baseline = threads()
    publisher = start(max_connections=64)
    port = publisher.address[1]  # type: ignore[index]
    attack: Optional[SlowClients] = None
    try:
        attack = SlowClients(publisher.address, 300)  # type: ignore[arg-type]
        most_threads, most_fds = 0, 0
        for _ in range(4):  # a byte every 0.25 s: far inside any per-read timeout
            attack.trickle()
            time.sleep(0.25)
            attack.poll()
            most_threads, most_fds = max(most_threads, threads()), max(most_fds, server_fds(port))
        started = time.monotonic()
        publisher.publish(sample_report())
        assert time.monotonic() - started < 0.1  # publish never waits on clients
        status, body, took = fresh_get(publisher.address)  # type: ignore[arg-type]
        assert (status, body) == (503, b"CRITICAL: dns.ssm: ssm.us-east-1.amazonaws.com resolves to public "
                                       b"198.51.100.64\n")
        assert took < FRESH_S
        assert most_threads <= baseline + THREAD_BUDGET, most_threads
        assert most_fds <= 64 + 1, most_fds  # the cap, plus the listener
    finally:
        if attack:
            attack.close()
        publisher.close()


def test_a_trickling_request_is_dropped_at_the_whole_request_deadline(no_tracebacks: pytest.LogCaptureFixture) -> None:
    publisher = start(request_timeout_s=1.0)
    attack: Optional[SlowClients] = None
    try:
        attack = SlowClients(publisher.address, 5)  # type: ignore[arg-type]
        deadline = time.monotonic() + 3.0
        while attack.poll() and time.monotonic() < deadline:
            attack.trickle()  # a byte every 0.1 s keeps a per-read timeout happy forever
            time.sleep(0.1)
        held = [closed - opened for opened, closed in zip(attack.opened, attack.closed_at) if closed is not None]
        assert len(held) == 5, "a trickling client kept its connection past the request deadline"
        assert all(0.9 <= t <= 1.8 for t in held), held
        assert any("no complete request within 1s" in r.getMessage() for r in no_tracebacks.records)
    finally:
        if attack:
            attack.close()
        publisher.close()


def test_when_full_the_oldest_connection_makes_room(no_tracebacks: pytest.LogCaptureFixture) -> None:
    publisher = start(max_connections=8, request_timeout_s=30.0)
    attack: Optional[SlowClients] = None
    try:
        attack = SlowClients(publisher.address, 8)  # type: ignore[arg-type]
        status, _, took = fresh_get(publisher.address)  # type: ignore[arg-type]
        assert status == 503 and took < FRESH_S
        assert wait_for(lambda: attack.poll() == 7, 2.0)  # type: ignore[union-attr]
        assert attack.closed_at[0] is not None  # the oldest made room; the others are still open
        assert any("closing the oldest" in r.getMessage() and r.levelname == "WARNING"
                   for r in no_tracebacks.records)
    finally:
        if attack:
            attack.close()
        publisher.close()


def test_a_reset_connection_logs_one_line_and_no_traceback(no_tracebacks: pytest.LogCaptureFixture) -> None:
    publisher = start()
    try:
        for _ in range(3):
            s = socket.create_connection(publisher.address, timeout=2)  # type: ignore[arg-type]
            s.sendall(PARTIAL)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # close = RST
            s.close()

        def resets() -> int:
            return sum(1 for r in no_tracebacks.records if r.getMessage() == "http: client 127.0.0.1: reset")

        assert wait_for(lambda: resets() == 3, 2.0), [r.getMessage() for r in no_tracebacks.records]
        assert all(r.levelname == "DEBUG" for r in no_tracebacks.records if r.name == LOGGER)
        assert fresh_get(publisher.address)[0] == 503  # type: ignore[arg-type]
    finally:
        publisher.close()


def test_an_oversized_head_gets_431_and_the_connection_closes(no_tracebacks: pytest.LogCaptureFixture) -> None:
    publisher = start()
    try:
        for request in (b"GET /healthz HTTP/1.1\r\nX-Pad: " + b"a" * 9000 + b"\r\n\r\n",  # in one go
                        b"GET /healthz HTTP/1.1\r\n" + b"X-Pad: a\r\n" * 1000):  # never ends
            with socket.create_connection(publisher.address, timeout=2) as s:  # type: ignore[arg-type]
                s.sendall(request)
                answer = read_to_eof(s, 2.0)  # EOF: the server closed
            assert answer.startswith(b"HTTP/1.1 431 ") and b"Connection: close\r\n" in answer, answer[:200]
    finally:
        publisher.close()


def test_only_get_and_head_are_served(no_tracebacks: pytest.LogCaptureFixture) -> None:
    publisher = start()
    try:
        for request, status in ((b"POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405),
                                (b"DELETE /report HTTP/1.1\r\n\r\n", 405),
                                (b"GARBAGE\r\n\r\n", 400),
                                (b"GET /healthz\r\n\r\n", 400)):  # HTTP/0.9: no
            with socket.create_connection(publisher.address, timeout=2) as s:  # type: ignore[arg-type]
                s.sendall(request)
                answer = read_to_eof(s, 2.0)
            assert answer.split(b" ", 2)[1] == str(status).encode(), (request, answer[:200])
            if status == 405:
                assert b"\r\nAllow: GET, HEAD\r\n" in answer
    finally:
        publisher.close()


def test_close_with_slow_clients_attached_is_prompt(no_tracebacks: pytest.LogCaptureFixture) -> None:
    baseline = threads()
    publisher = start()  # the default 5 s request deadline: close() must not wait for it
    address = publisher.address
    attack: Optional[SlowClients] = None
    try:
        attack = SlowClients(address, 200)  # type: ignore[arg-type]
        attack.trickle()
        started = time.monotonic()
        publisher.close()
        assert time.monotonic() - started <= 1.0
        assert wait_for(lambda: attack.poll() == 0, 1.0), f"{attack.poll()} clients still connected"  # type: ignore[union-attr]
        assert wait_for(lambda: threads() <= baseline, 1.0), threads()
        with pytest.raises(OSError):
            socket.create_connection(address, timeout=2).close()  # type: ignore[arg-type]
    finally:
        if attack:
            attack.close()
        publisher.close()


# --- out of file descriptors: a child process, so this one keeps its own ------------------------------

CHILD = r"""
import logging, os, resource, sys
from dataclasses import replace
logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(message)s", stream=sys.stderr)
from vpce_doctor.publishers import PublishSettings
from vpce_doctor.publishers.http import HttpPublisher
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
publisher = HttpPublisher(replace(PublishSettings(), http_port=0))
print(publisher.address[1], flush=True)
hog = []
try:
    while True:
        hog.append(os.open(os.devnull, os.O_RDONLY))  # another part of the daemon leaks every fd
except OSError:
    pass
print("full", flush=True)
sys.stdin.readline()
for fd in hog:
    os.close(fd)
print("freed", flush=True)
sys.stdin.readline()
publisher.close()
"""


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_accept_errors_back_off_instead_of_spinning() -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    queued: Optional[socket.socket] = None
    try:
        assert child.stdout is not None and child.stdin is not None
        port = int(child.stdout.readline())
        assert child.stdout.readline() == "full\n"
        queued = socket.create_connection(("127.0.0.1", port), timeout=2)  # accept() now fails: EMFILE
        before = cpu_s(child.pid)
        time.sleep(1.0)  # a measurement window, not a synchronisation
        spent = cpu_s(child.pid) - before
        assert spent < 0.3, f"the publisher spun: {spent:.2f} s of CPU in 1 s while out of fds"
        child.stdin.write("free\n")
        child.stdin.flush()
        assert child.stdout.readline() == "freed\n"
        status, _, took = fresh_get(("127.0.0.1", port), timeout_s=3.0)  # within the 1 s longest backoff
        assert status == 503 and took < 1.0 + FRESH_S
        child.stdin.write("done\n")
        child.stdin.flush()
        _, err = child.communicate(timeout=10)
    finally:
        if queued:
            queued.close()
        if child.poll() is None:
            child.kill()
            child.communicate(timeout=10)
    assert child.returncode == 0, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    warnings = [line for line in err.splitlines() if line.startswith("WARNING http: cannot accept")]
    assert len(warnings) == 1 and "Too many open files" in warnings[0], err[-2000:]
    assert "INFO http: accepting connections again" in err
