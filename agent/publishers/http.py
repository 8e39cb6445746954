"""A local HTTP endpoint (off by default; 127.0.0.1 unless configured):

* ``/healthz`` — 200 when the last report is OK, 503 otherwise and before the first report;
* ``/report``  — the last report as JSON, the same document as ``check --format json``;
* ``/metrics`` — Prometheus text format, blackbox_exporter-style names (``vpce_doctor_check_success``
  …), from a private registry with one collector that reads the last report at scrape time.
  ``prometheus-client`` is an optional extra (``vpce-doctor[prometheus]``): without it /metrics
  answers 501 with a hint, and the log says so once;
* anything else — 404; a method other than GET and HEAD — 405.

Any local user can connect, so the server is bounded whatever clients do (issue 11):

* **one thread**: a selector loop that accepts, reads request heads without blocking, builds the
  (small, cached per report) answers and writes them. Slow clients cost a socket each, never a thread;
* **a cap on connections** (``min(256, RLIMIT_NOFILE soft limit / 4)``) so the rest of the daemon
  always has file descriptors left; when full, the oldest unfinished connection is closed, so a fresh
  client is served even while the slots are held by trickling ones;
* **one deadline per request** (5 s from accept to the end of the head, 5 s more to write the
  answer), not per read: a byte every few seconds does not keep a connection;
* a request head over 8 KiB gets 431; one request per connection (``Connection: close``);
* accept() errors (EMFILE, ENFILE, …) pause accepting with a backoff instead of spinning, logged once
  per burst; client misbehaviour (resets, timeouts, bad requests) is one DEBUG line, never a traceback.

The loop thread starts when the publisher is built and stops within a second on ``close()``, however
many clients are attached. ``publish`` only swaps the report the loop reads: it never waits on clients.
"""
from __future__ import annotations

import collections
import email.utils
import errno
import logging
import platform
import re
import resource
import selectors
import socket
import threading
import time
from http import HTTPStatus
from typing import Any, Dict, Iterator, Optional, Tuple

from ..checks.model import Status
from ..render import render_json
from ..report import Report
from .base import PublishResult, one_line
from .cloudwatch import is_dns_finding, latencies_ms
from .settings import PublishSettings

log = logging.getLogger("vpce_doctor.publishers.http")

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
NO_PROMETHEUS = "/metrics needs the optional prometheus-client package: pip install 'vpce-doctor[prometheus]'\n"
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


class _Loop:
    """The server: one selector loop in one thread; everything it owns is touched only by that thread."""

    def __init__(self, listener: socket.socket, publisher: "HttpPublisher") -> None:
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


class _ReportCollector:
    """prometheus_client custom collector: the metrics of one report (``self.report``), at scrape time."""

    def __init__(self) -> None:
        self.report: Optional[Report] = None

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        from .. import __version__

        build = GaugeMetricFamily("vpce_doctor_build_info", "vpce-doctor version and Python (always 1)",
                                  labels=["version", "python"])
        build.add_metric([__version__, platform.python_version()], 1)
        yield build
        report = self.report
        if report is None:
            return

        def gauge(name: str, doc: str, labels: Tuple[str, ...] = ()) -> Any:
            return GaugeMetricFamily(name, doc, labels=list(labels))

        success = gauge("vpce_doctor_check_success", "1 when the check is OK, else 0", ("check",))
        status = gauge("vpce_doctor_check_status", "check status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN", ("check",))
        verified = gauge("vpce_doctor_check_verified", "0 when the check could not prove its point (UNVERIFIED)",
                         ("check",))
        duration = gauge("vpce_doctor_check_duration_seconds", "how long the check took", ("check",))
        dns = gauge("vpce_doctor_dns_lookup_time_seconds", "DNS lookup time measured by the check", ("check",))
        tcp = gauge("vpce_doctor_tcp_connect_time_seconds", "TCP connect time to one address", ("check", "ip"))
        tls = gauge("vpce_doctor_tls_handshake_time_seconds", "TLS handshake time with one address", ("check", "ip"))
        for f in report.findings:
            success.add_metric([f.id], 1 if f.status == Status.OK else 0)
            status.add_metric([f.id], int(f.status))
            verified.add_metric([f.id], 1 if f.verified else 0)
            duration.add_metric([f.id], f.duration_s)
            times = latencies_ms(f)
            ip = str(f.evidence.get("ip") or "") if hasattr(f.evidence, "get") else ""
            if "DnsLatency" in times and is_dns_finding(f):
                dns.add_metric([f.id], times["DnsLatency"] / 1000)
            if "ConnectTime" in times:
                tcp.add_metric([f.id, ip], times["ConnectTime"] / 1000)
            if "TlsHandshakeTime" in times:
                tls.add_metric([f.id, ip], times["TlsHandshakeTime"] / 1000)
        yield from (success, status, verified, duration, dns, tcp, tls)

        works = gauge("vpce_doctor_verdict_works", "1 when the verdict is works, else 0 (broken or unknown)",
                      ("verdict",))
        for v in report.verdicts:
            works.add_metric([v.name], 1 if v.status == "works" else 0)
        yield works
        overall = gauge("vpce_doctor_status", "overall status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN")
        overall.add_metric([], int(report.status))
        yield overall
        last = gauge("vpce_doctor_last_run_timestamp_seconds", "when the last run finished (Unix time)")
        last.add_metric([], report.started_at + report.duration_s)
        yield last
        run = gauge("vpce_doctor_run_duration_seconds", "how long the last run took")
        run.add_metric([], report.duration_s)
        yield run


_NOTHING = object()


class HttpPublisher:
    name = "http"

    def __init__(self, settings: PublishSettings, *, request_timeout_s: float = REQUEST_TIMEOUT_S,
                 write_timeout_s: float = WRITE_TIMEOUT_S, max_connections: Optional[int] = None) -> None:
        self._bind = settings.http_bind
        self._port = settings.http_port
        self.request_timeout_s = request_timeout_s
        self.write_timeout_s = write_timeout_s
        self.max_connections = max_connections or default_max_connections()
        self.report: Optional[Report] = None
        self._report_json: Optional[Tuple[Report, bytes]] = None
        self._metrics_text: Tuple[object, bytes] = (_NOTHING, b"")
        self._loop: Optional[_Loop] = None
        self._address: Optional[Tuple[str, int]] = None
        self._start_error: Optional[str] = None
        self._registry: Any = None
        self._collector = _ReportCollector()
        self._warned_no_prometheus = False
        self._lock = threading.Lock()
        self._start()

    @property
    def address(self) -> Optional[Tuple[str, int]]:
        """The bound (host, port), or None when not listening."""
        return self._address if self._loop is not None else None

    def _start(self) -> None:
        family = socket.AF_INET6 if ":" in self._bind else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as http.server does
            listener.bind((self._bind, self._port))
            listener.listen(1024)  # the kernel caps it at net.core.somaxconn; queued clients cost no fd
            listener.setblocking(False)
        except OSError as exc:
            listener.close()
            self._start_error = f"cannot listen on {self._bind}:{self._port}: {exc.strerror or exc}"
            log.warning("http: %s", self._start_error)
            return
        self._address = tuple(listener.getsockname()[:2])  # type: ignore[assignment]
        self._loop, self._start_error = _Loop(listener, self), None
        self._loop.start()

    def publish(self, report: Report) -> PublishResult:
        self.report = report  # one reference swap: the loop sees the old or the new report
        if self._loop is not None and not self._loop.thread.is_alive():
            self.close()  # the loop died (logged): listen again
        if self._loop is None:
            self._start()  # the port may have been freed since
        if self._loop is None:
            return PublishResult(self.name, False, one_line(self._start_error or "not listening"), 0.0)
        host, port = self._address  # type: ignore[misc]
        return PublishResult(self.name, True, f"serving /healthz /report /metrics on {host}:{port}", 0.0)

    def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.stop()

    # --- responses (called by the loop thread) --------------------------------------------------

    def respond(self, path: str) -> Tuple[int, str, bytes]:
        if path == "/healthz":
            return self._healthz()
        if path == "/report":
            return self._report()
        if path == "/metrics":
            return self._metrics()
        return 404, TEXT, b"not found: try /healthz, /report or /metrics\n"

    def _healthz(self) -> Tuple[int, str, bytes]:
        report = self.report
        if report is None:
            return 503, TEXT, b"no report yet\n"
        if report.status == Status.OK:
            return 200, TEXT, b"OK\n"
        bad = [f for f in report.findings if f.status != Status.OK and f.blocked_by is None]
        why = "; ".join(f"{f.id}: {f.summary}" for f in bad[:3])
        return 503, TEXT, one_line(f"{report.status.name}: {why}").encode() + b"\n"

    def _report(self) -> Tuple[int, str, bytes]:
        report = self.report
        if report is None:
            return 503, "application/json", b'{"error": "no report yet"}\n'
        cached = self._report_json
        if cached is None or cached[0] is not report:
            cached = (report, (render_json(report) + "\n").encode())
            self._report_json = cached
        return 200, "application/json", cached[1]

    def _metrics(self) -> Tuple[int, str, bytes]:
        try:
            from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
        except ImportError:
            with self._lock:
                if not self._warned_no_prometheus:
                    self._warned_no_prometheus = True
                    log.warning("http: %s", NO_PROMETHEUS.strip())
            return 501, TEXT, NO_PROMETHEUS.encode()
        report = self.report
        with self._lock:
            if self._metrics_text[0] is not report:  # built once per report: scrapes cost no CPU
                if self._registry is None:
                    # Our own registry, not the global one: no process/platform collectors of other code.
                    self._registry = CollectorRegistry(auto_describe=False)
                    self._registry.register(self._collector)
                self._collector.report = report
                self._metrics_text = (report, generate_latest(self._registry))
            text = self._metrics_text[1]
        return 200, CONTENT_TYPE_LATEST, text
