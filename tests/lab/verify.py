"""Running the agent on a lab's instance and comparing its JSON report with the scenario's ``expect``."""
from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence

from .lab import Lab, instance_argv, instance_env
from .processes import LabError
from .scenario import Expect

AGENT_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class AgentRun:
    argv: List[str]
    exit_code: int
    stdout: str
    stderr: str
    seconds: float


def agent_argv(lab: Lab, agent: str, fmt: Optional[str]) -> List[str]:
    argv = shlex.split(agent) + ["check"]
    if fmt:
        argv += ["--format", fmt]
    if lab.agent_config is not None:
        argv += ["--config", str(lab.agent_config)]
    return argv


def run_agent(lab: Lab, agent: str, fmt: Optional[str] = "json", capture: bool = True) -> AgentRun:
    env = instance_env(lab.names)
    argv = agent_argv(lab, agent, fmt)
    if shutil.which(argv[0], path=env["PATH"]) is None:
        raise LabError(f"agent command '{argv[0]}' not found on PATH ({env['PATH'].split(':')[0]} first); "
                       f"install the agent into this venv (pip install -e .) or pass --agent CMD")
    started = time.monotonic()
    try:
        out = subprocess.run(instance_argv(lab.names, argv), env=env, stdin=subprocess.DEVNULL,
                             capture_output=capture, text=True, timeout=AGENT_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"the agent did not finish within {AGENT_TIMEOUT_S:.0f} s") from exc
    return AgentRun(argv, out.returncode, out.stdout or "", out.stderr or "", time.monotonic() - started)


def compare(expect: Expect, run: AgentRun) -> List[str]:
    """Every way the agent's report differs from ``expect`` (empty: it matches)."""
    try:
        report = json.loads(run.stdout)
    except ValueError:
        first = (run.stderr.strip().splitlines() or run.stdout.strip().splitlines() or ["no output"])[-1]
        return [f"agent output is not JSON (exit {run.exit_code}): {first[:200]}"]
    problems: List[str] = []
    if expect.exit_code is not None and run.exit_code != expect.exit_code:
        problems.append(f"exit {run.exit_code} != {expect.exit_code}")
    findings: Dict[str, Mapping[str, Any]] = {f.get("id"): f for f in report.get("findings", [])
                                               if isinstance(f, dict)}
    for fid, want in expect.findings.items():
        got = findings.get(fid)
        if got is None:
            problems.append(f"{fid} missing")
            continue
        if want.statuses and got.get("status") not in want.statuses:
            problems.append(f"{fid} status {got.get('status')} != {'|'.join(want.statuses)}")
        if want.cause_codes and got.get("cause_code") not in want.cause_codes:
            problems.append(f"{fid} cause_code {got.get('cause_code')} != {'|'.join(want.cause_codes)}")
        resource_type = (got.get("resource") or {}).get("type")
        if want.resource_types and resource_type not in want.resource_types:
            problems.append(f"{fid} resource.type {resource_type} != {'|'.join(want.resource_types)}")
        evidence = got.get("evidence") or {}
        for key, value in want.evidence.items():
            if evidence.get(key) != value:
                problems.append(f"{fid} evidence.{key} {json.dumps(evidence.get(key))} != {json.dumps(value)}")
    verdicts = report.get("verdicts") or {}
    for verdict, want_state in expect.verdicts.items():
        got_state = (verdicts.get(verdict) or {}).get("status")
        if got_state != want_state:
            problems.append(f"verdict {verdict} {got_state} != {want_state}")
    return problems


def summary_line(name: str, run: AgentRun, problems: Sequence[str]) -> str:
    if problems:
        return f"FAIL {name}: " + "; ".join(problems)
    return f"PASS {name} (exit {run.exit_code}, {run.seconds:.1f} s)"
