"""The publisher contract and the factory.

A publisher takes a finished Report and puts it somewhere. ``publish`` never raises and never
takes longer than the publisher's own timeout: the work runs in a daemon thread that is abandoned
(and reported as a timeout) when it overruns, so a DNS lookup that hangs — the very failure we
diagnose — cannot stall the daemon's cycle. While an abandoned call is still stuck, the next
publish is skipped rather than piling up threads.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Protocol, Tuple

from ..checks.errortext import exception_text
from ..checks.redact import redact
from ..report import Report

log = logging.getLogger("vpce_doctor.publishers")

MAX_DETAIL = 500  # one log line, one report note


@dataclass(frozen=True)
class PublishResult:
    publisher: str
    ok: bool
    detail: str  # one line: what was done, or why it failed
    duration_s: float


class Publisher(Protocol):
    name: str

    def publish(self, report: Report) -> PublishResult: ...  # never raises; bounded by its own timeout

    def close(self) -> None: ...


def one_line(text: object, limit: int = MAX_DETAIL) -> str:
    flat = " ".join(redact(str(text)).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


Outcome = Tuple[bool, str]


class BoundedPublisher:
    """Base for publishers that do I/O: ``_publish(report) -> (ok, detail)`` runs in a worker thread
    bounded by ``timeout_s``; exceptions become ``ok=False`` with a one-line detail."""

    name = "publisher"

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._stuck: Optional[threading.Thread] = None
        self._stuck_since = 0.0

    def _publish(self, report: Report) -> Outcome:  # pragma: no cover - abstract
        raise NotImplementedError

    def publish(self, report: Report) -> PublishResult:
        start = time.monotonic()
        try:
            ok, detail = self._bounded(lambda: self._publish(report))
        except Exception as exc:  # noqa: BLE001 - the contract: never raise
            ok, detail = False, f"internal error: {exc.__class__.__name__}: {exc}"
        return PublishResult(self.name, ok, one_line(detail), time.monotonic() - start)

    def _bounded(self, work: Callable[[], Outcome]) -> Outcome:
        if self._stuck is not None:
            if self._stuck.is_alive():
                return False, (f"skipped: the previous call is still stuck after "
                               f"{time.monotonic() - self._stuck_since:.0f} s")
            self._stuck = None
        box: List[Outcome] = []

        def run() -> None:
            try:
                box.append(work())
            except Exception as exc:  # noqa: BLE001 - reported, never raised
                log.debug("publisher %s failed", self.name, exc_info=True)
                box.append((False, f"{exc.__class__.__name__}: {exc}"))

        worker = threading.Thread(target=run, name=f"publish-{self.name}", daemon=True)
        started = time.monotonic()
        worker.start()
        worker.join(self.timeout_s)
        if worker.is_alive():
            self._stuck, self._stuck_since = worker, started
            return False, f"timed out after {self.timeout_s:g} s"
        return box[0] if box else (False, "internal error: no result")

    def close(self) -> None:
        pass


class AwsPublisher(BoundedPublisher):
    """A publisher that calls one AWS service in the instance's region: one client for the life of
    the publisher (creating one costs more CPU than a cycle's checks), rebuilt if the region changes."""

    service = ""

    def __init__(self, timeout_s: float, ca_bundle: Optional[str]) -> None:
        super().__init__(timeout_s)
        self._ca_bundle = ca_bundle
        self._client: Any = None
        self._client_region: Optional[str] = None

    def _aws(self, region: str) -> Any:
        if self._client is None or self._client_region != region:
            from ..checks.awsclient import make_client

            self._client = make_client(self.service, region, self._ca_bundle, connect_timeout=self.timeout_s,
                                       read_timeout=self.timeout_s)
            self._client_region = region
        return self._client

    @staticmethod
    def target(report: Report, action: str) -> Tuple[Optional[str], Optional[str], Optional[str]]:
        """(instance id, region, None), or (None, None, why not) when a fact is missing."""
        instance_id, region = report.facts.instance_id, report.facts.region
        if instance_id and region:
            return instance_id, region, None
        missing = "instance id" if not instance_id else "region"
        return None, None, (f"{missing} unknown (IMDS failed and facts.{missing.replace(' ', '_')} is not set): "
                            f"cannot {action}")


class Unavailable:
    """Stands in for a publisher that could not even be built: reports why on every publish."""

    def __init__(self, name: str, why: str) -> None:
        self.name = name
        self._why = one_line(why)

    def publish(self, report: Report) -> PublishResult:
        return PublishResult(self.name, False, self._why, 0.0)

    def close(self) -> None:
        pass


# What an AWS call's failure means, in one line. Classified by botocore's exception types and the
# service's error code, never by message text.
_HINTS = {
    "InvalidInstanceId": "the SSM agent is not registered or not running on this instance",
    "AccessDeniedException": "the instance profile lacks the permission (AmazonSSMManagedInstanceCore "
                             "has ssm:PutInventory; CloudWatch needs cloudwatch:PutMetricData)",
    "AccessDenied": "the instance profile lacks cloudwatch:PutMetricData",
    "ThrottlingException": "throttled: the next cycle tries again",
    "Throttling": "throttled: the next cycle tries again",
    "CustomSchemaCountLimitExceededException": "the account already has 20 custom inventory types",
}


def describe_aws_error(exc: Exception, operation: str, endpoint: Optional[str]) -> str:
    from botocore import exceptions as bx

    where = endpoint or "the endpoint"
    if isinstance(exc, bx.ClientError):
        error = exc.response.get("Error", {}) if isinstance(exc.response, dict) else {}
        code = error.get("Code") or "Unknown"
        hint = _HINTS.get(code)
        return f"{operation} failed: {code}: {error.get('Message') or exc}" + (f" ({hint})" if hint else "")
    if isinstance(exc, (bx.ConnectTimeoutError, bx.ReadTimeoutError)):
        return f"{operation} failed: timeout talking to {where}: {exception_text(exc)}"
    if isinstance(exc, bx.SSLError):
        return f"{operation} failed: TLS to {where} failed: {exception_text(exc)}"
    if isinstance(exc, bx.EndpointConnectionError):
        return f"{operation} failed: cannot reach {where}: {exception_text(exc)}"
    if isinstance(exc, bx.NoCredentialsError):
        return f"{operation} failed: no AWS credentials (is an instance profile attached?)"
    return f"{operation} failed: {exception_text(exc)}"
