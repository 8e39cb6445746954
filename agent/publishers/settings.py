"""What the ``publish:`` section of the config says, as one frozen value.

The config file's schema (``vpce_doctor.config``) owns parsing; the value checks for the
publish-specific rules (publisher names, inventory TypeName, CloudWatch namespace, bind address)
live here, next to the code that depends on them, and raise ``InvalidSetting`` with the same
``what``/``expected`` pair as the config's own ``Invalid``.
"""
from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Tuple

from ..errors import ConfigError, show

PUBLISHER_NAMES = ("last_report", "inventory", "inventory_file", "cloudwatch", "http")
DEFAULT_PUBLISHERS = ("last_report", "inventory", "inventory_file")  # cloudwatch and http: opt-in
DEFAULT_TYPE_NAME = "Custom:VpceDoctor"
VERDICT_SUFFIX = "Verdict"  # the verdicts go to <type_name>Verdict: at most two custom types
# PutInventory TypeName: 1-100 chars, ^(AWS|Custom):.*$ (AWS-FACTS.md; botocore ssm InventoryItem).
# The verdict type appends VERDICT_SUFFIX, so the configured name must leave room for it.
MAX_TYPE_NAME = 100 - len(VERDICT_SUFFIX)
# CloudWatch Namespace: 1-255 chars, pattern "[^:].*" (botocore cloudwatch model); "AWS/" is reserved.
MAX_NAMESPACE = 255


class InvalidSetting(ValueError):
    """A publish value is wrong: ``what`` says how, ``expected`` what would be right (one line each)."""

    def __init__(self, what: str, expected: str) -> None:
        super().__init__(f"{what}; expected {expected}")
        self.what = what
        self.expected = expected


def publisher_name(value: Any) -> str:
    expected = "one of " + ", ".join(PUBLISHER_NAMES)
    if not isinstance(value, str) or value not in PUBLISHER_NAMES:
        raise InvalidSetting(f"{show(value)} is not a publisher", expected)
    return value


def inventory_type_name(value: Any) -> str:
    expected = f'a custom inventory type like "{DEFAULT_TYPE_NAME}": "Custom:" and a name, at most {MAX_TYPE_NAME} characters'
    if not isinstance(value, str):
        raise InvalidSetting(f"{show(value)} is not a string", expected)
    if not value.startswith("Custom:") or len(value) == len("Custom:"):
        raise InvalidSetting(f"{show(value)} does not start with Custom: and a name", expected)
    if len(value) > MAX_TYPE_NAME:
        raise InvalidSetting(f"{show(value)} is {len(value)} characters long (the verdict type adds "
                             f"{VERDICT_SUFFIX!r})", expected)
    if any(ord(c) < 0x20 or c in "/\\" for c in value):  # it also names the inventory file
        raise InvalidSetting(f"{show(value)} holds a control character or a slash", expected)
    return value


def cloudwatch_namespace(value: Any) -> str:
    expected = f"a CloudWatch namespace like VpceDoctor: 1-{MAX_NAMESPACE} characters, not starting with ':' or 'AWS/'"
    if not isinstance(value, str) or not value:
        raise InvalidSetting(f"{show(value)} is not a non-empty string", expected)
    if len(value) > MAX_NAMESPACE or value.startswith(":") or value.startswith("AWS/"):
        raise InvalidSetting(f"{show(value)} is not a usable namespace", expected)
    return value


def bind_address(value: Any) -> str:
    expected = "an IP address to listen on, like 127.0.0.1 (the default) or ::1"
    if not isinstance(value, str):
        raise InvalidSetting(f"{show(value)} is not a string", expected)
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise InvalidSetting(f"{show(value)} is not an IP address", expected) from None


def port(value: Any) -> int:
    expected = "a TCP port 1-65535"
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidSetting(f"{show(value)} is not a port", expected)
    return value


def timeout_s(value: Any) -> float:
    expected = "a number of seconds, 0 < s <= 60"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 < value <= 60:
        raise InvalidSetting(f"{show(value)} is not a timeout", expected)
    return float(value)


@dataclass(frozen=True)
class PublishSettings:
    """Exactly the keys of the ``publish:`` section (defaults = the documented defaults)."""

    publishers: Tuple[str, ...] = DEFAULT_PUBLISHERS
    inventory_type_name: str = DEFAULT_TYPE_NAME
    inventory_timeout_s: float = 5.0
    inventory_file_root: str = "/var/lib/amazon/ssm"
    inventory_file_timeout_s: float = 2.0
    cloudwatch_namespace: str = "VpceDoctor"
    cloudwatch_timeout_s: float = 5.0
    http_bind: str = "127.0.0.1"
    http_port: int = 9464  # 0 (any free port) is accepted here for tests; the config file wants 1-65535
    last_report_path: Optional[str] = None  # None: <state_dir>/last-report.json

    @property
    def verdict_type_name(self) -> str:
        return self.inventory_type_name + VERDICT_SUFFIX

    @classmethod
    def from_values(cls, publish: Optional[Mapping[str, Any]], where: str = "publish") -> "PublishSettings":
        """Build from the ``publish:`` mapping as written in YAML (nested sections, keys optional);
        a bad value raises ConfigError "<where>.<key>: <what>; expected <what>"."""
        p = dict(publish or {})
        d = cls()

        def get(section: str, key: str, default: Any, check: Any) -> Any:
            sub = p.get(section) or {}
            if not isinstance(sub, Mapping):
                raise ConfigError(f"{where}.{section}: {sub!r} is not a mapping; expected a mapping")
            if key not in sub or sub[key] is None:
                return default
            try:
                return check(sub[key])
            except InvalidSetting as exc:
                raise ConfigError(f"{where}.{section}.{key}: {exc.what}; expected {exc.expected}") from None

        names = p.get("publishers")
        publishers = d.publishers
        if names is not None:
            if not isinstance(names, (list, tuple)):
                raise ConfigError(f"{where}.publishers: {names!r} is not a list; expected a list like "
                                  f"[{', '.join(DEFAULT_PUBLISHERS)}]")
            checked = []
            for i, name in enumerate(names):
                try:
                    checked.append(publisher_name(name))
                except InvalidSetting as exc:
                    raise ConfigError(f"{where}.publishers[{i}]: {exc.what}; expected {exc.expected}") from None
            publishers = tuple(dict.fromkeys(checked))  # each publisher once, in the given order
        path = get("last_report", "path", None, _absolute_path)
        return cls(
            publishers=publishers,
            inventory_type_name=get("inventory", "type_name", d.inventory_type_name, inventory_type_name),
            inventory_timeout_s=get("inventory", "timeout_s", d.inventory_timeout_s, timeout_s),
            inventory_file_root=get("inventory_file", "root", d.inventory_file_root, _absolute_path),
            inventory_file_timeout_s=get("inventory_file", "timeout_s", d.inventory_file_timeout_s, timeout_s),
            cloudwatch_namespace=get("cloudwatch", "namespace", d.cloudwatch_namespace, cloudwatch_namespace),
            cloudwatch_timeout_s=get("cloudwatch", "timeout_s", d.cloudwatch_timeout_s, timeout_s),
            http_bind=get("http", "bind", d.http_bind, bind_address),
            http_port=get("http", "port", d.http_port, port),
            last_report_path=path,
        )


def _absolute_path(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/") or "\x00" in value:
        raise InvalidSetting(f"{show(value)} is not an absolute path", "an absolute path like /var/lib/vpce-doctor/x")
    return value


def safe_file_stem(type_name: str) -> str:
    """The inventory file's name for a type: ``Custom:VpceDoctor`` → ``VpceDoctor``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", type_name.split(":", 1)[1])
