"""Report renderers: a table for people, JSON for machines, Nagios plugin output for monitors."""
from __future__ import annotations

import json
import textwrap
from typing import Dict, List

from .checks.model import Finding, Status
from .report import Report, rank, root_of
from .table_fold import fold

NAGIOS_STATUS_CHARS = 120  # the status text before " | perfdata": what a pager shows

_COLOURS = {Status.OK: "32", Status.WARNING: "33", Status.CRITICAL: "31", Status.UNKNOWN: "35"}
_STATE_COLOURS = {"UNVERIFIED": "36", **{s.name: c for s, c in _COLOURS.items()}}
_VERDICT_COLOURS = {"works": "32", "broken": "31", "unknown": "35"}


def _paint(text: str, code: str, colour: bool) -> str:
    return f"\033[{code}m{text}\033[0m" if colour else text


def render_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, sort_keys=False, default=str)


def _wrap(label: str, text: str, width: int) -> List[str]:
    return textwrap.wrap(text, width=width, initial_indent=f"      {label:<7}", subsequent_indent=" " * 13,
                         break_on_hyphens=False, break_long_words=False) or [f"      {label}"]


def render_table(report: Report, colour: bool = False, verbose: bool = False, width: int = 110) -> str:
    """For people. Without ``verbose``: what is wrong (worst first, with cause and fix), then what
    is OK but not proven, then one line per area (table_fold.py). ``verbose``: every row in report
    order, each with its evidence."""
    facts = report.facts
    lines = [
        f"vpce-doctor {report.version} — {facts.instance_id or 'unknown instance'} in "
        f"{facts.vpc_id or 'unknown VPC'} ({facts.region or 'unknown region'}), "
        f"{report.duration_s:.2f} s",
        "",
    ]
    id_width = min(34, max((len(f.id) for f in report.findings), default=10))
    rows = _Rows(report, colour, verbose, width, id_width)
    if verbose:
        for f in report.findings:
            lines.extend(rows.row(f))
    else:
        order = {f.id: i for i, f in enumerate(report.findings)}
        wrong = sorted((f for f in report.findings if f.status != Status.OK and f.id not in rows.under_a_root),
                       key=lambda f: (-int(f.status), rank(f), order[f.id]))
        unproven = [f for f in report.findings if f.status == Status.OK and not f.verified]
        if wrong:
            lines.append(f"What is wrong ({len(wrong)}, worst first)")
            for f in wrong:
                lines.extend(rows.row(f))
            lines.append("")
        if unproven:
            lines.append(f"OK but not proven ({len(unproven)}; --strict counts these as WARNING)")
            for f in unproven:
                lines.extend(rows.row(f))
            lines.append("")
        lines.append(f"By area ({len(report.findings)} checks; -v shows each with its evidence)")
        lines.extend(fold(report.findings, lambda state, text: _paint(text, _STATE_COLOURS.get(state, "0"), colour)))
    lines.append("")
    lines.append("Verdicts")
    width = max([24] + [len(v.title) for v in report.verdicts])  # "DynamoDB via gateway endpoint" is longer
    for v in report.verdicts:
        mark = _paint(f"{v.status:<7}", _VERDICT_COLOURS.get(v.status, "0"), colour)
        lines.append(f"  {mark} {v.title:<{width}} {v.reason}")
    for note in report.notes:
        lines.append(f"note: {note}")
    lines.append("")
    lines.append(f"Overall: {_paint(report.status.name, _COLOURS[report.status], colour)} (exit {report.exit_code})")
    return "\n".join(lines)


class _Rows:
    """One finding's row and the lines under it (cause, fix, what it blocked; evidence when verbose).
    A cause and fix already shown are named once more, not repeated."""

    def __init__(self, report: Report, colour: bool, verbose: bool, width: int, id_width: int) -> None:
        self.colour, self.verbose, self.width, self.id_width = colour, verbose, width, id_width
        self.explained: Dict[tuple, str] = {}  # (cause_code, fix) -> the finding that showed it first
        self.blocked = blocked_under_roots(report)
        self.under_a_root = {i for ids in self.blocked.values() for i in ids}

    def row(self, f: Finding) -> List[str]:
        verbose, width = self.verbose, self.width
        if f.id in self.under_a_root and not verbose:
            return []  # shown once, under its root cause
        status = _paint(f"{f.state:<10}", _STATE_COLOURS[f.state], self.colour)
        lines = [f"{status} {f.id:<{self.id_width}}  {f.summary}"]
        if (f.status != Status.OK or not f.verified) and f.blocked_by is None and (f.cause or f.fix):
            first = self.explained.setdefault((f.cause_code, f.fix), f.id)
            if first != f.id and not verbose:  # per-address findings repeat their service's cause
                lines.append(f"      {'cause:':<7}{f.cause_code or 'see'} (cause and fix as for {first})")
            else:
                if f.cause:
                    lines.extend(_wrap("cause:", f.cause, width))
                if f.fix:
                    lines.extend(_wrap("fix:", f.fix, width))
        if verbose and f.evidence:
            lines.extend(_wrap("data:", json.dumps(f.evidence, default=str, sort_keys=True), width))
        if f.id in self.blocked and not verbose:
            lines.extend(_wrap("→", f"{_count(self.blocked[f.id])} not run because of this: "
                               f"{', '.join(self.blocked[f.id])}", width))
        return lines


def _count(ids: List[str]) -> str:
    return f"{len(ids)} check{'s' if len(ids) != 1 else ''}"


def blocked_under_roots(report: Report) -> Dict[str, List[str]]:
    """root finding id -> the ids of the findings its failure blocked (directly or through others)."""
    by_id = {f.id: f for f in report.findings}
    out: Dict[str, List[str]] = {}
    for f in report.findings:
        if f.blocked_by is not None:
            root = root_of(by_id, f)
            if root.id != f.id:
                out.setdefault(root.id, []).append(f.id)
    return out


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _perf_label(f: Finding) -> str:
    return f.id.replace("'", "")


def _perfdata(report: Report) -> str:
    """'label'=value[UOM];warn;crit;min;max — latencies that the checks measured, plus the counts."""
    parts: List[str] = []
    counts: Dict[Status, int] = {s: 0 for s in Status}
    for f in report.findings:
        counts[f.status] += 1
        ev = f.evidence
        for key, label in (("latency_ms", "latency"), ("connect_ms", "tcp"), ("tls_ms", "tls")):
            value = ev.get(key) if isinstance(ev, dict) else None
            if isinstance(value, (int, float)):
                parts.append(f"'{_perf_label(f)}_{label}'={value / 1000:.4f}s;;;0")
    parts.append(f"'duration'={report.duration_s:.3f}s;;;0")
    parts.extend(f"'{s.name.lower()}'={n};;;0" for s, n in counts.items())
    return " ".join(parts)


def render_nagios(report: Report) -> str:
    """Line 1: the worst root cause (≤ 120 characters) | perfdata. Then the root causes, worst
    first, each with what it blocked in one line; then everything else."""
    roots = sorted((f for f in report.findings if f.status != Status.OK and f.blocked_by is None),
                   key=lambda f: (-int(f.status), rank(f)))
    prefix = f"VPCE-DOCTOR {report.status.name} - "
    if roots:
        more = f" (+{len(roots) - 1} more)" if len(roots) > 1 else ""
        head = _cut(f"{roots[0].id}: {' '.join(roots[0].summary.split())}", NAGIOS_STATUS_CHARS - len(prefix) - len(more))
        head += more
    else:
        head = _cut(f"{len(report.findings)} checks OK; " + ", ".join(f"{v.title} {v.status}" for v in report.verdicts),
                    NAGIOS_STATUS_CHARS - len(prefix))
    lines = [f"{prefix}{head} | {_perfdata(report)}"]
    blocked = blocked_under_roots(report)
    shown = {i for ids in blocked.values() for i in ids}
    for f in roots + [f for f in report.findings if f not in roots and f.id not in shown]:
        extra = f" — cause: {f.cause} — fix: {f.fix}" if f.status != Status.OK and f.cause else ""
        lines.append(f"[{f.state}] {f.id}: {f.summary}{extra}")
        if f.id in blocked:
            lines.append(f"[{f.status.name}] {_count(blocked[f.id])} not run because of {f.id}: {', '.join(blocked[f.id])}")
    return "\n".join(lines)
