"""Issue 13's "done when": 10,000 instances in 3 regions and 2 accounts with 5 planted resource faults
(one endpoint ENI, one VPC's DNS attribute, one route table, one security group, one role) →
`vpce-doctor fleet` names exactly those 5 resources as root causes, with their instance counts,
through the API (the loopback SSM stand-in, two profiles, three regions, throttling on) and through
the Resource Data Sync layout (a local copy at 10,000; moto S3 at 1,000 — moto serves ~400 GETs/s
here, the 10,000 read from moto S3 is measured by tests/bench/fleet_scale.py instead).

Everything each instance publishes is built by the agent's own code (tests/lab/fleetgen.py).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Iterator, List, Set, Tuple

import pytest

pytest.importorskip("trustme")

from tests.lab.aws.resource_data_sync import MotoServer, S3Dest, write_layout  # noqa: E402
from tests.lab.aws.ssm_fleet_standin import Account, FleetStandin  # noqa: E402
from tests.lab.fleetgen import ACCOUNTS, REGIONS, Fleet, generate  # noqa: E402
from vpce_doctor import fleet  # noqa: E402

SIZE = 10_000
KEYS = (Account("AKIAFLEETONE0000001", ACCOUNTS[0], "secret-one"), Account("AKIAFLEETTWO0000002", ACCOUNTS[1], "secret-two"))


@pytest.fixture(scope="module")
def fleet10k() -> Fleet:
    return generate(SIZE)


def expected(f: Fleet) -> Set[Tuple[str, str, str, str, int]]:
    return {(x.account_id, x.region, x.resource_type, x.resource_id, len(x.instance_ids)) for x in f.faults}


def named(doc: Dict[str, Any]) -> Set[Tuple[str, str, str, str, int]]:
    return {(g["account_id"], g["region"], g["resource_type"], g["resource_id"], g["instance_count"])
            for g in doc["root_causes"]}


def run_json(capsys: pytest.CaptureFixture, *argv: str) -> Tuple[int, Dict[str, Any], str]:
    code = fleet.main(["--format", "json", *argv])
    out, err = capsys.readouterr()
    assert code != 3, err
    return code, json.loads(out), err


def check_view(f: Fleet, doc: Dict[str, Any], code: int) -> None:
    assert len(f.faults) == 5
    assert named(doc) == expected(f)  # exactly the planted resources, each with its instance count
    assert code == 2 and doc["status"] == "CRITICAL"
    # Root causes first, most instances first; each names a fix and a sample of its instances.
    counts = [g["instance_count"] for g in doc["root_causes"]]
    assert counts == sorted(counts, reverse=True)
    for group in doc["root_causes"]:
        truth = next(x for x in f.faults if x.resource_id == group["resource_id"])
        assert truth.cause_code in group["cause_codes"]
        assert set(group["instances_sample"]) <= set(truth.instance_ids) and group["fix"]
        assert group["vpcs"] and group["subnets"]
    # Then the instances whose failures share no resource: the instance-local noise, older agents.
    unshared = {u["instance_id"] for u in doc["unshared"]}
    local = {i.instance_id for i in f.instances if i.noise.startswith("local:") and i.publishes}
    assert local <= unshared
    planted = {iid for x in f.faults for iid in x.instance_ids}
    old = {i.instance_id for i in f.instances if i.noise == "old_agent" and i.publishes}
    assert not (unshared - local - old - planted)
    assert doc["problems"]["counts"].get("old_agent") == len(old)
    # Stale instances are listed as such, never as healthy.
    stale = {s["instance_id"] for s in doc["coverage"]["stale"]}
    assert stale == {i.instance_id for i in f.instances if i.noise == "stale"}


def test_api_two_accounts_three_regions(fleet10k: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    seed = fleet10k.write_seed(tmp_path / "fleet.jsonl")
    standin = FleetStandin(tmp_path, seed, KEYS, rate=200, burst=50)
    try:
        standin.wait_ready()
        config = tmp_path / "aws-config"
        config.write_text("".join(f"[profile acct{n}]\naws_access_key_id = {a.access_key_id}\n"
                                  f"aws_secret_access_key = {a.secret}\n" for n, a in enumerate(KEYS)))
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        code, doc, err = run_json(capsys, "--profile", "acct0,acct1", "--regions", ",".join(REGIONS),
                                  "--endpoint-url", standin.url, "--ca-bundle", str(standin.ca), "--deadline", "600")
        check_view(fleet10k, doc, code)
        silent = {s["instance_id"] for s in doc["coverage"]["silent"]}
        assert silent == {i.instance_id for i in fleet10k.instances if not i.publishes and i.noise != "terminated"}
        stats = standin.stats()
        assert doc["records_read"] == sum(1 for i in fleet10k.instances if i.publishes)
        assert stats  # the stand-in counted what it served (and what it throttled)
    finally:
        standin.stop()


def test_sync_layout_local_copy(fleet10k: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "sync"
    write_layout(root / "inventory", fleet10k.records())
    code, doc, _ = run_json(capsys, "--from-sync", str(root / "inventory"))
    check_view(fleet10k, doc, code)
    accounts_regions = {(g["account_id"], g["region"]) for g in doc["root_causes"]}
    assert {a for a, _ in accounts_regions} <= set(ACCOUNTS) and {r for _, r in accounts_regions} <= set(REGIONS)


@pytest.fixture
def moto_s3() -> Iterator[MotoServer]:
    pytest.importorskip("moto") if not os.environ.get("VPCE_LAB_PYTHON") else None
    server = MotoServer().start()
    try:
        yield server
    finally:
        server.stop()


def test_sync_layout_in_s3(moto_s3: MotoServer, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from botocore.config import Config

    small = generate(1_000, seed=31)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAOPERATOR0000001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "operator")
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_s3.url,
                      config=Config(max_pool_connections=32))
    s3.create_bucket(Bucket="vpce-doctor-sync")
    write_layout(S3Dest(s3, "vpce-doctor-sync", "inventory"), small.records())
    code, doc, _ = run_json(capsys, "--from-sync", "s3://vpce-doctor-sync/inventory", "--region", "us-east-1",
                            "--endpoint-url", moto_s3.url)
    check_view(small, doc, code)
    by_table = fleet.main(["--from-sync", "s3://vpce-doctor-sync/inventory", "--region", "us-east-1",
                           "--endpoint-url", moto_s3.url])
    table = capsys.readouterr().out
    assert by_table == 2 and table.startswith("ROOT CAUSES — 5 resources")
    for fault in small.faults:
        assert f"{fault.resource_type} {fault.resource_id}" in table


def parse_rows(doc: Dict[str, Any]) -> List[Tuple[str, str]]:
    return [(r["instance_id"], r["check_id"]) for r in doc["rows"]]
