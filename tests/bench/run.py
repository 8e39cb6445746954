"""The benchmarks, one JSON line per figure (run as root from the repo root):

    sudo .venv/bin/python -m tests.bench.run [--runs 10] [--only oneshot_healthy_s,...]

Figures (targets from the issues, printed, never asserted):
* oneshot_healthy_s           `vpce-doctor check` on the healthy lab, interpreter start included (median of N)
* oneshot_healthy_egress05_s  the same with `egress.timeout_s: 0.5` (the isolation probe's wait is the floor)
* oneshot_blackholed_s        IMDS, resolver and every ENI drop everything (target <= deadline + 0.5 s)
* oneshot_scale_30x3_s        30 interface endpoints x 3 AZs (target <= 1.5 s), and _egress05 as above
* lab_up_s / lab_down_s       building and tearing down the healthy lab (targets <= 5 s / <= 2 s)
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
from typing import Callable, List, Optional

import yaml

from tests.lab import lab as labmod

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "tests" / "lab" / "scenarios"
BENCH_SCENARIOS = Path(__file__).resolve().parent / "scenarios"
NAME = "bench"


def emit(figure: str, values: List[float], target: Optional[float], **extra: object) -> None:
    print(json.dumps({"figure": figure, "value": round(statistics.median(values), 3),
                      "min": round(min(values), 3), "max": round(max(values), 3), "runs": len(values),
                      "target": target, **extra}), flush=True)


AGENT = os.environ.get("VPCE_LAB_AGENT", "vpce-doctor")  # --agent: e.g. another build, to compare


def agent_runs(lab: labmod.Lab, runs: int, config: Optional[Path]) -> List[float]:
    argv = [AGENT, "check", "--format", "json"] + (["--config", str(config)] if config else [])
    cmd = labmod.instance_argv(lab.names, argv)
    env = labmod.instance_env(lab.names)
    times = []
    for _ in range(runs):
        start = time.monotonic()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        times.append(time.monotonic() - start)
        if proc.returncode == 3 or not proc.stdout.startswith("{"):
            raise SystemExit(f"bench: the agent failed: {proc.stderr.strip()[:300]}")
    return times


def with_config(lab: labmod.Lab, name: str, **overrides: object) -> Path:
    """The scenario's agent config plus overrides, written next to it in the lab's state dir."""
    base = yaml.safe_load(lab.agent_config.read_text()) if lab.agent_config else {}
    for key, value in overrides.items():
        section, _, leaf = key.partition(".")
        base.setdefault(section, {})[leaf] = value
    path = lab.state_dir / name
    path.write_text(yaml.safe_dump(base))
    return path


def in_lab(scenario: Path, body: Callable[[labmod.Lab], None]) -> None:
    lab = labmod.up(scenario, NAME)
    try:
        body(lab)
    finally:
        labmod.down(NAME)


def bench_oneshot(figure: str, scenario: Path, runs: int, target: float, only: Optional[set],
                  fast_variant: bool = True) -> None:
    """``figure`` with the scenario's config and, when asked, ``<figure>_egress05`` with the
    isolation probe's wait cut to 0.5 s (with the default 3 s that wait is the floor)."""
    fast_figure = figure[:-len("_s")] + "_egress05_s" if fast_variant else None

    def body(lab: labmod.Lab) -> None:
        if not only or figure in only:
            emit(figure, agent_runs(lab, runs, lab.agent_config), target)
        if fast_figure and (not only or fast_figure in only):
            fast = with_config(lab, "agent-fast-egress.yaml", **{"egress.timeout_s": 0.5})
            emit(fast_figure, agent_runs(lab, runs, fast), target)
    in_lab(scenario, body)


def bench_updown(runs: int) -> None:
    ups, downs = [], []
    for _ in range(runs):
        ups.append(labmod.up(SCENARIOS / "healthy.yaml", NAME).up_s)
        start = time.monotonic()
        labmod.down(NAME)
        downs.append(time.monotonic() - start)
    emit("lab_up_s", ups, 5.0)
    emit("lab_down_s", downs, 2.0)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="vpce-doctor benchmarks: one JSON line per figure")
    parser.add_argument("--runs", type=int, default=10, help="runs per one-shot figure (median)")
    parser.add_argument("--only", help="comma-separated figure names")
    parser.add_argument("--agent", help="agent command (default $VPCE_LAB_AGENT or vpce-doctor), e.g. an older "
                        "build's, to compare on this machine in the same run")
    args = parser.parse_args(argv)
    global AGENT
    AGENT = args.agent or AGENT
    if os.geteuid() != 0:
        print("bench: run as root (the lab builds network namespaces)", file=sys.stderr)
        return 3
    only = set(args.only.split(",")) if args.only else None
    def wanted(*figures: str) -> bool:
        return not only or any(f in only for f in figures)

    try:
        if wanted("oneshot_healthy_s", "oneshot_healthy_egress05_s"):
            bench_oneshot("oneshot_healthy_s", SCENARIOS / "healthy.yaml", args.runs, 1.0, only)
        if wanted("oneshot_blackholed_s"):
            bench_oneshot("oneshot_blackholed_s", BENCH_SCENARIOS / "blackholed.yaml", max(3, args.runs // 3),
                          10.5, only, fast_variant=False)
        if wanted("oneshot_scale_30x3_s", "oneshot_scale_30x3_egress05_s"):
            bench_oneshot("oneshot_scale_30x3_s", BENCH_SCENARIOS / "scale-30x3.yaml", max(3, args.runs // 2),
                          1.5, only)
        if wanted("lab_up_s", "lab_down_s"):
            bench_updown(3)
    finally:
        labmod.down(NAME)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
