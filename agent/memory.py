"""Keep a long-running daemon's memory flat: glibc malloc and CPython GC settings, applied by
``vpce-doctor daemon`` only (tests that run a Daemon in-process keep their interpreter as it is).

Measured in the lab (1,000 cycles back to back): without these, RSS rose ~4 MB and kept creeping;
with them it settles within the first cycles. Why each one:

* ``M_ARENA_MAX = 2``: glibc gives threads their own malloc arenas (up to 8 per core). Every cycle
  runs ~40 short-lived threads (checks, IMDS fetches, probes), and each arena keeps its own free,
  fragmented memory. Two arenas are plenty for a daemon that is idle most of the time. An operator's
  own ``MALLOC_ARENA_MAX`` wins.
* ``gc.freeze()`` after the first cycle: the ~130,000 long-lived objects of the import and the
  botocore models move to the permanent generation, so full collections stop walking them.
* ``gc.collect()`` after every cycle, cheap once the rest is frozen: a full collection also empties
  CPython's free lists. ``tuple(generator)`` (in our code, botocore's and ssl's) leaves one tuple
  per call in the free list of its final size, up to 2,000 per size, so without this RSS creeps
  for thousands of cycles before it levels off.
* ``malloc_trim(0)`` after every cycle: hands the freed heap of the cycle back to the kernel.

Elsewhere than glibc (musl), each step is a no-op.
"""
from __future__ import annotations

import ctypes
import gc
import logging
import os
from typing import Any, Optional

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # malloc.h
DAEMON_ARENAS = 2


def _libc() -> Optional[Any]:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


class MemoryKeeper:
    def __init__(self) -> None:
        self._libc = _libc()
        self._frozen = False

    def _call(self, name: str, *args: int) -> Optional[int]:
        fn = getattr(self._libc, name, None) if self._libc is not None else None
        if fn is None:
            return None
        try:
            return int(fn(*args))
        except Exception:  # noqa: BLE001 - a tuning knob must never end the daemon
            return None

    def start(self) -> None:
        """Before the first thread starts."""
        if "MALLOC_ARENA_MAX" in os.environ:
            return
        if self._call("mallopt", M_ARENA_MAX, DAEMON_ARENAS) == 1:
            log.debug("malloc arenas limited to %d", DAEMON_ARENAS)

    def after_cycle(self) -> None:
        gc.collect()  # after the freeze a full collection walks only this cycle's leftovers
        if not self._frozen:
            gc.freeze()
            self._frozen = True
        self._call("malloc_trim", 0)
