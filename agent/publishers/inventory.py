"""SSM inventory: the findings and verdicts as two custom types, sent with ``PutInventory``.

One entry per finding in ``Custom:VpceDoctor`` (CheckId, Status, Summary, Cause, CauseCode, Fix,
Evidence, CheckedAt, AgentVersion, and for the fleet view (agent/fleet_model.py): BlockedBy,
StatusSince, PreviousStatus, CauseResourceType, CauseResourceId, CauseResourceName — the AWS resource the cause
points at, checks/resources.py — and the instance's context AwsAccountId, AwsRegion, VpcId, SubnetId,
AvailabilityZone, SecurityGroupIds, RoleName) and one per verdict in ``Custom:VpceDoctorVerdict``
(Verdict, Status, Reason, CheckedAt, AgentVersion): at most two of the account's 20 custom types,
and the same attribute names in every entry ("" when unknown). StatusSince is when the finding
entered its current status (the daemon carries it, agent/transitions.py; CheckedAt when unknown).
``build_inventory`` is shared with the inventory file, so both paths carry the same content.

Limits (shared/AWS-FACTS.md; botocore's ssm model; amazon-ssm-agent
agent/plugins/inventory/gatherers/custom/customGatherer.go):
* 1-30 items per call — items, not entries: 60 findings are one item with 60 entries;
* TypeName 1-100 chars ``^(AWS|Custom):.*$``; SchemaVersion "1.0"; CaptureTime ``YYYY-MM-DDTHH:MM:SSZ``;
* ≤ 10,000 entries, ≤ 50 attributes (we send 22 and 5), names ≤ 64 chars, values ≤ 4096. The service counts
  characters, the agent's gatherer counts bytes (Go ``len``): we cut at 4096 UTF-8 bytes on a
  character boundary, which satisfies both;
* 200 KB per item and 1 MB per call (the Systems Manager quotas; the lab enforces the same):
  when the findings would not fit, Evidence and then the texts are shortened for every entry.

ContentHash: the service keeps the stored item when the hash is unchanged (API reference,
InventoryItem.ContentHash). The hash covers the *diagnosis* — each check's id, status, cause code,
cause and fix, its resource, blocker and status start, the verdicts — and the UTC date, not Summary/Evidence (latencies change every cycle)
nor CheckedAt. So a steady state is stored once a day (a heartbeat), a changed diagnosis at once,
and unchanged cycles cost no inventory update (nor an AWS Config item). The publisher also skips
the call itself while the hash equals the last one that succeeded.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..report import Report
from .base import AwsPublisher, Outcome, describe_aws_error
from .settings import PublishSettings

SCHEMA_VERSION = "1.0"
MAX_ITEMS_PER_CALL = 30
MAX_ENTRIES = 10_000
MAX_VALUE_BYTES = 4096
MAX_ITEM_BYTES = 200 * 1024 - 2048  # room for TypeName, CaptureTime, ContentHash and JSON framing
MAX_CALL_BYTES = 1024 * 1024 - 16 * 1024
MARKER = "…[truncated]"

FINDING_ATTRIBUTES = ("CheckId", "Status", "Summary", "Cause", "CauseCode", "Fix", "Evidence", "CheckedAt",
                      "AgentVersion", "BlockedBy", "StatusSince", "PreviousStatus", "CauseResourceType", "CauseResourceId",
                      "CauseResourceName", "AwsAccountId", "AwsRegion", "VpcId", "SubnetId", "AvailabilityZone",
                      "SecurityGroupIds", "RoleName")
VERDICT_ATTRIBUTES = ("Verdict", "Status", "Reason", "CheckedAt", "AgentVersion")
# What the ContentHash covers (see the module doc).
_FINDING_STATE = ("CheckId", "Status", "CauseCode", "Cause", "Fix", "AgentVersion", "CauseResourceType", "CauseResourceId",
                  "BlockedBy", "StatusSince")
_VERDICT_STATE = ("Verdict", "Status", "Reason", "AgentVersion")
# Shrinking steps when an item exceeds MAX_ITEM_BYTES: (Evidence bytes, other text bytes).
_SHRINK_STEPS = ((MAX_VALUE_BYTES, MAX_VALUE_BYTES), (1024, MAX_VALUE_BYTES), (256, 1024), (64, 256), (2, 128))


# --- safe truncation -------------------------------------------------------------------------------

def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "replace")  # a lone surrogate (from undecodable bytes) becomes "?"


def fit_text(text: Optional[str], limit: int = MAX_VALUE_BYTES) -> str:
    """``text`` in at most ``limit`` UTF-8 bytes, cut on a character boundary and marked."""
    raw = _utf8(text or "")
    if len(raw) <= limit:
        return raw.decode("utf-8")
    room = max(0, limit - len(MARKER.encode("utf-8")))
    # errors="ignore" only drops the incomplete character the cut left at the end.
    return raw[:room].decode("utf-8", "ignore") + (MARKER if limit >= len(MARKER.encode("utf-8")) else "")


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False, default=str)


def _plain(value: Any) -> Any:
    """Evidence as strict JSON data: string keys (sort_keys needs comparable keys), lists for any
    sequence or set, and text for anything else — NaN/Infinity included, which JSON does not have."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (str, int, float)):
        return value
    return str(value)


def _shrink(value: Any, max_str: int, max_list: int) -> Any:
    if isinstance(value, str):
        return fit_text(value, max_str)
    if isinstance(value, Mapping):
        return {str(k): _shrink(v, max_str, max_list) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        kept = [_shrink(v, max_str, max_list) for v in list(value)[:max_list]]
        if len(value) > max_list:
            kept.append(f"…[+{len(value) - max_list} more]")
        return kept
    return value


def fit_json(value: Any, limit: int = MAX_VALUE_BYTES) -> str:
    """Compact JSON of ``value`` in at most ``limit`` bytes, still valid JSON: first long strings and
    lists are shortened (keeping the structure), else the text is wrapped as {"_truncated": "…"}."""
    value = _plain(value)
    text = _compact(value)
    if len(_utf8(text)) <= limit:
        return _utf8(text).decode("utf-8")
    for max_str, max_list in ((1024, 50), (256, 20), (64, 10), (16, 5)):
        shrunk = _compact(_shrink(value, max_str, max_list))
        if len(_utf8(shrunk)) <= limit:
            return _utf8(shrunk).decode("utf-8")
    wrapper = _compact({"_truncated": ""})
    if limit < len(wrapper):
        return "{}" if limit >= 2 else ""
    room = limit - len(wrapper)
    while True:  # escaping can grow the text: shrink until the wrapped form fits
        out = _compact({"_truncated": fit_text(text, room)})
        size = len(_utf8(out))
        if size <= limit or room <= 0:
            return _utf8(out).decode("utf-8")
        room -= size - limit


# --- the content -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class InventoryItem:
    type_name: str
    capture_time: str  # YYYY-MM-DDTHH:MM:SSZ
    content: Tuple[Dict[str, str], ...]
    content_hash: str

    def api(self) -> Dict[str, Any]:
        """The PutInventory InventoryItem."""
        return {"TypeName": self.type_name, "SchemaVersion": SCHEMA_VERSION, "CaptureTime": self.capture_time,
                "ContentHash": self.content_hash, "Content": [dict(e) for e in self.content]}

    def file_document(self) -> Dict[str, Any]:
        """The SSM agent's custom inventory file (the agent sets CaptureTime when it gathers)."""
        return {"SchemaVersion": SCHEMA_VERSION, "TypeName": self.type_name, "Content": [dict(e) for e in self.content]}


@dataclass(frozen=True)
class InventoryContent:
    items: Tuple[InventoryItem, ...]
    notes: Tuple[str, ...]  # what had to be shortened or left out

    @property
    def content_hash(self) -> str:
        return _sha256([i.content_hash for i in self.items])


def _sha256(value: Any) -> str:
    return hashlib.sha256(_compact(value).encode("utf-8", "replace")).hexdigest()


def capture_time(report: Report) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(report.started_at))


def _context(report: Report) -> Dict[str, str]:
    """The instance's context, the same in every entry: where the fleet view groups and samples."""
    facts = report.facts
    credentials = facts.credentials if isinstance(facts.credentials, Mapping) else {}
    arn = facts.instance_profile_arn or ""
    role = credentials.get("role") or (arn.rsplit("/", 1)[-1] if ":instance-profile/" in arn else "")
    values = {"AwsAccountId": facts.account_id, "AwsRegion": facts.region, "VpcId": facts.vpc_id,
              "SubnetId": facts.subnet_id, "AvailabilityZone": facts.availability_zone,
              "SecurityGroupIds": ",".join(sorted(facts.security_group_ids)), "RoleName": role}
    return {k: fit_text(str(v or ""), 1024) for k, v in values.items()}


def _since(report: Report, check_id: str, checked_at: str) -> Tuple[str, str]:
    """(StatusSince, PreviousStatus): from the daemon's transitions; CheckedAt and "" when unknown."""
    known = report.transitions.get(check_id)
    if not known:
        return checked_at, ""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(known[0])), fit_text(known[1], 64)


def _finding_entries(report: Report, checked_at: str, evidence_limit: int, text_limit: int) -> List[Dict[str, str]]:
    context = _context(report)
    entries = []
    for f in report.findings:
        since, previous = _since(report, f.id, checked_at)
        resource = f.resource or {}
        entry = {
            "CheckId": fit_text(f.id, 1024),
            "Status": f.status.name,
            "Summary": fit_text(f.summary, text_limit),
            "Cause": fit_text(f.cause, text_limit),
            "CauseCode": fit_text(f.cause_code, 256),
            "Fix": fit_text(f.fix, text_limit),
            "Evidence": fit_json(dict(f.evidence), evidence_limit),
            "CheckedAt": checked_at,
            "AgentVersion": fit_text(report.version, 64),
            "BlockedBy": fit_text(f.blocked_by, 1024),
            "StatusSince": since,
            "PreviousStatus": previous,
            "CauseResourceType": fit_text(resource.get("type"), 64),
            "CauseResourceId": fit_text(resource.get("id"), 1024),
            "CauseResourceName": fit_text(resource.get("name"), 1024),
        }
        entry.update(context)
        entries.append(entry)
    return entries


def _json_size(value: Any) -> int:
    """A size no encoding of ``value`` exceeds: ASCII-escaped JSON with the default ", " separators
    (botocore escapes non-ASCII as \\uXXXX; the service's own accounting is not documented)."""
    return len(json.dumps(value))


def _item_bytes(entries: Sequence[Mapping[str, str]]) -> int:
    return _json_size(list(entries))


def _fit_item(report: Report, checked_at: str, notes: List[str]) -> List[Dict[str, str]]:
    """Finding entries within MAX_ENTRIES and MAX_ITEM_BYTES, shortening every entry alike."""
    findings = report.findings
    entries: List[Dict[str, str]] = []
    for evidence_limit, text_limit in _SHRINK_STEPS:
        entries = _finding_entries(report, checked_at, evidence_limit, text_limit)
        if _item_bytes(entries) <= MAX_ITEM_BYTES:
            if evidence_limit < MAX_VALUE_BYTES:
                notes.append(f"inventory: Evidence cut to {evidence_limit} bytes and texts to {text_limit} "
                             f"to fit {len(entries)} findings in one item")
            break
    # Still too big (thousands of findings): keep the worst findings first, in report order.
    order = sorted(range(len(findings)), key=lambda i: (-int(findings[i].status), i))
    keep = min(len(entries), MAX_ENTRIES)
    while keep > 0 and _item_bytes([entries[i] for i in sorted(order[:keep])]) > MAX_ITEM_BYTES:
        keep = keep * 9 // 10
    if keep < len(entries):
        notes.append(f"inventory: only {keep} of {len(entries)} findings fit the item limits (worst kept)")
        entries = [entries[i] for i in sorted(order[:keep])]
    return entries


def _state(report: Report, entry: Mapping[str, str]) -> List[str]:
    """An entry's part of the ContentHash. An unknown StatusSince is CheckedAt, which changes every run
    and is left out like CheckedAt; a known one (the daemon's) is part of the diagnosis."""
    known = entry["CheckId"] in report.transitions
    return [entry[k] if k != "StatusSince" or known else "" for k in _FINDING_STATE]


def build_inventory(report: Report, type_name: str, verdict_type_name: str) -> InventoryContent:
    captured = capture_time(report)
    notes: List[str] = []
    findings = _fit_item(report, captured, notes)
    verdicts = [{
        "Verdict": fit_text(v.name, 256),
        "Status": fit_text(v.status, 64),
        "Reason": fit_text(v.reason),
        "CheckedAt": captured,
        "AgentVersion": fit_text(report.version, 64),
    } for v in report.verdicts]
    day = captured[:10]
    items = (
        InventoryItem(type_name, captured, tuple(findings),
                      _sha256([type_name, SCHEMA_VERSION, day, [_state(report, e) for e in findings]])),
        InventoryItem(verdict_type_name, captured, tuple(verdicts),
                      _sha256([verdict_type_name, SCHEMA_VERSION, day, [[e[k] for k in _VERDICT_STATE] for e in verdicts]])),
    )
    return InventoryContent(items, tuple(notes))


def batches(items: Sequence[InventoryItem]) -> List[List[InventoryItem]]:
    """Calls of at most MAX_ITEMS_PER_CALL items and MAX_CALL_BYTES each."""
    out: List[List[InventoryItem]] = []
    size = 0
    for item in items:
        item_size = _json_size(item.api())
        if not out or len(out[-1]) >= MAX_ITEMS_PER_CALL or size + item_size > MAX_CALL_BYTES:
            out.append([])
            size = 0
        out[-1].append(item)
        size += item_size
    return out


# --- the publisher ---------------------------------------------------------------------------------

class InventoryPublisher(AwsPublisher):
    name = "inventory"

    service = "ssm"

    def __init__(self, settings: PublishSettings, ca_bundle: Optional[str]) -> None:
        super().__init__(settings.inventory_timeout_s, ca_bundle)
        self._type_name = settings.inventory_type_name
        self._verdict_type_name = settings.verdict_type_name
        self._last_sent: Optional[str] = None  # (instance, content) hash of the last successful call

    def _publish(self, report: Report) -> Outcome:
        instance_id, region, why_not = self.target(report, "call PutInventory")
        if why_not:
            return False, why_not
        content = build_inventory(report, self._type_name, self._verdict_type_name)
        key = _sha256([instance_id, content.content_hash])
        counts = f"{len(content.items[0].content)} findings, {len(content.items[1].content)} verdicts"
        notes = "; ".join(content.notes)
        if key == self._last_sent:
            return True, (f"unchanged diagnosis (ContentHash {content.items[0].content_hash[:12]}): "
                          f"PutInventory not needed" + (f"; {notes}" if notes else ""))
        client = self._aws(region)
        calls = 0
        for batch in batches(content.items):
            try:
                client.put_inventory(InstanceId=instance_id, Items=[item.api() for item in batch])
            except Exception as exc:  # noqa: BLE001 - every failure becomes one line
                return False, describe_aws_error(exc, "PutInventory", client.meta.endpoint_url)
            calls += 1
        self._last_sent = key
        return True, (f"PutInventory {instance_id}: {counts} as {self._type_name} and {self._verdict_type_name} "
                      f"in {calls} call{'s' if calls != 1 else ''}" + (f"; {notes}" if notes else ""))
