"""CloudWatch metrics through the ``monitoring`` endpoint (``PutMetricData``).

Per finding, dimensions InstanceId and Check: ``CheckHealthy`` 1 (OK) or 0 (anything else), and
where the evidence measured them ``DnsLatency``, ``ConnectTime`` and ``TlsHandshakeTime`` in
Milliseconds. Per instance (dimension InstanceId): ``Healthy`` 1 when the whole report is OK.

Limits (botocore's cloudwatch model, PutMetricData documentation, 1.31 and 1.44 alike): "Each
PutMetricData request is limited to 1 MB in size for HTTP POST requests ... no more than 1000
different metrics"; at most 30 dimensions; a dimension value is 1-1024 characters; NaN and
infinities are rejected. Batches stay under 1000 data and a conservative size estimate.
"""
from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any, Dict, List, Mapping, Optional

from ..checks.model import Finding, Status
from ..report import Report
from .base import AwsPublisher, Outcome, describe_aws_error
from .settings import PublishSettings

MAX_DATA_PER_CALL = 1000
MAX_CALL_BYTES = 1_000_000  # under 1 MB with room for the request's own parameters
MAX_DIMENSION_VALUE = 1024

# Finding ids whose evidence ``latency_ms`` is a DNS lookup (s3.api's is an API call).
_DNS_IDS = ("resolver", "resolver.system", "s3.dns")


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def is_dns_finding(finding: Finding) -> bool:
    return finding.id.startswith("dns.") or finding.id in _DNS_IDS


def latencies_ms(finding: Finding) -> Dict[str, float]:
    """The latencies a finding measured, by metric name; only those of a completed step (a timed-out
    connect's "latency" is the timeout, not a measurement)."""
    ev: Mapping[str, Any] = finding.evidence if isinstance(finding.evidence, Mapping) else {}
    out: Dict[str, float] = {}
    dns = _number(ev.get("latency_ms"))
    if dns is not None and is_dns_finding(finding):
        out["DnsLatency"] = dns
    connect = _number(ev.get("connect_ms"))
    if connect is not None and ev.get("tcp", "connected") == "connected":
        out["ConnectTime"] = connect
    tls = _number(ev.get("tls_ms"))
    if tls is not None and ev.get("tls", "ok") == "ok":
        out["TlsHandshakeTime"] = tls
    return out


def metric_data(report: Report, instance_id: str) -> List[Dict[str, Any]]:
    when = datetime.fromtimestamp(report.started_at, tz=timezone.utc)
    data: List[Dict[str, Any]] = []
    for f in report.findings:
        dims = [{"Name": "InstanceId", "Value": instance_id}, {"Name": "Check", "Value": f.id[:MAX_DIMENSION_VALUE]}]
        data.append({"MetricName": "CheckHealthy", "Dimensions": dims, "Timestamp": when,
                     "Value": 1.0 if f.status == Status.OK else 0.0, "Unit": "None"})
        for name, value in latencies_ms(f).items():
            data.append({"MetricName": name, "Dimensions": dims, "Timestamp": when, "Value": value,
                         "Unit": "Milliseconds"})
    data.append({"MetricName": "Healthy", "Dimensions": [{"Name": "InstanceId", "Value": instance_id}],
                 "Timestamp": when, "Value": 1.0 if report.status == Status.OK else 0.0, "Unit": "None"})
    return data


def _size(datum: Mapping[str, Any]) -> int:
    # Upper bound for the query protocol (the largest encoding botocore may use): every member
    # is "MetricData.member.N.<path>=<url-encoded value>&"; 3 bytes per character covers %XX.
    text = sum(3 * len(str(d["Name"])) + 3 * len(str(d["Value"])) + 80 for d in datum["Dimensions"])
    return 400 + 3 * len(datum["MetricName"]) + text


def batches(data: List[Dict[str, Any]]) -> List[List[Dict[str, Any]]]:
    out: List[List[Dict[str, Any]]] = []
    size = 0
    for datum in data:
        s = _size(datum)
        if not out or len(out[-1]) >= MAX_DATA_PER_CALL or size + s > MAX_CALL_BYTES:
            out.append([])
            size = 0
        out[-1].append(datum)
        size += s
    return out


class CloudWatchPublisher(AwsPublisher):
    name = "cloudwatch"

    service = "cloudwatch"

    def __init__(self, settings: PublishSettings, ca_bundle: Optional[str]) -> None:
        super().__init__(settings.cloudwatch_timeout_s, ca_bundle)
        self.namespace = settings.cloudwatch_namespace

    def _publish(self, report: Report) -> Outcome:
        instance_id, region, why_not = self.target(report, "publish metrics")
        if why_not:
            return False, why_not
        data = metric_data(report, instance_id)
        client = self._aws(region)
        calls = batches(data)
        for batch in calls:
            try:
                client.put_metric_data(Namespace=self.namespace, MetricData=batch)
            except Exception as exc:  # noqa: BLE001 - every failure becomes one line
                return False, describe_aws_error(exc, "PutMetricData", client.meta.endpoint_url)
        return True, (f"PutMetricData {self.namespace}: {len(data)} data points for {instance_id} in "
                      f"{len(calls)} call{'s' if len(calls) != 1 else ''}")
