"""A local HTTP endpoint (off by default; 127.0.0.1 unless configured):

* ``/healthz`` — 200 when the last report is OK, 503 otherwise and before the first report;
* ``/report``  — the last report as JSON, the same document as ``check --format json``;
* ``/metrics`` — Prometheus text format, blackbox_exporter-style names (``vpce_doctor_check_success``
  …), from a private registry with one collector that reads the last report at scrape time.
  ``prometheus-client`` is an optional extra (``vpce-doctor[prometheus]``): without it /metrics
  answers 501 with a hint, and the log says so once;
* anything else — 404; a method other than GET and HEAD — 405.

Any local user can connect, so the server (``http_server``: one thread, a connection cap, one
deadline per request) is bounded whatever clients do (issue 11).

The loop thread starts when the publisher is built and stops within a second on ``close()``, however
many clients are attached. ``publish`` only swaps the report the loop reads: it never waits on clients.
"""
from __future__ import annotations

import logging
import platform
import socket
import threading
from typing import Any, Iterator, Optional, Tuple

from ..checks.model import Status
from ..render import render_json
from ..report import Report
from .base import PublishResult, one_line
from .cloudwatch import is_dns_finding, latencies_ms
from .http_server import REQUEST_TIMEOUT_S, TEXT, WRITE_TIMEOUT_S, Loop, default_max_connections
from .settings import PublishSettings

log = logging.getLogger("vpce_doctor.publishers.http")

NO_PROMETHEUS = "/metrics needs the optional prometheus-client package: pip install 'vpce-doctor[prometheus]'\n"


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
        self._loop: Optional[Loop] = None
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
        self._loop, self._start_error = Loop(listener, self), None
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
