"""The local HTTP endpoint's server: one selector loop in one thread, bounded whatever its clients
do (issue 11). It knows nothing of reports: it asks its owner for ``respond(path)`` and reads the
owner's ``request_timeout_s``, ``write_timeout_s`` and ``max_connections`` (``HttpPublisher``).

* **one thread**: accepts, reads request heads without blocking, writes the (small, cached) answers.
  Slow clients cost a socket each, never a thread;
* **a cap on connections** (``min(256, RLIMIT_NOFILE soft limit / 4)``) so the rest of the daemon
  always has file descriptors left; when full, the oldest unfinished connection is closed, so a fresh
  client is served even while the slots are held by trickling ones;
* **one deadline per request** (5 s from accept to the end of the head, 5 s more to write the
  answer), not per read: a byte every few seconds does not keep a connection;
* a request head over 8 KiB gets 431; one request per connection (``Connection: close``);
* accept() errors (EMFILE, ENFILE, …) pause accepting with a backoff instead of spinning, logged once
  per burst; client misbehaviour (resets, timeouts, bad requests) is one DEBUG line, never a traceback.
"""
from __future__ import annotations

import collections
import email.utils
import errno
import logging
import re
import resource
import selectors
import socket
import threading
import time
from http import HTTPStatus
from typing import Any, Callable, Dict, Optional, Tuple

from .base import one_line

log = logging.getLogger("vpce_doctor.publishers.http")


class Owner:  # what the loop needs from its publisher (duck-typed; documentation only)
    request_timeout_s: float
    write_timeout_s: float
    max_connections: int
    respond: Callable[[str], Tuple[int, str, bytes]]


REQUEST_TIMEOUT_S = 5.0  # from accept to the end of the request head: a whole-request deadline
WRITE_TIMEOUT_S = 5.0    # to write the answer to a client that does not read
LINGER_S = 1.0           # after answering: wait this long for the client to close (no RST on unread bytes)
MAX_CONNECTIONS = 256    # at most; and at most a quarter of RLIMIT_NOFILE
MAX_HEAD_BYTES = 8192
RECV_BYTES = 16384
ACCEPT_BATCH = 64        # accepts per loop turn, so reads and writes get their turn too
ACCEPT_BACKOFF_S = (0.05, 1.0)  # first and longest pause after an accept() error
WARN_EVERY_S = 60.0      # at most one warning a minute per kind (accept errors, evictions)
JOIN_S = 1.0             # close() waits this long for the loop thread
# accept() errors that concern one connection (Linux passes pending network errors of the new socket
# to accept(), see accept(2)): skip it and accept the next. Any other error pauses accepting.
TRANSIENT_ACCEPT_ERRORS = frozenset(getattr(errno, name) for name in (
    "ECONNABORTED", "EPROTO", "EPERM", "EINTR", "ENETDOWN", "ENOPROTOOPT", "EHOSTDOWN", "ENONET",
    "EHOSTUNREACH", "EOPNOTSUPP", "ENETUNREACH") if hasattr(errno, name))
TEXT = "text/plain; charset=utf-8"
_END_OF_HEAD = re.compile(rb"\r?\n\r?\n")
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


def default_max_connections() -> int:
    """min(MAX_CONNECTIONS, soft RLIMIT_NOFILE / 4): clients never take the daemon's last descriptors."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return MAX_CONNECTIONS
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return MAX_CONNECTIONS
    return max(4, min(MAX_CONNECTIONS, soft // 4))


def _printable(text: str, limit: int = 120) -> str:
    """Client-supplied text for a log line: escaped, bounded."""
    text = text[:limit]
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class _Conn:
    READING, WRITING, LINGERING = "reading", "writing", "lingering"
    __slots__ = ("sock", "peer", "state", "buf", "out", "sent", "deadline", "request")

    def __init__(self, sock: socket.socket, peer: str, deadline: float) -> None:
        self.sock, self.peer, self.deadline = sock, peer, deadline
        self.state = self.READING
        self.buf = bytearray()
        self.out = memoryview(b"")
        self.sent = 0
        self.request = ""


class Loop:
    """The server: one selector loop in one thread; everything it owns is touched only by that thread."""

    def __init__(self, listener: socket.socket, publisher: Owner) -> None:
        self.listener = listener
        self.publisher = publisher
        self.max_connections = publisher.max_connections
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stopping = False
        self._conns: "collections.OrderedDict[int, _Conn]" = collections.OrderedDict()  # accept order
        self._next_sweep = float("inf")
        self._accept_paused_until: Optional[float] = None
        self._backoff = ACCEPT_BACKOFF_S[0]
        self._accept_failures = 0  # in the current burst
        self._accept_warned_at = -WARN_EVERY_S
        self._accept_warned = False
        self._evictions = 0        # since the last warning
        self._evict_warned_at = -WARN_EVERY_S
        self._warned_at: Dict[str, float] = {}  # other warnings, by kind
        self.thread = threading.Thread(target=self._run, name="publish-http", daemon=True)

    # --- the thread ----------------------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Ask the loop to end and wait up to JOIN_S; safe from any thread, idempotent."""
        self._stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:  # buffer full (a wakeup is pending anyway) or already closed
            pass
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout=JOIN_S)
        if self.thread.is_alive():
            log.warning("http: server thread did not stop within %.1fs", JOIN_S)
        self.listener.close()  # also done by the loop; the port is free when stop() returns
        self._wake_w.close()

    def _run(self) -> None:
        try:
            self._sel.register(self.listener, selectors.EVENT_READ, None)
            self._sel.register(self._wake_r, selectors.EVENT_READ, None)
            while not self._stopping:
                try:
                    self._turn()
                except Exception as exc:  # noqa: BLE001 - keep serving; one line, no traceback
                    self._warn("loop", "http: server loop error: %s: %s", exc.__class__.__name__, one_line(exc))
                    time.sleep(0.05)  # a persistent error must not spin a core
        except Exception as exc:  # noqa: BLE001 - the selector itself failed: publish() restarts us
            log.warning("http: server stopped: %s: %s", exc.__class__.__name__, one_line(exc))
        finally:
            self._shutdown()

    def _turn(self) -> None:
        now = time.monotonic()
        wake_at = min(self._next_sweep, self._accept_paused_until or float("inf"))
        timeout = None if wake_at == float("inf") else max(0.0, wake_at - now)
        for key, mask in self._sel.select(timeout):
            if self._stopping:
                return
            if key.fileobj is self.listener:
                self._accept()
            elif key.fileobj is self._wake_r:
                self._drain_wakeups()
            else:
                conn: _Conn = key.data
                if self._conns.get(key.fd) is not conn:
                    continue  # closed earlier in this turn (evicted); its fd may already be reused
                try:
                    if mask & selectors.EVENT_READ:
                        self._on_readable(conn)
                    elif mask & selectors.EVENT_WRITE:
                        self._on_writable(conn)
                except Exception as exc:  # noqa: BLE001 - one client's trouble never ends the loop
                    self._warn("client", "http: client %s: %s: %s", conn.peer, exc.__class__.__name__,
                               one_line(exc))
                    self._drop(conn)
        now = time.monotonic()
        if self._accept_paused_until is not None and now >= self._accept_paused_until:
            self._accept_paused_until = None
            self._sel.register(self.listener, selectors.EVENT_READ, None)
        if now >= self._next_sweep:
            self._sweep(now)

    def _warn(self, kind: str, message: str, *args: Any) -> None:
        """A warning about our own trouble, at most once a minute per kind (clients can repeat it)."""
        now = time.monotonic()
        if now - self._warned_at.get(kind, -WARN_EVERY_S) >= WARN_EVERY_S:
            self._warned_at[kind] = now
            log.warning(message, *args)
        else:
            log.debug(message, *args)

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_r.recv(512):
                pass
        except OSError:
            pass

    def _shutdown(self) -> None:
        for conn in list(self._conns.values()):
            self._drop(conn)
        for sock in (self.listener, self._wake_r):
            try:
                self._sel.unregister(sock)
            except (KeyError, ValueError, OSError):
                pass
            sock.close()
        self._sel.close()

    # --- connections ---------------------------------------------------------------------------

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, addr = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in TRANSIENT_ACCEPT_ERRORS:
                    log.debug("http: accept: %s", exc.strerror or exc)
                    continue
                self._pause_accepts(exc)
                return
            self._accepted(sock, str(addr[0]))

    def _pause_accepts(self, exc: OSError) -> None:
        """EMFILE and friends leave the connection queued, so the listener stays readable: stop
        watching it for a while (doubling to 1 s) instead of spinning, and say so once per burst."""
        now = time.monotonic()
        self._accept_failures += 1
        if self._accept_failures == 1 and now - self._accept_warned_at >= WARN_EVERY_S:
            self._accept_warned_at, self._accept_warned = now, True
            log.warning("http: cannot accept connections: %s; retrying with a backoff of up to %gs",
                        exc.strerror or exc, ACCEPT_BACKOFF_S[1])
        self._sel.unregister(self.listener)
        self._accept_paused_until = now + self._backoff
        self._backoff = min(self._backoff * 2, ACCEPT_BACKOFF_S[1])
        if exc.errno in (errno.EMFILE, errno.ENFILE) and self._conns:
            self._evict(reason="out of file descriptors")  # ours are the ones we can give back

    def _accepted(self, sock: socket.socket, peer: str) -> None:
        if self._accept_failures:
            if self._accept_warned:
                log.info("http: accepting connections again (after %d failed accepts)", self._accept_failures)
            self._accept_failures, self._accept_warned = 0, False
            self._backoff = ACCEPT_BACKOFF_S[0]
        if len(self._conns) >= self.max_connections:
            self._evict(reason=f"{self.max_connections} connections open (the limit)")
        sock.setblocking(False)
        conn = _Conn(sock, peer, time.monotonic() + self.publisher.request_timeout_s)
        self._conns[sock.fileno()] = conn
        self._sel.register(sock, selectors.EVENT_READ, conn)
        self._next_sweep = min(self._next_sweep, conn.deadline)
        # Most requests are already here: answer without another turn of the loop.
        self._on_readable(conn)

    def _evict(self, reason: str) -> None:
        """Close the oldest connection that is not being answered (else the oldest)."""
        victim = next((c for c in self._conns.values() if c.state != _Conn.WRITING), None)
        victim = victim or next(iter(self._conns.values()))
        self._evictions += 1
        now = time.monotonic()
        if now - self._evict_warned_at >= WARN_EVERY_S:
            log.warning("http: %s: closing the oldest unfinished connections to serve new clients "
                        "(%d closed since the last such message)", reason, self._evictions)
            self._evict_warned_at, self._evictions = now, 0
        log.debug("http: client %s: closed to make room (%s)", victim.peer, victim.state)
        self._drop(victim)

    def _drop(self, conn: _Conn) -> None:
        try:
            fd = conn.sock.fileno()
        except OSError:
            fd = -1
        if self._conns.get(fd) is conn:
            del self._conns[fd]
            try:
                self._sel.unregister(conn.sock)
            except (KeyError, ValueError, OSError):
                pass
        conn.sock.close()

    def _sweep(self, now: float) -> None:
        next_sweep = float("inf")
        for conn in list(self._conns.values()):
            if conn.deadline > now:
                next_sweep = min(next_sweep, conn.deadline)
                continue
            if conn.state == _Conn.READING:
                log.debug("http: client %s: no complete request within %gs, closed",
                          conn.peer, self.publisher.request_timeout_s)
            elif conn.state == _Conn.WRITING:
                log.debug("http: client %s: %s: answer not read within %gs, closed",
                          conn.peer, conn.request, self.publisher.write_timeout_s)
            self._drop(conn)
        self._next_sweep = next_sweep

    def _set_deadline(self, conn: _Conn, deadline: float) -> None:
        conn.deadline = deadline
        self._next_sweep = min(self._next_sweep, deadline)

    def _on_readable(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(RECV_BYTES)
        except BlockingIOError:
            return
        except OSError as exc:
            log.debug("http: client %s: %s", conn.peer, "reset" if isinstance(exc, ConnectionResetError)
                      else exc.strerror or exc)
            self._drop(conn)
            return
        if conn.state == _Conn.LINGERING:
            if not data:  # the client closed after reading the answer: done
                self._drop(conn)
            return  # bytes after the request are read and dropped, so close() does not reset the answer
        if not data:
            if conn.buf.strip():
                log.debug("http: client %s: closed before the end of the request head", conn.peer)
            self._drop(conn)
            return
        conn.buf += data
        if conn.buf[:1] in (b"\r", b"\n"):  # RFC 9112 §2.2: ignore empty lines before the request line
            del conn.buf[: len(conn.buf) - len(conn.buf.lstrip(b"\r\n"))]
        end = _END_OF_HEAD.search(conn.buf)
        if (end.start() if end else len(conn.buf)) > MAX_HEAD_BYTES:
            log.debug("http: client %s: request head over %d bytes", conn.peer, MAX_HEAD_BYTES)
            self._answer(conn, 431, TEXT, b"request header fields too large\n")
        elif end is not None:
            self._handle(conn, bytes(conn.buf[: end.start()]).decode("latin-1"))

    def _handle(self, conn: _Conn, head: str) -> None:
        words = head.split("\r\n" if "\r\n" in head else "\n", 1)[0].split()
        conn.request = _printable(" ".join(words[:2]))
        if len(words) != 3 or not words[2].startswith("HTTP/1."):
            self._answer(conn, 400, TEXT, b"bad request\n")
            return
        method, target = words[0], words[1]
        if method not in ("GET", "HEAD"):
            self._answer(conn, 405, TEXT, b"method not allowed: use GET or HEAD\n", allow=True)
            return
        path = target.split("?", 1)[0]
        try:
            status, content_type, body = self.publisher.respond(path)
        except Exception as exc:  # noqa: BLE001 - a bad answer is a 500, never a dead loop
            self._warn("respond", "http: %s failed: %s", _printable(path), one_line(exc))
            status, content_type, body = 500, TEXT, b"internal error\n"
        self._answer(conn, status, content_type, body, send_body=method == "GET")

    def _answer(self, conn: _Conn, status: int, content_type: str, body: bytes,
                send_body: bool = True, allow: bool = False) -> None:
        phrase = HTTPStatus(status).phrase
        head = (f"HTTP/1.1 {status} {phrase}\r\n"
                f"Date: {email.utils.formatdate(usegmt=True)}\r\n"
                f"Content-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n"
                "Cache-Control: no-store\r\n"
                + ("Allow: GET, HEAD\r\n" if allow else "")
                + "Connection: close\r\n\r\n").encode("latin-1")
        log.debug("http: client %s: %s %d", conn.peer, conn.request or "-", status)
        conn.state, conn.buf = _Conn.WRITING, bytearray()
        conn.out, conn.sent = memoryview(head + body if send_body else head), 0
        self._set_deadline(conn, time.monotonic() + self.publisher.write_timeout_s)
        self._sel.modify(conn.sock, selectors.EVENT_WRITE, conn)
        self._on_writable(conn)

    def _on_writable(self, conn: _Conn) -> None:
        try:
            conn.sent += conn.sock.send(conn.out[conn.sent:])
        except BlockingIOError:
            return
        except OSError as exc:
            log.debug("http: client %s: %s while answering", conn.peer,
                      "reset" if isinstance(exc, (ConnectionResetError, BrokenPipeError)) else exc.strerror or exc)
            self._drop(conn)
            return
        if conn.sent < len(conn.out):
            return
        try:
            conn.sock.shutdown(socket.SHUT_WR)  # the answer is complete: FIN now
        except OSError:
            self._drop(conn)
            return
        conn.state, conn.out = _Conn.LINGERING, memoryview(b"")
        self._set_deadline(conn, time.monotonic() + LINGER_S)
        self._sel.modify(conn.sock, selectors.EVENT_READ, conn)
