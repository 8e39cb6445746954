"""sd_notify against real AF_UNIX datagram sockets: a path, an abstract name, a vanished socket."""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Dict, Iterator

import pytest

from vpce_doctor.sdnotify import Notifier, one_line, watchdog_interval


def _parse(data: bytes) -> Dict[str, str]:
    return dict(line.split("=", 1) for line in data.decode("utf-8").split("\n"))


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(5)
    yield sock
    sock.close()


def test_path_socket_gets_one_datagram_per_notification(listener: socket.socket) -> None:
    n = Notifier.from_env({"NOTIFY_SOCKET": listener.getsockname()})
    assert n.enabled
    assert n.ready("OK: 3 checks OK")
    assert _parse(listener.recv(4096)) == {"READY": "1", "STATUS": "OK: 3 checks OK"}
    assert n.watchdog() and listener.recv(4096) == b"WATCHDOG=1"
    assert n.stopping() and listener.recv(4096) == b"STOPPING=1"
    n.close()


def test_abstract_name_with_at_prefix() -> None:
    name = f"vdt-sdnotify-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())  # what systemd does for NOTIFY_SOCKET=@name
    sock.settimeout(5)
    try:
        n = Notifier(f"@{name}")
        assert n.status("checking")
        assert sock.recv(4096) == b"STATUS=checking"
    finally:
        sock.close()


def test_reloading_carries_monotonic_usec(listener: socket.socket) -> None:
    n = Notifier(listener.getsockname())
    before = time.monotonic()
    assert n.reloading()
    msg = _parse(listener.recv(4096))
    after = time.monotonic()
    assert msg["RELOADING"] == "1"
    assert before * 1e6 - 1 <= int(msg["MONOTONIC_USEC"]) <= after * 1e6 + 1


def test_status_cannot_inject_other_keys(listener: socket.socket) -> None:
    n = Notifier(listener.getsockname())
    n.status("line one\nREADY=1\r\tend")
    assert listener.recv(4096) == b"STATUS=line one READY=1 end"
    assert len(one_line("x" * 2000)) == 512


def test_without_notify_socket_nothing_is_sent() -> None:
    n = Notifier.from_env({})
    assert not n.enabled
    assert n.ready() is False and n.watchdog() is False


def test_vanished_socket_never_raises_and_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "gone.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    n = Notifier(str(path))
    assert n.watchdog()
    sock.close()
    os.unlink(path)
    with caplog.at_level(logging.DEBUG, logger="vpce_doctor.sdnotify"):
        assert n.watchdog() is False
        assert n.watchdog() is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "gone.sock" in warnings[0].getMessage()


def test_a_full_queue_bounds_the_send(listener: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nobody reads: a send fails after SEND_TIMEOUT_S instead of blocking the daemon for ever."""
    monkeypatch.setattr("vpce_doctor.sdnotify.SEND_TIMEOUT_S", 0.2)
    n = Notifier(listener.getsockname())
    sent = 0
    while sent < 100_000 and n.send("WATCHDOG=1"):  # far more than a datagram queue holds
        sent += 1
    assert 0 < sent < 100_000
    start = time.monotonic()
    assert n.send("WATCHDOG=1") is False
    assert 0.1 < time.monotonic() - start < 2.0
    assert listener.recv(4096) == b"WATCHDOG=1"  # what was queued is intact


def test_unsupported_address_is_refused_quietly() -> None:
    assert Notifier("vsock:2:1234").send("READY=1") is False


def test_concurrent_senders_never_interleave(listener: socket.socket) -> None:
    n = Notifier(listener.getsockname())
    barrier = threading.Barrier(4)
    got = []
    # The receiver reads while they send: a unix datagram queue is short (max_dgram_qlen).
    reader = threading.Thread(target=lambda: got.extend(_parse(listener.recv(4096)) for _ in range(200)))
    reader.start()

    def send(i: int) -> None:
        barrier.wait()
        for j in range(50):
            n.send(f"STATUS=sender {i} message {j}", "X=1")

    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads + [reader]:
        t.join(10)
    assert len(got) == 200
    assert all(set(m) == {"STATUS", "X"} for m in got)
    assert len({m["STATUS"] for m in got}) == 200


@pytest.mark.parametrize("env, expected", [
    ({"WATCHDOG_USEC": "10000000"}, 5.0),
    ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())}, 0.1),
    ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({}, None),
])
def test_watchdog_interval_is_half_of_watchdog_usec(env: Dict[str, str], expected: object) -> None:
    assert watchdog_interval(env) == expected
