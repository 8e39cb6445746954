"""``vpce-doctor fleet --from-sync``: agent/fleet_sync.py reading a Resource Data Sync layout.

The layout is written by tests/lab/aws/resource_data_sync.py as the sync writes it, into a plain
``moto_server`` on 127.0.0.1 (a subprocess; ``VPCE_LAB_PYTHON`` may name its interpreter) and into a
local directory; the entries are exactly what the daemon publishes (``build_inventory`` over real
``Report``s whose causes come from ``checks.causes.explain``). What moto cannot do — an S3 access
denial on one object, a listing that claims 1 GiB, a body longer than its listing, a slow S3 — comes
from a scripted HTTP server on 127.0.0.1 answering S3's XML. Nothing leaves loopback: every client has
an endpoint URL, credentials come from the environment, IMDS is disabled.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Tuple

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from vpce_doctor.fleet_coverage import FleetError  # noqa: E402
from vpce_doctor.fleet_model import InstanceReport, Problem, instance_report  # noqa: E402
from vpce_doctor.fleet_sync import parse_key, parse_object, read_sync  # noqa: E402

from tests.lab.aws.resource_data_sync import (INSTANCE_INFORMATION, NOT_JSON, MotoServer, S3Dest,  # noqa: E402
                                              instance_information, not_inventory, object_body, plant,
                                              sparse_file, sync_key, truncated, write_layout)
from tests.unit.moto_fixture import FakeAws, s3_error_xml  # noqa: E402
from tests.unit.aws_env import hermetic_aws_env  # noqa: E402

TYPE = "Custom:VpceDoctor"
VERDICTS = "Custom:VpceDoctorVerdict"
CAPTURED_AT = 1_780_000_000.0
ACCOUNTS = ("111122223333", "444455556666")
REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2")
PARAMS = {"vpc_id": "vpc-0fee1de0000000001", "subnet_id": "subnet-0fee1de0000000001",
          "endpoint_id": "vpce-0fee1de0000000001", "service": "ssm", "host": "ssm.us-east-1.amazonaws.com",
          "route_table_id": "rtb-0fee1de0000000001", "sg_id": "sg-0fee1de0000000001", "ip": "10.0.1.101",
          "prefix_list_id": "pl-63a5400a", "region": "us-east-1", "role": "SSMInstanceRole"}
# index % 4 -> {check: (status, cause code)}; the rest of CHECKS are OK.
CHECKS = ("dns.ssm", "reach.ssm.10.0.1.101", "s3.route", "resolver")
PROFILES: Dict[int, Dict[str, Tuple[str, str]]] = {
    0: {},
    1: {"dns.ssm": ("CRITICAL", "private_dns_disabled")},
    2: {"reach.ssm.10.0.1.101": ("CRITICAL", "endpoint_sg_no_inbound_443"), "s3.route": ("CRITICAL", "s3_route_missing")},
    3: {"resolver": ("WARNING", "resolver_slow")},
}


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hermetic_aws_env(monkeypatch, tmp_path)


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    if not os.environ.get("VPCE_LAB_PYTHON"):
        pytest.importorskip("moto")
    server = MotoServer().start()
    try:
        yield server
    finally:
        server.stop()


class Recorder:
    """A Sink that keeps everything (thread-safe), asking nothing beyond the Protocol."""

    def __init__(self) -> None:
        self.reports: List[InstanceReport] = []
        self.managed: Dict[str, Tuple[str, str, str]] = {}
        self.problems: List[Problem] = []
        self._lock = threading.Lock()

    def add(self, report: InstanceReport) -> None:
        with self._lock:
            self.reports.append(report)

    def add_managed(self, account_id: str, region: str, instance_id: str, status: str) -> None:
        with self._lock:
            self.managed[instance_id] = (account_id, region, status)

    def problem(self, problem: Problem) -> None:
        with self._lock:
            self.problems.append(problem)

    def kinds(self) -> Dict[str, int]:
        out: Dict[str, int] = {}
        for p in self.problems:
            out[p.kind] = out.get(p.kind, 0) + 1
        return out


# --- what the daemons published ---------------------------------------------------------------------

def daemon_items(instance_id: str, region: str, profile: int) -> Dict[str, Dict[str, Any]]:
    """{TypeName: the PutInventory item} the daemon on ``instance_id`` sends (real Report, real explain)."""
    from vpce_doctor.checks.causes import explain
    from vpce_doctor.checks.model import Facts, Finding, Status
    from vpce_doctor.publishers.inventory import build_inventory
    from vpce_doctor.report import Report, verdicts

    has_resource = "resource" in {f.name for f in dataclasses.fields(Finding)}
    findings = []
    for check in CHECKS:
        status, code = PROFILES[profile].get(check, ("OK", ""))
        text = explain(code, instance_id=instance_id, **dict(PARAMS, region=region)) if code else {}
        extra = {"resource": text.get("resource")} if has_resource and text.get("resource") else {}
        findings.append(Finding(id=check, status=Status[status], summary=f"{check} {status.lower()}",
                                cause_code=code or None, cause=text.get("cause"), fix=text.get("fix"),
                                evidence={"latency_ms": 1.5, "answers": ["10.0.1.101"]}, **extra))
    report = Report(tuple(findings), Facts(region=region, instance_id=instance_id), tuple(verdicts(findings)),
                    CAPTURED_AT, 0.5)
    return {item.type_name: item.api() for item in build_inventory(report, TYPE, VERDICTS).items}


@dataclasses.dataclass
class Fleet:
    instances: List[Tuple[str, str, str, Dict[str, Any]]]   # what write_layout takes
    publishing: Dict[str, Tuple[str, str, Dict[str, Any]]]  # iid -> (account, region, Custom:VpceDoctor item)
    silent: Dict[str, str]                                  # iid -> InstanceStatus


def small_fleet() -> Fleet:
    """2 accounts × 3 regions × 3 publishing instances, plus silent ones (Active, ConnectionLost,
    Terminated) in some partitions."""
    instances, publishing, silent = [], {}, {}
    n = 0
    for account in ACCOUNTS:
        for region in REGIONS:
            for _ in range(3):
                iid = f"i-{0xabc0000000000000 + n:017x}"
                items = daemon_items(iid, region, n % 4)
                instances.append((account, region, iid, items))
                publishing[iid] = (account, region, items[TYPE])
                n += 1
    for index, status in enumerate(("Active", "ConnectionLost", "Terminated")):
        iid = f"i-{0xdead000000000000 + index:017x}"
        instances.append((ACCOUNTS[index % 2], REGIONS[index], iid,
                          {INSTANCE_INFORMATION: instance_information(iid, status)}))
        silent[iid] = status
    return Fleet(instances, publishing, silent)


def normalized(report: InstanceReport) -> Tuple[Any, ...]:
    report = report.built()  # readers hand entries over lazily: the collector makes rows of those it keeps
    return (report.key, report.capture_time, report.agent_version, report.old_agent,
            tuple(sorted(dataclasses.astuple(r) for r in report.rows)))


def expected_reports(fleet: Fleet, keep_evidence: bool = False) -> Dict[str, Tuple[Any, ...]]:
    """What GetInventory would hand over for the same items (the API path's own conversion)."""
    return {iid: normalized(instance_report(iid, item, account_id=acct, region=region, keep_evidence=keep_evidence))
            for iid, (acct, region, item) in fleet.publishing.items()}


def new_bucket(moto: MotoServer, name: str) -> Any:
    client = moto.client(max_pool_connections=32)
    client.create_bucket(Bucket=name)
    return client


# --- the layout read back ----------------------------------------------------------------------------

def test_reads_a_multi_account_multi_region_sync_exactly(moto: MotoServer) -> None:
    fleet = small_fleet()
    client = new_bucket(moto, "sync-exact")
    write_layout(S3Dest(client, "sync-exact", "inventory/all"), fleet.instances)
    info_gets = f"/sync-exact/inventory/all/{INSTANCE_INFORMATION}/"
    before = moto.requests("GET", info_gets)
    sink = Recorder()
    stats = read_sync("s3://sync-exact/inventory/all", sink, endpoint_url=moto.url, keep_evidence=True)

    assert sink.problems == []
    got = {r.instance_id: normalized(r) for r in sink.reports}
    assert got == expected_reports(fleet, keep_evidence=True)
    assert len(sink.reports) == len(fleet.publishing) == 18  # one report per instance, none twice
    # Account and region come from the key's partitions, instance by instance.
    assert {r.instance_id: (r.account_id, r.region) for r in sink.reports} == \
        {iid: (a, r) for iid, (a, r, _) in fleet.publishing.items()}
    assert stats.accounts == set(ACCOUNTS) and stats.regions == set(REGIONS)
    assert (stats.listed, stats.read, stats.refused) == (18, 18, 0)
    # The findings the daemons published, as rows: statuses, causes, fixes, evidence kept.
    rows = {(r.instance_id, r.check_id): r for rep in sink.reports for r in rep.built().rows}
    assert len(rows) == 18 * len(CHECKS)
    broken = next(iid for iid in fleet.publishing if rows[(iid, "s3.route")].status == "CRITICAL")
    row = rows[(broken, "s3.route")]
    assert row.cause_code == "s3_route_missing" and "rtb-0fee1de0000000001" in row.fix
    assert row.evidence == {"answers": ["10.0.1.101"], "latency_ms": 1.5}
    # The sync's "resourceId" (the instance) is never read as the resource a finding's cause points at.
    assert all(r.resource_id != r.instance_id for r in rows.values() if r.resource_type != "instance")
    report = next(r for r in sink.reports if r.instance_id == broken)
    acct, region, _ = fleet.publishing[broken]
    assert report.source == f"s3://sync-exact/{sync_key(TYPE, acct, region, broken, 'inventory/all')}"
    # Managed instances: every one is known; only the silent ones' InstanceInformation was read.
    assert set(sink.managed) == set(fleet.publishing) | set(fleet.silent)
    assert {iid: s for iid, (_, _, s) in sink.managed.items() if iid in fleet.silent} == fleet.silent
    assert {s for iid, (_, _, s) in sink.managed.items() if iid in fleet.publishing} == {"?"}
    assert (stats.managed_listed, stats.managed_read) == (21, 3)
    assert moto.requests("GET", info_gets) - before == 3
    assert "18 Custom:VpceDoctor objects listed, 18 read" in str(stats)


def test_a_local_copy_reads_the_same(moto: MotoServer, tmp_path: Path) -> None:
    fleet = small_fleet()
    client = new_bucket(moto, "sync-local")
    write_layout(S3Dest(client, "sync-local", ""), fleet.instances)
    write_layout(tmp_path / "copy", fleet.instances)
    from_s3, from_dir = Recorder(), Recorder()
    s3_stats = read_sync("s3://sync-local", from_s3, endpoint_url=moto.url)
    dir_stats = read_sync(str(tmp_path / "copy"), from_dir)
    assert from_dir.problems == from_s3.problems == []
    assert {r.instance_id: normalized(r) for r in from_dir.reports} == \
        {r.instance_id: normalized(r) for r in from_s3.reports} == expected_reports(fleet)
    assert from_dir.managed == from_s3.managed
    assert (dir_stats.listed, dir_stats.read, dir_stats.managed_read) == (s3_stats.listed, s3_stats.read, 3)
    assert all(r.source.startswith(str(tmp_path / "copy")) for r in from_dir.reports)
    # keep_evidence=False (the default) drops Evidence.
    assert any(r.built().rows for r in from_dir.reports)
    assert all(row.evidence is None for r in from_dir.reports for row in r.built().rows)


# --- bad input -----------------------------------------------------------------------------------------

def test_bad_objects_are_named_and_the_rest_is_read(moto: MotoServer, tmp_path: Path) -> None:
    fleet = small_fleet()
    client = new_bucket(moto, "sync-bad")
    for dest in (S3Dest(client, "sync-bad", "p"), tmp_path / "copy"):
        write_layout(dest, fleet.instances)
        acct, region = ACCOUNTS[0], REGIONS[0]
        good_body = object_body("i-0bad0000000000002", next(iter(fleet.publishing.values()))[2])
        plant(dest, TYPE, acct, region, "i-0bad0000000000001", NOT_JSON)
        plant(dest, TYPE, acct, region, "i-0bad0000000000002", truncated(good_body))
        plant(dest, TYPE, acct, region, "i-0bad0000000000003", not_inventory("i-0bad0000000000003"))
        plant(dest, TYPE, acct, region, "i-0bad0000000000004", good_body + b"\n" + b"x" * 300_000)  # too large
        plant(dest, TYPE, acct, region, "i-0bad0000000000005", b"")
        plant(dest, TYPE, acct, region, "i-0bad0000000000006", object_body("i-0bad0000000000007",
                                                                            fleet.publishing[next(iter(fleet.publishing))][2]))
    # One more, only in the copy: a link (here dangling) is never followed: unreadable, named.
    link = tmp_path / "copy" / sync_key(TYPE, ACCOUNTS[1], REGIONS[1], "i-0bad0000000000008")
    link.symlink_to(tmp_path / "nowhere.json")

    limit = 200_000
    for url, kwargs in (("s3://sync-bad/p", {"endpoint_url": moto.url}), (str(tmp_path / "copy"), {})):
        sink = Recorder()
        stats = read_sync(url, sink, max_object_bytes=limit, **kwargs)
        local = not url.startswith("s3://")
        want = {"not_json": 1, "truncated": 1, "not_inventory": 3, "too_large": 1}
        if local:
            want["unreadable"] = 1
        assert sink.kinds() == want, [p.line() for p in sink.problems]
        assert {r.instance_id for r in sink.reports} == set(fleet.publishing)  # the rest is read
        assert stats.refused == sum(want.values()) and stats.read == len(fleet.publishing)
        lines = {p.kind + ":" + p.where.rsplit("/", 1)[-1]: p.line() for p in sink.problems}
        assert all("\n" not in line and len(line) <= 500 for line in lines.values())
        assert "ends mid-entry" in lines["truncated:i-0bad0000000000002.json"]
        assert "no CheckId/Status" in lines["not_inventory:i-0bad0000000000003.json"]
        assert "empty object" in lines["not_inventory:i-0bad0000000000005.json"]
        assert "'i-0bad0000000000007''s" in lines["not_inventory:i-0bad0000000000006.json"]
        assert "not downloaded" in lines["too_large:i-0bad0000000000004.json"]
        if local:
            assert "symbolic link, not followed" in lines["unreadable:i-0bad0000000000008.json"]
    # Decided from the listing's Size: the large object was never asked for.
    assert moto.requests("GET", "i-0bad0000000000004") == 0
    assert moto.requests("GET", "i-0bad0000000000001") == 1


def test_parse_tells_truncated_from_not_json() -> None:
    body = object_body("i-0123456789abcdef0", {"Content": [{"CheckId": "a", "Status": "OK"},
                                                           {"CheckId": "b", "Status": "CRITICAL"}]})
    assert parse_object(body, "i-0123456789abcdef0", TYPE)[1] is None
    for cut in range(body.index(b"\n") + 2, len(body) - 1):  # every cut inside the last line
        assert parse_object(body[:cut], "i-0123456789abcdef0", TYPE)[1][0] == "truncated", cut
    assert parse_object(body[:len(body) // 4], "i-0123456789abcdef0", TYPE)[1][0] == "truncated"
    assert parse_object(b'{"CheckId": "a"} trailing', "i-0123456789abcdef0", TYPE)[1][0] == "not_json"
    assert parse_object(b'{"a": 1}\n{"b"', "i-0123456789abcdef0", TYPE)[1][0] == "truncated"
    assert parse_object(b'{"a": 1}}\n{"b": 2}', "i-0123456789abcdef0", TYPE)[1][0] == "not_json"
    assert parse_object("{\"CheckId\": \"é".encode()[:-1], "i-0123456789abcdef0", TYPE)[1][0] == "truncated"
    # The sync's keys go, exactly as it spells them; an attribute spelled like one in another case stays.
    line = b'{"CheckId": "a", "Status": "OK", "ResourceId": "rtb-1", "resourceId": "i-0123456789abcdef0", ' \
           b'"captureTime": "2026-05-28T20:26:40Z", "schemaVersion": "1.0"}'
    assert parse_object(line, "i-0123456789abcdef0", TYPE) == (
        [{"CheckId": "a", "Status": "OK", "ResourceId": "rtb-1", "CaptureTime": "2026-05-28T20:26:40Z"}], None)
    # One pretty-printed document (not JSON lines) is read too.
    pretty = json.dumps([{"CheckId": "a", "Status": "OK"}], indent=2).encode()
    assert parse_object(pretty, "i-0123456789abcdef0", TYPE) == ([{"CheckId": "a", "Status": "OK"}], None)
    assert parse_key("accountid=1/region=r/resourcetype=ManagedInstanceInventory/i-0123456789abcdef0.json")
    assert parse_key("accountid=1/region=r/i-0123456789abcdef0.json") is None
    assert parse_key("accountid=1/region=r/resourcetype=X/notes.txt") is None


def test_a_key_outside_the_layout_is_named(moto: MotoServer) -> None:
    client = new_bucket(moto, "sync-odd")
    fleet = small_fleet()
    write_layout(S3Dest(client, "sync-odd", ""), fleet.instances[:2])
    client.put_object(Bucket="sync-odd", Key=f"{TYPE}/README.txt", Body=b"hello")
    client.put_object(Bucket="sync-odd", Key=f"{TYPE}/accountid=1/", Body=b"")  # a console "folder"
    sink = Recorder()
    read_sync("s3://sync-odd", sink, endpoint_url=moto.url)
    assert [p.kind for p in sink.problems] == ["not_inventory"]
    assert "not in the sync layout" in sink.problems[0].detail and len(sink.reports) == 2


# --- never an all-clear ----------------------------------------------------------------------------------

def test_an_empty_prefix_is_never_an_all_clear(moto: MotoServer, tmp_path: Path) -> None:
    client = new_bucket(moto, "sync-empty")
    silent_only = [(ACCOUNTS[0], REGIONS[0], "i-0deadbeef0000001", {})]  # managed, publishes nothing
    write_layout(S3Dest(client, "sync-empty", "p"), silent_only)
    for url, kwargs in (("s3://sync-empty/p", {"endpoint_url": moto.url}),
                        ("s3://sync-empty/wrong-prefix", {"endpoint_url": moto.url}),
                        (str(tmp_path), {})):
        sink = Recorder()
        with pytest.raises(FleetError) as err:
            read_sync(url, sink, **kwargs)
        text = str(err.value)
        assert "no Custom:VpceDoctor objects under" in text and "not an all-clear" in text and "\n" not in text
        assert not sink.reports
    with pytest.raises(FleetError, match="Custom:Other"):
        read_sync("s3://sync-empty/p", Recorder(), type_name="Custom:Other", endpoint_url=moto.url)


def test_whole_run_failures_are_one_line(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FleetError, match=r"s3://no-such-bucket-here: the bucket does not exist \(NoSuchBucket\)"):
        read_sync("s3://no-such-bucket-here/p", Recorder(), endpoint_url=moto.url)
    for bad in ("s3://", "s3://UPPER/p", "/nonexistent/dir", ""):
        with pytest.raises(FleetError, match="s3://BUCKET"):
            read_sync(bad, Recorder())
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(FleetError, match=r"no AWS credentials to list s3://sync-exact/p/Custom:VpceDoctor/"):
        read_sync("s3://sync-exact/p", Recorder(), endpoint_url=moto.url)


# --- what moto cannot do: a scripted S3 on loopback ----------------------------------------------------

GIB = 1024 ** 3
DENIED_MESSAGE = ("User: arn:aws:sts::111122223333:assumed-role/ops/me is not authorized to perform: s3:GetObject on "
                  "resource: \"arn:aws:s3:::scripted/{key}\" because no identity-based policy allows the "
                  "s3:GetObject action")


class ScriptedS3:
    """ListObjectsV2 and GetObject for one bucket "scripted": ``objects`` key -> (listed size, body or
    a callable giving the reply). Every request is recorded by FakeAws."""

    def __init__(self, objects: Mapping[str, Tuple[int, Any]], list_status: int = 200, page_size: int = 1000,
                 stuck_token: bool = False) -> None:
        self.objects = dict(objects)
        self.list_status = list_status
        self.page_size = page_size
        self.stuck_token = stuck_token  # a broken service: the same continuation token every time
        self.fake = FakeAws(self.respond)

    def respond(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Tuple[int, Dict[str, str], bytes]:
        from urllib.parse import parse_qs, unquote, urlsplit

        parts = urlsplit(path)
        key = unquote(parts.path[len("/scripted/"):]) if parts.path.startswith("/scripted/") else ""
        if method == "GET" and "list-type" in parts.query:
            if self.list_status != 200:
                return self.list_status, {"Content-Type": "application/xml"}, s3_error_xml("AccessDenied", "Access Denied")
            query = parse_qs(parts.query)
            prefix = query.get("prefix", [""])[0]
            start = int(query.get("continuation-token", ["0"])[0])
            keys = [k for k in sorted(self.objects) if k.startswith(prefix)]
            page = keys[start:start + self.page_size]
            more = start + self.page_size < len(keys)
            token = "1" if self.stuck_token else str(start + self.page_size)
            contents = "".join(f"<Contents><Key>{k}</Key><LastModified>2026-05-28T20:26:40.000Z</LastModified>"
                               f"<ETag>\"0\"</ETag><Size>{self.objects[k][0]}</Size><StorageClass>STANDARD"
                               "</StorageClass></Contents>" for k in page)
            xml = ('<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/'
                   f'2006-03-01/"><Name>scripted</Name><Prefix>{prefix}</Prefix><KeyCount>{len(page)}</KeyCount>'
                   f"<MaxKeys>{self.page_size}</MaxKeys><IsTruncated>{'true' if more else 'false'}</IsTruncated>"
                   + (f"<NextContinuationToken>{token}</NextContinuationToken>" if more else "")
                   + f"{contents}</ListBucketResult>")
            return 200, {"Content-Type": "application/xml"}, xml.encode()
        if method == "GET" and key in self.objects:
            reply = self.objects[key][1]
            if callable(reply):
                return reply(key)
            return 200, {"Content-Type": "application/json"}, reply
        return 404, {"Content-Type": "application/xml"}, s3_error_xml("NoSuchKey", "The specified key does not exist.")

    def gets(self, fragment: str) -> int:
        from urllib.parse import unquote

        return sum(1 for m, p, _ in self.fake.requests
                   if m == "GET" and fragment in unquote(p) and "list-type" not in p)

    def close(self) -> None:
        self.fake.close()


def denied(key: str) -> Tuple[int, Dict[str, str], bytes]:
    return 403, {"Content-Type": "application/xml"}, s3_error_xml("AccessDenied", DENIED_MESSAGE.format(key=key))


def good(iid: str) -> bytes:
    return object_body(iid, {"CaptureTime": "2026-05-28T20:26:40Z",
                             "Content": [{"CheckId": "dns.ssm", "Status": "CRITICAL", "CauseCode": "x"}]})


def key_of(iid: str, type_name: str = TYPE) -> str:
    return sync_key(type_name, ACCOUNTS[0], REGIONS[0], iid)


def test_one_denied_object_a_1_gib_listing_and_a_lying_size() -> None:
    ids = [f"i-0{n:016x}" for n in range(1, 6)]
    objects = {key_of(i): (len(good(i)), good(i)) for i in ids[:3]}
    objects[key_of(ids[3])] = (GIB, b"never served")                  # listed as 1 GiB
    objects[key_of(ids[4])] = (120, b"[" + b" " * (3 * 1024 * 1024))  # listed small, 3 MiB served
    objects[key_of("i-0feedface0000001")] = (500, denied)
    s3 = ScriptedS3(objects)
    try:
        sink = Recorder()
        stats = read_sync("s3://scripted", sink, endpoint_url=s3.fake.url, max_object_bytes=64 * 1024)
        assert {r.instance_id for r in sink.reports} == set(ids[:3])
        # No AWS:InstanceInformation objects in this bucket: coverage cannot be told, and that is said.
        assert sink.kinds() == {"too_large": 2, "unreadable": 1, "no_coverage": 1}
        by_key = {p.where.rsplit("/", 1)[-1]: p for p in sink.problems}
        assert "1,073,741,824 bytes listed" in by_key[f"{ids[3]}.json"].detail
        assert s3.gets(ids[3]) == 0                                     # never downloaded
        assert "longer than the 65,536 bytes allowed (listed as 120)" in by_key[f"{ids[4]}.json"].detail
        assert stats.bytes_read <= 3 * 200 + 64 * 1024 + 1 + 2 * 256 * 1024  # the lying body was cut
        line = by_key["i-0feedface0000001.json"].line()
        assert "access denied (AccessDenied): the IAM action s3:GetObject is missing" in line
        assert "because no identity-based policy allows" in by_key["i-0feedface0000001.json"].detail
    finally:
        s3.close()


def test_every_read_denied_or_the_listing_denied_fails_the_run() -> None:
    objects = {key_of(f"i-0{n:016x}"): (500, denied) for n in range(40)}
    s3 = ScriptedS3(objects)
    try:
        with pytest.raises(FleetError) as err:
            read_sync("s3://scripted", Recorder(), endpoint_url=s3.fake.url, concurrency=4)
        assert "the IAM action s3:GetObject is missing (arn:aws:s3:::scripted/Custom:VpceDoctor/*)" in str(err.value)
        assert s3.gets("Custom:VpceDoctor/") < 40  # stopped early, not 40 denied GETs
    finally:
        s3.close()
    s3 = ScriptedS3({}, list_status=403)
    try:
        with pytest.raises(FleetError) as err:
            read_sync("s3://scripted/inv", Recorder(), endpoint_url=s3.fake.url)
        assert str(err.value).startswith("access denied listing s3://scripted/inv/Custom:VpceDoctor/ (AccessDenied): "
                                         "the IAM action s3:ListBucket on arn:aws:s3:::scripted")
    finally:
        s3.close()


def test_the_deadline_names_what_was_not_read() -> None:
    def slow(key: str) -> Tuple[int, Dict[str, str], bytes]:
        time.sleep(0.2)  # a slow S3 (the behaviour under test), not a synchronisation
        return 200, {"Content-Type": "application/json"}, good(key.rsplit("/", 1)[-1][:-5])

    objects = {key_of(f"i-0{n:016x}"): (200, slow) for n in range(40)}
    s3 = ScriptedS3(objects)
    try:
        sink = Recorder()
        started = time.monotonic()
        with pytest.raises(FleetError) as err:
            read_sync("s3://scripted", sink, endpoint_url=s3.fake.url, concurrency=2,
                      deadline_at=time.monotonic() + 1.0)
        elapsed = time.monotonic() - started
        text = str(err.value)
        assert text.startswith("the deadline passed after") and "not an all-clear" in text
        assert "of the 40 Custom:VpceDoctor objects under s3://scripted/Custom:VpceDoctor/" in text
        assert 0 < len(sink.reports) < 40 and elapsed < 3.0
    finally:
        s3.close()

def test_a_deadline_already_passed_reads_nothing(tmp_path: Path) -> None:
    write_layout(tmp_path, [(ACCOUNTS[0], REGIONS[0], "i-0000000000000000a", {TYPE: {"Content": [
        {"CheckId": "dns.ssm", "Status": "OK"}]}})])
    sink = Recorder()
    with pytest.raises(FleetError, match=r"the deadline passed .* not read: the listing of .*Custom:VpceDoctor"):
        read_sync(str(tmp_path), sink, deadline_at=time.monotonic() - 1)
    assert not sink.reports


def test_a_1_gib_file_in_a_local_copy_is_refused_from_its_size(tmp_path: Path) -> None:
    import resource

    root = tmp_path / "copy"
    write_layout(root, [(ACCOUNTS[0], REGIONS[0], "i-0000000000000000a", {TYPE: {"Content": [
        {"CheckId": "dns.ssm", "Status": "OK"}]}})])
    big = sparse_file(root / key_of("i-0000000000000000b"), GIB)
    assert big.stat().st_size == GIB and big.stat().st_blocks < 64  # no disk, no memory
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sink = Recorder()
    stats = read_sync(str(root), sink)  # the default limit (4 MiB)
    assert [p.kind for p in sink.problems] == ["too_large"] and "1,073,741,824 bytes" in sink.problems[0].detail
    assert stats.bytes_read < 10_000 and len(sink.reports) == 1
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB: nothing like 1 GiB


# --- with the fleet's own sink ---------------------------------------------------------------------

def test_the_collector_names_old_agents_duplicates_and_skewed_clocks(tmp_path: Path) -> None:
    """The reader hands the collector (agent/fleet_collect.py) what the sync holds; the collector names
    an older agent's entries, two reports of one instance and a CheckedAt in the future."""
    from vpce_doctor.fleet_collect import Collector, Selection
    from vpce_doctor.fleet_model import ATTRIBUTES

    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60))
    future = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3600))

    def entry(checked: str, full: bool = True) -> Dict[str, str]:
        names = [name for name, _ in ATTRIBUTES] if full else [name for name, _ in ATTRIBUTES[:9]]
        values = {name: "" for name in names}
        values.update(CheckId="dns.ssm", Status="CRITICAL", CauseCode="private_dns_disabled", CheckedAt=checked)
        return values

    def item(checked: str, full: bool = True) -> Dict[str, Any]:
        return {"CaptureTime": checked, "Content": [entry(checked, full)]}

    write_layout(tmp_path, [
        (ACCOUNTS[0], REGIONS[0], "i-0000000000000000a", {TYPE: item(stamp)}),
        (ACCOUNTS[0], REGIONS[0], "i-0000000000000000b", {TYPE: item(stamp, full=False)}),   # an older agent
        (ACCOUNTS[0], REGIONS[0], "i-0000000000000000c", {TYPE: item(future)}),              # a clock ahead
        (ACCOUNTS[0], REGIONS[0], "i-0000000000000000d", {TYPE: item(stamp)}),
        (ACCOUNTS[1], REGIONS[2], "i-0000000000000000d", {TYPE: item(stamp)}),               # the same id again
    ])
    collector = Collector(Selection(), now=now)
    stats = read_sync(str(tmp_path), collector)
    data = collector.finish()
    assert stats.read == 5 and set(data.reports) == {"i-" + "0" * 16 + c for c in "abcd"}
    assert dict(data.problem_counts) == {"old_agent": 1, "clock_skew": 1, "duplicate": 1}
    named = {p.kind: p.where for p in data.problems}
    assert "i-0000000000000000b" in named["old_agent"] and "i-0000000000000000c" in named["clock_skew"]
    assert "i-0000000000000000d" in named["duplicate"]


def test_pages_are_followed_and_slow_down_is_retried() -> None:
    """Listing pages (3 keys a page here) are all followed; S3's 503 SlowDown is retried by the client
    (adaptive mode) and a key deleted since the listing (NoSuchKey) is named, not fatal."""
    tries: Dict[str, int] = {}

    def slow_down_once(key: str) -> Tuple[int, Dict[str, str], bytes]:
        tries[key] = tries.get(key, 0) + 1
        if tries[key] == 1:
            return 503, {"Content-Type": "application/xml"}, s3_error_xml("SlowDown", "Please reduce your request rate.")
        return 200, {"Content-Type": "application/json"}, good(key.rsplit("/", 1)[-1][:-5])

    def gone(key: str) -> Tuple[int, Dict[str, str], bytes]:
        return 404, {"Content-Type": "application/xml"}, s3_error_xml("NoSuchKey", "The specified key does not exist.")

    ids = [f"i-0{n:016x}" for n in range(10)]
    objects: Dict[str, Tuple[int, Any]] = {key_of(i): (200, good(i)) for i in ids}
    objects[key_of(ids[4])] = (200, slow_down_once)
    objects[key_of("i-0feedface0000002")] = (200, gone)
    s3 = ScriptedS3(objects, page_size=3)
    try:
        sink = Recorder()
        stats = read_sync("s3://scripted", sink, endpoint_url=s3.fake.url)
        assert {r.instance_id for r in sink.reports} == set(ids) and tries[key_of(ids[4])] == 2
        assert stats.list_pages >= 4 + 1  # 11 keys in pages of 3, then the (empty) InstanceInformation listing
        assert [(p.kind, "NoSuchKey" in p.detail) for p in sink.problems if p.kind != "no_coverage"] == \
            [("unreadable", True)]
    finally:
        s3.close()
    s3 = ScriptedS3(objects, page_size=3, stuck_token=True)
    try:
        with pytest.raises(FleetError, match="kept paging"):
            read_sync("s3://scripted", Recorder(), endpoint_url=s3.fake.url)
    finally:
        s3.close()
