"""The finished report: findings, facts and the verdicts a person cares about.

Verdicts are derived from findings by id, never from text:
* Session Manager needs ssm and ssmmessages (ec2messages only for agents older than 3.1.821.0),
  IMDS and the role's credentials, an instance profile, the resolver, what the system resolver
  gives for those names (the agent resolves through it), a clock AWS accepts, SSM accepting the
  signed call (auth.ssm), a running, connected agent, and what the session preferences require
  (session.*). "broken because …" names root causes first (see _ROOT_ORDER).
* Run Command needs ssm and one message channel: ec2messages, or ssmmessages (3.1.821.0+ agents
  switch to it once connected).
* S3 via the gateway endpoint needs the S3 checks.
* Isolation needs every egress target to fail.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from . import __version__
from .checks.causes import SYMPTOMS
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


# Root causes before their symptoms: credentials and the clock break every signed call, DNS breaks
# the path, the path breaks the calls, and the agent suffers from all of them.
_ROOT_ORDER = ("imds", "instance.profile", "iam.credentials", "clock", "resolver", "resolver.system", "dns.",
               "eni.", "reach.", "auth.", "ssm.preferences", "session.", "ssm_agent")
S3_CLOCK_LIMIT_S = 900  # S3 refuses requests more than 15 minutes off (RequestTimeTooSkewed)


def _rank(f: Finding) -> int:
    for i, prefix in enumerate(_ROOT_ORDER):
        if f.id == prefix or (prefix.endswith(".") and f.id.startswith(prefix)) or f.id.startswith(prefix + "."):
            return i
    return len(_ROOT_ORDER)


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

    def prefixed(self, prefix: str) -> List[str]:
        return [i for i in self.by_id if i.startswith(prefix)]


def _service_ids(service: str) -> List[str]:
    return [f"dns.{service}", f"eni.{service}", f"reach.{service}"]


def _system_dns_failing(idx: _Index, services: Sequence[str]) -> List[Finding]:
    """``resolver.system`` counts for a verdict when what programs on the instance (the SSM agent
    included) get for *its* service names leads away from the endpoints, or nothing resolves."""
    f = idx.get("resolver.system")
    if f is None or f.status < Status.CRITICAL:
        return []
    diffs = [d for d in f.evidence.get("differences") or () if isinstance(d, Mapping) and d.get("status") == "CRITICAL"]
    if not diffs:
        return [f]  # the system's nameservers are silent: no name resolves
    hosts = [str(d.get("host", "")) for d in diffs]
    return [f] if any(h.split(".", 1)[0] in services for h in hosts) else []


def _verdict(name: str, title: str, idx: _Index, required: Sequence[str], works_text: str,
             extra_broken: Sequence[Finding] = (), notes: Sequence[str] = ()) -> Verdict:
    broken = list({f.id: f for f in idx.failing(required) + list(extra_broken)}.values())
    # What was blocked, or waits on another finding, repeats its root: name the root.
    roots = [f for f in broken if f.blocked_by is None and f.cause_code not in SYMPTOMS] or broken
    if roots:
        roots.sort(key=_rank)
        # One cause once: auth.ssm refused for the clock repeats what the clock finding says.
        seen: set = set()
        roots = [f for f in roots if f.cause_code is None or not (f.cause_code in seen or seen.add(f.cause_code))]
        return Verdict(name, title, "broken", "broken because " + "; ".join(_short(f) for f in roots[:3]))
    missing = idx.missing([r for r in required if not r.startswith("eni.")])
    if missing:
        return Verdict(name, title, "unknown", "not checked: " + ", ".join(missing))
    degraded = [f"{f.id}: {f.summary}" for f in idx.degraded(required)] + list(notes)
    return Verdict(name, title, "works", works_text + (f" (degraded: {'; '.join(degraded)})" if degraded else ""))


def verdicts(findings: Sequence[Finding]) -> Tuple[Verdict, ...]:
    idx = _Index(findings)
    # What every signed SSM call needs: IMDS and the role's credentials, a resolver, the clock, and
    # the service accepting this instance (auth.ssm) — present when those checks ran.
    accepted = [i for i in ("iam.credentials", "clock", "auth.ssm") if i in idx.by_id]
    base = ["imds", "resolver", "instance.profile"] + accepted
    agent = ["ssm_agent"] if "ssm_agent" in idx.by_id else []
    agent_broken = idx.failing(agent, Status.WARNING)  # not connected = not working now
    agent_broken += idx.failing([i for i in idx.prefixed("ssm_agent.")])  # its own evidence, when CRITICAL

    ec2messages_broken = bool(idx.failing(_service_ids("ec2messages")) or idx.missing(["dns.ec2messages"]))
    # Agents from 3.1.821.0 on run commands through ssmmessages when it connects (release notes);
    # older ones need ec2messages (ssm_agent.version names an agent that old).
    sm_notes = ["ec2messages is broken: agents older than 3.1.821.0 need it"] if ec2messages_broken else []
    session_needs = idx.failing(idx.prefixed("session."))
    session = _verdict("session_manager", "Session Manager", idx,
                       base + _service_ids("ssm") + _service_ids("ssmmessages") + agent,
                       "Session Manager will work", agent_broken + session_needs
                       + _system_dns_failing(idx, ("ssm", "ssmmessages")), sm_notes)

    channels = [s for s in ("ec2messages", "ssmmessages") if f"dns.{s}" in idx.by_id]
    working_channels = [s for s in channels if not idx.failing(_service_ids(s))
                        and not _system_dns_failing(idx, (s,))]
    channel_broken: List[Finding] = []
    if channels and not working_channels:
        channel_broken = idx.failing(_service_ids(channels[0])) + _system_dns_failing(idx, channels)
    run_cmd = _verdict("run_command", "Run Command", idx, base + _service_ids("ssm") + agent,
                       "Run Command will work" + (f" (through {', '.join(working_channels)})" if working_channels else ""),
                       agent_broken + channel_broken + _system_dns_failing(idx, ("ssm",)))

    s3_ids = [i for i in ("s3.dns", "s3.route", "s3.api", "s3.object") if i in idx.by_id] or ["s3.api"]
    s3dns = idx.get("s3.dns")
    via = "the S3 interface endpoint" if s3dns is not None and s3dns.evidence.get("interface_endpoint") else "the gateway endpoint"
    clock = idx.get("clock")
    skew = clock.evidence.get("skew_s") if clock is not None else None
    s3_clock = [clock] if clock is not None and isinstance(skew, (int, float)) and abs(skew) > S3_CLOCK_LIMIT_S else []
    # Signed S3 calls need the role's credentials too (the root cause when IMDS has none to give).
    s3_ids = [i for i in ("iam.credentials",) if i in idx.by_id] + s3_ids
    s3 = _verdict("s3_gateway", "S3 via gateway endpoint", idx, s3_ids, f"S3 works through {via}",
                  s3_clock + _system_dns_failing(idx, ("s3",)))

    egress = [f for f in findings if f.id.startswith("egress.")]
    if egress and all(f.blocked_by for f in egress):
        # Without DNS nothing could be dialled: that proves nothing about an internet path.
        iso = Verdict("isolation", "Isolation", "unknown",
                      f"not tested: blocked by {egress[0].blocked_by} ({egress[0].cause or egress[0].summary})")
    else:
        iso = _verdict("isolation", "Isolation", idx, [f.id for f in egress] or ["egress"],
                       "isolated: no internet path")
    return (session, run_cmd, s3, iso)
