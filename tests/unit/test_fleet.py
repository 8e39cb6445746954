"""`vpce-doctor fleet` (agent/fleet.py).

Against the lab's AWS layer on loopback with 501 managed instances (`--fleet-size 500` plus the lab's
own), seeded through the real boto3 PutInventory with exactly what the daemon's inventory publisher
sends (tests/bench/fleet.py: some healthy, some broken with known causes, some silent, some under
another type name). Error paths (access denied, throttling, repeated tokens, unreachable endpoint)
run against a small scripted HTTP server on 127.0.0.1. Nothing leaves loopback: every call has an
--endpoint-url, credentials come from the environment, and IMDS is disabled for botocore.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # tests.bench / tests.lab are imported from the work tree
    sys.path.insert(0, str(REPO))

from vpce_doctor import fleet  # noqa: E402
from tests.unit.aws_env import hermetic_aws_env  # noqa: E402

from tests.bench.fleet import (OTHER_TYPE_NAME, REGION, FleetLab, Seeded, expected_rows,  # noqa: E402
                               plan, seed_fleet)

FLEET_SIZE = 500
NOT_OK = ("WARNING", "CRITICAL", "UNKNOWN")
STATUSES = ("OK",) + NOT_OK
Key = Tuple[str, str, str, str]


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hermetic_aws_env(monkeypatch, tmp_path)


@pytest.fixture(scope="module")
def fleet_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[FleetLab, Seeded]]:
    pytest.importorskip("trustme")
    if not os.environ.get("VPCE_LAB_PYTHON"):  # else the layer runs in that (lab tools') interpreter
        pytest.importorskip("moto")
    lab = FleetLab(tmp_path_factory.mktemp("fleet-lab"), FLEET_SIZE)
    try:
        lab.wait_ready()
        assert len(lab.instance_ids) == FLEET_SIZE + 1
        seeded = plan(lab.instance_ids)
        seed_fleet(lab, seeded)
        yield lab, seeded
    finally:
        lab.stop()


def run_fleet(capsys: pytest.CaptureFixture, *argv: str) -> Tuple[int, str, str]:
    if any(str(a).startswith("http://127.0.0.1") for a in argv):  # a scripted server answers in order
        argv = argv + ("--concurrency", "1")
    code = fleet.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def lab_args(lab: FleetLab, *extra: str) -> List[str]:
    return ["--region", REGION, "--endpoint-url", lab.url, "--ca-bundle", str(lab.ca), *extra]


def fleet_json(capsys: pytest.CaptureFixture, lab: FleetLab, *extra: str) -> Tuple[int, Dict[str, Any]]:
    code, out, err = run_fleet(capsys, *lab_args(lab, "--format", "json", *extra))
    assert code != 3, err
    assert err == ""
    return code, json.loads(out)


def keys(doc: Dict[str, Any]) -> set:
    return {(r["instance_id"], r["check_id"], r["status"], r["cause_code"]) for r in doc["rows"]}


def exit_for(rows: set, silent: bool = True) -> int:
    """The exit code a fleet run must give: the worst listed status, and at least WARNING while a
    managed instance publishes nothing (the seeded fleet always has some: its silence is a symptom)."""
    statuses = {r[2] for r in rows}
    return 2 if "CRITICAL" in statuses else 1 if statuses & {"WARNING", "UNKNOWN"} or silent else 0


# --- the lab fleet -----------------------------------------------------------------------------------

def test_lists_exactly_the_broken_instances(fleet_lab: Tuple[FleetLab, Seeded], capsys: pytest.CaptureFixture) -> None:
    lab, seeded = fleet_lab
    want = expected_rows(seeded.findings)
    broken = sorted({k[0] for k in want})
    assert 200 <= len(broken) < len(seeded.findings)  # the seed really has both kinds

    code, doc = fleet_json(capsys, lab)
    assert keys(doc) == want
    assert doc["instances"] == broken and doc["instance_count"] == len(broken)
    assert not set(doc["instances"]) & (set(seeded.silent) | set(seeded.other))
    assert code == 2 and doc["exit_code"] == 2 and doc["status"] == "CRITICAL"
    # Coverage: every managed instance that never published the type is named, with its status.
    silent = {s["instance_id"] for s in doc["coverage"]["silent"]}
    assert silent == set(lab.instance_ids) - set(seeded.findings)
    assert doc["coverage"]["managed"] == len(lab.instance_ids) == doc["coverage"]["publishing"] + len(silent)
    # Every publishing instance is read (root causes and --since need the whole picture), in full
    # pages of 50, then the managed instances.
    assert doc["records_read"] == len(seeded.findings)
    assert doc["pages"] == math.ceil(len(seeded.findings) / 50) + math.ceil(len(lab.instance_ids) / 50)
    # Each row carries what the daemon published, as data (the evidence with -v).
    assert all(r["evidence"] is None for r in doc["rows"])
    _, doc = fleet_json(capsys, lab, "-v")
    row = next(r for r in doc["rows"] if r["cause_code"] == "private_dns_disabled")
    assert row["status"] == "CRITICAL" and row["check_id"] == "dns.ssm" and "Private DNS disabled" in row["cause"]
    assert "aws ec2 modify-vpc-endpoint --vpc-endpoint-id vpce-0fee1de0000000001" in row["fix"]
    assert row["checked_at"].endswith("Z") and row["agent_version"]
    assert row["evidence"] == {"answers": ["10.0.1.101", "10.0.2.101"], "latency_ms": 1.5}


def test_pagination_crosses_many_pages(fleet_lab: Tuple[FleetLab, Seeded], capsys: pytest.CaptureFixture) -> None:
    lab, seeded = fleet_lab
    want = expected_rows(seeded.findings)
    code, doc = fleet_json(capsys, lab, "--max-results", "7")
    assert keys(doc) == want and code == 2
    assert doc["pages"] == math.ceil(len(seeded.findings) / 7) + math.ceil(len(lab.instance_ids) / 7)
    assert doc["records_read"] == len(seeded.findings)


def test_summary_counts_match(fleet_lab: Tuple[FleetLab, Seeded], capsys: pytest.CaptureFixture) -> None:
    lab, seeded = fleet_lab
    want = expected_rows(seeded.findings)
    _, doc = fleet_json(capsys, lab)
    per_cause: Dict[str, set] = {}
    for iid, _, _, code in want:
        per_cause.setdefault(code, set()).add(iid)
    assert {c["cause_code"]: c["instances"] for c in doc["by_cause"]} == {c: len(i) for c, i in per_cause.items()}
    assert {c["cause_code"]: c["findings"] for c in doc["by_cause"]} == \
        {c: sum(1 for k in want if k[3] == c) for c in per_cause}
    counts = [c["instances"] for c in doc["by_cause"]]
    assert counts == sorted(counts, reverse=True)
    # Two findings of one instance with the same cause count the instance once.
    assert next(c for c in doc["by_cause"] if c["cause_code"] == "endpoint_sg_no_inbound_443")["findings"] == \
        2 * len(per_cause["endpoint_sg_no_inbound_443"])
    worst: Dict[str, str] = {}
    for iid, _, status, _ in want:
        if worst.get(iid) != "CRITICAL" and (status == "CRITICAL" or worst.get(iid) in (None, "UNKNOWN")):
            worst[iid] = status
    assert doc["by_status"] == {s: list(worst.values()).count(s) for s in set(worst.values())}


@pytest.mark.parametrize("argv, statuses, checks, causes", [
    (["--status", "WARNING"], ["WARNING"], [], []),
    (["--status", "critical,unknown"], ["CRITICAL", "UNKNOWN"], [], []),
    (["--status", "OK", "--check", "s3.route"], ["OK"], ["s3.route"], []),
    (["--check", "dns.ssm"], NOT_OK, ["dns.ssm"], []),
    (["--check", "dns"], NOT_OK, ["dns"], []),
    (["--check", "reach.ssm"], NOT_OK, ["reach.ssm"], []),  # a dotted prefix: not reach.ssmmessages.*
    (["--check", "s3", "--check", "instance"], NOT_OK, ["s3", "instance"], []),
    (["--cause", "private_dns_disabled"], NOT_OK, [], ["private_dns_disabled"]),
    (["--cause", "resolver_slow,public_ip_assigned"], NOT_OK, [], ["resolver_slow", "public_ip_assigned"]),
    (["--check", "resolver", "--status", "WARNING", "--cause", "resolver_slow"], ["WARNING"], ["resolver"],
     ["resolver_slow"]),
])
def test_filters(fleet_lab: Tuple[FleetLab, Seeded], capsys: pytest.CaptureFixture, argv: List[str],
                 statuses: Sequence[str], checks: Sequence[str], causes: Sequence[str]) -> None:
    lab, seeded = fleet_lab
    want = expected_rows(seeded.findings, statuses, checks, causes)
    code, doc = fleet_json(capsys, lab, *argv)
    assert keys(doc) == want
    assert code == doc["exit_code"] == exit_for(want)
    assert doc["filters"] == {"status": list(statuses), "check": list(checks), "cause": list(causes),
                              "since_s": None}
    assert doc["records_read"] == len(seeded.findings)  # filtered here, on each finding


def test_reach_ssm_is_a_dotted_prefix(fleet_lab: Tuple[FleetLab, Seeded], capsys: pytest.CaptureFixture) -> None:
    lab, _ = fleet_lab
    _, doc = fleet_json(capsys, lab, "--check", "reach.ssm")
    assert doc["rows"] and {r["check_id"] for r in doc["rows"]} == {"reach.ssm.10.0.1.101", "reach.ssm.10.0.2.101"}
    _, doc = fleet_json(capsys, lab, "--check", "reach.ssmmessages")
    assert {r["status"] for r in doc["rows"]} == {"UNKNOWN"} and doc["exit_code"] == 1


def test_table_output(fleet_lab: Tuple[FleetLab, Seeded], capsys: pytest.CaptureFixture) -> None:
    lab, seeded = fleet_lab
    want = expected_rows(seeded.findings, checks=["dns.ssm", "instance"])
    code, out, err = run_fleet(capsys, *lab_args(lab, "--check", "dns.ssm,instance", "--by", "instance"))
    assert code == 2 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["INSTANCE", "CHECK", "STATUS", "CAUSE", "CHECKED", "AT"]
    rows = lines[1:1 + len(want)]
    assert {tuple(line.split()[:4]) for line in rows} == {(i, c, s, k) for i, c, s, k in want}
    assert lines[1 + len(want)] == "" and lines[2 + len(want)].startswith("Coverage: ")
    assert lines[-1].startswith(f"{len({k[0] for k in want})} instances with findings not OK (")
    assert lines[-1].endswith("Exit 2.")

    code, out, _ = run_fleet(capsys, *lab_args(lab, "--check", "dns.ssm,instance", "--by", "cause"))
    lines = out.splitlines()
    assert code == 2 and lines[0] == "By cause"
    summary = {line.split()[0]: (int(line.split()[1]), int(line.split()[2]))
               for line in lines[2:] if line.startswith("  ") and line.split()[1].isdigit()}
    assert summary == {"private_dns_disabled": (len({k[0] for k in want if k[3] == "private_dns_disabled"}),) * 2,
                       "public_ip_assigned": (len({k[0] for k in want if k[3] == "public_ip_assigned"}),) * 2}

    code, verbose, _ = run_fleet(capsys, *lab_args(lab, "--check", "dns.ssm", "-v", "--by", "instance"))
    assert code == 2
    assert any(line.startswith("    cause: The interface endpoint vpce-") for line in verbose.splitlines())
    assert any(line.startswith("    fix:   ") for line in verbose.splitlines())
    assert "--private-dns-enabled" in verbose  # the fix's exact CLI command, as the daemon published it


def test_nothing_broken_is_not_all_clear_while_instances_are_silent(fleet_lab: Tuple[FleetLab, Seeded],
                                                                    capsys: pytest.CaptureFixture) -> None:
    lab, seeded = fleet_lab
    code, out, err = run_fleet(capsys, *lab_args(lab, "--cause", "tls_failed"))
    assert err == ""
    assert out.startswith("No instance has a WARNING/CRITICAL/UNKNOWN finding in Custom:VpceDoctor matching cause "
                          f"tls_failed ({len(seeded.findings)} inventory records read in ")
    silent = len(lab.instance_ids) - len(seeded.findings)
    assert f"Coverage: {len(seeded.findings)} of {len(lab.instance_ids)} managed instances publish" in out
    assert "managed but never published): i-" in out and "an instance that stopped reporting is a symptom itself" in out
    assert code == 1  # nothing listed, but the silent instances are not an all-clear
    code, doc = fleet_json(capsys, lab, "--cause", "tls_failed")
    assert code == 1 and doc["rows"] == [] and doc["status"] == "OK" and doc["by_cause"] == []
    assert len(doc["coverage"]["silent"]) == silent and doc["coverage"]["publishing"] == len(seeded.findings)


def test_a_type_nobody_publishes_is_not_an_all_clear(fleet_lab: Tuple[FleetLab, Seeded],
                                                      capsys: pytest.CaptureFixture) -> None:
    """Issue 14: `fleet --type-name Custom:Nope` said "No instance has a … finding", exit 0."""
    lab, _ = fleet_lab
    code, out, err = run_fleet(capsys, *lab_args(lab, "--type-name", "Custom:Nope"))
    assert code == 3 and out == ""
    assert "no instance publishes Custom:Nope" in err and "not an all-clear" in err and len(err.splitlines()) == 1


def test_other_type_name_with_fewer_attributes(fleet_lab: Tuple[FleetLab, Seeded],
                                               capsys: pytest.CaptureFixture) -> None:
    lab, seeded = fleet_lab
    want = {(i, c, s, "") for i, c, s, _ in expected_rows(seeded.other)}
    assert want
    code, doc = fleet_json(capsys, lab, "--type-name", OTHER_TYPE_NAME)
    assert keys(doc) == want and code == exit_for(want)
    assert {r["checked_at"] for r in doc["rows"]} == {"2026-01-02T03:04:05Z"}
    assert [c["cause_code"] for c in doc["by_cause"]] == ["-"]
    code, out, _ = run_fleet(capsys, *lab_args(lab, "--type-name", OTHER_TYPE_NAME, "--by", "instance"))
    assert code == exit_for(want) and "  -  " in out.splitlines()[1]
    # Its reports were captured on 2026-01-02: long past the 25 h a daily re-store allows — stale.
    stale = {s["instance_id"]: s["capture_time"] for s in doc["coverage"]["stale"]}
    assert stale == {iid: "2026-01-02T03:04:05Z" for iid in seeded.other}
    assert "nothing new for 25 h" in out
    code, doc = fleet_json(capsys, lab, "--type-name", OTHER_TYPE_NAME, "--stale-after", "36500d")
    assert doc["coverage"]["stale"] == []


@pytest.mark.parametrize("value", ["soon", "0h", "-1d", "5 weeks"])
def test_a_bad_stale_after_is_one_line(capsys: pytest.CaptureFixture, value: str) -> None:
    code, out, err = run_fleet(capsys, "--region", REGION, f"--stale-after={value}")
    assert code == 3 and out == "" and err.count("\n") == 1 and "--stale-after" in err


def test_profile_gives_region_and_credentials(fleet_lab: Tuple[FleetLab, Seeded], capsys: pytest.CaptureFixture,
                                              monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    lab, seeded = fleet_lab
    config = tmp_path / "aws-config"
    config.write_text(f"[profile ops]\nregion = {REGION}\naws_access_key_id = AKIAOPS\naws_secret_access_key = x\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code, out, err = run_fleet(capsys, "--profile", "ops", "--endpoint-url", lab.url, "--ca-bundle", str(lab.ca),
                               "--format", "json", "--cause", "private_dns_disabled")
    assert code == 2, err
    assert keys(json.loads(out)) == expected_rows(seeded.findings, causes=["private_dns_disabled"])
    code, out, err = run_fleet(capsys, "--profile", "nope", "--endpoint-url", lab.url)
    assert code == 3 and out == "" and len(err.splitlines()) == 1 and "nope" in err


def test_untrusted_certificate_is_one_line(fleet_lab: Tuple[FleetLab, Seeded], capsys: pytest.CaptureFixture,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    lab, _ = fleet_lab
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    code, out, err = run_fleet(capsys, "--region", REGION, "--endpoint-url", lab.url)
    assert code == 3 and out == ""
    assert len(err.splitlines()) == 1 and "TLS to " in err and "--ca-bundle" in err


# --- what is sent, and the error paths (a scripted server on loopback) -------------------------------

Scripted = Optional[Tuple[int, Dict[str, Any]]]  # None: read the request, never answer (a stalled endpoint)


class FakeSsm:
    """Answers each GetInventory with the next scripted (status, JSON body); the last one repeats.
    A None reply stalls: the request is read and nothing comes back until the server closes."""

    def __init__(self, replies: Sequence[Scripted]) -> None:
        self.replies = list(replies)
        self.requests: List[Dict[str, Any]] = []
        self.release = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fake.requests.append({"target": self.headers.get("X-Amz-Target"), "body": json.loads(body or b"{}")})
                scripted = fake.replies[min(len(fake.requests), len(fake.replies)) - 1]
                if scripted is None:
                    fake.release.wait(30)  # bounded: close() sets it
                    self.close_connection = True
                    return
                status, reply = scripted
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:{}".format(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def fake_ssm() -> Iterator[Any]:
    started: List[FakeSsm] = []

    def start(*replies: Scripted) -> FakeSsm:
        server = FakeSsm(replies)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def entity(iid: str, *entries: Dict[str, str]) -> Dict[str, Any]:
    return {"Id": iid, "Data": {"Custom:VpceDoctor": {"TypeName": "Custom:VpceDoctor", "SchemaVersion": "1.0",
                                                      "CaptureTime": "2026-01-01T00:00:00Z", "Content": list(entries)}}}


def finding(check: str, status: str, cause: str = "") -> Dict[str, str]:
    return {"CheckId": check, "Status": status, "CauseCode": cause, "Summary": "", "Cause": "", "Fix": "",
            "Evidence": "{}", "CheckedAt": "2026-01-01T00:00:00Z", "AgentVersion": "0.1.0"}


THROTTLED: Scripted = (400, {"__type": "ThrottlingException", "message": "Rate exceeded"})


def test_request_shape_and_entry_level_filtering(fake_ssm: Any, capsys: pytest.CaptureFixture) -> None:
    """Every publishing instance is read; all conditions must then hold on the same entry."""
    server = fake_ssm(
        (200, {"Entities": [entity("i-1", finding("dns.ssm", "OK"),
                                   finding("s3.route", "CRITICAL", "s3_route_missing"))], "NextToken": "t1"}),
        (200, {"Entities": [entity("i-2", finding("dns.ssm", "CRITICAL", "private_dns_disabled"))]}),
        (200, {"Entities": []}))
    code, out, err = run_fleet(capsys, "--region", REGION, "--endpoint-url", server.url, "--format", "json",
                               "--check", "dns.ssm", "--cause", "private_dns_disabled,s3_route_missing",
                               "--max-results", "20")
    assert code == 2, err
    doc = json.loads(out)
    assert keys(doc) == {("i-2", "dns.ssm", "CRITICAL", "private_dns_disabled")}  # i-1's dns.ssm is OK
    assert doc["pages"] == 3 and doc["records_read"] == 2
    first, second, managed = (r["body"] for r in server.requests)
    assert server.requests[0]["target"] == "AmazonSSM.GetInventory"
    assert first == {"Filters": [{"Key": "Custom:VpceDoctor.Status", "Values": list(STATUSES), "Type": "Equal"}],
                     "ResultAttributes": [{"TypeName": "Custom:VpceDoctor"}], "MaxResults": 20}
    assert second == dict(first, NextToken="t1")
    # Coverage: which managed instances exist (not terminated).
    assert managed == {"Filters": [{"Key": "AWS:InstanceInformation.InstanceStatus", "Values": ["Terminated"],
                                    "Type": "NotEqual"}],
                       "ResultAttributes": [{"TypeName": "AWS:InstanceInformation"}], "MaxResults": 20}


def test_access_denied_names_the_iam_action(fake_ssm: Any, capsys: pytest.CaptureFixture) -> None:
    denied = "User: arn:aws:iam::123456789012:user/ops is not authorized to perform: ssm:GetInventory"
    server = fake_ssm((400, {"__type": "AccessDeniedException", "message": denied}))
    code, out, err = run_fleet(capsys, "--region", REGION, "--endpoint-url", server.url)
    assert code == 3 and out == "" and len(err.splitlines()) == 1
    assert err.startswith("vpce-doctor fleet: error: access denied (AccessDeniedException): the IAM action "
                          "ssm:GetInventory is missing")
    assert len(server.requests) == 1  # not retried


def test_throttling_is_retried(fake_ssm: Any, capsys: pytest.CaptureFixture) -> None:
    server = fake_ssm(THROTTLED, (200, {"Entities": [entity("i-1", finding("resolver", "WARNING", "resolver_slow"))]}))
    code, out, err = run_fleet(capsys, "--region", REGION, "--endpoint-url", server.url, "--format", "json")
    assert code == 1, err
    assert keys(json.loads(out)) == {("i-1", "resolver", "WARNING", "resolver_slow")}
    assert len(server.requests) == 2 + 1  # the throttled try, its retry, then the coverage query


def test_throttled_after_every_attempt(fake_ssm: Any, capsys: pytest.CaptureFixture,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")  # the operator's setting wins over our default of 5
    server = fake_ssm(THROTTLED)
    code, out, err = run_fleet(capsys, "--region", REGION, "--endpoint-url", server.url, "--deadline", "3")
    assert code == 3 and out == "" and len(err.splitlines()) == 1
    # botocore's two attempts per call, then backing off here until the deadline: the error names the
    # throttling whichever gives up first (the backoff, or the deadline's backstop).
    assert "throttled (ThrottlingException)" in err and "deadline" in err, err
    assert 2 <= len(server.requests) <= 16


def test_repeated_next_token_stops(fake_ssm: Any, capsys: pytest.CaptureFixture) -> None:
    server = fake_ssm((200, {"Entities": [], "NextToken": "same"}))
    code, out, err = run_fleet(capsys, "--region", REGION, "--endpoint-url", server.url)
    assert code == 3 and out == "" and "kept paging" in err and len(err.splitlines()) == 1
    assert len(server.requests) == 2


def test_unreachable_endpoint(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, out, err = run_fleet(capsys, "--region", REGION, "--endpoint-url", f"http://127.0.0.1:{port}")
    assert code == 3 and out == "" and len(err.splitlines()) == 1 and "cannot reach" in err


def test_no_region_and_no_credentials(fake_ssm: Any, capsys: pytest.CaptureFixture,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    server = fake_ssm((200, {"Entities": []}))
    code, out, err = run_fleet(capsys, "--endpoint-url", server.url)
    assert code == 3 and out == "" and "no region: pass --region" in err and len(err.splitlines()) == 1
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code, out, err = run_fleet(capsys, "--region", REGION, "--endpoint-url", server.url)
    assert code == 3 and out == "" and "no AWS credentials" in err and len(err.splitlines()) == 1
    assert server.requests == []


@pytest.mark.parametrize("argv, message", [
    (["--status", "BAD"], "--status: unknown status BAD"),
    (["--max-results", "51"], "--max-results: 51 is out of range"),
    (["--max-results", "0"], "--max-results: 0 is out of range"),
    (["--type-name", "VpceDoctor"], "--type-name: 'VpceDoctor' is not an inventory type name"),
    (["--deadline", "0"], "--deadline: 0 is out of range; expected 0 < S <= 3600"),
    (["--deadline", "nan"], "--deadline: nan is out of range"),
    (["--deadline", "7200"], "--deadline: 7200 is out of range"),
])
def test_bad_values_exit_3(capsys: pytest.CaptureFixture, argv: List[str], message: str) -> None:
    code, out, err = run_fleet(capsys, "--region", REGION, "--endpoint-url", "http://127.0.0.1:9", *argv)
    assert code == 3 and out == "" and message in err and len(err.splitlines()) == 1


def test_usage_error_exits_3(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as raised:  # argparse's own errors leave through the parser
        fleet.main(["--format", "xml"])
    assert raised.value.code == 3 and "invalid choice" in capsys.readouterr().err


def test_add_parser_and_run(fake_ssm: Any, capsys: pytest.CaptureFixture) -> None:
    """What cli.py wires: add_parser registers `fleet` with help; run(args) runs it."""
    server = fake_ssm((200, {"Entities": [entity("i-9", finding("imds", "CRITICAL", "imds_disabled"))]}))
    parser = argparse.ArgumentParser(prog="vpce-doctor")
    sub = parser.add_subparsers(dest="command")
    fleet.add_parser(sub)
    assert "fleet" in parser.format_help()
    args = parser.parse_args(["fleet", "--region", REGION, "--endpoint-url", server.url, "--format", "json"])
    assert fleet.run(args) == 2
    assert json.loads(capsys.readouterr().out)["instances"] == ["i-9"]
    help_text = sub.choices["fleet"].format_help()
    for word in ("--status", "--check", "--cause", "--type-name", "--max-results", "ssm:GetInventory", "Exit code"):
        assert word in help_text


def test_cli_wiring_when_present(fake_ssm: Any, capsys: pytest.CaptureFixture) -> None:
    from vpce_doctor import cli

    probe = cli._parser()
    subcommands = next(a for a in probe._actions if isinstance(a, argparse._SubParsersAction)).choices
    if "fleet" not in subcommands:
        pytest.skip("cli.py does not register `fleet` yet (the lead wires fleet.add_parser/run)")
    server = fake_ssm((200, {"Entities": [entity("i-9", finding("resolver", "WARNING", "resolver_slow"))]}))
    assert cli.main(["fleet", "--region", REGION, "--endpoint-url", server.url]) == 1
    assert "i-9" in capsys.readouterr().out


@pytest.mark.parametrize("reply, says", [
    ({}, "no Entities list"),                                    # an unparsable 200 reaches us as {}
    ({"Entities": "nope"}, "does not parse as a GetInventory reply"),
    ({"Entities": [{"Id": "i-1", "Data": {"Custom:VpceDoctor": "nope"}}]}, "does not parse as a GetInventory reply"),
])
def test_an_answer_that_is_not_an_inventory_reply_is_an_error_not_an_all_clear(
        reply: Dict[str, Any], says: str, fake_ssm: Any, capsys: pytest.CaptureFixture) -> None:
    server = fake_ssm((200, reply))
    code, out, err = run_fleet(capsys, "--region", REGION, "--endpoint-url", server.url)
    assert code == 3 and out == "" and len(err.splitlines()) == 1, (code, out, err)
    assert says in err and "internal error" not in err


def test_a_huge_multi_line_error_is_one_bounded_line(fake_ssm: Any, capsys: pytest.CaptureFixture) -> None:
    server = fake_ssm((400, {"__type": "X" * 5000, "message": "first\nsecond " + "y" * 5000}))
    code, _, err = run_fleet(capsys, "--region", REGION, "--endpoint-url", server.url)
    assert code == 3 and len(err.splitlines()) == 1
    assert len(err) <= len("vpce-doctor fleet: error: ") + fleet.MAX_ERROR_CHARS + 1


@pytest.mark.parametrize("url", ["not-a-url", "ftp://ssm.example", "http://[bad"])
def test_a_bad_endpoint_url_is_named(url: str, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    code, _, err = run_fleet(capsys, "--region", REGION, "--endpoint-url", url)
    assert code == 3 and err.startswith("vpce-doctor fleet: error: --endpoint-url: ") and "internal" not in err


# --- the overall deadline and what foreign bytes may do ----------------------------------------------

def test_a_stalled_endpoint_is_named_after_the_deadline_never_an_all_clear(fake_ssm: Any,
                                                                         capsys: pytest.CaptureFixture) -> None:
    server = fake_ssm(None)  # accepts, reads GetInventory, never answers
    started = time.monotonic()
    code, out, err = run_fleet(capsys, "--region", REGION, "--endpoint-url", server.url, "--deadline", "1")
    elapsed = time.monotonic() - started
    assert code == 3 and out == "" and len(err.splitlines()) == 1, (code, out, err)
    assert 0.9 <= elapsed < 2.5, elapsed
    assert err.startswith("vpce-doctor fleet: error: the deadline passed (--deadline 1 s) before the fleet was "
                          f"read; not read: {REGION} findings, {REGION} managed."), err
    assert "not an all-clear" in err and server.requests


def test_the_deadline_names_the_coverage_queries_when_the_findings_came(fake_ssm: Any,
                                                                       capsys: pytest.CaptureFixture) -> None:
    server = fake_ssm((200, {"Entities": [entity("i-1", finding("dns.ssm", "CRITICAL", "private_dns_disabled"))],
                             "NextToken": "t1"}),
                      (200, {"Entities": []}),
                      None)  # the coverage query (who publishes) stalls
    code, out, err = run_fleet(capsys, "--region", REGION, "--endpoint-url", server.url, "--deadline", "1.5",
                               "--format", "json")
    assert code == 3 and out == "" and len(err.splitlines()) == 1, (code, out, err)
    assert f"not read: {REGION} managed." in err and "findings" not in err, err
    assert len(server.requests) >= 3


def test_a_list_of_only_commas_is_a_usage_error(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as raised:
        fleet.main(["--check", ",,,"])
    assert raised.value.code == 3 and "argument --check:" in capsys.readouterr().err


ATTACK = "\x1b[2J\x1b]0;owned\x07\r\u202eKO\u2066 \x9b31m"
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def test_control_bytes_from_aws_never_reach_the_terminal(fake_ssm: Any, capsys: pytest.CaptureFixture) -> None:
    """An error message and inventory entries (what another instance published) carrying ESC, CR,
    8-bit CSI and bidi overrides are printed as visible escapes, in every output."""
    server = fake_ssm((400, {"__type": "AccessDeniedException", "message": "denied" + ATTACK}))
    code, out, err = run_fleet(capsys, "--region", REGION, "--endpoint-url", server.url)
    assert code == 3 and not RAW_CONTROL.search(out + err), repr(err)
    assert "\\x1b[2J" in err and "\\u202eKO" in err and "\\x9b31m" in err
    bad = dict(finding("dns.ssm", "CRITICAL", "private_dns_disabled" + ATTACK + "\nfake row"), Cause="c" + ATTACK,
               Fix="f" + ATTACK, Summary="s" + ATTACK)
    for fmt in ("table", "json"):
        server = fake_ssm((200, {"Entities": [entity("i-1", bad)]}))
        code, out, err = run_fleet(capsys, "--region", REGION, "--endpoint-url", server.url, "--format", fmt, "-v")
        assert code == 2, err
        assert not RAW_CONTROL.search(out + err), (fmt, out)
        assert "private_dns_disabled" in out
        assert not any(line.lstrip().startswith("fake row") for line in out.splitlines())  # one line per cell
