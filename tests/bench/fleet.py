"""`vpce-doctor fleet` over 500 managed instances: the lab's AWS layer on loopback, seeded through
the real boto3 PutInventory with what the daemon publishes, then the command timed end to end.

    .venv/bin/python -m tests.bench.fleet [--runs 3] [--fleet-size 500]

prints one JSON line: {"figure": "fleet_500_s", "value": <median wall time of the command>, ...}.
No root needed: nothing leaves 127.0.0.1. The helpers here (FleetLab, seed_fleet, expected_rows) are
shared with tests/unit/test_fleet.py, which asserts what this only times.

The layer runs under $VPCE_LAB_PYTHON when set (the lab's tools may live in another environment than
the agent under test, e.g. CPython 3.9 with Amazon Linux 2023's pinned botocore), else this Python.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from tests.lab.aws.loopback import REGION, REPO, LoopbackLayer, loopback_world

READY_TIMEOUT_S = 120.0   # moto launches the whole fleet before READY
TYPE_NAME = "Custom:VpceDoctor"
VERDICT_TYPE_NAME = "Custom:VpceDoctorVerdict"
OTHER_TYPE_NAME = "Custom:VpceDoctorStaging"  # a second publisher, with fewer attributes
CAPTURED_AT = 1_780_000_000.0  # a fixed CheckedAt: 2026-05-28T...Z

# --- the lab's AWS layer with a fleet ------------------------------------------------------------------

class FleetLab(LoopbackLayer):
    """One `python -m tests.lab.aws --fleet-size N --listen 127.0.0.1:0` subprocess."""

    def __init__(self, tmp: Path, fleet_size: int) -> None:
        super().__init__(tmp, loopback_world("fleet"), ["--fleet-size", str(fleet_size)])

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        super().wait_ready(timeout_s)

    def client(self) -> Any:  # type: ignore[override]
        # Static keys: the fleet view runs as an operator, not as the instance.
        return super().client("ssm", {"AccessKeyId": "AKIAIOSFODNN7EXAMPLE", "SecretAccessKey": "lab"},
                              max_pool_connections=16)


# --- what the fleet reports ----------------------------------------------------------------------------

# Every instance's checks (ids as the agent names them). reach.ssmmessages.* is there so that
# "--check reach.ssm" is seen to be a dotted prefix, not a string prefix.
CHECK_IDS = ("imds", "instance.public_ip", "instance.profile", "ssm_agent", "resolver", "resolver.system",
             "dns.ssm", "dns.ec2messages", "dns.ssmmessages", "eni.ssm", "reach.ssm.10.0.1.101",
             "reach.ssm.10.0.2.101", "reach.ssmmessages.10.0.1.103", "s3.dns", "s3.route", "s3.api",
             "egress.google.com")

# Broken profiles by index % 10 (0-4 healthy): {check id: (status, cause code)}.
BROKEN: Dict[int, Dict[str, Tuple[str, str]]] = {
    5: {"dns.ssm": ("CRITICAL", "private_dns_disabled")},
    6: {"reach.ssm.10.0.1.101": ("CRITICAL", "endpoint_sg_no_inbound_443"),
        "reach.ssm.10.0.2.101": ("CRITICAL", "endpoint_sg_no_inbound_443"),
        "s3.route": ("CRITICAL", "s3_route_missing")},
    7: {"resolver": ("WARNING", "resolver_slow")},
    8: {"instance.public_ip": ("CRITICAL", "public_ip_assigned"), "resolver": ("WARNING", "resolver_slow")},
    9: {"reach.ssmmessages.10.0.1.103": ("UNKNOWN", "check_timeout")},
}


# The resource ids the causes' texts and CLI commands name.
PARAMS = {"vpc_id": "vpc-0fee1de0000000001", "subnet_id": "subnet-0fee1de0000000001",
          "endpoint_id": "vpce-0fee1de0000000001", "service": "ssm", "host": "ssm.us-east-1.amazonaws.com",
          "answers": "198.51.100.64", "region": REGION, "resolver": "10.0.0.2", "latency_ms": 350,
          "public_ipv4": "198.51.100.99", "route_table_id": "rtb-0fee1de0000000001",
          "sg_id": "sg-0fee1de0000000001", "sg_ids": "sg-0fee1de0000000001", "ip": "10.0.1.101",
          "prefix_list_id": "pl-63a5400a", "subnet_cidr": "10.0.1.0/24", "timeout_s": 2}


@dataclass(frozen=True)
class Seeded:
    """What was published: {instance: {check: (status, cause)}} per type; ids with no inventory."""
    findings: Dict[str, Dict[str, Tuple[str, str]]]   # TYPE_NAME
    other: Dict[str, Dict[str, Tuple[str, str]]]      # OTHER_TYPE_NAME (no CauseCode attribute)
    silent: Tuple[str, ...]                           # managed, never published


def plan(instance_ids: Sequence[str]) -> Seeded:
    """Deterministic by position: every 100th instance publishes nothing, the one before it only the
    other type; the rest cycle through healthy and the BROKEN profiles."""
    findings, other, silent = {}, {}, []
    for index, iid in enumerate(instance_ids):
        broken = BROKEN.get(index % 10, {})
        state = {cid: broken.get(cid, ("OK", "")) for cid in CHECK_IDS}
        if index % 100 == 99:
            silent.append(iid)
        elif index % 100 == 98:
            other[iid] = state
        else:
            findings[iid] = state
    return Seeded(findings, other, tuple(silent))


def _report(iid: str, state: Dict[str, Tuple[str, str]]) -> Any:
    """The Report a daemon on ``iid`` would have made (real Finding, Report and verdict objects)."""
    from vpce_doctor.checks.causes import explain
    from vpce_doctor.checks.model import Facts, Finding, Status
    from vpce_doctor.report import Report, verdicts

    out = []
    for cid, (status, code) in state.items():
        text = explain(code, instance_id=iid, **PARAMS) if code else {}
        out.append(Finding(id=cid, status=Status[status], summary=f"{cid}: {status.lower()} on {iid}",
                           cause_code=code or None, cause=text.get("cause"), fix=text.get("fix"),
                           evidence={"latency_ms": 1.5, "answers": ["10.0.1.101", "10.0.2.101"]}))
    findings = tuple(out)
    return Report(findings, Facts(region=REGION, instance_id=iid), tuple(verdicts(findings)), CAPTURED_AT, 0.5)


def _items(iid: str, state: Dict[str, Tuple[str, str]], other: bool) -> List[Dict[str, Any]]:
    from vpce_doctor.publishers.inventory import build_inventory

    if not other:  # exactly what the daemon's inventory publisher sends
        return [item.api() for item in build_inventory(_report(iid, state), TYPE_NAME, VERDICT_TYPE_NAME).items]
    content = [{"CheckId": cid, "Status": status, "Summary": f"{cid} {status}", "CheckedAt": "2026-01-02T03:04:05Z"}
               for cid, (status, _) in state.items()]
    return [{"TypeName": OTHER_TYPE_NAME, "SchemaVersion": "1.0", "CaptureTime": "2026-01-02T03:04:05Z",
             "Content": content}]


def seed_fleet(lab: FleetLab, seeded: Seeded, workers: int = 12) -> None:
    """PutInventory for every publishing instance, through boto3 (so the layer validates it)."""
    client = lab.client()
    jobs = [(iid, state, False) for iid, state in seeded.findings.items()]
    jobs += [(iid, state, True) for iid, state in seeded.other.items()]

    def put(job: Tuple[str, Dict[str, Tuple[str, str]], bool]) -> None:
        iid, state, other = job
        client.put_inventory(InstanceId=iid, Items=_items(iid, state, other))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(put, jobs))  # re-raises the first failure


Key = Tuple[str, str, str, str]  # (instance, check, status, cause code)


def expected_rows(published: Dict[str, Dict[str, Tuple[str, str]]],
                  statuses: Iterable[str] = ("WARNING", "CRITICAL", "UNKNOWN"),
                  checks: Sequence[str] = (), causes: Sequence[str] = ()) -> Set[Key]:
    wanted = set(statuses)
    return {(iid, cid, status, code)
            for iid, state in published.items() for cid, (status, code) in state.items()
            if status in wanted
            and (not checks or any(cid == c or cid.startswith(c + ".") for c in checks))
            and (not causes or code in causes)}


# --- the benchmark -------------------------------------------------------------------------------------

def _command() -> List[str]:
    """`vpce-doctor fleet` once cli.py has it, else the same code through `python -m vpce_doctor.fleet`."""
    probe = subprocess.run([sys.executable, "-m", "vpce_doctor", "fleet", "--help"], capture_output=True, timeout=60)
    return [sys.executable, "-m", "vpce_doctor", "fleet"] if probe.returncode == 0 else \
        [sys.executable, "-m", "vpce_doctor.fleet"]


def _timed(cmd: List[str], env: Dict[str, str], runs: int) -> Tuple[List[float], Dict[str, Any]]:
    times: List[float] = []
    doc: Dict[str, Any] = {}
    for _ in range(runs):
        started = time.monotonic()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
        times.append(time.monotonic() - started)
        if proc.returncode == 3 or not proc.stdout.startswith("{"):
            raise SystemExit(f"bench: fleet failed (exit {proc.returncode}): {proc.stderr.strip()[:500]}")
        doc = json.loads(proc.stdout)
    return times, doc


def _emit(figure: str, times: List[float], doc: Dict[str, Any], **extra: Any) -> None:
    print(json.dumps({"figure": figure, "value": round(statistics.median(times), 3), "min": round(min(times), 3),
                      "max": round(max(times), 3), "runs": len(times), "target": None,
                      "instances_listed": doc["instance_count"], "findings_listed": len(doc["rows"]),
                      "pages": doc["pages"], "records_read": doc["records_read"], **extra}), flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.fleet", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--fleet-size", type=int, default=500)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vpce-fleet-bench-") as tmp:
        lab = FleetLab(Path(tmp), args.fleet_size)
        try:
            started = time.monotonic()
            lab.wait_ready()
            ready_s = time.monotonic() - started
            seeded = plan(lab.instance_ids)
            started = time.monotonic()
            seed_fleet(lab, seeded)
            seed_s = time.monotonic() - started
            base = _command()
            cmd = base + ["--format", "json", "--region", REGION, "--endpoint-url", lab.url,
                                "--ca-bundle", str(lab.ca)]
            env = dict(os.environ, AWS_ACCESS_KEY_ID="AKIAIOSFODNN7EXAMPLE", AWS_SECRET_ACCESS_KEY="lab",
                       AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=os.devnull,
                       AWS_SHARED_CREDENTIALS_FILE=os.devnull)
            env.pop("AWS_PROFILE", None)
            # The figure: the default query (not OK), which the service pre-selects.
            times, doc = _timed(cmd, env, args.runs)
            got = {(r["instance_id"], r["check_id"], r["status"], r["cause_code"]) for r in doc["rows"]}
            want = expected_rows(seeded.findings)
            if got != want:
                raise SystemExit(f"bench: fleet listed {len(got)} findings, expected {len(want)}")
            # For scale: every finding of every publishing instance (no pre-selection possible).
            all_times, all_doc = _timed(cmd + ["--status", "OK,WARNING,CRITICAL,UNKNOWN"], env, args.runs)
        finally:
            lab.stop()
    common = {"command": "vpce-doctor fleet" if base[-1] == "fleet" else "python -m vpce_doctor.fleet",
              "managed_instances": len(lab.instance_ids), "layer_ready_s": round(ready_s, 2),
              "seed_s": round(seed_s, 2)}
    _emit(f"fleet_{args.fleet_size}_s", times, doc, **common)
    _emit(f"fleet_{args.fleet_size}_all_s", all_times, all_doc, **common)
    return 0


if __name__ == "__main__":
    sys.exit(main())
