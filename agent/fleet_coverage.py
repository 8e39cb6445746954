"""Fleet coverage: which managed instances report at all, and which stopped. A fleet view that only
lists what was published reads silence as health — and the instances whose SSM path broke are
exactly the ones that cannot publish."""
from __future__ import annotations

import calendar
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

MAX_PAGES = 100_000  # a guard against a service that never stops paging


class FleetError(Exception):
    """The query failed; the message is one line ending in what to do."""


def capture_epoch(value: Any) -> float:
    """A CaptureTime (2026-12-03T06:00:00Z) as epoch seconds; anything unreadable counts as stale."""
    try:
        return calendar.timegm(time.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ"))
    except (ValueError, OverflowError):
        return float("-inf")


INSTANCE_INFORMATION = "AWS:InstanceInformation"


class Progress:
    """Which GetInventory query is under way and how many pages came back: when the deadline
    passes, the message names what was not fetched (a fetch cut short is never an all-clear)."""

    STAGES = ("findings", "publishing", "managed")

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name
        self.stage: Optional[str] = None
        self.pages = {stage: 0 for stage in self.STAGES}

    def start(self, stage: str) -> None:
        self.stage = stage

    def page(self) -> None:
        if self.stage is not None:
            self.pages[self.stage] += 1

    def not_fetched(self) -> str:
        """"the not-OK findings after page 3, which instances publish …, the managed instances …"."""
        what = {"findings": f"the not-OK {self.type_name} findings",
                "publishing": f"which instances publish {self.type_name}",
                "managed": f"the managed instances ({INSTANCE_INFORMATION})"}
        current = self.STAGES.index(self.stage) if self.stage in self.STAGES else 0
        parts = []
        for stage in self.STAGES[current:]:
            done = self.pages[stage]
            parts.append(what[stage] + (f" after page {done}" if done else ""))
        return ", ".join(parts)


def entities(client: Any, filters: List[Dict[str, Any]], type_name: str, page_size: int,
             progress: Optional[Progress] = None) -> Dict[str, Any]:
    """Instance id -> its ``type_name`` item, over every page of one GetInventory query."""
    request: Dict[str, Any] = {"Filters": filters, "ResultAttributes": [{"TypeName": type_name}],
                               "MaxResults": page_size}
    out: Dict[str, Any] = {}
    seen: Set[str] = set()
    for _ in range(MAX_PAGES):
        try:
            reply = client.get_inventory(**request)
        except (AttributeError, TypeError, KeyError, ValueError):
            raise FleetError(f"the answer to the {type_name} coverage query does not parse as a GetInventory "
                             "reply") from None
        if progress is not None:
            progress.page()
        entities = reply.get("Entities")
        if not isinstance(entities, list):
            raise FleetError(f"the answer to the {type_name} coverage query is not a GetInventory reply "
                             "(no Entities list)")
        for entity in entities:
            if isinstance(entity, dict) and entity.get("Id"):
                out[str(entity["Id"])] = (entity.get("Data") or {}).get(type_name) or {}
        token = reply.get("NextToken")
        if not token:
            return out
        if token in seen:
            raise FleetError(f"the {type_name} coverage query kept paging (a NextToken repeated)")
        seen.add(token)
        request["NextToken"] = token
    raise FleetError(f"the {type_name} coverage query kept paging ({MAX_PAGES} pages)")


def instance_status(item: Mapping[str, Any]) -> str:
    content = item.get("Content") or []
    first = content[0] if isinstance(content, list) and content and isinstance(content[0], dict) else {}
    return str(first.get("InstanceStatus") or "?")[:40]


MAX_SILENT_SHOWN = 20


def coverage_text(result: Any) -> str:
    """"Coverage: 48 of 50 managed instances publish …; silent: i-… (Active), …" (empty: not asked)."""
    if result.managed is None:
        return ""
    q, silent, stale = result.query, result.silent, result.stale
    text = (f"Coverage: {len(result.managed) - len(silent)} of {len(result.managed)} managed instances publish "
            f"{q.type_name}")

    def listed(pairs: Sequence[Tuple[str, str]]) -> str:
        more = f" and {len(pairs) - MAX_SILENT_SHOWN} more" if len(pairs) > MAX_SILENT_SHOWN else ""
        return ", ".join(f"{i} ({s})" for i, s in pairs[:MAX_SILENT_SHOWN]) + more

    if stale:
        text += (f"; stale (nothing new for {q.stale_after_s / 3600:g} h, the last report shown is old): "
                 f"{listed(stale)}")
    if silent:
        text += f"; silent: {listed(silent)}"
    if not silent and not stale:
        return text + "."
    return (f"{text} — an instance that stopped reporting is a symptom itself: no path to SSM (its ssm "
            f"endpoint, DNS or role), no vpce-doctor daemon, or no inventory publisher.")
