"""The shared pool of daemon worker threads (checks.workers): reuse, growth, errors, namespaces."""
from __future__ import annotations

import os
import threading
import time

import pytest

from vpce_doctor.checks import workers

try:
    from tests.unit.moto_fixture import netns, require_root_tools
except ImportError:  # tests/unit on sys.path
    from moto_fixture import netns, require_root_tools  # type: ignore


def _until_spare(pool: workers.Workers) -> None:
    """A worker counts itself spare just after it completed a future: wait (bounded) for that."""
    deadline = time.monotonic() + 5
    while pool._spare == 0:
        assert time.monotonic() < deadline, "the worker never became spare"
        time.sleep(0.0005)


def test_idle_workers_are_reused():
    pool = workers.Workers(idle_s=5.0)
    for i in range(20):  # one after the other: the one worker serves them all
        assert pool.submit(lambda x: x * 2, i).result(5) == i * 2
        _until_spare(pool)
    assert pool.started == 1


def test_a_stuck_task_does_not_hold_up_the_others():
    pool = workers.Workers(idle_s=5.0)
    release = threading.Event()
    stuck = pool.submit(release.wait, 30)
    try:
        results = [pool.submit(lambda x: x + 1, i) for i in range(5)]
        assert [r.result(5) for r in results] == [1, 2, 3, 4, 5]
        assert not stuck.done()
    finally:
        release.set()
    assert stuck.result(5) is True


def test_workers_are_daemon_threads_and_leave_when_idle():
    pool = workers.Workers(idle_s=0.2, name="vdt-idle")
    seen = pool.submit(lambda: (threading.current_thread().daemon, threading.current_thread().name)).result(5)
    assert seen == (True, "vdt-idle-1")
    deadline = time.monotonic() + 5
    while any(t.name.startswith("vdt-idle-") for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(t.name.startswith("vdt-idle-") for t in threading.enumerate())
    assert pool.submit(lambda: 7).result(5) == 7  # a new worker after the old one left
    assert pool.started == 2


def test_an_exception_reaches_the_future_and_the_worker_survives():
    pool = workers.Workers(idle_s=5.0)

    def boom() -> None:
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        pool.submit(boom).result(5)
    assert pool.submit(lambda: "still here").result(5) == "still here"


def test_map_all_keeps_the_order():
    assert workers.map_all(lambda x: x * x, [3, 1, 2]) == [9, 1, 4]


def _namespace() -> str:
    return os.readlink("/proc/thread-self/ns/net")


def test_a_task_runs_in_the_network_namespace_it_was_submitted_from():
    """Network namespaces are per thread: a worker started in the host namespace must never run a
    probe asked for inside a test (or lab) namespace, even when it sits idle and the pool is shared."""
    require_root_tools()
    host = workers.run(_namespace).result(5)  # leaves an idle worker in the host namespace
    with netns("workers") as ns:
        inside, ran_in = ns.call(lambda: (_namespace(), workers.run(_namespace).result(5)))
        again = ns.call(lambda: workers.map_all(lambda _: _namespace(), range(3)))
    assert inside != host
    assert ran_in == inside and again == [inside] * 3
    assert workers.run(_namespace).result(5) == host
