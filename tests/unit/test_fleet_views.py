"""The fleet's views from a local Resource Data Sync copy: --since (what broke and what recovered),
--by instance streamed, CSV, duplicates and clock skew, symptoms and blocked findings under their
root cause. Entries are built by the agent's own code (build_inventory over real Findings)."""
from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

from tests.lab.aws.resource_data_sync import write_layout
from vpce_doctor import fleet
from vpce_doctor.checks.causes import KNOWN_IDS, explain
from vpce_doctor.checks.model import Facts, Finding, Status
from vpce_doctor.publishers.inventory import build_inventory
from vpce_doctor.report import Report, verdicts

NOW = time.time()
ACCOUNT, REGION = "111122223333", "us-east-1"
VPC = "vpc-0aaa0000000000001"


def facts(iid: str, subnet: str = "subnet-0aaa0000000000001") -> Facts:
    return Facts(region=REGION, instance_id=iid, vpc_id=VPC, subnet_id=subnet, vpc_cidr="10.0.0.0/16",
                 availability_zone="us-east-1a", account_id=ACCOUNT,
                 instance_profile_arn=f"arn:aws:iam::{ACCOUNT}:instance-profile/app")


def report(iid: str, findings: List[Finding], started: float, transitions: Optional[Dict[str, Any]] = None) -> Report:
    known = KNOWN_IDS.set({"vpc_id": VPC, "subnet_id": "subnet-0aaa0000000000001", "region": REGION,
                           "instance_id": iid})
    try:
        made = Report(tuple(findings), facts(iid), tuple(verdicts(tuple(findings))), started, 0.5)
    finally:
        KNOWN_IDS.reset(known)
    if transitions:
        from dataclasses import replace
        made = replace(made, transitions=transitions)
    return made


def dns_finding(status: Status) -> Finding:
    if status == Status.OK:
        return Finding("dns.ssm", Status.OK, "ssm resolves to 10.0.1.101")
    return Finding("dns.ssm", status, "public answers", **explain("dns_hostnames_disabled", vpc_id=VPC,
                                                                   host="ssm.us-east-1.amazonaws.com",
                                                                   answers="198.51.100.7"))


def items(rep: Report) -> Dict[str, Dict[str, Any]]:
    content = build_inventory(rep, "Custom:VpceDoctor", "Custom:VpceDoctorVerdict")
    return {i.type_name: {"TypeName": i.type_name, "SchemaVersion": "1.0", "CaptureTime": i.capture_time,
                          "Content": list(i.content)} for i in content.items}


def layout(tmp: Path, reports: List[Tuple[str, Report]]) -> Path:
    root = tmp / "sync"
    write_layout(root, [(ACCOUNT, REGION, iid, items(rep)) for iid, rep in reports])
    return root


def run(capsys: pytest.CaptureFixture, *argv: str) -> Tuple[int, str, str]:
    code = fleet.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_since_names_what_broke_and_what_recovered(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    broke_at, long_ago = NOW - 1800, NOW - 5 * 86400
    reports = [
        # i-broke: broke 30 min ago (OK before); i-old: broken for 5 days; i-fixed: recovered 30 min ago.
        ("i-0b0000000000000b1", report("i-0b0000000000000b1", [dns_finding(Status.CRITICAL)], NOW - 60,
                                       {"dns.ssm": (broke_at, "OK")})),
        ("i-0b0000000000000b2", report("i-0b0000000000000b2", [dns_finding(Status.CRITICAL)], NOW - 60,
                                       {"dns.ssm": (long_ago, "OK")})),
        ("i-0b0000000000000b3", report("i-0b0000000000000b3", [dns_finding(Status.OK)], NOW - 60,
                                       {"dns.ssm": (broke_at, "CRITICAL")})),
    ]
    root = layout(tmp_path, reports)
    code, out, err = run(capsys, "--from-sync", str(root), "--since", "2h", "--format", "json")
    assert code == 2, err
    doc = json.loads(out)
    assert [b["instance_id"] for b in doc["since"]["broke"]] == ["i-0b0000000000000b1"]
    assert [(r["instance_id"], r["previous_status"]) for r in doc["since"]["recovered"]] == \
        [("i-0b0000000000000b3", "CRITICAL")]
    # Both failing instances still count under the one VPC (the root cause is older than the window).
    assert [(g["resource_type"], g["resource_id"], g["instance_count"]) for g in doc["root_causes"]] == \
        [("vpc", VPC, 2)]
    code, out, _ = run(capsys, "--from-sync", str(root), "--since", "2h")
    assert "CHANGES SINCE" in out and f"broke     vpc {VPC}: 1 instance (dns_hostnames_disabled)" in out
    assert "recovered check dns.ssm: 1 instance (was CRITICAL)" in out


def test_duplicates_and_a_future_clock_are_named_never_healthy(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    iid = "i-0d0000000000000d1"
    root = layout(tmp_path, [(iid, report(iid, [dns_finding(Status.OK)], NOW - 60))])
    # The same instance under a second prefix copy (a sync copied twice): two reports, the newer kept.
    other = tmp_path / "sync" / "Custom:VpceDoctor" / "accountid=999988887777" / f"region={REGION}" / \
        "resourcetype=ManagedInstanceInventory"
    other.mkdir(parents=True)
    newer = items(report(iid, [dns_finding(Status.CRITICAL)], NOW + 3600))  # an hour ahead: a skewed clock
    lines = [json.dumps(dict(e, resourceId=iid, captureTime=newer["Custom:VpceDoctor"]["CaptureTime"],
                             schemaVersion="1.0")) for e in newer["Custom:VpceDoctor"]["Content"]]
    (other / f"{iid}.json").write_text("\n".join(lines) + "\n")
    code, out, err = run(capsys, "--from-sync", str(root), "--format", "json")
    doc = json.loads(out)
    assert doc["problems"]["counts"] == {"duplicate": 1, "clock_skew": 1}, doc["problems"]
    assert any("in the future" in line for line in doc["problems"]["named"])
    # The report dated in the future loses to the one that is not: the instance reads OK, exit still 1.
    assert doc["rows"] == [] and code == 1


def test_by_instance_streams_csv_and_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    reports = [(f"i-0c00000000000000{n}", report(f"i-0c00000000000000{n}", [dns_finding(Status.CRITICAL)], NOW - 60))
               for n in range(3)]
    root = layout(tmp_path, reports)
    code, out, _ = run(capsys, "--from-sync", str(root), "--by", "instance", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 2 and sorted(r["instance_id"] for r in rows) == [i for i, _ in reports]
    assert {r["resource_type"] for r in rows} == {"vpc"} and {r["status"] for r in rows} == {"CRITICAL"}
    code, out, _ = run(capsys, "--from-sync", str(root), "--by", "resource", "--format", "csv")
    (row,) = list(csv.DictReader(io.StringIO(out)))
    assert (row["resource_id"], row["instance_count"], row["cause_code"]) == (VPC, "3", "dns_hostnames_disabled")
    code, out, _ = run(capsys, "--from-sync", str(root), "--by", "cause")
    assert "dns_hostnames_disabled" in out and code == 2


def test_csv_cells_never_start_a_formula(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    iid = "i-0e0000000000000e1"
    bad = Finding("dns.ssm", Status.CRITICAL, "x", cause_code="=HYPERLINK(\"http://198.51.100.1\")", cause="c")
    root = layout(tmp_path, [(iid, report(iid, [bad], NOW - 60))])
    _, out, _ = run(capsys, "--from-sync", str(root), "--by", "instance", "--format", "csv")
    assert "'=HYPERLINK" in out and ",=HYPERLINK" not in out


def test_a_local_copy_never_follows_links_nor_echoes_what_it_read(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The attack: a "sync copy" whose objects are a link to a secret file, a FIFO (would block),
    and a file of secret non-JSON text. None is followed or echoed; each is named; never healthy."""
    iid = "i-0f0000000000000f1"
    root = layout(tmp_path, [(iid, report(iid, [dns_finding(Status.OK)], NOW - 60))])
    folder = next((root / "Custom:VpceDoctor").rglob("*.json")).parent
    secret = tmp_path / "secret.txt"
    secret.write_text("root:TOPSECRETHASH:19000:0:99999:7:::\n")
    (folder / "i-0f0000000000000f2.json").symlink_to(secret)
    os.mkfifo(folder / "i-0f0000000000000f3.json")
    (folder / "i-0f0000000000000f4.json").write_text("TOPSECRETTEXT is not json\n")
    code, out, err = run(capsys, "--from-sync", str(root), "--format", "json")
    doc = json.loads(out)
    assert "TOPSECRET" not in out + err
    assert doc["problems"]["counts"] == {"unreadable": 2, "not_json": 1}
    named = " ".join(doc["problems"]["named"])
    assert "symbolic link, not followed" in named and "not a regular file" in named
    assert code == 1 and doc["coverage"]["publishing"] == 1


def test_regions_select_part_of_a_sync(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    first, second = "i-0a1000000000000a1", "i-0a2000000000000a2"
    root = tmp_path / "sync"
    write_layout(root, [(ACCOUNT, REGION, first, items(report(first, [dns_finding(Status.CRITICAL)], NOW - 60))),
                        (ACCOUNT, "eu-west-1", second, items(report(second, [dns_finding(Status.CRITICAL)], NOW - 60)))])
    _, out, _ = run(capsys, "--from-sync", str(root), "--format", "json")
    assert json.loads(out)["instances"] == [first, second]
    code, out, _ = run(capsys, "--from-sync", str(root), "--format", "json", "--regions", "eu-west-1")
    doc = json.loads(out)
    assert doc["instances"] == [second] and doc["coverage"]["managed"] == 1 and code == 2
