"""What the fleet view reads, whatever it reads it from (GetInventory pages or a Resource Data Sync
in S3): one ``InstanceReport`` per instance, its findings as ``Row``s, and every object or entry it
could not use as a ``Problem`` — counted and named, never read as an all-clear.

The inventory attributes are those publishers/inventory.py writes. Entries of older agents lack the
context ones (ResourceType, VpcId, …); they read as "" and the instance's failures then share no
resource. Attribute names are matched case-insensitively: a Resource Data Sync and the Athena/Glue
tooling around it may lower-case them. That is also why no attribute is named like a key the sync
adds to every line (resourceId: the instance; captureTime, schemaVersion) or like its partitions
(accountid, region, resourcetype): the resource a cause points at is CauseResourceType/Id/Name, the
instance's account and region AwsAccountId/AwsRegion.
"""
from __future__ import annotations

import calendar
import json
import re
import time
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

try:
    from typing import Protocol
except ImportError:  # pragma: no cover - Python < 3.8
    Protocol = object  # type: ignore[assignment,misc]

from .checks.textsafe import escape_controls

STATUSES = ("OK", "WARNING", "CRITICAL", "UNKNOWN")
NOT_OK = ("WARNING", "CRITICAL", "UNKNOWN")

# Inventory attribute -> Row field. The first nine are every agent's; the rest came with the fleet
# correlation (an older agent's entries lack them).
ATTRIBUTES: Tuple[Tuple[str, str], ...] = (
    ("CheckId", "check_id"), ("Status", "status"), ("Summary", "summary"), ("Cause", "cause"),
    ("CauseCode", "cause_code"), ("Fix", "fix"), ("Evidence", "evidence"), ("CheckedAt", "checked_at"),
    ("AgentVersion", "agent_version"),
    ("BlockedBy", "blocked_by"), ("StatusSince", "status_since"), ("PreviousStatus", "previous_status"),
    ("CauseResourceType", "resource_type"), ("CauseResourceId", "resource_id"),
    ("CauseResourceName", "resource_name"), ("AwsAccountId", "account_id"), ("AwsRegion", "region"),
    ("VpcId", "vpc_id"), ("SubnetId", "subnet_id"),
    ("AvailabilityZone", "availability_zone"), ("SecurityGroupIds", "security_group_ids"), ("RoleName", "role_name"),
)
_BY_LOWER = {name.lower(): field_name for name, field_name in ATTRIBUTES}
CONTEXT_ATTRIBUTES = ("CauseResourceType", "CauseResourceId", "VpcId")  # an entry without them is an older agent's
MAX_TEXT = 4096  # an attribute's limit in PutInventory: anything longer did not come from an agent

# How far in the future a CheckedAt may lie before it is named as clock skew (the instance's clock,
# or the reader's): one SigV4 window.
FUTURE_SKEW_S = 300.0


@dataclass(frozen=True)
class Row:
    """One published finding (one inventory entry), as text, terminal controls escaped."""
    instance_id: str
    check_id: str
    status: str
    cause_code: str = ""
    cause: str = ""
    fix: str = ""
    summary: str = ""
    checked_at: str = ""
    agent_version: str = ""
    evidence: Any = None
    blocked_by: str = ""
    status_since: str = ""
    previous_status: str = ""
    resource_type: str = ""
    resource_id: str = ""
    resource_name: str = ""
    account_id: str = ""
    region: str = ""
    vpc_id: str = ""
    subnet_id: str = ""
    availability_zone: str = ""
    security_group_ids: str = ""
    role_name: str = ""

    @property
    def failing(self) -> bool:
        return self.status in NOT_OK

    @property
    def shared_resource(self) -> bool:
        """Does the cause point at something other instances can share (not this instance alone)?"""
        return bool(self.resource_type) and self.resource_type != "instance" and bool(self.resource_id)

    def to_dict(self, evidence: bool = True) -> Dict[str, Any]:
        out = {f: getattr(self, f) for f in self.__dataclass_fields__}  # type: ignore[attr-defined]
        if not evidence:
            out["evidence"] = None  # the key stays: one schema whether evidence was asked for or not
        return out


@dataclass(frozen=True)
class InstanceReport:
    """One instance's latest published report. Readers may leave ``rows`` to be built from
    ``entries`` (``lazy``): the collector then builds only the rows it keeps — at 10,000+ instances,
    most entries are OK findings nobody asked for."""
    account_id: str
    region: str
    instance_id: str
    capture_time: str          # the item's CaptureTime (YYYY-MM-DDTHH:MM:SSZ)
    rows: Tuple[Row, ...]
    source: str = "api"        # "api", or the sync object it came from (s3://bucket/key, a path)
    agent_version: str = ""
    old_agent: bool = False    # entries without the context attributes
    checked_at: str = ""       # the newest CheckedAt of its entries
    entries: Tuple[Mapping[str, Any], ...] = ()  # raw entries not yet made rows (lazy)
    keep_evidence: bool = True
    vpc_id: str = ""           # the instance's context, kept when its rows are not (stale, silent summaries)
    subnet_id: str = ""

    @property
    def key(self) -> Tuple[str, str, str]:
        return (self.account_id, self.region, self.instance_id)

    @property
    def checked_epoch(self) -> float:
        """When the instance was last heard of: the newest CheckedAt, or the item's CaptureTime."""
        return max(epoch(self.checked_at), epoch(self.capture_time))

    def built(self, keep: Optional[Any] = None) -> "InstanceReport":
        """``rows`` made from ``entries`` — only those ``keep(entry)`` accepts, when given."""
        if not self.entries:
            return self
        rows = tuple(row_from_entry(self.instance_id, e, self.capture_time, self.account_id, self.region,
                                    self.keep_evidence) for e in self.entries if keep is None or keep(e))
        return replace(self, rows=self.rows + rows, entries=())


@dataclass(frozen=True)
class Problem:
    """Something read that could not be used, in one line: what kind, where, why."""
    kind: str    # not_json | truncated | not_inventory | too_large | unreadable | duplicate | clock_skew | old_agent
    where: str   # s3://bucket/key, a path, or account/region/instance
    detail: str

    def line(self) -> str:
        return escape_controls(f"{self.kind}: {self.where}: {self.detail}")[:500]


class Sink(Protocol):
    """Where a reader (GetInventory pages, a Resource Data Sync) puts what it reads, as it reads it.
    Implementations are thread-safe: readers call from several threads."""

    def add(self, report: InstanceReport) -> None:
        """One instance's report (two for one instance: the sink keeps the newer, names a duplicate)."""

    def add_managed(self, account_id: str, region: str, instance_id: str, status: str) -> None:
        """A managed instance (AWS:InstanceInformation) and its InstanceStatus (Active, ConnectionLost,
        Terminated, …): an instance that is managed but publishes nothing is silent, a symptom itself."""

    def problem(self, problem: Problem) -> None:
        """Something that could not be used (counted and named, never an all-clear)."""


@lru_cache(maxsize=4096)  # a fleet's reports share a few hundred timestamps
def epoch(value: Any) -> float:
    """A CaptureTime/CheckedAt (2026-12-03T06:00:00Z) as epoch seconds; unreadable → -inf."""
    try:
        return float(calendar.timegm(time.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ")))
    except (ValueError, OverflowError):
        return float("-inf")


def _text(value: Any) -> str:
    """One line of text whatever an instance published (controls escaped, bounded)."""
    if value is None:
        return ""
    if isinstance(value, str) and len(value) <= MAX_TEXT and value.isprintable():
        return value  # the common case: nothing to escape (isprintable is False for controls and bidi)
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return escape_controls(text[:MAX_TEXT])


def row_from_entry(instance_id: str, entry: Mapping[str, Any], capture_time: str = "", account_id: str = "",
                   region: str = "", keep_evidence: bool = True) -> Row:
    """A Row from one inventory entry (attribute names matched case-insensitively). The reader's
    account and region fill what an older agent did not publish."""
    values: Dict[str, Any] = {}
    for key, value in entry.items():
        field_name = _BY_LOWER.get(str(key).lower())
        if field_name is not None:
            values[field_name] = value
    raw_evidence = values.pop("evidence", None)
    evidence = _evidence(raw_evidence) if keep_evidence else None
    fields = {k: _text(v) for k, v in values.items()}
    fields["status"] = fields.get("status", "").upper()
    fields["checked_at"] = fields.get("checked_at") or capture_time
    fields["account_id"] = fields.get("account_id") or account_id
    fields["region"] = fields.get("region") or region
    return Row(instance_id=instance_id, evidence=evidence, **fields)  # type: ignore[arg-type]


def _evidence(raw: Any) -> Any:
    """The Evidence attribute is compact JSON; keep it as data, or as the text it is."""
    if not raw:
        return {}
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw[:MAX_TEXT])
    except ValueError:
        return _text(raw)


def is_old_agent(entries: Iterable[Mapping[str, Any]]) -> bool:
    """Entries published by an agent from before the fleet correlation (no context attributes)."""
    for entry in entries:
        if all(a in entry for a in CONTEXT_ATTRIBUTES):
            return False
        keys = {str(k).lower() for k in entry}
        return not all(a.lower() in keys for a in CONTEXT_ATTRIBUTES)
    return False


TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


def _get(entry: Mapping[str, Any], name: str) -> Any:
    value = entry.get(name)
    if value is None:  # a reader that lower-cased the names
        value = entry.get(name.lower())
    return value


def instance_report(instance_id: str, item: Mapping[str, Any], account_id: str = "", region: str = "",
                    source: str = "api", keep_evidence: bool = True, lazy: bool = False) -> InstanceReport:
    """An InstanceReport from one InventoryResultItem-shaped dict (CaptureTime, Content). ``lazy``
    leaves the entries for the collector to make rows of (it keeps few of them)."""
    capture = _text(item.get("CaptureTime") or item.get("captureTime") or "")
    raw = item.get("Content") or item.get("content") or []
    content = tuple(e for e in raw if isinstance(e, dict)) if isinstance(raw, list) else ()
    first: Mapping[str, Any] = content[0] if content else {}
    # ISO-8601 in UTC with "Z" sorts as text; one report's entries share one or two values.
    stamps = {_get(e, "CheckedAt") for e in content}
    checked = max((v for v in stamps if isinstance(v, str) and TIMESTAMP.fullmatch(v)), default="")
    account = account_id or _text(_get(first, "AwsAccountId") or "")
    where = region or _text(_get(first, "AwsRegion") or "")
    report = InstanceReport(account_id=account, region=where, instance_id=instance_id, capture_time=capture,
                            rows=(), source=source, agent_version=_text(_get(first, "AgentVersion") or "")[:64],
                            old_agent=is_old_agent(content), checked_at=checked, entries=content,
                            keep_evidence=keep_evidence, vpc_id=_text(_get(first, "VpcId") or "")[:64],
                            subnet_id=_text(_get(first, "SubnetId") or "")[:64])
    return report if lazy else report.built()


def rank(status: str) -> int:
    return ("OK", "UNKNOWN", "WARNING", "CRITICAL").index(status) if status in STATUSES else 0


def worst(statuses: Iterable[str], default: str = "OK") -> str:
    return max(statuses, key=rank, default=default)
