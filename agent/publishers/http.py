"""A local HTTP endpoint (off by default; 127.0.0.1 unless configured):

* ``/healthz`` — 200 when the last report is OK, 503 otherwise and before the first report;
* ``/report``  — the last report as JSON, the same document as ``check --format json``;
* ``/metrics`` — Prometheus text format, blackbox_exporter-style names (``vpce_doctor_check_success``
  …), from a private registry with one collector that reads the last report at scrape time.
  ``prometheus-client`` is an optional extra (``vpce-doctor[prometheus]``): without it /metrics
  answers 501 with a hint, and the log says so once;
* anything else — 404.

A stdlib ThreadingHTTPServer in a daemon thread, started when the publisher is built and stopped
by ``close()``. ``publish`` only swaps the report the handlers read.
"""
from __future__ import annotations

import logging
import platform
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator, Optional, Tuple

from ..checks.model import Status
from ..render import render_json
from ..report import Report
from .base import PublishResult, one_line
from .cloudwatch import is_dns_finding, latencies_ms
from .settings import PublishSettings

log = logging.getLogger("vpce_doctor.publishers.http")

REQUEST_TIMEOUT_S = 5.0  # a client that stalls mid-request loses its connection, not a thread forever
NO_PROMETHEUS = "/metrics needs the optional prometheus-client package: pip install 'vpce-doctor[prometheus]'\n"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    publisher: "HttpPublisher"


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = REQUEST_TIMEOUT_S
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's naming
        self._answer(send_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(send_body=False)

    def _answer(self, send_body: bool) -> None:
        path = self.path.split("?", 1)[0]
        try:
            status, content_type, body = self.server.publisher.respond(path)
        except Exception as exc:  # noqa: BLE001 - a bad request must not kill the handler thread noisily
            log.warning("http: %s failed: %s", path, one_line(exc))
            status, content_type, body = 500, "text/plain; charset=utf-8", b"internal error\n"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("http: %s " + format, self.address_string(), *args)


class _ReportCollector:
    """prometheus_client custom collector: the metrics of the last report, built at scrape time."""

    def __init__(self, publisher: "HttpPublisher") -> None:
        self._publisher = publisher

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        from .. import __version__

        build = GaugeMetricFamily("vpce_doctor_build_info", "vpce-doctor version and Python (always 1)",
                                  labels=["version", "python"])
        build.add_metric([__version__, platform.python_version()], 1)
        yield build
        report = self._publisher.report
        if report is None:
            return

        def gauge(name: str, doc: str, labels: Tuple[str, ...] = ()) -> Any:
            return GaugeMetricFamily(name, doc, labels=list(labels))

        success = gauge("vpce_doctor_check_success", "1 when the check is OK, else 0", ("check",))
        status = gauge("vpce_doctor_check_status", "check status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN", ("check",))
        duration = gauge("vpce_doctor_check_duration_seconds", "how long the check took", ("check",))
        dns = gauge("vpce_doctor_dns_lookup_time_seconds", "DNS lookup time measured by the check", ("check",))
        tcp = gauge("vpce_doctor_tcp_connect_time_seconds", "TCP connect time to one address", ("check", "ip"))
        tls = gauge("vpce_doctor_tls_handshake_time_seconds", "TLS handshake time with one address", ("check", "ip"))
        for f in report.findings:
            success.add_metric([f.id], 1 if f.status == Status.OK else 0)
            status.add_metric([f.id], int(f.status))
            duration.add_metric([f.id], f.duration_s)
            times = latencies_ms(f)
            ip = str(f.evidence.get("ip") or "") if hasattr(f.evidence, "get") else ""
            if "DnsLatency" in times and is_dns_finding(f):
                dns.add_metric([f.id], times["DnsLatency"] / 1000)
            if "ConnectTime" in times:
                tcp.add_metric([f.id, ip], times["ConnectTime"] / 1000)
            if "TlsHandshakeTime" in times:
                tls.add_metric([f.id, ip], times["TlsHandshakeTime"] / 1000)
        yield from (success, status, duration, dns, tcp, tls)

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


class HttpPublisher:
    name = "http"

    def __init__(self, settings: PublishSettings) -> None:
        self._bind = settings.http_bind
        self._port = settings.http_port
        self.report: Optional[Report] = None
        self._report_json: Optional[Tuple[Report, bytes]] = None
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None
        self._start_error: Optional[str] = None
        self._registry: Any = None
        self._warned_no_prometheus = False
        self._lock = threading.Lock()
        self._start()

    @property
    def address(self) -> Optional[Tuple[str, int]]:
        """The bound (host, port), or None when not listening."""
        return self._server.server_address[:2] if self._server else None  # type: ignore[return-value]

    def _start(self) -> None:
        server_class = _Server6 if ":" in self._bind else _Server
        try:
            server = server_class((self._bind, self._port), _Handler)
        except OSError as exc:
            self._start_error = f"cannot listen on {self._bind}:{self._port}: {exc.strerror or exc}"
            log.warning("http: %s", self._start_error)
            return
        server.publisher = self
        self._server, self._start_error = server, None
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="publish-http", daemon=True)
        self._thread.start()

    def publish(self, report: Report) -> PublishResult:
        self.report = report  # one reference swap: handlers see the old or the new report
        if self._server is None:
            self._start()  # the port may have been freed since
        if self._server is None:
            return PublishResult(self.name, False, one_line(self._start_error or "not listening"), 0.0)
        host, port = self.address  # type: ignore[misc]
        return PublishResult(self.name, True, f"serving /healthz /report /metrics on {host}:{port}", 0.0)

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2)

    # --- responses ----------------------------------------------------------------------------

    def respond(self, path: str) -> Tuple[int, str, bytes]:
        if path == "/healthz":
            return self._healthz()
        if path == "/report":
            return self._report()
        if path == "/metrics":
            return self._metrics()
        return 404, "text/plain; charset=utf-8", b"not found: try /healthz, /report or /metrics\n"

    def _healthz(self) -> Tuple[int, str, bytes]:
        report = self.report
        if report is None:
            return 503, "text/plain; charset=utf-8", b"no report yet\n"
        if report.status == Status.OK:
            return 200, "text/plain; charset=utf-8", b"OK\n"
        bad = [f for f in report.findings if f.status != Status.OK and f.blocked_by is None]
        why = "; ".join(f"{f.id}: {f.summary}" for f in bad[:3])
        return 503, "text/plain; charset=utf-8", one_line(f"{report.status.name}: {why}").encode() + b"\n"

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
            return 501, "text/plain; charset=utf-8", NO_PROMETHEUS.encode()
        with self._lock:
            if self._registry is None:
                # Our own registry, not the global one: no process/platform collectors of other code.
                self._registry = CollectorRegistry(auto_describe=False)
                self._registry.register(_ReportCollector(self))
            registry = self._registry
        return 200, CONTENT_TYPE_LATEST, generate_latest(registry)
