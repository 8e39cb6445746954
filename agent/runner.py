"""Runs checks concurrently, in dependency order, under per-check timeouts and one global deadline.

The runner, not the probes, owns timing and the overall result (blackbox_exporter's shape):
* a check starts as soon as every check it ``needs`` (or ``wants``) has finished; what it needs
  must have produced data, what it wants may not have;
* a check whose dependency produced no data is not run: it is reported "blocked by <id>" with the
  blocker's status, so the exit code reflects the real failure, not our skipping;
* an exception inside a check becomes UNKNOWN with the traceback in its evidence;
* a check that overruns its timeout (or the global deadline) becomes UNKNOWN and is abandoned:
  checks run in daemon threads (``checks.workers``), so a stuck socket can never keep the process alive.
"""
from __future__ import annotations

import logging
import queue
import time
import traceback
from dataclasses import dataclass, replace
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from .checks import workers
from .checks.causes import KNOWN_IDS, explain, known_ids
from .checks.errortext import exception_text
from .checks.model import Check, Context, Facts, Finding, MissingFact, Outcome, Settings, Status, worst

log = logging.getLogger(__name__)

IMDS_ID = "imds"


@dataclass(frozen=True)
class _Done:
    check_id: str
    outcome: Outcome
    missing_fact: Optional[str] = None


def select(checks: Sequence[Check], only: Optional[Iterable[str]]) -> List[Check]:
    """Checks matching ``only`` (exact id or id prefix: "dns" selects dns.ssm, …) plus everything
    they need, transitively. Unknown selectors are reported by the caller."""
    if not only:
        return list(checks)
    by_id = {c.id: c for c in checks}
    wanted: Set[str] = set()
    for sel in only:
        wanted.update(c.id for c in checks if c.id == sel or c.id.startswith(sel + "."))
    stack = list(wanted)
    while stack:
        for need in by_id[stack.pop()].needs:  # what is only wanted is not pulled in
            if need in by_id and need not in wanted:
                wanted.add(need)
                stack.append(need)
    return [c for c in checks if c.id in wanted]


def _matches(selector: str, check_id: str) -> bool:
    return check_id == selector or check_id.startswith(selector + ".")


def would_run(check_id: str, only: Optional[Iterable[str]],
              overrides: Sequence[Tuple[str, bool, Optional[str]]] = ()) -> bool:
    """Whether a check that nothing else needs (an ``egress.<host>``) runs in this run: ``--only``
    selects it (exact id or prefix) and no ``checks.overrides`` selector turns it off. Asked before
    the checks are built, to start such a check's probe early."""
    if only and not any(_matches(sel, check_id) for sel in only):
        return False
    return not any(not enabled and _matches(sel, check_id) for sel, enabled, _ in overrides)


def unknown_selectors(checks: Sequence[Check], only: Iterable[str]) -> List[str]:
    ids = [c.id for c in checks] + [IMDS_ID]
    return [s for s in only if not any(i == s or i.startswith(s + ".") for i in ids)]


def _run_one(check: Check, ctx: Context, results: "queue.Queue[_Done]") -> None:
    start = time.monotonic()
    KNOWN_IDS.set(known_ids(ctx.facts))  # this task's own context (workers.submit copies one)
    try:
        out = check.run(ctx)
        if not isinstance(out, Outcome) or not out.findings:
            raise TypeError(f"check {check.id} returned {type(out).__name__}, not an Outcome with findings")
        results.put(_Done(check.id, out))
    except MissingFact as exc:
        results.put(_Done(check.id, Outcome(()), missing_fact=exc.name))
    except Exception as exc:  # noqa: BLE001 - any bug in a check becomes UNKNOWN, never a crash
        tb = traceback.format_exc(limit=8)
        finding = Finding(check.id, Status.UNKNOWN, f"check failed: {exception_text(exc)}",
                          evidence={"traceback": tb}, duration_s=time.monotonic() - start,
                          **explain("check_crashed", error=exception_text(exc)))
        results.put(_Done(check.id, Outcome((finding,))))


def _blocked(check: Check, blocker: Finding) -> Finding:
    status = max(blocker.status, Status.WARNING)
    cause = f"blocked by {blocker.id}: {blocker.cause}" if blocker.cause else f"blocked by {blocker.id}"
    return Finding(check.id, status, f"not run: blocked by {blocker.id}", cause_code=blocker.cause_code,
                   cause=cause, fix=blocker.fix or f"fix {blocker.id} first", blocked_by=blocker.id)


class Runner:
    def __init__(self, checks: Sequence[Check], facts: Facts, settings: Settings, deadline: float,
                 imds_finding: Optional[Finding] = None) -> None:
        self.checks = list(checks)
        self.facts = facts
        self.settings = settings
        self.deadline = deadline
        self.imds_finding = imds_finding
        self._by_id = {c.id: c for c in self.checks}
        # Dependencies that exist in this run (``--only`` may leave some out), and the reverse map,
        # so a finished check only looks at its own dependents.
        self._needs = {c.id: tuple(n for n in c.needs if n in self._by_id) for c in self.checks}
        self._deps = {c.id: self._needs[c.id] + tuple(w for w in c.wants if w in self._by_id)
                      for c in self.checks}
        self._dependents: Dict[str, List[str]] = {}
        for check_id, deps in self._deps.items():
            for dep in deps:
                self._dependents.setdefault(dep, []).append(check_id)

    def run(self) -> List[Finding]:
        results: "queue.Queue[_Done]" = queue.Queue()
        data: Dict[str, Any] = {}
        primary: Dict[str, Finding] = {}  # check id -> its own (first) finding, for blocking
        findings: Dict[str, Tuple[Finding, ...]] = {}
        pending = {c.id: c for c in self.checks}
        running: Dict[str, float] = {}  # id -> start (monotonic)

        def finish(check_id: str, found: Tuple[Finding, ...], out_data: Any) -> None:
            findings[check_id] = found
            primary[check_id] = found[0]
            data[check_id] = out_data

        waiting = {c.id: set(self._deps[c.id]) for c in self.checks}  # unfinished dependencies
        ready = [cid for cid, deps in waiting.items() if not deps]

        def finished(check_id: str) -> None:
            for dependent in self._dependents.get(check_id, ()):
                deps = waiting[dependent]
                deps.discard(check_id)
                if not deps and dependent in pending:
                    ready.append(dependent)

        def start_ready() -> None:
            while ready:
                cid = ready.pop(0)
                check = pending.pop(cid, None)
                if check is None:
                    continue
                needs = self._needs[cid]
                blocker = next((primary[n] for n in needs if data.get(n) is None), None)
                if blocker is not None:
                    finish(cid, (_blocked(check, blocker),), None)
                    finished(cid)
                    continue
                ctx = Context(self.facts, self.settings, {n: data[n] for n in self._deps[cid]},
                              self.deadline, check.timeout_s)
                running[cid] = time.monotonic()
                workers.run(_run_one, check, ctx, results)

        start_ready()
        while running:
            now = time.monotonic()
            next_due = min(min(s + self._by_id[c].timeout_s for c, s in running.items()), self.deadline)
            try:
                done = results.get(timeout=max(0.0, next_due - now) + 0.02)
            except queue.Empty:
                done = None
            if done is not None and done.check_id in running:
                started = running.pop(done.check_id)
                elapsed = time.monotonic() - started
                if done.missing_fact:
                    finish(done.check_id, (self._missing_fact(done.check_id, done.missing_fact, elapsed),), None)
                else:
                    found = tuple(f if f.duration_s else replace(f, duration_s=elapsed)
                                  for f in done.outcome.findings)
                    finish(done.check_id, found, done.outcome.data)
                finished(done.check_id)
                log.debug("check %s finished in %.3f s: %s", done.check_id, elapsed,
                          primary[done.check_id].status.name)
            now = time.monotonic()
            for cid, started in list(running.items()):
                limit = min(started + self._by_id[cid].timeout_s, self.deadline)
                if now >= limit:
                    running.pop(cid)
                    budget = round(limit - started, 2)
                    finish(cid, (Finding(cid, Status.UNKNOWN, f"did not finish within {budget} s",
                                         duration_s=now - started,
                                         **explain("check_timeout", timeout_s=budget)),), None)
                    log.warning("check %s abandoned after %.2f s", cid, now - started)
                    finished(cid)
            start_ready()
        for cid in list(pending):  # only reachable when needs form a cycle or name nothing runnable
            finish(cid, (Finding(cid, Status.UNKNOWN, "not run: its dependencies never finished",
                                 **explain("check_timeout", timeout_s=0)),), None)
        ordered: List[Finding] = []
        for check in self.checks:
            ordered.extend(findings.get(check.id, ()))
        return ordered

    def _missing_fact(self, check_id: str, fact: str, elapsed: float) -> Finding:
        imds = self.imds_finding
        status = max(imds.status, Status.WARNING) if imds is not None and imds.status != Status.OK else Status.UNKNOWN
        imds_text = (imds.cause or imds.summary) if imds is not None else "IMDS not consulted"
        expl = explain("missing_fact", fact=fact, imds=imds_text)
        if imds is not None and imds.status != Status.OK:
            return Finding(check_id, status, f"not run: blocked by imds ({fact} unknown)",
                           cause_code=imds.cause_code, cause=f"blocked by imds: {expl['cause']}",
                           fix=imds.fix, evidence={"missing_fact": fact}, duration_s=elapsed, blocked_by=IMDS_ID)
        return Finding(check_id, status, f"not run: {fact} unknown", evidence={"missing_fact": fact},
                       duration_s=elapsed, **expl)


def overall(findings: Sequence[Finding]) -> Status:
    return worst([f.status for f in findings])
