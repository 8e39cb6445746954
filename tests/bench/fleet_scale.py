"""`vpce-doctor fleet` over 10,000 instances (2 accounts × 3 regions, 5 planted resource faults;
tests/lab/fleetgen.py), the real command in a fresh process each time, wall and peak RSS printed:

* ``fleet_api_10000``: through the loopback SSM stand-in throttling GetInventory at ``--rate`` per
  second per account and region (SSM's quotas are per account, region and API). The ideal is the
  slowest partition's pages at that rate (its first ``--burst`` free); the ratio wall/ideal says how
  close the reader comes to "limited only by the throttle rate".
* ``fleet_sync_local_10000``: a local copy of the Resource Data Sync layout (what `aws s3 sync` makes).
* ``fleet_sync_s3_10000``: the same layout in moto S3 on 127.0.0.1, with moto's own GetObject rate
  measured in the same run as the reference (moto, not the reader, bounds this figure here).

    .venv/bin/python -m tests.bench.fleet_scale [--instances 10000] [--rate 5] [--burst 5] [--skip-s3]

One JSON line per figure. Targets (issue 13): sync ≤ 10 s and ≤ 250 MB; API limited by the rate.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from tests.lab.aws.resource_data_sync import MotoServer, S3Dest, moto_get_rate, write_layout
from tests.lab.aws.ssm_fleet_standin import Account, FleetStandin
from tests.lab.fleetgen import ACCOUNTS, REGIONS, Fleet, generate

REPO = Path(__file__).resolve().parents[2]
KEYS = (Account("AKIAFLEETONE0000001", ACCOUNTS[0], "secret-one"), Account("AKIAFLEETTWO0000002", ACCOUNTS[1], "secret-two"))
PAGE = 50


def run_measured(argv: List[str], env: Dict[str, str]) -> Dict[str, Any]:
    """Run the command (inside WRAPPER, which reports the command's own CPU and peak RSS on stderr)."""
    started = time.monotonic()
    proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=900)
    wall = time.monotonic() - started
    if proc.returncode == 3:
        raise SystemExit(f"bench: fleet failed: {err.decode()[:500]}")
    report = json.loads(err.decode().strip().splitlines()[-1])
    doc = json.loads(out)
    return {"wall_s": round(wall, 2), "cpu_s": report["cpu_s"], "peak_rss_mb": report["peak_rss_mb"],
            "exit": proc.returncode, "root_causes": len(doc["root_causes"]), "records_read": doc["records_read"],
            "reads": doc["reads"]}


WRAPPER = """
import json, resource, subprocess, sys
proc = subprocess.Popen(sys.argv[1:], stderr=subprocess.PIPE)
_, err = proc.communicate()
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
sys.stderr.write(err.decode(errors="replace"))
sys.stderr.write("\\n" + json.dumps({"cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
                                     "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}) + "\\n")
sys.exit(proc.returncode)
"""


def fleet_cmd(*args: str) -> List[str]:
    return [sys.executable, "-c", WRAPPER, sys.executable, "-m", "vpce_doctor", "fleet", "--format", "json", *args]


def ideal_api_s(f: Fleet, rate: float, burst: float) -> float:
    """The slowest partition's GetInventory pages at ``rate`` (the first ``burst`` free)."""
    publishing: Counter = Counter()
    managed: Counter = Counter()
    for inst in f.instances:
        key = (inst.account_id, inst.region)
        if inst.publishes:
            publishing[key] += 1
        if inst.noise != "terminated":
            managed[key] += 1
    pages = {k: math.ceil(publishing[k] / PAGE) + math.ceil(managed[k] / PAGE) for k in managed}
    return max(max(0.0, p - burst) / rate for p in pages.values())


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.fleet_scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=5.0, help="GetInventory calls/s per account and region "
                        "(SSM does not publish it; 5 is a conservative stand-in)")
    parser.add_argument("--burst", type=float, default=5.0)
    parser.add_argument("--skip-s3", action="store_true", help="skip the moto S3 figure (minutes to write)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    f = generate(args.instances)
    print(json.dumps({"figure": "fleetgen_s", "value": round(time.monotonic() - started, 2),
                      "instances": len(f.instances), "faults": len(f.faults)}), flush=True)
    n = args.instances
    with tempfile.TemporaryDirectory(prefix="vpce-fleet-scale-") as tmp:
        tmpdir = Path(tmp)
        env = dict(os.environ, AWS_EC2_METADATA_DISABLED="true", AWS_SHARED_CREDENTIALS_FILE=os.devnull)
        for name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            env.pop(name, None)
        # --- the API at the throttle rate ---
        standin = FleetStandin(tmpdir, f.write_seed(tmpdir / "fleet.jsonl"), KEYS, rate=args.rate, burst=args.burst)
        try:
            standin.wait_ready()
            config = tmpdir / "aws-config"
            config.write_text("".join(f"[profile acct{i}]\naws_access_key_id = {a.access_key_id}\n"
                                      f"aws_secret_access_key = {a.secret}\n" for i, a in enumerate(KEYS)))
            api_env = dict(env, AWS_CONFIG_FILE=str(config))
            figure = run_measured(fleet_cmd("--profile", "acct0,acct1", "--regions", ",".join(REGIONS),
                                            "--endpoint-url", standin.url, "--ca-bundle", str(standin.ca),
                                            "--deadline", "900"), api_env)
            ideal = ideal_api_s(f, args.rate, args.burst)
            stats = standin.stats()
        finally:
            standin.stop()
        print(json.dumps({"figure": f"fleet_api_{n}", **figure, "rate_per_partition": args.rate,
                          "burst": args.burst, "ideal_s": round(ideal, 2),
                          "ratio_to_ideal": round(figure["wall_s"] / ideal, 2) if ideal else None,
                          "standin": {k: v for k, v in stats.items() if k in ("requests", "throttled")}}), flush=True)
        # --- the sync layout, local copy ---
        local = tmpdir / "sync"
        started = time.monotonic()
        written = write_layout(local, f.records())
        write_s = time.monotonic() - started
        figure = run_measured(fleet_cmd("--from-sync", str(local)), env)
        print(json.dumps({"figure": f"fleet_sync_local_{n}", **figure, "objects": written.objects,
                          "bytes": written.bytes, "write_s": round(write_s, 1), "target_s": 10,
                          "target_mb": 250}), flush=True)
        if args.skip_s3:
            return 0
        # --- the sync layout in moto S3 ---
        with MotoServer() as moto:
            s3 = moto.client(max_pool_connections=64)
            s3.create_bucket(Bucket="vpce-doctor-sync")
            started = time.monotonic()
            write_layout(S3Dest(s3, "vpce-doctor-sync", "inventory"), f.records(), concurrency=32)
            write_s = time.monotonic() - started
            s3_env = dict(env, AWS_ACCESS_KEY_ID="AKIAOPERATOR0000001", AWS_SECRET_ACCESS_KEY="operator",
                          AWS_CONFIG_FILE=os.devnull)
            figure = run_measured(fleet_cmd("--from-sync", "s3://vpce-doctor-sync/inventory", "--region",
                                            "us-east-1", "--endpoint-url", moto.url, "--deadline", "900"), s3_env)
            reference = moto_get_rate(moto)
        print(json.dumps({"figure": f"fleet_sync_s3_{n}", **figure, "write_s": round(write_s, 1),
                          "moto_get_rate": reference, "target_s": 10, "target_mb": 250}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
