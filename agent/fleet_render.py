"""The fleet view's result and its three renderings (table, JSON, CSV) by resource, instance or cause."""
from __future__ import annotations

import csv
import io
import json
import textwrap
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .checks.redact import redact
from .fleet_collect import FleetData, Selection
from .fleet_correlate import Correlation, RootCause, by_cause
from .fleet_model import InstanceReport, Row, epoch, rank, worst

SCHEMA_VERSION = 2
EXIT_OK, EXIT_WARNING, EXIT_CRITICAL = 0, 1, 2
MAX_LISTED = 20   # stale / silent / unshared instances named in the table (all of them in JSON/CSV)
SILENT_HINT = ("an instance that stopped reporting is a symptom itself: no path to SSM (its ssm endpoint, DNS or "
               "role), no vpce-doctor daemon, or no inventory publisher")


@dataclass
class FleetResult:
    type_name: str
    selection: Selection
    data: FleetData
    correlation: Correlation
    stale_after_s: float
    source: str                                   # "GetInventory (us-east-1, eu-west-1)" / "s3://bucket/prefix"
    reads: str                                    # how much was read, in words
    stale: List[InstanceReport] = field(default_factory=list)
    silent: List[Tuple[str, str, str, str]] = field(default_factory=list)  # (instance, account, region, status)
    managed_known: bool = True
    pages: Optional[int] = None                   # GetInventory pages read (None: read from a sync)

    # --- what was listed ------------------------------------------------------------------------

    @property
    def rows(self) -> List[Row]:
        return sorted((r for rep in self.data.reports.values() for r in rep.rows if self.selection.matches(r)),
                      key=lambda r: (r.instance_id, r.check_id))

    @property
    def instances(self) -> List[str]:
        return sorted({r.instance_id for r in self.rows})

    @property
    def status(self) -> str:
        return worst(r.status for r in self.rows)

    @property
    def exit_code(self) -> int:
        worst_code = max((_exit_for(r.status) for r in self.rows), default=EXIT_OK)
        doubtful = self.stale or self.silent or self.data.problem_counts
        return max(worst_code, EXIT_WARNING) if doubtful else worst_code

    def by_status(self) -> Dict[str, int]:
        """Instances by their worst listed status."""
        worst_of: Dict[str, str] = {}
        for row in self.rows:
            current = worst_of.get(row.instance_id)
            if current is None or rank(row.status) > rank(current):
                worst_of[row.instance_id] = row.status
        counts: Dict[str, int] = {}
        for status in worst_of.values():
            counts[status] = counts.get(status, 0) + 1
        return counts

    def since_view(self) -> Optional[Dict[str, Any]]:
        """--since: what broke (failing findings whose status began in the window) and recovered."""
        window = self.selection.since_s
        if window is None:
            return None
        cutoff = self.data.now - window
        # Only a transition the daemon saw counts: without a PreviousStatus, StatusSince is merely
        # when the instance was checked (a one-shot, a daemon's first cycle), not when it broke.
        broke = [r for r in self.rows if r.failing and not r.blocked_by and r.previous_status
                 and epoch(r.status_since) >= cutoff]
        went_stale = [rep for rep in self.stale if rep.checked_epoch >= cutoff - self.stale_after_s]
        return {"window_s": window, "from": _iso(cutoff),
                "broke": [_brief(r) for r in sorted(broke, key=lambda r: (r.status_since, r.instance_id))],
                "recovered": [_brief(r) for r in sorted(self.data.recovered, key=lambda r: (r.status_since, r.instance_id))],
                "went_stale": [{"instance_id": rep.instance_id, "last_checked": _iso(rep.checked_epoch)}
                               for rep in went_stale]}

    def to_dict(self) -> Dict[str, Any]:
        sel = self.selection
        return {
            "schema_version": SCHEMA_VERSION, "type_name": self.type_name, "source": self.source,
            "status": self.status, "exit_code": self.exit_code,
            "filters": {"status": list(sel.statuses), "check": list(sel.checks), "cause": list(sel.causes),
                        "since_s": sel.since_s},
            "records_read": self.data.records, "pages": self.pages, "reads": self.reads,
            "root_causes": [g.to_dict() for g in self.correlation.root_causes],
            "unshared": [u.to_dict() for u in self.correlation.unshared],
            "coverage": {"managed": len(self.data.managed) if self.managed_known else None,
                         "publishing": len(self.data.reports), "stale_after_s": self.stale_after_s,
                         "stale": [{"instance_id": r.instance_id, "capture_time": r.capture_time,
                                    "last_checked": _iso(r.checked_epoch), "account_id": r.account_id,
                                    "region": r.region, "vpc_id": _first(r, "vpc_id"),
                                    "subnet_id": _first(r, "subnet_id")} for r in self.stale],
                         "silent": [{"instance_id": i, "account_id": a, "region": g, "instance_status": s}
                                    for i, a, g, s in self.silent]},
            "problems": {"counts": dict(self.data.problem_counts), "named": [p.line() for p in self.data.problems]},
            "since": self.since_view(),
            "instance_count": len(self.instances), "instances": self.instances,
            "by_status": self.by_status(), "by_cause": by_cause(self.data),
            "rows": [r.to_dict(evidence=sel.keep_evidence) for r in self.rows],
        }


def _exit_for(status: str) -> int:
    if status == "CRITICAL":
        return EXIT_CRITICAL
    return EXIT_WARNING if status in ("WARNING", "UNKNOWN") else EXIT_OK


def _iso(value: float) -> str:
    import time

    if value == float("-inf"):
        return "?"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value))


def _first(report: InstanceReport, name: str) -> str:
    return getattr(report, name, "") or next((getattr(r, name) for r in report.rows if getattr(r, name)), "")


def _brief(row: Row) -> Dict[str, str]:
    return {"instance_id": row.instance_id, "check_id": row.check_id, "status": row.status,
            "previous_status": row.previous_status, "since": row.status_since, "cause_code": row.cause_code,
            "resource_type": row.resource_type, "resource_id": row.resource_id}


# --- JSON ---------------------------------------------------------------------------------------

def render_json(result: FleetResult) -> str:
    """The JSON view, every string value redacted on its own (the one redaction, applied per value:
    a fleet's JSON runs to megabytes, and its values repeat — redact caches them)."""
    return json.dumps(_redacted(result.to_dict()), indent=2, default=str)


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(v) for v in value]
    return value


# --- CSV ----------------------------------------------------------------------------------------

RESOURCE_COLUMNS = ("account_id", "region", "resource_type", "resource_id", "resource_name", "status", "cause_code",
                    "instance_count", "instances_sample", "vpcs", "subnets", "availability_zones", "blocked_findings",
                    "since", "fix")
ROW_COLUMNS = ("instance_id", "account_id", "region", "vpc_id", "subnet_id", "check_id", "status", "cause_code",
               "resource_type", "resource_id", "blocked_by", "status_since", "checked_at", "agent_version")
CAUSE_COLUMNS = ("cause_code", "instances", "findings", "resources")


def csv_header(columns: Sequence[str]) -> str:
    return _csv([list(columns)])


def csv_rows(rows: Sequence[Row]) -> str:
    return _csv([[getattr(r, c) for c in ROW_COLUMNS] for r in rows])


def _csv(lines: List[List[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for line in lines:
        # A cell starting with = + - @ is a formula to a spreadsheet: quote it as text.
        writer.writerow([("'" + str(v)) if str(v)[:1] in ("=", "+", "-", "@") else v for v in line])
    return out.getvalue()


def render_csv(result: FleetResult, by: str, header: bool = True, rows: bool = True) -> str:
    if by == "resource":
        lines = [[_cell(g.to_dict()[c]) for c in RESOURCE_COLUMNS] for g in result.correlation.root_causes]
        return (csv_header(RESOURCE_COLUMNS) if header else "") + _csv(lines)
    if by == "cause":
        return csv_header(CAUSE_COLUMNS) + _csv([[c[k] for k in CAUSE_COLUMNS] for c in by_cause(result.data)])
    return (csv_header(ROW_COLUMNS) if header else "") + (csv_rows(result.rows) if rows else "")


def _cell(value: Any) -> Any:
    return " ".join(map(str, value)) if isinstance(value, list) else value


# --- table --------------------------------------------------------------------------------------

def render_table(result: FleetResult, by: str = "resource", verbose: bool = False, width: int = 110,
                 rows_streamed: bool = False) -> str:
    parts: List[str] = []
    if not result.rows and not rows_streamed:
        sel = result.selection
        parts.append(f"No instance has a {'/'.join(sel.statuses)} finding in {result.type_name}{_filter_text(sel)} "
                     f"({result.reads}).")
    elif by == "resource":
        parts.append(_root_causes(result, verbose, width))
        parts.append(_unshared(result, verbose, width))
    elif by == "cause":
        parts.append(_causes(result))
    elif not rows_streamed:
        parts.append(instance_table(result.rows, verbose, width))
    since = _since(result)
    if since:
        parts.append(since)
    parts.append(_coverage(result))
    parts.append(_problems(result))
    parts.append(_summary(result))
    body = "\n\n".join(p for p in parts if p)
    return "\n" + body if rows_streamed and result.rows else body  # a blank line after the streamed rows


INSTANCE_WIDTHS = (19, 40, 8, 34)


def instance_table_header() -> str:
    return _instance_line(("INSTANCE", "CHECK", "STATUS", "CAUSE", "CHECKED AT"))


def _instance_line(cells: Sequence[str]) -> str:
    w = INSTANCE_WIDTHS
    return (f"{cells[0]:<{w[0]}}  {cells[1]:<{w[1]}}  {cells[2]:<{w[2]}}  {cells[3]:<{w[3]}}  {cells[4]}").rstrip()


def instance_lines(rows: Sequence[Row], verbose: bool = False, width: int = 110) -> List[str]:
    lines = []
    for r in rows:
        lines.append(_instance_line((r.instance_id, r.check_id, r.status, r.cause_code or "-", r.checked_at or "-")))
        if verbose:
            for label, text in (("cause:", r.cause), ("fix:", r.fix)):
                if text:
                    lines.extend(_wrap(text, width, f"    {label:<7}", 11))
    return lines


def instance_table(rows: Sequence[Row], verbose: bool = False, width: int = 110) -> str:
    return "\n".join([instance_table_header()] + instance_lines(rows, verbose, width))


def _wrap(text: str, width: int, first: str, indent: int) -> List[str]:
    return textwrap.wrap(text, width=width, initial_indent=first, subsequent_indent=" " * indent,
                         break_on_hyphens=False, break_long_words=False) or [first.rstrip()]


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _root_line(g: RootCause) -> str:
    name = f" ({g.name})" if g.name and g.name != g.resource_id else ""
    where = " ".join(x for x in (g.account_id, g.region) if x)
    return f"{g.resource_type} {g.resource_id}{name}" + (f"  [{where}]" if where else "")


def _root_causes(result: FleetResult, verbose: bool, width: int) -> str:
    roots = result.correlation.root_causes
    if not roots:
        return "Root causes: no failing finding points at a shared resource."
    affected = len({i for g in roots for i in g.instances})
    lines = [f"ROOT CAUSES — {_plural(len(roots), 'resource')}, {_plural(affected, 'instance')} affected"]
    for n, g in enumerate(roots, 1):
        lines.append("")
        lines.append(f"{n}. {_root_line(g)}")
        scope = ""
        if g.vpcs:
            scope = f" in {', '.join(sorted(g.vpcs)[:3])}{' …' if len(g.vpcs) > 3 else ''}"
        if g.subnets:
            scope += f" ({_plural(len(g.subnets), 'subnet')})"
        since = f", since {g.since}" if g.since else ""
        others = "" if len(g.causes) < 2 else " (also " + ", ".join(c for c, _ in g.causes.most_common()[1:3]) + ")"
        lines.append(f"   {g.status} {g.cause_code}{others} — {_plural(len(g.instances), 'instance')}{scope}{since}")
        more = len(g.instances) - SAMPLE_SHOWN
        lines.append(f"   e.g. {', '.join(g.sample(SAMPLE_SHOWN))}" + (f" (+{more:,} more)" if more > 0 else ""))
        checks = ", ".join(c for c, _ in g.checks.most_common(3)) + (" …" if len(g.checks) > 3 else "")
        blocked = f"; {_plural(g.blocked, 'check')} not run because of this" if g.blocked else ""
        if g.stale:
            blocked += f"; {_plural(len(g.stale), 'instance')} of these stale (last report older than --stale-after)"
        lines.append(f"   checks: {checks}{blocked}")
        if verbose and g.cause:
            lines.extend(_wrap(g.cause, width, "   cause: ", 10))
        if g.fix:
            lines.extend(_wrap(g.fix, width, "   fix:   ", 10))
    return "\n".join(lines)


SAMPLE_SHOWN = 3


def _unshared(result: FleetResult, verbose: bool, width: int) -> str:
    items = result.correlation.unshared
    if not items:
        return ""
    lines = [f"INSTANCES WHOSE FAILURES SHARE NO RESOURCE — {len(items):,}",
             f"  {'INSTANCE':<19}  {'REGION':<14}  {'SUBNET':<24}  {'STATUS':<8}  CAUSES"]
    for u in items[:MAX_LISTED if not verbose else len(items)]:
        first = u.rows[0]
        causes = ", ".join(sorted({r.cause_code or '-' for r in u.rows}))
        old = " (older agent: no resource context)" if u.report.old_agent else ""
        old += " (stale)" if u.stale else ""
        lines.append(f"  {u.report.instance_id:<19}  {u.report.region or '-':<14}  {first.subnet_id or '-':<24}  "
                     f"{u.status:<8}  {causes}{old}")
    if len(items) > MAX_LISTED and not verbose:
        lines.append(f"  … and {len(items) - MAX_LISTED:,} more (-v or --by instance lists them all)")
    return "\n".join(lines)


def _causes(result: FleetResult) -> str:
    causes = by_cause(result.data)
    if not causes:
        return "By cause: nothing failing."
    w = max(len("CAUSE CODE"), *(len(c["cause_code"]) for c in causes))
    lines = ["By cause", f"  {'CAUSE CODE':<{w}}  INSTANCES  FINDINGS  RESOURCES"]
    lines += [f"  {c['cause_code']:<{w}}  {c['instances']:>9}  {c['findings']:>8}  {c['resources']:>9}" for c in causes]
    return "\n".join(lines)


def _since(result: FleetResult) -> str:
    view = result.since_view()
    if view is None:
        return ""
    lines = [f"CHANGES SINCE {view['from']}"]
    broke: Dict[Tuple[str, str], List[Dict[str, str]]] = {}
    for item in view["broke"]:
        broke.setdefault((item["resource_type"] or "instance", item["resource_id"] or item["instance_id"]), []).append(item)
    for (rtype, rid), items in sorted(broke.items(), key=lambda kv: -len({i["instance_id"] for i in kv[1]})):
        first = min(i["since"] for i in items)
        lines.append(f"  broke     {rtype} {rid}: {_plural(len({i['instance_id'] for i in items}), 'instance')} "
                     f"({items[0]['cause_code'] or '-'}), first at {first}")
    recovered: Dict[Tuple[str, str], List[Dict[str, str]]] = {}
    for item in view["recovered"]:
        recovered.setdefault((item["resource_type"] or "check", item["resource_id"] or item["check_id"]), []).append(item)
    for (rtype, rid), items in sorted(recovered.items(), key=lambda kv: -len(kv[1])):
        lines.append(f"  recovered {rtype} {rid}: {_plural(len({i['instance_id'] for i in items}), 'instance')} "
                     f"(was {items[0]['previous_status']}), first at {min(i['since'] for i in items)}")
    if view["went_stale"]:
        lines.append(f"  went stale: {_plural(len(view['went_stale']), 'instance')} stopped reporting in the window")
    if len(lines) == 1:
        lines.append("  nothing broke or recovered in the window")
    return "\n".join(lines)


INLINE = 5  # stale / silent instances named inline in the table (JSON lists them all)


def _by_subnet(reports: Sequence[InstanceReport]) -> str:
    subnets: Dict[str, int] = {}
    for r in reports:
        key = _first(r, "subnet_id")
        if key:
            subnets[key] = subnets.get(key, 0) + 1
    if not subnets:
        return ""
    top = sorted(subnets.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    return "; most in " + ", ".join(f"{s} ({n})" for s, n in top)


def _coverage(result: FleetResult) -> str:
    data = result.data
    lines = []
    if result.managed_known:
        publishing = len(data.managed) - len(result.silent)
        lines.append(f"Coverage: {publishing:,} of {len(data.managed):,} managed instances publish {result.type_name}.")
    if result.stale:
        shown = ", ".join(f"{r.instance_id} (last {_iso(r.checked_epoch)})" for r in result.stale[:INLINE])
        more = f" and {len(result.stale) - INLINE:,} more" if len(result.stale) > INLINE else ""
        lines.append(f"Stale: {len(result.stale):,} (nothing new for {result.stale_after_s / 3600:g} h"
                     f"{_by_subnet(result.stale)}): {shown}{more}.")
    if result.silent:
        shown = ", ".join(f"{i} ({s})" for i, _, _, s in result.silent[:INLINE])
        more = f" and {len(result.silent) - INLINE:,} more" if len(result.silent) > INLINE else ""
        lines.append(f"Silent: {len(result.silent):,} (managed but never published): {shown}{more}.")
    if result.stale or result.silent:
        lines.append(f"Not healthy, not known: {SILENT_HINT}. --format json lists them all.")
    return "\n".join(lines)


def _problems(result: FleetResult) -> str:
    data = result.data
    if not data.problem_counts:
        return ""
    counts = ", ".join(f"{n:,} {kind}" for kind, n in data.problem_counts.most_common())
    lines = [f"Could not use everything read ({counts}); never read as healthy:"]
    shown: Dict[str, int] = {}
    for p in data.problems:  # a few of each kind here; the JSON names the first 20 of all
        shown[p.kind] = shown.get(p.kind, 0) + 1
        if shown[p.kind] <= 3:
            lines.append(f"  {p.line()}")
    total = sum(data.problem_counts.values())
    listed = len(lines) - 1
    if total > listed:
        lines.append(f"  … and {total - listed:,} more")
    return "\n".join(lines)


def _filter_text(sel: Selection) -> str:
    parts = [f"{name} {','.join(values)}" for name, values in (("check", sel.checks), ("cause", sel.causes)) if values]
    return f" matching {'; '.join(parts)}" if parts else ""


def _summary(result: FleetResult) -> str:
    by_status = result.by_status()
    worst_text = ", ".join(f"{by_status[s]:,} {s}" for s in ("CRITICAL", "WARNING", "UNKNOWN") if s in by_status)
    listed = len(result.instances)
    return (f"{_plural(listed, 'instance')} with findings not OK" + (f" ({worst_text})" if worst_text else "")
            + f"{_filter_text(result.selection)}; {result.reads}. Exit {result.exit_code}.")
