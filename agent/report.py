"""The finished report: findings, facts and the verdicts a person cares about.

Verdicts are derived from findings by id, never from text:
* Session Manager needs ssm and ssmmessages (ec2messages only for agents older than 3.3.40.0),
  IMDS (the agent's credentials), an instance profile, the resolver and a running, connected agent.
* Run Command needs ssm and one message channel: ec2messages, or ssmmessages (3.3.40.0+ agents
  switch to it once connected).
* S3 via the gateway endpoint needs the S3 checks.
* Isolation needs every egress target to fail.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from . import __version__
from .checks.model import Facts, Finding, Status, worst

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Verdict:
    name: str  # session_manager | run_command | s3_gateway | isolation
    title: str
    status: str  # works | broken | unknown
    reason: str

    def to_dict(self) -> Dict[str, str]:
        return {"title": self.title, "status": self.status, "reason": self.reason}


@dataclass(frozen=True)
class Report:
    findings: Tuple[Finding, ...]
    facts: Facts
    verdicts: Tuple[Verdict, ...]
    started_at: float  # epoch seconds
    duration_s: float
    version: str = __version__
    notes: Tuple[str, ...] = field(default_factory=tuple)

    @property
    def status(self) -> Status:
        return worst([f.status for f in self.findings])

    @property
    def exit_code(self) -> int:
        return int(self.status)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "agent_version": self.version,
            "status": self.status.name,
            "exit_code": self.exit_code,
            "checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_at)),
            "duration_s": round(self.duration_s, 3),
            "verdicts": {v.name: v.to_dict() for v in self.verdicts},
            "facts": self.facts.to_dict(),
            "findings": [f.to_dict() for f in self.findings],
            "notes": list(self.notes),
        }


def _short(f: Finding) -> str:
    return f"{f.id}: {f.summary}"


class _Index:
    def __init__(self, findings: Sequence[Finding]) -> None:
        self.by_id: Mapping[str, Finding] = {f.id: f for f in findings}

    def get(self, fid: str) -> Optional[Finding]:
        return self.by_id.get(fid)

    def failing(self, ids: Sequence[str], at_least: Status = Status.CRITICAL) -> List[Finding]:
        return [f for i in ids if (f := self.by_id.get(i)) is not None and f.status >= at_least]

    def missing(self, ids: Sequence[str]) -> List[str]:
        return [i for i in ids if i not in self.by_id]

    def degraded(self, ids: Sequence[str]) -> List[Finding]:
        return [f for i in ids if (f := self.by_id.get(i)) is not None and f.status == Status.WARNING]


def _service_ids(service: str) -> List[str]:
    return [f"dns.{service}", f"eni.{service}", f"reach.{service}"]


def _verdict(name: str, title: str, idx: _Index, required: Sequence[str], works_text: str,
             extra_broken: Sequence[Finding] = (), notes: Sequence[str] = ()) -> Verdict:
    broken = idx.failing(required) + list(extra_broken)
    roots = [f for f in broken if f.blocked_by is None] or broken  # what was blocked repeats its root
    if roots:
        return Verdict(name, title, "broken", "broken because " + "; ".join(_short(f) for f in roots[:3]))
    missing = idx.missing([r for r in required if not r.startswith("eni.")])
    if missing:
        return Verdict(name, title, "unknown", "not checked: " + ", ".join(missing))
    degraded = [f"{f.id}: {f.summary}" for f in idx.degraded(required)] + list(notes)
    return Verdict(name, title, "works", works_text + (f" (degraded: {'; '.join(degraded)})" if degraded else ""))


def verdicts(findings: Sequence[Finding]) -> Tuple[Verdict, ...]:
    idx = _Index(findings)
    base = ["imds", "resolver", "instance.profile"]
    agent = ["ssm_agent"] if "ssm_agent" in idx.by_id else []
    agent_broken = [f for f in idx.failing(agent, Status.WARNING)]  # not connected = not working now

    ec2messages_broken = bool(idx.failing(_service_ids("ec2messages")) or idx.missing(["dns.ec2messages"]))
    sm_notes = ["ec2messages is broken: agents older than 3.3.40.0 need it"] if ec2messages_broken else []
    session = _verdict("session_manager", "Session Manager", idx,
                       base + _service_ids("ssm") + _service_ids("ssmmessages") + agent,
                       "Session Manager will work", agent_broken, sm_notes)

    channels = [s for s in ("ec2messages", "ssmmessages") if f"dns.{s}" in idx.by_id]
    working_channels = [s for s in channels if not idx.failing(_service_ids(s))]
    channel_broken: List[Finding] = []
    if channels and not working_channels:
        channel_broken = idx.failing(_service_ids(channels[0]))
    run_cmd = _verdict("run_command", "Run Command", idx, base + _service_ids("ssm") + agent,
                       "Run Command will work" + (f" (through {', '.join(working_channels)})" if working_channels else ""),
                       agent_broken + channel_broken)

    s3_ids = [i for i in ("s3.dns", "s3.route", "s3.api", "s3.object") if i in idx.by_id] or ["s3.api"]
    s3dns = idx.get("s3.dns")
    via = "the S3 interface endpoint" if s3dns is not None and s3dns.evidence.get("interface_endpoint") else "the gateway endpoint"
    s3 = _verdict("s3_gateway", "S3 via gateway endpoint", idx, s3_ids, f"S3 works through {via}")

    egress = [f for f in findings if f.id.startswith("egress.")]
    if egress and all(f.blocked_by for f in egress):
        # Without DNS nothing could be dialled: that proves nothing about an internet path.
        iso = Verdict("isolation", "Isolation", "unknown",
                      f"not tested: blocked by {egress[0].blocked_by} ({egress[0].cause or egress[0].summary})")
    else:
        iso = _verdict("isolation", "Isolation", idx, [f.id for f in egress] or ["egress"],
                       "isolated: no internet path")
    return (session, run_cmd, s3, iso)
