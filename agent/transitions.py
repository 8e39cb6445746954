"""When each finding entered its current status: the daemon carries it from report to report.

``carry(previous, current)`` gives ``current`` its ``transitions`` (check id -> (epoch when the
current status began, the status before it or "")): a finding whose status is the same as in the
previous report keeps the previous start; a changed one starts at this report's ``started_at``
with the old status as its previous one; a finding the previous report did not have starts now
with an unknown ("") previous status. The daemon's first cycle (no previous report) starts every
finding now with an unknown previous status — what a reader assumes anyway (StatusSince =
CheckedAt, PreviousStatus "") — so the next cycles carry that start and the inventory's
ContentHash stays unchanged while nothing changes. A one-shot ``check`` never calls this: its
mapping stays empty (unknown).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Dict, Optional, Tuple

from .report import Report


def carry(previous: Optional[Report], current: Report) -> Report:
    before = {f.id: f.status for f in previous.findings} if previous is not None else {}
    kept = dict(previous.transitions) if previous is not None else {}
    started = previous.started_at if previous is not None else current.started_at
    out: Dict[str, Tuple[float, str]] = {}
    for f in current.findings:
        old = before.get(f.id)
        if old is None:  # new to the daemon (its first cycle, a new check): starts now, previous unknown
            out[f.id] = (current.started_at, "")
        elif old == f.status:
            out[f.id] = kept.get(f.id, (started, ""))
        else:
            out[f.id] = (current.started_at, old.name)
    return replace(current, transitions=out)
