"""The benchmarks, one JSON line per figure (run as root from the repo root):

    sudo .venv/bin/python -m tests.bench.run [--runs 10] [--only oneshot_healthy_s,...] [--name LAB]

Figures (targets from issue 12, printed, never asserted), each the median of N runs of
`vpce-doctor check --format json` in the lab with default settings, interpreter start included:
* oneshot_healthy_s       the healthy lab (target <= 1.2 s)
* oneshot_scale_30x3_s    30 interface endpoints x 3 AZs (target <= 1.5 s)
* oneshot_blackholed_s    IMDS, resolver and every ENI drop everything (target <= deadline + 0.5 s)
* lab_up_s / lab_down_s   building and tearing down the healthy lab (targets <= 5 s / <= 2 s)
On request (--only) also oneshot_healthy_egress05_s and oneshot_scale_30x3_egress05_s: the same with
`egress.timeout_s: 0.5`, to see what the isolation probe's wait costs.

Each one-shot figure gives the wall time AND the agent's CPU (user+sys, from wait4): the machine may
be shared, and wall time then measures the neighbours too. ``cpu_ratio`` is the CPU median over the
reference program's (tests/bench/reference.py, measured in the same run with the agent's interpreter),
which is what compares across machines. Bytecode is compiled first, as a wheel or RPM install does
(the lab may run with PYTHONDONTWRITEBYTECODE set, which would otherwise compile every module on
every run).
"""
from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import yaml

from tests.bench import reference
from tests.lab import lab as labmod

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "tests" / "lab" / "scenarios"
BENCH_SCENARIOS = Path(__file__).resolve().parent / "scenarios"
NAME = os.environ.get("VPCE_LAB_NAME") or "bench"  # the lab's name: several sessions may share the machine
DEFAULT_DEADLINE_S = 10.0  # timeouts.deadline_s's default (agent/config.py)

AGENT = os.environ.get("VPCE_LAB_AGENT", "vpce-doctor")  # --agent: e.g. another build, to compare
REFERENCE_CPU_S: Optional[float] = None  # measured once per run of the benchmarks


def _median(values: List[float]) -> float:
    return round(statistics.median(values), 3)


def emit(figure: str, values: List[float], target: Optional[float], cpu: Optional[List[float]] = None,
         **extra: object) -> None:
    line = {"figure": figure, "value": _median(values), "min": round(min(values), 3),
            "max": round(max(values), 3), "runs": len(values), "target": target}
    if cpu:
        line["cpu_s"] = _median(cpu)  # user + system of the agent process
        if REFERENCE_CPU_S:
            line["cpu_ratio"] = round(statistics.median(cpu) / REFERENCE_CPU_S, 2)
            line["reference_cpu_s"] = round(REFERENCE_CPU_S, 3)
    line.update(extra)
    print(json.dumps(line), flush=True)


def agent_runs(lab: labmod.Lab, runs: int, config: Optional[Path]) -> Tuple[List[float], List[float]]:
    """(wall seconds, CPU seconds) of each run. ``ip netns exec`` execs the agent in its own process,
    so wait4's rusage is the agent's own CPU (and that of any child it waited for)."""
    argv = [AGENT, "check", "--format", "json"] + (["--config", str(config)] if config else [])
    cmd = labmod.instance_argv(lab.names, argv)
    env = labmod.instance_env(lab.names)
    walls, cpus = [], []
    for _ in range(runs):
        start = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise SystemExit("bench: the agent ran longer than 120 s")
        walls.append(time.monotonic() - start)
        # communicate() reaped the child; the rusage of the reaped children grows by exactly its CPU.
        cpus.append(_children_cpu_delta())
        if proc.returncode == 3 or not out.startswith("{"):
            raise SystemExit(f"bench: the agent failed: {err.strip()[:300]}")
    return walls, cpus


_last_children_cpu = 0.0


def _children_cpu_delta() -> float:
    """CPU seconds of the children reaped since the last call."""
    import resource

    global _last_children_cpu
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = usage.ru_utime + usage.ru_stime
    delta, _last_children_cpu = total - _last_children_cpu, total
    return delta


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


def bench_oneshot(figure: str, scenario: Path, runs: int, target: float, only: Optional[set]) -> None:
    """``figure`` with the scenario's config (default settings otherwise) and, when asked by name,
    ``<figure>_egress05`` with the isolation probe's wait cut to 0.5 s."""
    fast_figure = figure[:-len("_s")] + "_egress05_s"

    def body(lab: labmod.Lab) -> None:
        _children_cpu_delta()  # what the lab's own start-up reaped does not count
        if not only or figure in only:
            walls, cpus = agent_runs(lab, runs, lab.agent_config)
            emit(figure, walls, target, cpus)
        if only and fast_figure in only:
            fast = with_config(lab, "agent-fast-egress.yaml", **{"egress.timeout_s": 0.5})
            walls, cpus = agent_runs(lab, runs, fast)
            emit(fast_figure, walls, target, cpus)
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


def compile_bytecode() -> None:
    """What pip (wheel) and rpmbuild (brp-python-bytecompile) do at install time."""
    for folder in ("agent", "checks"):
        compileall.compile_dir(str(ROOT / folder), quiet=1)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="vpce-doctor benchmarks: one JSON line per figure")
    parser.add_argument("--runs", type=int, default=10, help="runs per one-shot figure (median)")
    parser.add_argument("--only", help="comma-separated figure names")
    parser.add_argument("--agent", help="agent command (default $VPCE_LAB_AGENT or vpce-doctor), e.g. an older "
                        "build's, to compare on this machine in the same run")
    parser.add_argument("--name", help="lab name (default $VPCE_LAB_NAME or bench)")
    args = parser.parse_args(argv)
    global AGENT, NAME, REFERENCE_CPU_S
    AGENT = args.agent or AGENT
    NAME = args.name or NAME
    if os.geteuid() != 0:
        print("bench: run as root (the lab builds network namespaces)", file=sys.stderr)
        return 3
    only = set(args.only.split(",")) if args.only else None

    def wanted(*figures: str) -> bool:
        return not only or any(f in only for f in figures)

    compile_bytecode()
    REFERENCE_CPU_S = reference.reference_cpu_s(reference.python_of(AGENT))
    print(json.dumps({"figure": "reference_cpu_s", "value": round(REFERENCE_CPU_S, 3),
                      "program": reference.CODE}), flush=True)
    try:
        if wanted("oneshot_healthy_s", "oneshot_healthy_egress05_s"):
            bench_oneshot("oneshot_healthy_s", SCENARIOS / "healthy.yaml", args.runs, 1.2, only)
        if wanted("oneshot_scale_30x3_s", "oneshot_scale_30x3_egress05_s"):
            bench_oneshot("oneshot_scale_30x3_s", BENCH_SCENARIOS / "scale-30x3.yaml", max(3, args.runs // 2),
                          1.5, only)
        if wanted("oneshot_blackholed_s"):
            bench_oneshot("oneshot_blackholed_s", BENCH_SCENARIOS / "blackholed.yaml", max(3, args.runs // 3),
                          DEFAULT_DEADLINE_S + 0.5, only)
        if wanted("lab_up_s", "lab_down_s"):
            bench_updown(3)
    finally:
        labmod.down(NAME)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
