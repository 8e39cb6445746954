"""The plain sd_notify protocol (sd_notify(3)) in a few lines, without a dependency.

A notification is one datagram of newline-separated ``KEY=VALUE`` lines sent to the AF_UNIX
socket named by ``$NOTIFY_SOCKET``: a file system path, or ``@name`` for a name in the abstract
namespace (the kernel spells it with a leading NUL byte). Without ``NOTIFY_SOCKET`` (not started
by systemd, or not ``Type=notify``) every call is a no-op.

Sending never raises: a daemon must not die because its supervisor's socket went away. The first
failure is logged as a warning, repeats at debug level (the watchdog thread sends every few
seconds and would flood the journal otherwise).
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Mapping, Optional, Union

from .checks.redact import redact

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 1.0
MAX_STATUS_CHARS = 512  # systemctl status shows one line; keep the datagram small


def _sockaddr(address: str) -> Union[str, bytes]:
    if address.startswith("@"):  # abstract namespace: NUL + name (sd_notify(3))
        return b"\0" + address[1:].encode("utf-8")
    return address


def one_line(text: str, limit: int = MAX_STATUS_CHARS) -> str:
    """``text`` with control characters (a newline would start a new KEY=VALUE) made spaces."""
    flat = " ".join(redact("".join(ch if ch.isprintable() else " " for ch in text)).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def watchdog_interval(environ: Optional[Mapping[str, str]] = None) -> Optional[float]:
    """Seconds between ``WATCHDOG=1`` pings: half of ``$WATCHDOG_USEC`` (sd_watchdog_enabled(3)),
    or None when the watchdog is off or meant for another process (``$WATCHDOG_PID``)."""
    env = os.environ if environ is None else environ
    usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
    if not usec:
        return None
    if pid and pid.strip() != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not an integer", usec)
        return None
    return value / 2e6 if value > 0 else None


class Notifier:
    """Sends notifications to one socket; safe to share between threads."""

    def __init__(self, address: Optional[str]) -> None:
        self.address = address or None
        self._sock: Optional[socket.socket] = None
        self._lock = threading.Lock()  # the main loop and the watchdog thread both send
        self._failed = False

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> "Notifier":
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """Send ``KEY=VALUE`` lines as one datagram; True when it was delivered to the socket."""
        if self.address is None or not lines:
            return False
        payload = "\n".join(lines).encode("utf-8")
        with self._lock:
            try:
                if self._sock is None:
                    if not self.address.startswith(("/", "@")):  # e.g. vsock: (systemd >= 253)
                        raise OSError(f"unsupported NOTIFY_SOCKET address {self.address!r}")
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    # A full receive queue blocks sendto: bounded, so a busy manager can't stall us.
                    self._sock.settimeout(SEND_TIMEOUT_S)
                self._sock.sendto(payload, _sockaddr(self.address))
            except OSError as exc:
                (log.debug if self._failed else log.warning)(
                    "sd_notify to %s failed: %s", self.address, exc)
                self._failed = True
                return False
        if self._failed:
            log.info("sd_notify to %s works again", self.address)
            self._failed = False
        return True

    def ready(self, status: Optional[str] = None) -> bool:
        return self.send("READY=1", *([f"STATUS={one_line(status)}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={one_line(text)}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def reloading(self) -> bool:
        # MONOTONIC_USEC lets systemd >= 253 (Type=notify-reload) match the reload to this message;
        # older versions ignore it. time.monotonic() is CLOCK_MONOTONIC on Linux.
        return self.send("RELOADING=1", f"MONOTONIC_USEC={int(time.monotonic() * 1e6)}")

    def stopping(self, status: Optional[str] = None) -> bool:
        return self.send("STOPPING=1", *([f"STATUS={one_line(status)}"] if status else []))

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
