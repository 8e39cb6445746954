"""The publishers against real counterparts on loopback.

* SSM inventory and CloudWatch: the lab's AWS layer (``python -m tests.lab.aws --listen 127.0.0.1:0``,
  one process for the module) — PutInventory validated like the service, GetInventory and
  ListInventoryEntries to read back, CloudWatch served by moto. Every client has endpoint_url
  https://127.0.0.1:PORT and trusts only the test CA: nothing leaves loopback.
* The inventory file and the last report: real files in a temp dir.
* The HTTP endpoint: real HTTP requests to 127.0.0.1.
* Timeouts: a listener that accepts TCP connections and never answers.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import socket
import sys
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import pytest

from vpce_doctor.checks import awsclient
from vpce_doctor.checks.model import Facts, Finding, Status
from vpce_doctor.errors import ConfigError
from vpce_doctor.publishers import PublishSettings, build_publishers
from vpce_doctor.publishers import base, cloudwatch, inventory
from vpce_doctor.publishers.http import HttpPublisher
from vpce_doctor.publishers.inventory_file import InventoryFilePublisher
from vpce_doctor.render import render_json
from vpce_doctor.report import Report, verdicts
from tests.lab.aws.loopback import LoopbackLayer, loopback_world

try:
    from tests.unit.moto_fixture import aws_env
except ImportError:  # tests/unit on sys.path
    from moto_fixture import aws_env  # type: ignore

__all__ = ["aws_env"]

REGION = "us-east-1"
READY_TIMEOUT_S = 60.0
UNREGISTERED = "i-0123456789abcdef0"
TYPE, VERDICT_TYPE = "Custom:VpceDoctor", "Custom:VpceDoctorVerdict"
# The attribute set of every entry (same names, same case).
FINDING_KEYS = {"CheckId", "Status", "Summary", "Cause", "CauseCode", "Fix", "Evidence", "CheckedAt", "AgentVersion",
                # the fleet contract (issue 13): the same names in every entry
                "BlockedBy", "StatusSince", "PreviousStatus", "CauseResourceType", "CauseResourceId", "CauseResourceName",
                "AwsAccountId", "AwsRegion", "VpcId", "SubnetId", "AvailabilityZone", "SecurityGroupIds", "RoleName"}
VERDICT_KEYS = {"Verdict", "Status", "Reason", "CheckedAt", "AgentVersion"}

@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackLayer]:
    pytest.importorskip("trustme")
    pytest.importorskip("moto")
    layer = LoopbackLayer(tmp_path_factory.mktemp("aws-layer"), loopback_world("pub"))
    try:
        layer.wait_ready(READY_TIMEOUT_S)
        yield layer
    finally:
        layer.stop()


@pytest.fixture
def aws(lab: LoopbackLayer, aws_env: Dict[str, str], monkeypatch: pytest.MonkeyPatch) -> LoopbackLayer:
    """The publishers' clients talk to the lab (ssm and monitoring) with the instance's credentials."""
    creds = lab.ids["credentials"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", creds["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", creds["SecretAccessKey"])
    monkeypatch.setenv("AWS_SESSION_TOKEN", creds["Token"])
    monkeypatch.setattr(awsclient, "ENDPOINT_URLS", {"ssm": lab.url, "cloudwatch": lab.url})
    return lab


# --- reports ----------------------------------------------------------------------------------------

def findings_sample(tag: str = "") -> List[Finding]:
    return [
        Finding("imds", Status.OK, "IMDSv2 answered in 2 ms", evidence={"state": "ok"}, duration_s=0.002),
        Finding("resolver", Status.OK, "10.0.0.2 answered", evidence={"server": "10.0.0.2", "latency_ms": 0.8}),
        Finding("dns.ssm", Status.CRITICAL, "ssm.us-east-1.amazonaws.com resolves to public 198.51.100.64",
                cause_code="private_dns_disabled", cause="Private DNS is off for the ssm endpoint" + tag,
                fix="aws ec2 modify-vpc-endpoint --vpc-endpoint-id vpce-0123 --private-dns-enabled",
                evidence={"answers": ["198.51.100.64"], "ttl": 60, "latency_ms": 1.2}, duration_s=0.01),
        Finding("reach.ssm.10.0.1.101", Status.OK, "10.0.1.101:443 accepts TLS — ünïcødé ✓",
                evidence={"ip": "10.0.1.101", "tcp": "connected", "connect_ms": 0.6, "tls": "ok", "tls_ms": 3.1},
                duration_s=0.004),
        Finding("reach.ssm.10.0.2.101", Status.WARNING, "10.0.2.101:443 TCP timeout",
                cause_code="tcp_timeout", cause="no answer", fix="check the security group",
                evidence={"ip": "10.0.2.101", "tcp": "timeout", "connect_ms": 2000.0, "tls": "not attempted"}),
        Finding("s3.api", Status.CRITICAL, "blocked by s3.dns", blocked_by="s3.dns"),  # a blocker's status
    ]


def make_report(findings: Sequence[Finding], instance_id: Optional[str], started_at: float = 0.0,
                region: Optional[str] = REGION, vpc_id: Optional[str] = None) -> Report:
    return Report(tuple(findings), Facts(region=region, instance_id=instance_id, vpc_id=vpc_id), verdicts(findings),
                  started_at or time.time(), 1.25)


def expected_entries(report: Report) -> List[Dict[str, str]]:
    checked = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(report.started_at))
    return [{"CheckId": f.id, "Status": f.status.name, "Summary": f.summary, "Cause": f.cause or "",
             "CauseCode": f.cause_code or "", "Fix": f.fix or "",
             "Evidence": json.dumps(dict(f.evidence), separators=(",", ":"), sort_keys=True, ensure_ascii=False),
             "CheckedAt": checked, "AgentVersion": report.version,
             # the fleet view's attributes: what the cause points at, and the instance's context
             "BlockedBy": f.blocked_by or "", "StatusSince": checked, "PreviousStatus": "",
             "CauseResourceType": (f.resource or {}).get("type", ""), "CauseResourceId": (f.resource or {}).get("id", ""),
             "CauseResourceName": (f.resource or {}).get("name", ""), "AwsAccountId": report.facts.account_id or "",
             "AwsRegion": report.facts.region or "", "VpcId": report.facts.vpc_id or "",
             "SubnetId": report.facts.subnet_id or "", "AvailabilityZone": report.facts.availability_zone or "",
             "SecurityGroupIds": ",".join(sorted(report.facts.security_group_ids)), "RoleName": ""}
            for f in report.findings]


def stored(lab: LoopbackLayer, type_name: str = TYPE, instance_id: Optional[str] = None) -> Dict[str, Any]:
    """ListInventoryEntries, every page."""
    ssm = lab.client("ssm")
    kwargs: Dict[str, Any] = {"InstanceId": instance_id or lab.instance_id, "TypeName": type_name}
    entries: List[Dict[str, str]] = []
    while True:
        page = ssm.list_inventory_entries(**kwargs)
        entries += page["Entries"]
        if not page.get("NextToken"):
            return dict(page, Entries=entries)
        kwargs["NextToken"] = page["NextToken"]


def settings(**changes: Any) -> PublishSettings:
    return replace(PublishSettings(), **changes)


class CallLog:
    """Records every PutInventory / PutMetricData request the publishers' clients send."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: List[Dict[str, Any]] = []
        real = awsclient.make_client

        def make(*args: Any, **kwargs: Any) -> Any:
            client = real(*args, **kwargs)
            client.meta.events.register("provide-client-params.*.*", self._record)
            return client

        monkeypatch.setattr(awsclient, "make_client", make)

    def _record(self, params: Dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append({"operation": model.name, "params": params})

    def of(self, operation: str) -> List[Dict[str, Any]]:
        return [c["params"] for c in self.calls if c["operation"] == operation]


@pytest.fixture
def call_log(monkeypatch: pytest.MonkeyPatch) -> CallLog:
    return CallLog(monkeypatch)


# --- SSM inventory through PutInventory --------------------------------------------------------------

def test_put_inventory_reads_back_exactly_the_findings(aws: LoopbackLayer) -> None:
    report = make_report(findings_sample(uuid.uuid4().hex), aws.instance_id)
    result = inventory.InventoryPublisher(settings(), str(aws.ca)).publish(report)
    assert result.ok, result.detail
    assert result.publisher == "inventory" and "\n" not in result.detail

    listed = stored(aws)
    assert listed["Entries"] == expected_entries(report)
    assert all(set(e) == FINDING_KEYS for e in listed["Entries"])
    assert listed["SchemaVersion"] == "1.0"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", listed["CaptureTime"])
    got = aws.client("ssm").get_inventory(
        Filters=[{"Key": "AWS:InstanceInformation.InstanceId", "Values": [aws.instance_id]}],
        ResultAttributes=[{"TypeName": TYPE}])
    assert got["Entities"][0]["Data"][TYPE]["Content"] == expected_entries(report)
    # A fleet query: which instances have a CRITICAL check?
    critical = aws.client("ssm").get_inventory(
        Filters=[{"Key": f"{TYPE}.Status", "Values": ["CRITICAL"], "Type": "Equal"}], ResultAttributes=[{"TypeName": TYPE}])
    assert [e["Id"] for e in critical["Entities"]] == [aws.instance_id]

    verdict_entries = stored(aws, VERDICT_TYPE)["Entries"]
    assert [(e["Verdict"], e["Status"], e["Reason"]) for e in verdict_entries] == \
        [(v.name, v.status, v.reason) for v in report.verdicts]
    assert all(set(e) == VERDICT_KEYS for e in verdict_entries)


def test_unchanged_diagnosis_costs_nothing(aws: LoopbackLayer, call_log: CallLog) -> None:
    tag = uuid.uuid4().hex
    t1 = time.mktime((2031, 1, 5, 10, 0, 0, 0, 0, 0)) - time.timezone
    first = make_report(findings_sample(tag), aws.instance_id, started_at=t1)
    publisher = inventory.InventoryPublisher(settings(), str(aws.ca))
    assert publisher.publish(first).ok
    assert len(call_log.of("PutInventory")) == 1

    # Next cycle, five minutes later: new latencies (in evidence and OK summaries), the same diagnosis.
    wobble = [replace(f, summary=f.summary + (" in 9.9 ms" if f.status == Status.OK else ""),
                      evidence=dict(f.evidence, latency_ms=9.9)) for f in findings_sample(tag)]
    second = make_report(wobble, aws.instance_id, started_at=t1 + 300)
    result = publisher.publish(second)
    assert result.ok and "unchanged" in result.detail
    assert len(call_log.of("PutInventory")) == 1  # we did not even call

    # A restarted agent has no memory: it calls, and the service skips the item by its ContentHash.
    fresh = inventory.InventoryPublisher(settings(), str(aws.ca))
    assert fresh.publish(second).ok
    assert len(call_log.of("PutInventory")) == 2
    sent = call_log.of("PutInventory")[-1]["Items"]
    assert all(len(item["ContentHash"]) == 64 for item in sent)
    kept = stored(aws)
    assert kept["CaptureTime"] == "2031-01-05T10:00:00Z" and kept["Entries"] == expected_entries(first)

    # A changed diagnosis is stored at once …
    changed = [replace(f, status=Status.OK, cause=None, cause_code=None, fix=None) if f.id == "dns.ssm" else f
               for f in wobble]
    third = make_report(changed, aws.instance_id, started_at=t1 + 600)
    assert publisher.publish(third).ok
    assert stored(aws)["Entries"] == expected_entries(third)
    # … and an unchanged one once a day (a heartbeat for "CheckedAt is recent" queries).
    fourth = make_report(changed, aws.instance_id, started_at=t1 + 86400)
    assert publisher.publish(fourth).ok
    assert stored(aws)["CaptureTime"] == "2031-01-06T10:00:00Z"


def test_long_values_are_cut_safely(aws: LoopbackLayer) -> None:
    huge_evidence = {"stderr": "x" * 10_000, "answers": [f"10.0.{i}.1" for i in range(2000)], "n": 1}
    findings = [
        Finding("s3.api", Status.CRITICAL, "é" * 5000, cause="🙂" * 3000, fix="a" * 4095 + "€",
                evidence=huge_evidence),
        Finding("imds", Status.OK, "ok", evidence={"traceback": "\udcff bad bytes"}),
    ]
    report = make_report(findings, aws.instance_id)
    result = inventory.InventoryPublisher(settings(), str(aws.ca)).publish(report)
    assert result.ok, result.detail
    entry = stored(aws)["Entries"][0]
    for key in ("Summary", "Cause", "Fix", "Evidence"):
        assert len(entry[key].encode("utf-8")) <= 4096, key
        assert "\ufffd" not in entry[key], key  # no character was split
    assert entry["Summary"].endswith(inventory.MARKER) and set(entry["Summary"][:-len(inventory.MARKER)]) == {"é"}
    assert set(entry["Cause"][:-len(inventory.MARKER)]) == {"🙂"}
    evidence = json.loads(entry["Evidence"])  # still valid JSON, structure kept
    assert evidence["n"] == 1 and evidence["stderr"].endswith(inventory.MARKER)
    assert evidence["answers"][-1].startswith("…[+")
    assert json.loads(stored(aws)["Entries"][1]["Evidence"]) == {"traceback": "? bad bytes"}


def test_sixty_findings_are_one_item_in_one_call(aws: LoopbackLayer, call_log: CallLog) -> None:
    findings = [Finding(f"reach.svc{i}.10.0.1.{i}", Status.OK if i % 3 else Status.WARNING, f"check {i}",
                        evidence={"ip": f"10.0.1.{i}", "connect_ms": float(i)}) for i in range(60)]
    report = make_report(findings, aws.instance_id)
    result = inventory.InventoryPublisher(settings(), str(aws.ca)).publish(report)
    assert result.ok, result.detail
    calls = call_log.of("PutInventory")
    # The 30-per-call limit counts items (types), not entries: 60 findings are one item.
    assert len(calls) == 1 and [len(i["Content"]) for i in calls[0]["Items"]] == [60, 4]
    assert stored(aws)["Entries"] == expected_entries(report)


def test_items_are_batched_by_thirty_and_by_size() -> None:
    item = inventory.InventoryItem("Custom:X", "2031-01-01T00:00:00Z", ({"A": "1"},), "h")
    assert [len(b) for b in inventory.batches([item] * 61)] == [30, 30, 1]
    big = replace(item, content=tuple({"A": "v" * 4000, "N": str(i)} for i in range(100)))  # ~400 KB each
    assert [len(b) for b in inventory.batches([big] * 5)] == [2, 2, 1]


def test_findings_beyond_the_item_size_are_shortened_alike() -> None:
    findings = [Finding(f"f{i}", Status.OK, "s" * 3000, evidence={"blob": "b" * 3000}) for i in range(120)]
    content = inventory.build_inventory(make_report(findings, UNREGISTERED), TYPE, VERDICT_TYPE)
    entries = content.items[0].content
    assert len(entries) == 120 and len(json.dumps(list(entries)).encode()) <= 200 * 1024
    assert content.notes and "Evidence cut" in content.notes[0]
    assert all(json.loads(e["Evidence"]) for e in entries)


def test_unregistered_instance_is_a_one_line_failure(aws: LoopbackLayer) -> None:
    result = inventory.InventoryPublisher(settings(), str(aws.ca)).publish(make_report(findings_sample(), UNREGISTERED))
    assert not result.ok
    assert "InvalidInstanceId" in result.detail and "not registered" in result.detail and "\n" not in result.detail


def test_unknown_instance_id_or_region_fails_without_a_call(call_log: CallLog, aws_env: Dict[str, str]) -> None:
    pub = inventory.InventoryPublisher(settings(), None)
    result = pub.publish(make_report(findings_sample(), None))
    assert not result.ok and "instance id unknown" in result.detail
    assert not pub.publish(make_report(findings_sample(), UNREGISTERED, region=None)).ok
    assert call_log.calls == []


# --- timeouts: a listener that accepts and never answers ---------------------------------------------

@pytest.fixture
def black_hole() -> Iterator[str]:
    """A TCP listener whose backlog completes handshakes; nobody ever reads or answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"https://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


@pytest.mark.parametrize("make", [
    lambda ca: inventory.InventoryPublisher(settings(inventory_timeout_s=0.5), ca),
    lambda ca: cloudwatch.CloudWatchPublisher(settings(cloudwatch_timeout_s=0.5), ca),
], ids=["inventory", "cloudwatch"])
def test_a_silent_endpoint_costs_only_the_timeout(make: Any, black_hole: str, aws_env: Dict[str, str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(awsclient, "ENDPOINT_URLS", {"ssm": black_hole, "cloudwatch": black_hole})
    publisher = make(None)
    started = time.monotonic()
    result = publisher.publish(make_report(findings_sample(), UNREGISTERED))
    took = time.monotonic() - started
    assert not result.ok and "tim" in result.detail.lower(), result.detail
    assert took < 0.5 + 1.0
    assert result.duration_s <= took


class _Blocking(base.BoundedPublisher):
    name = "blocking"

    def __init__(self, release: threading.Event) -> None:
        super().__init__(0.2)
        self.release = release

    def _publish(self, report: Report) -> base.Outcome:
        if not self.release.is_set():
            self.release.wait(30)
            return True, "late"
        return True, "done"


def test_a_stuck_call_is_abandoned_and_not_piled_up() -> None:
    release = threading.Event()
    publisher = _Blocking(release)
    report = make_report(findings_sample(), UNREGISTERED)
    first = publisher.publish(report)
    assert not first.ok and first.detail == "timed out after 0.2 s" and first.duration_s < 1.0
    second = publisher.publish(report)
    assert not second.ok and second.detail.startswith("skipped: the previous call is still stuck")
    stuck = publisher._stuck
    release.set()
    assert stuck is not None
    stuck.join(5)
    third = publisher.publish(report)
    assert third.ok and third.detail == "done"


def test_a_raising_publisher_reports_instead_of_raising() -> None:
    class Broken(base.BoundedPublisher):
        name = "broken"

        def _publish(self, report: Report) -> base.Outcome:
            raise RuntimeError("boom\nsecond line")

    result = Broken(1.0).publish(make_report(findings_sample(), UNREGISTERED))
    assert not result.ok and result.detail == "RuntimeError: boom second line"


# --- CloudWatch ----------------------------------------------------------------------------------------

def test_cloudwatch_metrics_arrive(aws: LoopbackLayer) -> None:
    namespace = f"VpceDoctorTest{uuid.uuid4().hex[:8]}"
    report = make_report(findings_sample(), aws.instance_id, vpc_id="vpc-0123456789abcdef0")
    result = cloudwatch.CloudWatchPublisher(settings(cloudwatch_namespace=namespace), str(aws.ca)).publish(report)
    assert result.ok, result.detail

    cw = aws.client("cloudwatch")
    metrics = cw.list_metrics(Namespace=namespace)["Metrics"]
    seen = {(m["MetricName"], tuple(sorted((d["Name"], d["Value"]) for d in m["Dimensions"]))) for m in metrics}
    iid, vpc = aws.instance_id, "vpc-0123456789abcdef0"
    assert seen == {("Healthy", (("InstanceId", iid),)),
                    *{("VerdictWorks", (("Verdict", v.name), ("VpcId", vpc))) for v in report.verdicts},
                    ("ServiceHealthy", (("Service", "ssm"), ("VpcId", vpc))),
                    ("ConnectTime", (("Service", "ssm"), ("VpcId", vpc)))}

    def value(name: str, dimensions: List[Dict[str, str]]) -> List[float]:
        got = cw.get_metric_data(
            MetricDataQueries=[{"Id": "m", "MetricStat": {"Metric": {"Namespace": namespace, "MetricName": name,
                                                                      "Dimensions": dimensions},
                                                           "Period": 60, "Stat": "Maximum"}}],
            StartTime=report.started_at - 600, EndTime=report.started_at + 600)
        return got["MetricDataResults"][0]["Values"]

    assert value("Healthy", [{"Name": "InstanceId", "Value": iid}]) == [0.0]
    service = [{"Name": "VpcId", "Value": vpc}, {"Name": "Service", "Value": "ssm"}]
    assert value("ServiceHealthy", service) == [0.0]
    # Only the completed connect (0.6 ms) counts; the timed-out one measured nothing.
    assert value("ConnectTime", service) == [0.6]


def test_cloudwatch_series_per_report_are_bounded() -> None:
    """Issue 14: ~45 series per instance (per check and ENI IP) cost ~$10k a month for 2,000
    instances. Now: 1 per instance, 4 + 2 per service per VPC, whatever the number of ENIs/checks."""
    findings: List[Finding] = [Finding("imds", Status.OK, "ok")]
    for svc in ("ssm", "ec2messages", "ssmmessages"):
        findings += [Finding(f"dns.{svc}", Status.OK, "ok", evidence={"latency_ms": 1.0}),
                     Finding(f"eni.{svc}", Status.OK, "ok")]
        findings += [Finding(f"reach.{svc}.10.0.{az}.20", Status.OK, "ok",
                             evidence={"ip": f"10.0.{az}.20", "tcp": "connected", "connect_ms": 1.0 + az,
                                       "tls": "ok", "tls_ms": 2.0}) for az in range(1, 4)]
    findings += [Finding(f"egress.host{i}", Status.OK, "blocked") for i in range(5)]
    report = make_report(findings, "i-0123456789abcdef0", vpc_id="vpc-0123456789abcdef0")
    data = cloudwatch.metric_data(report, "i-0123456789abcdef0")
    series = {(d["MetricName"], tuple((x["Name"], x["Value"]) for x in d["Dimensions"])) for d in data}
    print(f"CloudWatch series per report: {len(series)} (3 services, 9 ENIs, {len(findings)} findings)")
    assert len(series) == len(data) == 1 + 4 + 2 * 3
    assert not any("10.0." in value for _, dims in series for _, value in dims)  # never per ENI IP
    assert {d["Value"] for d in data if d["MetricName"] == "ConnectTime"} == {4.0}  # the slowest ENI


def test_cloudwatch_batches_stay_under_the_limits(aws: LoopbackLayer, call_log: CallLog) -> None:
    findings = [Finding(f"reach.s{i}.10.0.1.1", Status.OK, "ok",
                        evidence={"tcp": "connected", "connect_ms": 1.0, "tls": "ok", "tls_ms": 2.0})
                for i in range(598)] + [Finding(f"dns.s{i}", Status.OK, "ok") for i in range(598)]
    namespace = f"VpceDoctorTest{uuid.uuid4().hex[:8]}"
    # moto takes seconds to parse 1,000 data points in the query protocol (botocore 1.31): a long timeout.
    publisher = cloudwatch.CloudWatchPublisher(settings(cloudwatch_namespace=namespace, cloudwatch_timeout_s=60),
                                               str(aws.ca))
    result = publisher.publish(make_report(findings, aws.instance_id))
    assert result.ok, result.detail
    print(f"2 PutMetricData calls with 1,201 data points took {result.duration_s:.2f} s")
    sizes = [len(c["MetricData"]) for c in call_log.of("PutMetricData")]
    assert sizes == [1000, 201]
    long_ids = [{"MetricName": "CheckHealthy", "Dimensions": [{"Name": "Check", "Value": "c" * 1024}], "Value": 1.0}]
    assert all(sum(cloudwatch._size(d) for d in b) <= cloudwatch.MAX_CALL_BYTES
               for b in cloudwatch.batches(long_ids * 1000))


def test_cloudwatch_failure_is_one_line(aws_env: Dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a port with nothing listening: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(awsclient, "ENDPOINT_URLS", {"cloudwatch": f"https://127.0.0.1:{port}"})
    result = cloudwatch.CloudWatchPublisher(settings(), None).publish(make_report(findings_sample(), UNREGISTERED))
    assert not result.ok and result.detail.startswith("PutMetricData failed: cannot reach") and "\n" not in result.detail


# --- the custom inventory file --------------------------------------------------------------------------

def agent_accepts(path: Path) -> Dict[str, Any]:
    """What amazon-ssm-agent's custom gatherer (customGatherer.go) checks for one file."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert re.fullmatch(r"([0-9]{1,6})(\.[0-9]{1,6})", doc["SchemaVersion"])
    assert doc["TypeName"].startswith("Custom:") and 0 < len(doc["TypeName"]) <= 100
    assert isinstance(doc["Content"], list)
    for entry in doc["Content"]:
        assert isinstance(entry, dict) and len(entry) <= 50
        for name, value in entry.items():
            assert 0 < len(name.encode()) <= 64
            assert isinstance(value, str) and len(value.encode()) <= 4096  # Go len(): bytes
    return doc


def test_inventory_file_in_the_agent_format(tmp_path: Path) -> None:
    report = make_report(findings_sample(), UNREGISTERED)
    publisher = InventoryFilePublisher(settings(inventory_file_root=str(tmp_path)))
    result = publisher.publish(report)
    assert result.ok, result.detail
    folder = tmp_path / UNREGISTERED / "inventory" / "custom"
    assert sorted(os.listdir(folder)) == ["VpceDoctor.json", "VpceDoctorVerdict.json"]  # no temp files
    findings_doc = agent_accepts(folder / "VpceDoctor.json")
    verdict_doc = agent_accepts(folder / "VpceDoctorVerdict.json")
    assert findings_doc == {"SchemaVersion": "1.0", "TypeName": TYPE, "Content": expected_entries(report)}
    assert verdict_doc["TypeName"] == VERDICT_TYPE and len(verdict_doc["Content"]) == 4
    # The same content PutInventory sends.
    content = inventory.build_inventory(report, TYPE, VERDICT_TYPE)
    assert [i.file_document() for i in content.items] == [findings_doc, verdict_doc]
    assert (folder / "VpceDoctor.json").stat().st_mode & 0o777 == 0o644


def test_inventory_file_rewritten_only_when_the_diagnosis_changes(tmp_path: Path) -> None:
    publisher = InventoryFilePublisher(settings(inventory_file_root=str(tmp_path)))
    path = tmp_path / UNREGISTERED / "inventory" / "custom" / "VpceDoctor.json"
    assert publisher.publish(make_report(findings_sample(), UNREGISTERED)).ok
    inode = path.stat().st_ino
    again = publisher.publish(make_report(findings_sample(), UNREGISTERED))
    assert again.ok and "unchanged" in again.detail and path.stat().st_ino == inode
    changed = [replace(f, status=Status.OK) for f in findings_sample()]
    assert publisher.publish(make_report(changed, UNREGISTERED)).ok
    assert path.stat().st_ino != inode and "CRITICAL" not in path.read_text()
    path.unlink()  # someone removed it: written again even though nothing changed
    assert publisher.publish(make_report(changed, UNREGISTERED)).ok and path.exists()


def test_inventory_file_refusals(tmp_path: Path) -> None:
    missing = InventoryFilePublisher(settings(inventory_file_root=str(tmp_path / "no-agent")))
    result = missing.publish(make_report(findings_sample(), UNREGISTERED))
    assert not result.ok and "is the SSM agent installed" in result.detail
    assert not (tmp_path / "no-agent").exists()

    publisher = InventoryFilePublisher(settings(inventory_file_root=str(tmp_path)))
    assert "instance id unknown" in publisher.publish(make_report(findings_sample(), None)).detail
    folder = tmp_path / UNREGISTERED / "inventory" / "custom"
    folder.mkdir(parents=True)
    for i in range(20):
        (folder / f"Other{i}.json").write_text("{}")
    crowded = publisher.publish(make_report(findings_sample(), UNREGISTERED))
    assert not crowded.ok and "22 .json files" in crowded.detail and "above 20" in crowded.detail


# --- the last report ------------------------------------------------------------------------------------

def test_last_report_is_the_json_report(tmp_path: Path) -> None:
    report = make_report(findings_sample(), UNREGISTERED)
    (publisher,) = build_publishers(settings(publishers=("last_report",)), str(tmp_path / "state"), None)
    result = publisher.publish(report)
    assert result.ok, result.detail
    path = tmp_path / "state" / "last-report.json"
    assert json.loads(path.read_text()) == json.loads(render_json(report))
    assert os.listdir(path.parent) == ["last-report.json"]

    custom = tmp_path / "elsewhere" / "r.json"
    (other,) = build_publishers(settings(publishers=("last_report",), last_report_path=str(custom)), "/nonexistent", None)
    assert other.publish(report).ok and json.loads(custom.read_text())["status"] == "CRITICAL"


def test_last_report_failure_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    (publisher,) = build_publishers(settings(publishers=("last_report",)), str(blocker / "state"), None)
    result = publisher.publish(make_report(findings_sample(), UNREGISTERED))
    assert not result.ok and result.detail.startswith("cannot write") and "\n" not in result.detail


# --- the HTTP endpoint ----------------------------------------------------------------------------------

def get(address: Any, path: str, method: str = "GET") -> "tuple[int, Dict[str, str], bytes]":
    conn = http.client.HTTPConnection(address[0], address[1], timeout=5)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.fixture
def endpoint() -> Iterator[HttpPublisher]:
    publisher = HttpPublisher(settings(publishers=("http",), http_port=0))
    try:
        yield publisher
    finally:
        publisher.close()


def test_http_before_the_first_report(endpoint: HttpPublisher) -> None:
    assert endpoint.address is not None and endpoint.address[0] == "127.0.0.1"
    assert get(endpoint.address, "/healthz")[0] == 503
    assert get(endpoint.address, "/report")[0] == 503
    assert get(endpoint.address, "/nope")[0] == 404


def test_http_serves_health_report_and_metrics(endpoint: HttpPublisher) -> None:
    prometheus_parser = pytest.importorskip("prometheus_client.parser")
    ok_findings = [replace(f, status=Status.OK, blocked_by=None) for f in findings_sample()]
    ok_report = make_report(ok_findings, UNREGISTERED)
    result = endpoint.publish(ok_report)
    assert result.ok and str(endpoint.address[1]) in result.detail

    status, _, body = get(endpoint.address, "/healthz")
    assert (status, body) == (200, b"OK\n")
    status, headers, body = get(endpoint.address, "/report")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == json.loads(render_json(ok_report))
    status, headers, body = get(endpoint.address, "/healthz", "HEAD")
    assert (status, headers["Content-Length"], body) == (200, "3", b"")

    bad = make_report(findings_sample(), UNREGISTERED)
    endpoint.publish(bad)
    status, _, body = get(endpoint.address, "/healthz?verbose=1")
    assert status == 503 and body.startswith(b"CRITICAL: dns.ssm: ") and body.count(b"\n") == 1

    status, headers, body = get(endpoint.address, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in prometheus_parser.text_string_to_metric_families(body.decode()) for s in fam.samples}
    assert samples[("vpce_doctor_check_success", (("check", "dns.ssm"),))] == 0
    assert samples[("vpce_doctor_check_success", (("check", "imds"),))] == 1
    assert samples[("vpce_doctor_check_status", (("check", "dns.ssm"),))] == 2
    assert samples[("vpce_doctor_check_duration_seconds", (("check", "dns.ssm"),))] == 0.01
    assert samples[("vpce_doctor_dns_lookup_time_seconds", (("check", "dns.ssm"),))] == pytest.approx(0.0012)
    key = (("check", "reach.ssm.10.0.1.101"), ("ip", "10.0.1.101"))
    assert samples[("vpce_doctor_tcp_connect_time_seconds", key)] == pytest.approx(0.0006)
    assert samples[("vpce_doctor_tls_handshake_time_seconds", key)] == pytest.approx(0.0031)
    assert ("vpce_doctor_tcp_connect_time_seconds", (("check", "reach.ssm.10.0.2.101"), ("ip", "10.0.2.101"))) \
        not in samples  # a timeout is not a connect time
    assert samples[("vpce_doctor_verdict_works", (("verdict", "session_manager"),))] == 0
    assert samples[("vpce_doctor_status", ())] == 2
    assert samples[("vpce_doctor_last_run_timestamp_seconds", ())] == pytest.approx(bad.started_at + 1.25)
    assert any(name == "vpce_doctor_build_info" for name, _ in samples)


def test_http_metrics_without_prometheus_client(endpoint: HttpPublisher, monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # "not installed": the import fails
    endpoint.publish(make_report(findings_sample(), UNREGISTERED))
    with caplog.at_level("WARNING", logger="vpce_doctor.publishers.http"):
        for _ in range(3):
            status, _, body = get(endpoint.address, "/metrics")
            assert status == 501 and b"vpce-doctor[prometheus]" in body and body.count(b"\n") == 1
    assert len([r for r in caplog.records if "prometheus-client" in r.getMessage()]) == 1
    assert get(endpoint.address, "/healthz")[0] == 503  # the rest still works


def test_http_port_in_use_is_reported_and_retried() -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    (publisher,) = build_publishers(settings(publishers=("http",), http_port=port), "/nonexistent", None)
    try:
        result = publisher.publish(make_report(findings_sample(), UNREGISTERED))
        assert not result.ok and f"cannot listen on 127.0.0.1:{port}" in result.detail
        holder.close()
        assert publisher.publish(make_report(findings_sample(), UNREGISTERED)).ok
        assert get(("127.0.0.1", port), "/healthz")[0] == 503
    finally:
        holder.close()
        publisher.close()


def test_http_close_stops_listening() -> None:
    publisher = HttpPublisher(settings(http_port=0))
    address = publisher.address
    publisher.close()
    with pytest.raises(OSError):
        get(address, "/healthz")


# --- settings and the factory ---------------------------------------------------------------------------

def test_settings_from_the_publish_section() -> None:
    assert PublishSettings.from_values(None) == PublishSettings()
    s = PublishSettings.from_values({"publishers": ["http", "last_report", "http"],
                                     "inventory": {"type_name": "Custom:Net", "timeout_s": 3},
                                     "http": {"bind": "::1", "port": 9100}, "last_report": {"path": None}})
    assert s.publishers == ("http", "last_report") and s.verdict_type_name == "Custom:NetVerdict"
    assert (s.inventory_timeout_s, s.http_bind, s.http_port, s.last_report_path) == (3.0, "::1", 9100, None)


@pytest.mark.parametrize("section, where", [
    ({"publishers": ["last_report", "syslog"]}, 'publish.publishers[1]: "syslog" is not a publisher'),
    ({"publishers": "http"}, "publish.publishers: 'http' is not a list"),
    ({"inventory": {"type_name": "Vendor:X"}}, 'publish.inventory.type_name: "Vendor:X" does not start with Custom:'),
    ({"inventory": {"type_name": "Custom:" + "x" * 90}}, "publish.inventory.type_name:"),
    ({"cloudwatch": {"namespace": "AWS/EC2"}}, "publish.cloudwatch.namespace:"),
    ({"http": {"port": 70000}}, "publish.http.port: 70000 is not a port"),
    ({"http": {"bind": "localhost"}}, 'publish.http.bind: "localhost" is not an IP address'),
    ({"inventory_file": {"root": "relative/dir"}}, "publish.inventory_file.root:"),
    ({"inventory": {"type_name": "Custom:" + "A" * 100000}}, "publish.inventory.type_name: \"Custom:AAA"),
    ({"last_report": {"path": "r.json"}}, "publish.last_report.path:"),
    ({"cloudwatch": {"timeout_s": 0}}, "publish.cloudwatch.timeout_s:"),
])
def test_bad_publish_settings_name_the_key(section: Dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        PublishSettings.from_values(section)
    message = str(caught.value)
    assert message.startswith(where) and "; expected " in message and "\n" not in message
    assert len(message) < 400  # a huge value is shown cut, the line stays readable


def test_factory_builds_in_order_and_never_raises(tmp_path: Path) -> None:
    s = settings(publishers=("last_report", "inventory", "inventory_file", "cloudwatch", "bogus"))
    built = build_publishers(s, str(tmp_path), None)
    assert [p.name for p in built] == ["last_report", "inventory", "inventory_file", "cloudwatch", "bogus"]
    result = built[-1].publish(make_report(findings_sample(), UNREGISTERED))
    assert not result.ok and "unknown publisher 'bogus'" in result.detail
    for p in built:
        p.close()


# --- safe truncation ------------------------------------------------------------------------------------

@pytest.mark.parametrize("char", ["a", "é", "€", "🙂"])
@pytest.mark.parametrize("count", [4000, 4096, 5000])
def test_fit_text_never_splits_a_character(char: str, count: int) -> None:
    for prefix in ("", "x", "xy", "xyz"):  # shift the cut across every byte of a character
        text = prefix + char * count
        out = inventory.fit_text(text)
        raw = out.encode("utf-8")
        assert len(raw) <= 4096
        if len(text.encode()) <= 4096:
            assert out == text
        else:
            assert out.endswith(inventory.MARKER) and text.startswith(out[:-len(inventory.MARKER)])
            assert len(raw) > 4096 - 4 - len(inventory.MARKER.encode())  # used the room


def test_fit_json_stays_valid_json() -> None:
    wide = {f"key{i}": i for i in range(2000)}  # no long string or list to shorten
    out = inventory.fit_json(wide)
    assert len(out.encode()) <= 4096 and json.loads(out)["_truncated"].endswith(inventory.MARKER)
    odd = inventory.fit_json({1: float("nan"), "s": {3, 4}, "o": object.__name__, "b": b"x"})
    assert json.loads(odd) == {"1": "nan", "b": "b'x'", "o": "object", "s": [3, 4]}  # strict JSON
    quotes = {"q": ['"\\' * 3000]}  # escaping doubles the size
    out = inventory.fit_json(quotes, 300)
    assert len(out.encode()) <= 300 and json.loads(out)
    assert inventory.fit_json({"a": 1}) == '{"a":1}'


@pytest.mark.parametrize("error, expected", [
    ({"Code": "ThrottlingException", "Message": "Rate exceeded"},
     "PutInventory failed: ThrottlingException: Rate exceeded (throttled: the next cycle tries again)"),
    ({"Code": "AccessDeniedException", "Message": "not authorized to perform: ssm:PutInventory"},
     "PutInventory failed: AccessDeniedException: not authorized to perform: ssm:PutInventory (the instance "
     "profile lacks the permission"),
])
def test_service_errors_are_named(error: Dict[str, str], expected: str) -> None:
    from botocore.exceptions import ClientError, NoCredentialsError

    detail = base.describe_aws_error(ClientError({"Error": error}, "PutInventory"), "PutInventory", None)
    assert detail.startswith(expected)
    assert "instance profile" in base.describe_aws_error(NoCredentialsError(), "PutInventory", None)


def test_billed_and_listening_publishers_are_opt_in() -> None:
    """Issue 14: CloudWatch was on by default (~$10k a month for 2,000 instances, and a failure every
    cycle where the VPC has no monitoring endpoint)."""
    from vpce_doctor.config import parse_config

    assert parse_config({}, "test").publish.publishers == ("last_report", "inventory", "inventory_file")
