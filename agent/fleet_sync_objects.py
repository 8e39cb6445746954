"""One Resource Data Sync object: where its key puts it (account, region, instance) and what its
JSON lines hold. The layout and its sources: agent/fleet_sync.py's docstring."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

_INSTANCE_ID = re.compile(r"^(?:i|mi)-[0-9a-f]{8,32}$")
# Keys the sync adds to every line (exact case, as AWS's sample readers read them).
SYNC_KEYS = ("resourceId", "captureTime", "schemaVersion")
LAYOUT = "accountid=<account>/region=<region>/resourcetype=<type>/<instance-id>.json"


@dataclass(frozen=True)
class SyncKey:
    account_id: str
    region: str
    instance_id: str


def parse_key(relative: str) -> Optional[SyncKey]:
    """``accountid=…/region=…/resourcetype=…/<instance-id>.json`` (relative to the type's prefix)."""
    parts = relative.split("/")
    if len(parts) != 4 or not parts[3].endswith(".json"):
        return None
    account, region, rtype = (p.partition("=") for p in parts[:3])
    if (account[0], region[0], rtype[0]) != ("accountid", "region", "resourcetype") or not account[2] or not region[2]:
        return None
    instance_id = parts[3][:-len(".json")]
    if not _INSTANCE_ID.match(instance_id):
        return None
    return SyncKey(account[2][:64], region[2][:64], instance_id)


Bad = Optional[Tuple[str, str]]  # (Problem kind, detail)


def parse_object(body: bytes, instance_id: str, type_name: str) -> Tuple[List[Dict[str, Any]], Bad]:
    """The entries of one sync object, or ([], (problem kind, detail))."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.end >= len(body) and "end of data" in str(exc.reason):
            return [], ("truncated", f"cut inside a UTF-8 character at byte {exc.start:,}: the object was cut short")
        return [], ("not_json", f"not UTF-8 text (byte {exc.start:,})")
    stripped = text.strip()
    if not stripped:
        return [], ("not_inventory", "an empty object: no entries")
    values: List[Any] = []
    try:  # the common case in one call: JSON lines hold no raw newline inside a value
        values = json.loads("[" + stripped.replace("\n", ",") + "]")
        lines: List[Tuple[int, str]] = []
    except ValueError:  # blank lines, a single document, or something wrong: line by line, to say what
        lines = [(n, line.strip()) for n, line in enumerate(text.split("\n"), 1) if line.strip()]
    for index, (number, line) in enumerate(lines):
        try:
            values.append(json.loads(line))
        except ValueError as exc:
            whole = _whole(text) if index == 0 else None  # one pretty-printed document, not JSON lines
            if whole is not None:
                values = whole
                break
            if index == len(lines) - 1 and _cut_short(line):
                return [], ("truncated", f"the JSON ends mid-entry (line {number}, {len(body):,} bytes): the object "
                                         "was cut short")
            return [], ("not_json", f"line {number}: {getattr(exc, 'msg', exc)} (column {getattr(exc, 'colno', '?')})")
    entries: List[Dict[str, Any]] = []
    for index, value in enumerate(values, 1):
        if not isinstance(value, dict):
            return [], ("not_inventory", f"entry {index} is a JSON {type(value).__name__}, not an inventory entry")
        # The sync's own keys, in the case it writes them: "resourceId" is the instance, never to be read
        # as an attribute (row_from_entry matches names case-insensitively). ``value`` is this parse's
        # own dict: popping is the cheap way to drop them.
        owner, captured, _ = (value.pop(k, None) for k in SYNC_KEYS)
        if owner not in (None, "", instance_id):
            return [], ("not_inventory", f"entry {index} is {str(owner)[:40]!r}'s, but the key names {instance_id}")
        if not ("CheckId" in value and "Status" in value):  # the agent's spelling first, then any case
            keys = {str(k).lower() for k in value}
            if "checkid" not in keys or "status" not in keys:
                return [], ("not_inventory", f"entry {index} has no CheckId/Status: not a {type_name} entry")
        if captured is not None:
            value["CaptureTime"] = captured  # for _capture_time; row_from_entry ignores it
        entries.append(value)
    return entries, None


def _whole(text: str) -> Optional[List[Any]]:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, list) else [value]


def _cut_short(line: str) -> bool:
    """Could ``line`` be the start of a JSON object or array that the end of the object cut off?"""
    if line[:1] not in "{[":
        return False
    closing = {"}": "{", "]": "["}
    stack: List[str] = []
    in_string = escaped = False
    for ch in line:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append(ch)
        elif ch in closing:
            if not stack or stack.pop() != closing[ch] or not stack:
                return False  # mismatched, or a value closed before the end: broken, not cut
    return in_string or bool(stack)


def capture_time(entries: List[Dict[str, Any]]) -> str:
    for entry in entries[:1]:  # the sync writes the item's CaptureTime on every line
        value = entry.get("CaptureTime") or next((v for k, v in entry.items() if str(k).lower() == "capturetime"), "")
        return str(value)[:32] if value else ""
    return ""


def instance_status(body: bytes) -> Optional[str]:
    """InstanceStatus from an AWS:InstanceInformation object (None: not such an object)."""
    try:
        lines = [line for line in body.decode("utf-8").split("\n") if line.strip()]
    except UnicodeDecodeError:
        return None
    for line in lines:
        try:
            value = json.loads(line)
        except ValueError:
            return None
        if isinstance(value, dict):
            for key, status in value.items():
                if str(key).lower() == "instancestatus" and isinstance(status, str) and status:
                    return status[:40]
    return None
