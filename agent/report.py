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
* DynamoDB via the gateway endpoint needs the DynamoDB checks; shown only when they ran (dynamodb is
  configured or the EC2 view shows its gateway endpoint).
* Isolation needs every egress target to fail.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, fields, replace
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from . import __version__
from .checks.causes import SYMPTOMS
from .checks.model import Facts, Finding, Status, worst
from .checks.errortext import without_reprs
from .checks.redact import redact, redact_value
from .checks.textsafe import escape_controls

# 2: every finding carries "verified" (false: OK but not proven — shown as UNVERIFIED). Consumers
# of version 1 keep working: "status" is unchanged; read verified == false as "skipped".
SCHEMA_VERSION = 2


@dataclass(frozen=True)
class Verdict:
    name: str  # session_manager | run_command | s3_gateway | isolation | dynamodb_gateway (when applicable)
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
    # check id -> (epoch when its current status began, the status before it or ""): set by the daemon
    # from its previous report (agent/transitions.py); empty when unknown (a one-shot check).
    transitions: Mapping[str, Tuple[float, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Every report is redacted as it is made (replace() included): whatever renders or publishes
        # it (table, JSON, Nagios, inventory, the file, CloudWatch, /report, last-report.json)
        # starts from clean strings. Unchanged parts stay the same objects.
        set_ = object.__setattr__
        set_(self, "findings", tuple(_redacted_finding(f) for f in self.findings))
        set_(self, "verdicts", tuple(_redacted_verdict(v) for v in self.verdicts))
        set_(self, "notes", tuple(escape_controls(redact(n)) for n in self.notes))
        set_(self, "facts", _redacted_facts(self.facts))

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
            "transitions": {cid: {"since": _iso(since), "previous_status": before}
                            for cid, (since, before) in sorted(self.transitions.items())},
        }


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _clean(text: str) -> str:
    # One-line fields: a newline or tab from an answer is escaped too (redact keeps them).
    return escape_controls(without_reprs(redact(text)))


def _redacted_finding(f: Finding) -> Finding:
    # Redacted, and never a Python repr ("<… object at 0x…>") in what people read.
    summary, cause, fix = _clean(f.summary), _clean(f.cause or "") or f.cause, _clean(f.fix or "") or f.fix
    evidence = redact_value(f.evidence)
    resource = redact_value(f.resource)  # ids and names, redacted like every string that leaves
    if summary is f.summary and cause is f.cause and fix is f.fix and evidence is f.evidence and resource is f.resource:
        return f
    return replace(f, summary=summary, cause=cause, fix=fix, evidence=evidence, resource=resource)


def _redacted_verdict(v: Verdict) -> Verdict:
    reason = _clean(v.reason)
    return v if reason is v.reason else replace(v, reason=reason)


def _redacted_facts(facts: Facts) -> Facts:
    changes = {}
    for f in fields(facts):
        value = getattr(facts, f.name)
        clean = redact_value(value)
        if clean is not value:
            changes[f.name] = clean
    return replace(facts, **changes) if changes else facts


def _short(f: Finding) -> str:
    return f"{f.id}: {f.summary}"


# Root causes before their symptoms: credentials and the clock break every signed call, DNS breaks
# the path, the path breaks the calls, and the agent suffers from all of them.
_ROOT_ORDER = ("imds", "instance.profile", "iam.credentials", "clock", "resolver", "resolver.system", "dns.",
               "eni.", "reach.", "auth.", "ssm.preferences", "session.", "ssm_agent")
S3_CLOCK_LIMIT_S = 900  # S3 refuses requests more than 15 minutes off (RequestTimeTooSkewed)


def rank(f: Finding) -> int:
    """Where ``f`` stands in the root-cause order (_ROOT_ORDER): lower is more fundamental."""
    for i, prefix in enumerate(_ROOT_ORDER):
        if f.id == prefix or (prefix.endswith(".") and f.id.startswith(prefix)) or f.id.startswith(prefix + "."):
            return i
    return len(_ROOT_ORDER)


class _Index:
    def __init__(self, findings: Sequence[Finding]) -> None:
        self.by_id: Mapping[str, Finding] = {f.id: f for f in findings}
        # A service that reach.<svc> proved to work without Private DNS (over an IGW/NAT, or through
        # an /etc/hosts pin to its ENI): its DNS findings stay, but they don't break a verdict.
        self.bypassed = {f"{p}.{f.id[len('reach.'):]}" for f in findings
                         if f.id.startswith("reach.") and f.status <= Status.WARNING
                         and f.evidence.get("path") in ("internet", "pinned") for p in ("dns", "eni")}

    def get(self, fid: str) -> Optional[Finding]:
        return self.by_id.get(fid)

    def failing(self, ids: Sequence[str], at_least: Status = Status.CRITICAL) -> List[Finding]:
        return [f for i in ids if (f := self.by_id.get(i)) is not None and f.status >= at_least
                and i not in self.bypassed]

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


def root_of(by_id: Mapping[str, Finding], f: Finding) -> Finding:
    """The finding at the end of ``f``'s blocked-by chain (``f`` itself when it ran)."""
    seen = {f.id}
    while f.blocked_by is not None and f.blocked_by in by_id and f.blocked_by not in seen:
        f = by_id[f.blocked_by]
        seen.add(f.id)
    return f


def _verdict(name: str, title: str, idx: _Index, required: Sequence[str], works_text: str,
             extra_broken: Sequence[Finding] = (), notes: Sequence[str] = ()) -> Verdict:
    broken = list({f.id: f for f in idx.failing(required) + list(extra_broken)}.values())
    # What was blocked, or waits on another finding, repeats its root: name the root (every verdict
    # that one blockage touches then names the same finding).
    roots = [f for f in broken if f.blocked_by is None and f.cause_code not in SYMPTOMS]
    if not roots and broken:
        roots = list({r.id: r for r in (root_of(idx.by_id, f) for f in broken)}.values())
    if roots:
        roots.sort(key=rank)
        # One cause once: auth.ssm refused for the clock repeats what the clock finding says.
        seen: set = set()
        roots = [f for f in roots if f.cause_code is None or not (f.cause_code in seen or seen.add(f.cause_code))]
        return Verdict(name, title, "broken", "broken because " + "; ".join(_short(f) for f in roots[:3]))
    missing = idx.missing([r for r in required if not r.startswith("eni.")])
    if missing:
        return Verdict(name, title, "unknown", "not checked: " + ", ".join(missing))
    degraded = [f"{f.id}: {f.summary}" for f in idx.degraded(required)] + list(notes)
    unproven = [i for i in required if (f := idx.get(i)) is not None and f.status == Status.OK and not f.verified]
    text = works_text + (f" (degraded: {'; '.join(degraded)})" if degraded else "")
    return Verdict(name, title, "works", text + (f" (not proven: {', '.join(unproven)})" if unproven else ""))


def verdicts(findings: Sequence[Finding]) -> Tuple[Verdict, ...]:
    idx = _Index(findings)
    # What every signed SSM call needs: IMDS and the role's credentials, a resolver, the clock, and
    # the service accepting this instance (auth.ssm) — present when those checks ran.
    accepted = [i for i in ("iam.credentials", "clock", "auth.ssm") if i in idx.by_id]
    base = ["imds", "resolver", "instance.profile"] + accepted
    agent = ["ssm_agent"] if "ssm_agent" in idx.by_id else []
    # Not connected = not working now. Connected while some path fails is not the agent's fault:
    # each verdict weighs the failing paths of its own services.
    agent_broken = [f for f in idx.failing(agent, Status.WARNING) if f.cause_code != "ssm_agent_connected_path_failing"]
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
        root = root_of(idx.by_id, egress[0])
        iso = Verdict("isolation", "Isolation", "unknown", f"not tested because {_short(root)}")
    else:
        iso = _verdict("isolation", "Isolation", idx, [f.id for f in egress] or ["egress"],
                       "isolated: no internet path")
    ddb_ids = [i for i in ("dynamodb.dns", "dynamodb.route", "dynamodb.api") if i in idx.by_id]
    ddb = () if not ddb_ids else (_verdict(  # absent when DynamoDB is neither configured nor in the VPC
        "dynamodb_gateway", "DynamoDB via gateway endpoint", idx,
        [i for i in ("iam.credentials",) if i in idx.by_id] + ddb_ids, "DynamoDB works through the gateway endpoint",
        _system_dns_failing(idx, ("dynamodb",))),)
    return (session, run_cmd, s3, iso) + ddb
