"""One run of every check: what ``vpce-doctor check`` and each daemon cycle do (both import it
from here, so neither imports the other)."""
from __future__ import annotations

import difflib
import time
from dataclasses import replace
from typing import List, Optional, Sequence, Set, Tuple

from .checks import build
from .checks.awsclient import drop_connections, environment_notes
from .checks.model import Check, Finding, Status
from .config import Config
from .errors import VpceDoctorError
from .imds import gather_facts, imds_finding
from .report import Report, verdicts
from .runner import Runner, select, unknown_selectors


def run_check(config: Config, only: Optional[Sequence[str]] = None, strict: bool = False) -> Report:
    """Facts first (bounded), then every check concurrently until the deadline."""
    started_at = time.time()
    start = time.monotonic()
    deadline = start + config.deadline_s
    facts = gather_facts(config.imds, config.fact_overrides, budget_s=min(2.5, config.deadline_s / 3))
    imds = imds_finding(facts, time.monotonic() - start)
    checks = build(config.settings)
    notes: List[str] = environment_notes(config.settings.use_configured_endpoint_urls)
    all_ids = [c.id for c in checks]
    checks, disabled_notes, kept = disable(checks, config.settings.overrides)
    notes += disabled_notes + severity_notes(config.settings.overrides)
    if only:
        unknown = unknown_selectors(checks, only)
        if unknown:
            known = ["imds"] + [c.id for c in checks]
            # did-you-mean over the ids and their dotted prefixes ("dsn" → "dns", "reach.sm" → "reach.ssm")
            words = sorted(set(known) | {k.rsplit(".", 1)[0] for k in known if "." in k}
                           | {k.split(".", 1)[0] for k in known})
            hints = [f"{u} (did you mean {close[0]}?)" if close else u
                     for u in unknown for close in [difflib.get_close_matches(u, words, n=1, cutoff=0.6)]]
            raise VpceDoctorError(f"--only: no check matches {', '.join(hints)}; known ids: {', '.join(known)}")
        checks = select(checks, only)
        notes.append(f"only these checks ran: {', '.join(['imds'] + [c.id for c in checks])}")
    try:
        findings = [imds] + Runner(checks, facts, config.settings, deadline, imds).run()
    finally:
        drop_connections()  # kept AWS clients: the next run dials afresh
    findings, hidden_notes = drop_disabled(findings, config.settings.overrides, kept, all_ids)
    notes += hidden_notes
    findings = [capped(f, config.settings.overrides) for f in findings]
    if strict:
        findings = [strictly(f) for f in findings]
    return Report(tuple(findings), facts, verdicts(findings), started_at, time.monotonic() - start,
                  notes=tuple(notes))


def _matches(selector: str, fid: str) -> bool:
    return fid == selector or fid.startswith(selector + ".")


def disable(checks: List[Check], overrides: Sequence[Tuple[str, bool, Optional[str]]]
            ) -> Tuple[List[Check], List[str], Set[str]]:
    """config ``checks.overrides.<id>.enabled: false``: those checks do not run — unless a check
    that still runs needs their data (then they run, and the note says why). Returns the checks to
    run, notes, and the ids kept that way (their findings stay in the report)."""
    off = [sel for sel, enabled, _ in overrides if not enabled]
    if not off:
        return checks, [], set()
    notes = []
    dropped = {c.id for c in checks if any(_matches(sel, c.id) for sel in off)}
    kept_for_needs: Set[str] = set()
    while True:  # keep what a remaining check needs (transitively)
        kept = {need for c in checks if c.id not in dropped for need in c.needs if need in dropped}
        if not kept:
            break
        for cid in sorted(kept):
            users = sorted(c.id for c in checks if c.id not in dropped and cid in c.needs)
            notes.append(f"checks.overrides: {cid} still runs: {', '.join(users[:3])} needs it")
        dropped -= kept
        kept_for_needs |= kept
    if "imds" in off:
        notes.append("checks.overrides: imds still runs: every check needs the instance facts")
        kept_for_needs.add("imds")
    if dropped:
        notes.append(f"checks.overrides: not run: {', '.join(sorted(dropped))}")
    return [c for c in checks if c.id not in dropped], notes, kept_for_needs


def drop_disabled(findings: List[Finding], overrides: Sequence[Tuple[str, bool, Optional[str]]],
                  kept: Set[str], ran: Sequence[str]) -> Tuple[List[Finding], List[str]]:
    """Findings a disabled selector names that came from a check that ran for another reason (one
    check makes several findings: instance → instance.public_ip, instance.profile)."""
    off = [sel for sel, enabled, _ in overrides if not enabled]
    if not off:
        return findings, []
    out, hidden = [], []
    for f in findings:
        if any(_matches(sel, f.id) for sel in off) and not any(_matches(k, f.id) for k in kept):
            hidden.append(f.id)
        else:
            out.append(f)
    notes = [f"checks.overrides: not shown: {', '.join(hidden)}"] if hidden else []
    unmatched = [sel for sel in off if sel not in kept and not any(_matches(sel, i) for i in list(ran) + hidden)]
    if unmatched:
        notes.append(f"checks.overrides: no check matches {', '.join(unmatched)} (nothing disabled for it)")
    return out, notes


_RANK = {"WARNING": Status.WARNING, "CRITICAL": Status.CRITICAL}


def capped(f: Finding, overrides: Sequence[Tuple[str, bool, Optional[str]]]) -> Finding:
    """config ``checks.overrides.<id>.severity``: the most a failure of that finding counts (the most
    specific selector wins; UNKNOWN, our own trouble, is never lowered)."""
    rules = [(sel, sev) for sel, _, sev in overrides if sev and _matches(sel, f.id)]
    if not rules or f.status in (Status.OK, Status.UNKNOWN):
        return f
    selector, severity = max(rules, key=lambda r: len(r[0]))
    cap = _RANK[severity]
    if f.status <= cap:
        return f
    evidence = dict(f.evidence, severity_override={"selector": selector, "was": f.status.name, "now": severity})
    return replace(f, status=cap, evidence=evidence)


def severity_notes(overrides: Sequence[Tuple[str, bool, Optional[str]]]) -> List[str]:
    caps = [f"{sel} at most {sev}" for sel, _, sev in overrides if sev]
    return [f"checks.overrides: severity {', '.join(caps)}"] if caps else []


def strictly(f: Finding) -> Finding:
    """``--strict``: what could not be proven counts as a WARNING."""
    if f.status != Status.OK or f.verified:
        return f
    return replace(f, status=Status.WARNING, summary=f"not verified: {f.summary}")
