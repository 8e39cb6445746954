"""CloudWatch metrics through the ``monitoring`` endpoint (``PutMetricData``). Off by default.

Few series, with bounded dimensions, because every distinct name + dimensions is a billed custom
metric (docs/publishing.md has the cost formula):

* per instance (``InstanceId``): ``Healthy`` — 1 when the whole report is OK;
* per VPC and verdict (``VpcId``, ``Verdict``): ``VerdictWorks`` — 1 when the verdict is "works";
* per VPC and interface service (``VpcId``, ``Service``): ``ServiceHealthy`` — 1 when that
  service's DNS, ENI and reach findings are all OK — and ``ConnectTime`` (Milliseconds), the
  slowest completed TCP connect to its ENIs.

The VPC-level series are shared by every instance of the VPC: their ``Minimum`` says whether any
instance failed, ``SampleCount`` how many reported. Per-check and per-ENI detail stays in the
inventory, the last report, ``/metrics`` and the logs.

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


def _services(report: Report) -> List[str]:
    """Interface services the report checked (``dns.<svc>``), in report order."""
    return list(dict.fromkeys(f.id[4:] for f in report.findings if f.id.startswith("dns.")))


def _service_findings(report: Report, service: str) -> List[Finding]:
    own = (f"dns.{service}", f"eni.{service}", f"reach.{service}")
    return [f for f in report.findings if f.id in own or f.id.startswith(f"reach.{service}.")]


def metric_data(report: Report, instance_id: str) -> List[Dict[str, Any]]:
    when = datetime.fromtimestamp(report.started_at, tz=timezone.utc)
    vpc = (report.facts.vpc_id or "unknown")[:MAX_DIMENSION_VALUE]

    def datum(name: str, dims: Dict[str, str], value: float, unit: str = "None") -> Dict[str, Any]:
        return {"MetricName": name, "Dimensions": [{"Name": k, "Value": v[:MAX_DIMENSION_VALUE]} for k, v in dims.items()],
                "Timestamp": when, "Value": value, "Unit": unit}

    data = [datum("Healthy", {"InstanceId": instance_id}, 1.0 if report.status == Status.OK else 0.0)]
    for v in report.verdicts:
        data.append(datum("VerdictWorks", {"VpcId": vpc, "Verdict": v.name}, 1.0 if v.status == "works" else 0.0))
    for service in _services(report):
        mine = _service_findings(report, service)
        healthy = all(f.status == Status.OK for f in mine)
        data.append(datum("ServiceHealthy", {"VpcId": vpc, "Service": service}, 1.0 if healthy else 0.0))
        connects = [ms for f in mine for name, ms in latencies_ms(f).items() if name == "ConnectTime"]
        if connects:
            data.append(datum("ConnectTime", {"VpcId": vpc, "Service": service}, max(connects), "Milliseconds"))
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
