"""How long the lab takes to come up and go down, as a user runs it (targets: up <= 5 s, down <= 2 s).

    sudo python tests/bench/lab_updown.py [--scenario healthy] [--runs 3] [--aws real|stub]

Prints JSON lines: {"figure": "lab_up_s", "value": <median>, ...} and the same for lab_down_s. Each
figure is the wall time of the whole command (`python -m tests.lab up|down`), interpreter start
included.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import List

REPO_ROOT = Path(__file__).resolve().parents[2]
NAME = "updown"  # its own lab name: other benchmarks may have a lab up meanwhile


def timed(argv: List[str]) -> float:
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "tests.lab"] + argv + ["--name", NAME], cwd=REPO_ROOT,
                         capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if out.returncode != 0:
        raise SystemExit(f"lab_updown: python -m tests.lab {argv[0]} failed: {out.stderr.strip()}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="healthy")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--aws", choices=("real", "stub"), default="real")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("lab_updown: needs root (the lab builds network namespaces)", file=sys.stderr)
        return 2
    ups, downs = [], []
    try:
        for _ in range(args.runs):
            ups.append(timed(["up", args.scenario, "--aws", args.aws]))
            downs.append(timed(["down"]))
    finally:
        subprocess.run([sys.executable, "-m", "tests.lab", "down", "--name", NAME], cwd=REPO_ROOT,
                       capture_output=True)
    for figure, values, target in (("lab_up_s", ups, 5.0), ("lab_down_s", downs, 2.0)):
        print(json.dumps({"figure": figure, "value": round(statistics.median(values), 3),
                          "runs": [round(v, 3) for v in values], "target": target,
                          "scenario": args.scenario, "aws": args.aws}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
