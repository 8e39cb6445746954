"""One pool of daemon worker threads for everything that runs concurrently: checks, IMDS fetches,
per-address probes.

Why not ``threading.Thread`` per task: the daemon runs ~45 concurrent tasks per cycle, and starting
a thread costs ~60 µs of CPU, a tenth of a cycle's budget. Why not ``ThreadPoolExecutor``: its
workers are not daemon threads (interpreter exit joins them, so one stuck socket would hold up a
stop) and it has a fixed size (stuck tasks would starve the rest).

So: a worker that finishes waits ``IDLE_S`` for the next task and then exits; a task that finds no
idle worker gets a new one at once. Tasks never wait for each other, a stuck task only costs its
own thread, and an idle daemon holds no threads for long. One pool per network namespace (see
``pool``).
"""
from __future__ import annotations

import contextvars
import os
import queue
import threading
from concurrent.futures import Future
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, TypeVar

T = TypeVar("T")
IDLE_S = 30.0


class Workers:
    def __init__(self, idle_s: float = IDLE_S, name: str = "vpce-worker") -> None:
        self._tasks: "queue.SimpleQueue[Tuple[Future[Any], Callable[..., Any], Tuple[Any, ...]]]" = \
            queue.SimpleQueue()
        self._lock = threading.Lock()
        self._spare = 0  # workers waiting for a task that no submitted task has claimed yet
        self._idle_s = idle_s
        self._name = name
        self.started = 0  # threads started so far (tests and benchmarks read it)

    def submit(self, fn: Callable[..., T], *args: Any) -> "Future[T]":
        """Run ``fn(*args)`` at once in a daemon thread; the future holds its result or exception."""
        future: "Future[T]" = Future()
        # The caller's context variables go with the task (checks.causes.KNOWN_IDS among them).
        self._tasks.put((future, contextvars.copy_context().run, (fn,) + args))
        with self._lock:
            if self._spare > 0:
                self._spare -= 1  # a waiting worker will take it
                return future
            self.started += 1
        threading.Thread(target=self._work, name=f"{self._name}-{self.started}", daemon=True).start()
        return future

    def _work(self) -> None:
        while True:
            try:
                future, fn, args = self._tasks.get(timeout=self._idle_s)
            except queue.Empty:
                with self._lock:
                    if self._spare > 0:  # nobody counts on us: leave
                        self._spare -= 1
                        return
                continue  # a task was promised to the spare workers: one of them is us
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
                    future.set_exception(exc)
            del future, fn, args  # drop references to the task's data while idle
            with self._lock:
                self._spare += 1


_pools: Dict[str, Workers] = {}
_pools_lock = threading.Lock()


def _network_namespace() -> str:
    try:
        return os.readlink("/proc/thread-self/ns/net")
    except OSError:
        return ""


def pool() -> Workers:
    """The pool for the calling thread's network namespace.

    A network namespace belongs to a thread, not to the process (``setns`` moves one thread; a new
    thread starts in its creator's). A worker must therefore only serve tasks submitted from its own
    namespace: otherwise a probe asked for inside a lab or test namespace could leave from the
    host's. Each namespace gets its own pool, whose workers are started by a thread of that
    namespace; a process that never changes namespace (production) has exactly one.
    """
    key = _network_namespace()
    with _pools_lock:
        workers = _pools.get(key)
        if workers is None:
            workers = _pools[key] = Workers()
        return workers


def run(fn: Callable[..., T], *args: Any) -> "Future[T]":
    """``fn(*args)`` in a daemon worker of the calling thread's network namespace."""
    return pool().submit(fn, *args)


def map_all(fn: Callable[[Any], T], items: Iterable[Any], timeout_s: Optional[float] = None) -> List[T]:
    """``[fn(item) for item in items]``, all at once; ``fn`` bounds itself (as every probe does),
    ``timeout_s`` is only a backstop (``concurrent.futures.TimeoutError`` past it)."""
    workers = pool()
    futures = [workers.submit(fn, item) for item in items]
    return [f.result(timeout_s) for f in futures]
