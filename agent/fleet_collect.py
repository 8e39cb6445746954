"""The fleet's one accumulator: readers (GetInventory pages, a Resource Data Sync) hand it instance
reports as they arrive; it keeps only what the query can show, so 10,000+ instances fit in little
memory, and names what it could not trust (duplicates, future clocks, older agents) as problems.

Instances are keyed by their id alone: EC2 instance ids are unique across accounts and regions, so
two reports for one id are two reports of one instance (a sync copied twice, a moved prefix).
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from .fleet_model import FUTURE_SKEW_S, NOT_OK, InstanceReport, Problem, Row, epoch

MAX_PROBLEM_LINES = 20  # problems are counted by kind; this many are named one line each


@dataclass(frozen=True)
class Selection:
    """Which findings the query can show (the CLI's --status/--check/--cause/--since)."""
    statuses: Tuple[str, ...] = ("WARNING", "CRITICAL", "UNKNOWN")
    checks: Tuple[str, ...] = ()     # ids or dotted prefixes; empty: all
    causes: Tuple[str, ...] = ()     # cause codes; empty: all
    since_s: Optional[float] = None  # --since window: also keep findings that recovered in it
    keep_evidence: bool = False

    def matches(self, row: Row) -> bool:
        return (row.status in self.statuses and self.selects(row))

    def selects(self, row: Row) -> bool:
        """The check/cause part of the filter (a recovered OK row is judged by these alone)."""
        return ((not self.checks or any(row.check_id == c or row.check_id.startswith(c + ".") for c in self.checks))
                and (not self.causes or row.cause_code in self.causes))


@dataclass
class FleetData:
    """Everything read, trimmed to what the query shows."""
    reports: Dict[str, InstanceReport] = field(default_factory=dict)       # instance id -> its latest report
    managed: Dict[str, Tuple[str, str, str]] = field(default_factory=dict)  # instance id -> (account, region, status)
    problems: List[Problem] = field(default_factory=list)                  # the first MAX_PROBLEM_LINES
    problem_counts: Counter = field(default_factory=Counter)                # kind -> count
    records: int = 0           # instance reports read (duplicates included)
    rows_read: int = 0         # findings read
    recovered: List[Row] = field(default_factory=list)  # OK rows whose previous status failed, in the --since window
    sources: Counter = field(default_factory=Counter)   # "api" / "sync" -> reports
    now: float = 0.0


class Collector:
    """A thread-safe ``fleet_model.Sink`` that trims as it goes; ``on_report`` (optional) sees each
    kept report at once (streamed output)."""

    def __init__(self, selection: Selection, now: Optional[float] = None,
                 on_report: Optional[Callable[[InstanceReport], None]] = None) -> None:
        self.selection = selection
        self._lock = threading.Lock()
        self._data = FleetData(now=time.time() if now is None else now)
        self._on_report = on_report
        self._cutoff = None if selection.since_s is None else self._data.now - selection.since_s
        self._statuses = frozenset(selection.statuses) | frozenset(NOT_OK)  # failing rows: blocked ones too

    # --- the Sink protocol ---------------------------------------------------------------------

    def add(self, report: InstanceReport) -> None:
        data = self._data
        read = len(report.rows) + len(report.entries)
        kept = self._trim(report.built(self._worth_a_row))
        with self._lock:
            data.records += 1
            data.rows_read += read
            data.sources["api" if report.source == "api" else "sync"] += 1
            if report.old_agent:
                self._problem(Problem("old_agent", _where(report), f"agent {report.agent_version or '?'} publishes "
                                      "no resource context: its failures are listed per instance"))
            if report.checked_epoch > data.now + FUTURE_SKEW_S:
                self._problem(Problem("clock_skew", _where(report), f"checked at {_checked_at(report)}, "
                                      f"{report.checked_epoch - data.now:.0f} s in the future: that instance's clock "
                                      "is ahead (SigV4 allows 5 min) or this machine's is behind"))
            previous = data.reports.get(report.instance_id)
            if previous is not None:
                chosen = _newer(previous, kept, data.now)
                self._problem(Problem("duplicate", _where(report), f"two reports ({previous.source}, {report.source}); "
                                      f"kept the one checked at {_checked_at(chosen)}"))
                data.reports[report.instance_id] = chosen
                return
            data.reports[report.instance_id] = kept
        if self._on_report is not None:
            self._on_report(kept)

    def add_managed(self, account_id: str, region: str, instance_id: str, status: str) -> None:
        with self._lock:
            self._data.managed[instance_id] = (account_id, region, status)

    def problem(self, problem: Problem) -> None:
        with self._lock:
            self._problem(problem)

    # --- results -------------------------------------------------------------------------------

    def finish(self) -> FleetData:
        with self._lock:
            return self._data

    # --- internals -----------------------------------------------------------------------------

    def _problem(self, problem: Problem) -> None:
        data = self._data
        data.problem_counts[problem.kind] += 1
        if len(data.problems) < MAX_PROBLEM_LINES:
            data.problems.append(problem)

    def _worth_a_row(self, entry: Mapping[str, Any]) -> bool:
        """A cheap look at a raw entry: could the query keep it (failing, asked-for, or recovered)?"""
        status = entry.get("Status")
        if status is None:
            status = entry.get("status")
        if status in self._statuses or (isinstance(status, str) and status.upper() in self._statuses):
            return True
        previous = str(entry.get("PreviousStatus") or entry.get("previousstatus") or "").upper()
        return self._cutoff is not None and previous in NOT_OK

    def _trim(self, report: InstanceReport) -> InstanceReport:
        """Keep the rows the query shows (failing ones, and those that recovered in --since)."""
        sel = self.selection
        keep: List[Row] = []
        for row in report.rows:
            if sel.matches(row) or (row.failing and row.blocked_by and sel.selects(row)):
                keep.append(row if sel.keep_evidence else replace(row, evidence=None))
            elif self._recovered(row):
                with self._lock:
                    self._data.recovered.append(replace(row, evidence=None, summary=""))
        return replace(report, rows=tuple(keep))

    def _recovered(self, row: Row) -> bool:
        return (self._cutoff is not None and row.status == "OK" and row.previous_status in NOT_OK
                and epoch(row.status_since) >= self._cutoff and self.selection.selects(row))


def _where(report: InstanceReport) -> str:
    """The sync object (its key names account, region and instance), or account/region/instance."""
    if report.source != "api":
        return report.source
    return "/".join(p for p in (report.account_id, report.region, report.instance_id) if p)


def _checked_at(report: InstanceReport) -> str:
    return report.checked_at or report.capture_time or "?"


def _newer(a: InstanceReport, b: InstanceReport, now: float) -> InstanceReport:
    """The report checked last; one dated in the future (a skewed clock) loses to one that is not."""
    def trusted(r: InstanceReport) -> Tuple[bool, float]:
        return (r.checked_epoch <= now + FUTURE_SKEW_S, r.checked_epoch)
    return b if trusted(b) > trusted(a) else a
