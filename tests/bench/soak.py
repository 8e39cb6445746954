"""Soak: ``vpce-doctor daemon`` at zero interval for N cycles in the lab; CPU and memory per cycle.

    sudo .venv/bin/python -m tests.bench.soak [--cycles 1000] [--max-wall-s 1800]
                                              [--scenario ec2-endpoint-identity] [--publishers last_report,inventory_file]
                                              [--agent .venv39/bin/vpce-doctor] [--env MALLOC_ARENA_MAX=2]
                                              [--lab-ca-only]

The daemon runs inside the instance namespace (as on an instance) with ``interval_s: 0``, no jitter
and a tiny egress timeout, so cycles run back to back. Cycles are counted from its JSON log (one
``"event": "cycle"`` line per cycle, written after that cycle's publishers returned). CPU is the
daemon process's utime+stime from /proc/<pid>/stat (all its threads), RSS is VmRSS from
/proc/<pid>/status, sampled when the log reports the first and the last cycle. Per-cycle figures
are over cycles 2..N, so interpreter start-up and imports are not spread over the cycles (the
whole-run figure is printed too). botocore trusts a full trust store plus the lab CA, as an
instance parses its whole system or certifi bundle (``--lab-ca-only``: the lab's one certificate,
which hides that cost). One JSON line per figure, the targets from issue 4 alongside;
nothing is asserted. It stops itself at --cycles or --max-wall-s, whichever comes first, and always
tears the lab down. Network: the lab's namespaces and a temp dir only.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import yaml

from tests.bench.reference import CODE as REFERENCE_CODE
from tests.bench.reference import python_of, reference_cpu_s
from tests.lab import lab as labmod
from tests.lab.processes import REPO_ROOT

SCENARIOS = REPO_ROOT / "tests" / "lab" / "scenarios"
NAME = "soak"
CLK_TCK = os.sysconf("SC_CLK_TCK")
TARGETS = {"cpu_s_per_cycle": 0.05, "rss_mb_first": 100.0, "rss_mb_last": 100.0, "rss_growth_mb": 2.0,
           "rss_growth_mb_settled": 2.0}


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def rss_mb_and_threads(pid: int) -> Tuple[float, int]:
    rss, threads = float("nan"), 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    return rss, threads


class Sample:
    def __init__(self, pid: int, cycle: int) -> None:
        self.cycle = cycle
        self.wall = time.monotonic()
        self.cpu = cpu_s(pid)
        self.rss, self.threads = rss_mb_and_threads(pid)


class Soak:
    """The daemon and a reader of its log that samples CPU/RSS at the first and every cycle line."""

    def __init__(self, lab: labmod.Lab, workdir: Path, publishers: List[str], egress_timeout_s: float,
                 agent: str, extra_env: Dict[str, str], rss_every: int, without: List[str] = ()) -> None:
        ssm_root = workdir / "ssm"
        ssm_root.mkdir()
        config = dict(yaml.safe_load(lab.agent_config.read_text()) if lab.agent_config else {})
        for section in without:  # a build that predates a config section refuses it as unknown
            config.pop(section, None)
        config.update({
            "egress": {"timeout_s": egress_timeout_s},
            "daemon": {"interval_s": 0, "jitter_s": 0, "state_dir": str(workdir / "state"), "log_format": "json"},
            "publish": {"publishers": publishers, "inventory_file": {"root": str(ssm_root)},
                        "http": {"bind": "127.0.0.1", "port": 19464}},
        })
        path = workdir / "agent.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.started = time.monotonic()
        self.proc = subprocess.Popen(labmod.instance_argv(lab.names, [agent, "daemon", "--config", str(path)]),
                                     env={**labmod.instance_env(lab.names), **extra_env}, cwd=str(REPO_ROOT),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        self.first: Optional[Sample] = None
        self.last: Optional[Sample] = None
        self.statuses: Dict[str, int] = {}
        self.publish_failures: Dict[str, int] = {}
        self.problems: List[str] = []  # warnings and errors other than per-publisher failures
        self.rss_every = rss_every
        self.rss_by_cycle: Dict[int, float] = {}  # leak or plateau? RSS every rss_every cycles
        self.threads_by_cycle: Dict[int, int] = {}  # the daemon's threads at the same moments
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"level": "ERROR", "message": line.strip()}
            if event.get("event") == "cycle":
                try:  # sample at once: the next cycle is already running
                    sample = Sample(self.proc.pid, int(event["cycle"]))
                except (OSError, IndexError, ValueError):
                    continue
                with self.cond:
                    if self.first is None:
                        self.first = sample
                    self.last = sample
                    if sample.cycle == 1 or sample.cycle % self.rss_every == 0:
                        self.rss_by_cycle[sample.cycle] = round(sample.rss, 1)
                        self.threads_by_cycle[sample.cycle] = sample.threads
                    self.statuses[event.get("status", "?")] = self.statuses.get(event.get("status", "?"), 0) + 1
                    for name, ok in (event.get("published") or {}).items():
                        if not ok:
                            self.publish_failures[name] = self.publish_failures.get(name, 0) + 1
                    self.cond.notify_all()
            elif event.get("level") in ("WARNING", "ERROR", "CRITICAL") and event.get("event") != "publish_failed":
                with self.cond:
                    if len(self.problems) < 20:
                        self.problems.append(str(event.get("message"))[:300])
        with self.cond:
            self.cond.notify_all()

    def run(self, cycles: int, max_wall_s: float) -> Tuple[bool, str]:
        deadline = self.started + max_wall_s
        with self.cond:
            while True:
                if self.last is not None and self.last.cycle >= cycles:
                    return True, "done"
                if self.proc.poll() is not None:
                    return False, f"the daemon exited with status {self.proc.returncode}"
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False, f"wall-clock cap of {max_wall_s:g} s reached"
                self.cond.wait(min(remaining, 1.0))

    def stop(self) -> Optional[int]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.reader.join(timeout=5)
        return self.proc.returncode


def emit(figure: str, value: Any, **extra: Any) -> None:
    print(json.dumps({"figure": figure, "value": value, "target": TARGETS.get(figure), **extra}), flush=True)


def trust_store_and_lab_ca(lab: labmod.Lab, workdir: Path) -> Path:
    """botocore's default trust store (certifi's or its own, ~150 certificates) with the lab CA
    appended: the size of bundle an instance parses."""
    from botocore.httpsession import where

    bundle = workdir / "trust-store-and-lab-ca.pem"
    store = Path(where()).read_bytes()
    bundle.write_bytes(store + (b"" if store.endswith(b"\n") else b"\n") + (lab.names.state_dir / "ca.pem").read_bytes())
    return bundle


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--cycles", type=int, default=1000, help="daemon cycles to run (default %(default)s)")
    p.add_argument("--max-wall-s", type=float, default=1800.0,
                   help="stop after this long whatever the count (default %(default)g)")
    p.add_argument("--scenario", default="ec2-endpoint-identity",
                   help="a scenario in tests/lab/scenarios or a path (default %(default)s)")
    p.add_argument("--publishers", default="last_report,inventory_file",
                   help="comma-separated publishers (default %(default)s)")
    p.add_argument("--egress-timeout-s", type=float, default=0.05,
                   help="egress.timeout_s: the isolation probe waits this long each cycle (default %(default)g)")
    p.add_argument("--agent", default=os.environ.get("VPCE_LAB_AGENT", "vpce-doctor"),
                   help="agent command, e.g. .venv39/bin/vpce-doctor (default $VPCE_LAB_AGENT or %(default)s)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for the daemon, e.g. MALLOC_ARENA_MAX=2 (repeatable)")
    p.add_argument("--name", default=NAME, help="lab name (default %(default)s)")
    p.add_argument("--lab-ca-only", action="store_true",
                   help="botocore trusts only the lab CA (default: a full trust store plus the lab CA, as on an instance)")
    p.add_argument("--without", action="append", default=[], metavar="SECTION",
                   help="leave this section out of the lab's agent config, to compare with an older build that "
                        "does not know it (e.g. --without ssm_agent --agent /path/to/old/vpce-doctor)")
    args = p.parse_args(argv)
    if args.cycles < 2:
        p.error("--cycles must be at least 2 (the figures are per cycle after the first)")
    scenario = Path(args.scenario) if "/" in args.scenario or args.scenario.endswith(".yaml") \
        else SCENARIOS / f"{args.scenario}.yaml"
    publishers = [s.strip() for s in args.publishers.split(",") if s.strip()]
    extra_env = dict(e.split("=", 1) for e in args.env if "=" in e)
    if len(extra_env) != len(args.env):
        p.error("--env takes KEY=VALUE")

    labmod.preflight()
    lab = labmod.up(scenario, args.name)
    soak: Optional[Soak] = None
    try:
        with tempfile.TemporaryDirectory(prefix="vpce-soak-") as tmp:
            if not args.lab_ca_only and "AWS_CA_BUNDLE" not in extra_env:
                extra_env["AWS_CA_BUNDLE"] = str(trust_store_and_lab_ca(lab, Path(tmp)))
            soak = Soak(lab, Path(tmp), publishers, args.egress_timeout_s, args.agent, extra_env, without=args.without,
                        rss_every=max(1, args.cycles // 10))
            complete, why = soak.run(args.cycles, args.max_wall_s)
            with soak.cond:
                first, last = soak.first, soak.last
            exit_code = soak.stop()
            common: Dict[str, Any] = {"scenario": lab.world.scenario.name, "publishers": publishers,
                                      "agent": args.agent, "ca_bundle": "lab CA only" if args.lab_ca_only
                                      else "trust store + lab CA", **({"env": extra_env} if extra_env else {})}
            if first is None or last is None or last.cycle <= first.cycle:
                emit("soak_failed", None, reason=why, cycles=last.cycle if last else 0, problems=soak.problems,
                     **common)
                return 1
            n = last.cycle - first.cycle
            common.update(cycles=last.cycle, complete=complete, stopped_because=why, daemon_exit=exit_code)
            per_cycle = (last.cpu - first.cpu) / n
            emit("cpu_s_per_cycle", round(per_cycle, 4), over_cycles=f"2..{last.cycle}", **common)
            # Machines differ: the same figure against a reference measured now, on this machine.
            reference = reference_cpu_s(python_of(args.agent))
            emit("reference_cpu_s", round(reference, 4), program=REFERENCE_CODE, **common)
            emit("cpu_per_cycle_vs_reference", round(per_cycle / reference, 4),
                 target_ratio=round(TARGETS["cpu_s_per_cycle"] / reference, 4), **common)
            emit("cpu_s_per_cycle_incl_startup", round(last.cpu / last.cycle, 4), **common)
            emit("wall_s_per_cycle", round((last.wall - first.wall) / n, 4), **common)
            emit("rss_mb_first", round(first.rss, 2), **common)
            emit("rss_mb_last", round(last.rss, 2), **common)
            emit("rss_growth_mb", round(last.rss - first.rss, 2), rss_mb_by_cycle=soak.rss_by_cycle,
                 threads_by_cycle=soak.threads_by_cycle, **common)
            # The first sample is taken as cycle 1 is logged, before the daemon hands that cycle's
            # garbage back (memory.MemoryKeeper), so the growth above can be negative; this one
            # starts at the next sample, to show whether memory still creeps once settled.
            settled = sorted(c for c in soak.rss_by_cycle if c > 1)
            if settled and settled[-1] > settled[0]:
                emit("rss_growth_mb_settled", round(soak.rss_by_cycle[settled[-1]] - soak.rss_by_cycle[settled[0]], 2),
                     from_cycle=settled[0], to_cycle=settled[-1], **common)
            emit("run_summary", round(last.wall - soak.started, 1), unit="s", statuses=soak.statuses,
                 publish_failures=soak.publish_failures, warnings=soak.problems[:5], **common)
            return 0 if complete else 1
    finally:
        if soak is not None:
            soak.stop()
        labmod.down(args.name)


if __name__ == "__main__":
    sys.exit(main())
