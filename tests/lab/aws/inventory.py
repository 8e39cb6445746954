"""SSM inventory (PutInventory, GetInventory, ListInventoryEntries), which moto does not implement.

Validation follows the service (limits in shared/AWS-FACTS.md, shapes in botocore's ``ssm`` model):

1. the model's own constraints (InstanceId pattern, 1–30 items, SchemaVersion and CaptureTime
   patterns, ContentHash ≤ 256, MaxResults 1–50, ≤ 5 filters …) → ``ValidationException`` worded
   like AWS's front end (see model_validation.py);
2. then the service's rules, with its own exceptions: unknown instance → ``InvalidInstanceId``;
   TypeName (1–100 chars, ``^(AWS|Custom):.*$``, a known AWS type) → ``InvalidTypeNameException``;
   Content (≤ 10,000 entries, ≤ 50 attributes each, names 1–64 chars, string values ≤ 4096 chars)
   → ``InvalidItemContentException``; attribute names not identical in every entry →
   ``ItemContentMismatchException``; size limits → ``ItemSizeLimitExceededException`` /
   ``TotalSizeLimitExceededException``; more than 20 custom types in the account →
   ``CustomSchemaCountLimitExceededException``.

TypeName and Content are in the model too; their limits are reported with the service's own
exceptions (as shared/AWS-FACTS.md lists them) rather than ValidationException. Which of the two
the real front end answers first for those is not documented; ``_validated_by_service`` is the one
place to change if that turns out otherwise.

A request is all or nothing: nothing is stored unless every item passes. An item whose ContentHash
equals the stored one is not rewritten (its old CaptureTime stays), as the API reference says.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import botocore.session

from .model_validation import ShapeMismatch, validate, validation_message

# Limits: shared/AWS-FACTS.md and the Systems Manager quotas page.
MAX_CUSTOM_TYPES = 20
MAX_ITEM_BYTES = 200 * 1024        # "custom inventory type size" quota
MAX_REQUEST_BYTES = 1024 * 1024    # inventory data per managed node per call
MAX_CONTENT_ENTRIES = 10_000
MAX_ATTRIBUTES = 50
MAX_ATTRIBUTE_NAME = 64
MAX_ATTRIBUTE_VALUE = 4096
MAX_TYPE_NAME = 100
TYPE_NAME_PATTERN = re.compile(r"^(AWS|Custom):.*$")
DEFAULT_PAGE_SIZE = 50

# The types AWS itself defines; an "AWS:" name outside this set is not a valid type.
AWS_TYPES = frozenset({
    "AWS:Application", "AWS:AWSComponent", "AWS:ComplianceItem", "AWS:ComplianceSummary", "AWS:File",
    "AWS:InstanceDetailedInformation", "AWS:InstanceInformation", "AWS:Network", "AWS:PatchSummary",
    "AWS:ResourceGroup", "AWS:Service", "AWS:Tag", "AWS:WindowsRegistry", "AWS:WindowsRole",
    "AWS:WindowsUpdate",
})
INSTANCE_INFORMATION = "AWS:InstanceInformation"
OPERATIONS = ("PutInventory", "GetInventory", "ListInventoryEntries")


class InventoryError(Exception):
    """An error reply: AWS error code, message, and the error shape's extra members (TypeName)."""

    def __init__(self, code: str, message: str, **members: Any) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.members = members


@dataclass(frozen=True)
class StoredItem:
    type_name: str
    schema_version: str
    capture_time: str
    content_hash: Optional[str]
    content: Tuple[Dict[str, str], ...]

    def result_item(self) -> Dict[str, Any]:
        """The InventoryResultItem shape of GetInventory."""
        item: Dict[str, Any] = {"TypeName": self.type_name, "SchemaVersion": self.schema_version,
                                "CaptureTime": self.capture_time, "Content": list(self.content)}
        if self.content_hash:
            item["ContentHash"] = self.content_hash
        return item


@dataclass(frozen=True)
class ManagedInstance:
    instance_id: str
    ip: Optional[str] = None
    status: str = "Active"  # AWS:InstanceInformation InstanceStatus (Active, ConnectionLost, Terminated …)


class InventoryService:
    """In-memory inventory for one account, safe to call from the front's handler threads."""

    def __init__(self, account_id: str, persist_to: Optional[Path] = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self._account_id = account_id
        self._persist_to = persist_to
        self._clock = clock
        self._lock = threading.Lock()
        self._instances: Dict[str, ManagedInstance] = {}
        self._registered_at: Dict[str, str] = {}
        self._items: Dict[str, Dict[str, StoredItem]] = {}
        self._custom_types: set = set()  # kept as items are stored: no scan of every instance per put
        # GetInventory's filtered entities per query, so a page costs a slice, not a scan of the fleet;
        # cleared whenever what a query could see changes (register, a stored item).
        self._query_cache: Dict[str, List[Dict[str, Any]]] = {}
        self._model = botocore.session.get_session().get_service_model("ssm")

    # --- managed instances: the seeded one and any fleet a test registers ------------------------

    def register(self, instances: Iterable[ManagedInstance]) -> None:
        now = _capture_time(self._clock())
        with self._lock:
            for instance in instances:
                self._instances[instance.instance_id] = instance
                self._registered_at.setdefault(instance.instance_id, now)
            self._query_cache.clear()

    def handle(self, operation: str, payload: Dict[str, Any]) -> Dict[str, Any]:
        """Run one operation; raise InventoryError for an error reply."""
        try:
            errors = validate(self._model.operation_model(operation).input_shape, payload,
                              skip=_validated_by_service)
        except ShapeMismatch as exc:
            raise InventoryError("SerializationException", str(exc)) from exc
        if errors:
            raise InventoryError("ValidationException", validation_message(errors))
        with self._lock:
            if operation == "PutInventory":
                return self._put(payload)
            if operation == "GetInventory":
                return self._get(payload)
            if operation == "ListInventoryEntries":
                return self._list_entries(payload)
        raise InventoryError("InvalidAction", f"{operation} is not an inventory operation")

    def snapshot(self) -> Dict[str, Dict[str, Dict[str, Any]]]:
        """Everything stored, as {instance_id: {TypeName: InventoryResultItem}}."""
        with self._lock:
            return {iid: {t: item.result_item() for t, item in types.items()}
                    for iid, types in self._items.items()}

    # --- PutInventory ----------------------------------------------------------------------------

    def _put(self, payload: Dict[str, Any]) -> Dict[str, Any]:
        instance_id = payload["InstanceId"]
        self._require_instance(instance_id)
        if len(json.dumps(payload["Items"]).encode()) > MAX_REQUEST_BYTES:
            raise InventoryError("TotalSizeLimitExceededException",
                                 "The size of inventory data has exceeded the total size limit for the resource.")
        items = [self._checked_item(raw) for raw in payload["Items"]]

        custom = set(self._custom_types)
        custom.update(item.type_name for item in items if item.type_name.startswith("Custom:"))
        if len(custom) > MAX_CUSTOM_TYPES:
            raise InventoryError("CustomSchemaCountLimitExceededException",
                                 "You have exceeded the limit for custom schemas. Delete one or more custom "
                                 "schemas and try again.")

        stored = self._items.setdefault(instance_id, {})
        changed = False
        for item in items:
            previous = stored.get(item.type_name)
            if previous and item.content_hash and previous.content_hash == item.content_hash:
                continue  # unchanged content: the service keeps what it has
            stored[item.type_name] = item
            changed = True
        if changed:
            self._custom_types = custom
            self._query_cache.clear()
            self._persist()
        return {}

    def _checked_item(self, raw: Dict[str, Any]) -> StoredItem:
        type_name = raw["TypeName"]
        _check_type_name(type_name)
        content = raw.get("Content") or []
        _check_content(type_name, content)
        size = len(json.dumps(raw).encode())
        if size > MAX_ITEM_BYTES:
            raise InventoryError("ItemSizeLimitExceededException",
                                 f"The inventory item size of {type_name} ({size} bytes) exceeded the limit "
                                 f"of {MAX_ITEM_BYTES} bytes.", TypeName=type_name)
        return StoredItem(type_name=type_name, schema_version=raw["SchemaVersion"],
                          capture_time=raw["CaptureTime"], content_hash=raw.get("ContentHash"),
                          content=tuple(dict(entry) for entry in content))

    # --- GetInventory ----------------------------------------------------------------------------

    def _get(self, payload: Dict[str, Any]) -> Dict[str, Any]:
        if payload.get("Aggregators"):
            raise InventoryError("InvalidAggregatorException",
                                 "The lab's GetInventory does not implement aggregators.")
        filters = [_parse_filter(f, qualified=True) for f in payload.get("Filters") or []]
        result_types = [a["TypeName"] for a in payload.get("ResultAttributes") or []]
        for type_name in result_types:
            if not TYPE_NAME_PATTERN.match(type_name):
                raise InventoryError("InvalidResultAttributeException",
                                     f"The result attribute {type_name} is not valid.")
        shown = result_types[0] if result_types else INSTANCE_INFORMATION

        cache_key = json.dumps([payload.get("Filters"), result_types], sort_keys=True, default=str)
        entities = self._query_cache.get(cache_key)
        if entities is None:
            entities = []
            for instance_id in sorted(self._instances):
                types = self._types_of(instance_id)
                if not all(_matches(types.get(f.type_name), f) for f in filters):
                    continue
                item = types.get(shown)
                if item is None:
                    continue
                entities.append({"Id": instance_id, "Data": {shown: item.result_item()}})
            if len(self._query_cache) >= 64:  # bounded: a test's many one-off queries
                self._query_cache.clear()
            self._query_cache[cache_key] = entities

        page, next_token = _paginate(entities, payload, fingerprint=("GetInventory", payload.get("Filters"),
                                                                    result_types))
        reply: Dict[str, Any] = {"Entities": page}
        if next_token:
            reply["NextToken"] = next_token
        return reply

    # --- ListInventoryEntries --------------------------------------------------------------------

    def _list_entries(self, payload: Dict[str, Any]) -> Dict[str, Any]:
        instance_id, type_name = payload["InstanceId"], payload["TypeName"]
        self._require_instance(instance_id)
        _check_type_name(type_name)
        filters = [_parse_filter(f, qualified=False, type_name=type_name) for f in payload.get("Filters") or []]
        item = self._types_of(instance_id).get(type_name)
        reply: Dict[str, Any] = {"TypeName": type_name, "InstanceId": instance_id}
        if item is None:
            reply["Entries"] = []
            return reply
        entries = [e for e in item.content
                   if all(_matches(StoredItem(type_name, "", "", None, (e,)), f) for f in filters)]
        page, next_token = _paginate(entries, payload, fingerprint=("ListInventoryEntries", instance_id,
                                                                   type_name, payload.get("Filters")))
        reply.update(SchemaVersion=item.schema_version, CaptureTime=item.capture_time, Entries=page)
        if next_token:
            reply["NextToken"] = next_token
        return reply

    # --- helpers ---------------------------------------------------------------------------------

    def _require_instance(self, instance_id: str) -> None:
        if instance_id not in self._instances:
            raise InventoryError("InvalidInstanceId", self.not_managed_message(instance_id))

    def is_registered(self, instance_id: str) -> bool:
        with self._lock:
            return instance_id in self._instances

    def not_managed_message(self, instance_id: str) -> str:
        """What the service says when the node is not a managed instance of the account."""
        return (f"Instance Id {instance_id} is not a managed instance of account {self._account_id}: "
                "SSM Agent is not registered or not running.")

    def _types_of(self, instance_id: str) -> Dict[str, StoredItem]:
        """The instance's stored items plus AWS:InstanceInformation, which SSM keeps for every
        managed instance by itself."""
        types = dict(self._items.get(instance_id, {}))
        instance = self._instances.get(instance_id)
        if instance is not None and INSTANCE_INFORMATION not in types:
            types[INSTANCE_INFORMATION] = _instance_information(instance, self._registered_at[instance_id])
        return types

    def _persist(self) -> None:
        if self._persist_to is None:
            return
        data = {iid: {t: item.result_item() for t, item in types.items()} for iid, types in self._items.items()}
        tmp = self._persist_to.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, self._persist_to)


def _validated_by_service(structure: str, member: str) -> bool:
    """TypeName and Content of an item are checked by the service with its own exceptions."""
    return structure == "InventoryItem" and member in ("TypeName", "Content")


def _check_type_name(type_name: str) -> None:
    if not (1 <= len(type_name) <= MAX_TYPE_NAME) or not TYPE_NAME_PATTERN.match(type_name):
        raise InventoryError("InvalidTypeNameException",
                             f"The parameter type name {type_name!r} is not valid: it must be 1-{MAX_TYPE_NAME} "
                             "characters and start with AWS: or Custom:.")
    if type_name.startswith("AWS:") and type_name not in AWS_TYPES:
        raise InventoryError("InvalidTypeNameException", f"{type_name} is not an inventory type defined by AWS.")
    if type_name == "Custom:":
        raise InventoryError("InvalidTypeNameException", "A custom type name needs a name after Custom:.")


def _check_content(type_name: str, content: Sequence[Any]) -> None:
    def invalid(why: str) -> InventoryError:
        return InventoryError("InvalidItemContentException", f"Content of {type_name} is not valid: {why}",
                              TypeName=type_name)

    if not isinstance(content, list):
        raise invalid("Content must be a list of maps")
    if len(content) > MAX_CONTENT_ENTRIES:
        raise invalid(f"{len(content)} entries, at most {MAX_CONTENT_ENTRIES} are allowed")
    for index, entry in enumerate(content):
        if not isinstance(entry, dict):
            raise invalid(f"entry {index} is not a map")
        if len(entry) > MAX_ATTRIBUTES:
            raise invalid(f"entry {index} has {len(entry)} attributes, at most {MAX_ATTRIBUTES} are allowed")
        for name, value in entry.items():
            if not (1 <= len(name) <= MAX_ATTRIBUTE_NAME):
                raise invalid(f"attribute name {name!r} must be 1-{MAX_ATTRIBUTE_NAME} characters")
            if not isinstance(value, str):
                raise invalid(f"attribute {name} must be a string, not {type(value).__name__}")
            if len(value) > MAX_ATTRIBUTE_VALUE:
                raise invalid(f"attribute {name} is {len(value)} characters, at most {MAX_ATTRIBUTE_VALUE}")
    if content:
        names = set(content[0])
        for entry in content[1:]:
            if set(entry) != names:
                raise InventoryError(
                    "ItemContentMismatchException",
                    f"The inventory item {type_name} has invalid content: every entry must have the same "
                    f"attribute names, spelled and cased alike ({sorted(names)} vs {sorted(entry)}).",
                    TypeName=type_name)


@dataclass(frozen=True)
class _Filter:
    type_name: str
    attribute: str
    operator: str
    values: Tuple[str, ...]


def _parse_filter(raw: Dict[str, Any], qualified: bool, type_name: str = "") -> _Filter:
    """GetInventory keys are ``TypeName.Attribute`` (``Custom:VpceDoctor.Status``); the type name may
    itself hold dots, so the attribute is what follows the last one. ListInventoryEntries filters
    name the attribute of the listed type (a qualified key is accepted too)."""
    key, operator, values = raw["Key"], raw.get("Type") or "Equal", tuple(raw["Values"])
    if "." in key and TYPE_NAME_PATTERN.match(key):
        filter_type, attribute = key.rsplit(".", 1)
    elif not qualified:
        filter_type, attribute = type_name, key
    else:
        raise InventoryError("InvalidFilter", f"The filter key {key} is not valid: use TypeName.Attribute, "
                                              "e.g. AWS:InstanceInformation.InstanceId.")
    if not attribute or (not qualified and filter_type != type_name):
        raise InventoryError("InvalidFilter", f"The filter key {key} is not valid.")
    if operator in ("LessThan", "GreaterThan") and len(values) != 1:
        raise InventoryError("InvalidFilter", f"The {operator} filter takes exactly one value.")
    return _Filter(filter_type, attribute, operator, values)


def _matches(item: Optional[StoredItem], flt: _Filter) -> bool:
    """Does any entry of the item satisfy the filter? (A missing item or attribute never does.)"""
    if item is None:
        return False
    found = [entry[flt.attribute] for entry in item.content if flt.attribute in entry]
    if flt.operator == "Exists":
        return bool(found)
    if flt.operator == "Equal":
        return any(v in flt.values for v in found)
    if flt.operator == "NotEqual":
        return bool(found) and all(v not in flt.values for v in found)
    if flt.operator == "BeginWith":
        return any(v.startswith(prefix) for v in found for prefix in flt.values)
    sign = -1 if flt.operator == "LessThan" else 1
    return any(_compare(v, flt.values[0]) == sign for v in found)


def _compare(left: str, right: str) -> int:
    """Numbers compare as numbers; anything else (ISO-8601 times included) as text."""
    try:
        a, b = float(left), float(right)
    except ValueError:
        a, b = left, right  # type: ignore[assignment]
    return (a > b) - (a < b)


def _paginate(rows: List[Any], payload: Dict[str, Any], fingerprint: Any) -> Tuple[List[Any], Optional[str]]:
    """Slice by MaxResults; the opaque NextToken carries the offset and which query it belongs to."""
    size = payload.get("MaxResults") or DEFAULT_PAGE_SIZE
    query = hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()[:16]
    offset = 0
    token = payload.get("NextToken")
    if token:
        try:
            decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
            offset, token_query = int(decoded["o"]), decoded["q"]
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise InventoryError("InvalidNextToken", "The specified token is not valid.") from None
        if token_query != query or not 0 <= offset <= len(rows):
            raise InventoryError("InvalidNextToken", "The specified token is not valid.")
    page = rows[offset:offset + size]
    end = offset + len(page)
    if end >= len(rows):
        return page, None
    return page, base64.urlsafe_b64encode(json.dumps({"o": end, "q": query}).encode()).decode()


def _instance_information(instance: ManagedInstance, capture_time: str) -> StoredItem:
    entry = {"AgentType": "amazon-ssm-agent", "AgentVersion": "3.3.1142.0", "InstanceId": instance.instance_id,
             "InstanceStatus": instance.status, "PlatformName": "Amazon Linux", "PlatformType": "Linux",
             "PlatformVersion": "2023", "ResourceType": "EC2Instance"}
    if instance.ip:
        entry["IpAddress"] = instance.ip
        entry["ComputerName"] = "ip-{}.ec2.internal".format(instance.ip.replace(".", "-"))
    return StoredItem(INSTANCE_INFORMATION, "1.0", capture_time, None, (entry,))


def _capture_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
