"""The daemon's threading parts: a self-pipe the main loop sleeps on, and a job in a daemon thread
that wakes it when done (see ``vpce_doctor.daemon`` for who runs what)."""
from __future__ import annotations

import select
import socket
import threading
import time
from typing import Any, Callable, Optional


class Wakeup:
    """A self-pipe: any thread or signal handler can wake the main loop's ``wait``."""

    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)

    def notify(self) -> None:
        try:
            self._w.send(b"\0")
        except OSError:  # buffer full: a wakeup is pending anyway; closed: we are done
            pass

    def wait(self, timeout: Optional[float]) -> None:
        select.select([self._r], [], [], None if timeout is None else max(0.0, timeout))
        try:
            while self._r.recv(4096):
                pass
        except OSError:  # BlockingIOError: drained
            pass

    def write_fd(self) -> int:
        return self._w.fileno()

    def close(self) -> None:
        self._r.close()
        self._w.close()


class Job:
    """``fn()`` in a daemon thread; the main loop polls ``done`` and is woken when it finishes."""

    def __init__(self, name: str, fn: Callable[[], Any], wakeup: Wakeup) -> None:
        self.started = time.monotonic()
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.done = False
        self._wakeup = wakeup
        self.thread = threading.Thread(target=self._run, args=(fn,), name=name, daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.result = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the main loop, never lost
            self.error = exc
        finally:
            self.done = True
            self._wakeup.notify()

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()


class Stalled(Exception):
    """A cycle overran its lease and no watchdog will restart us: exit so a supervisor can."""
