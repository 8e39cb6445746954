"""The scenario key ``ssm_agent``: the old strings (running | stopped | not_connected) or a mapping
``{state, version, user, environment, log, disk_full, config}`` (docs in tests/lab/SCENARIOS.md)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional

STATES = ("running", "stopped", "not_connected")
# What the agent's log says (tests/lab/agent_files.py writes the real agent's lines for each).
LOG_CONDITIONS = ("healthy", "hibernating", "access_denied", "no_space", "proxy", "x509", "expired_token",
                  "clock", "none")
DEFAULT_VERSION = "3.3.987.0"  # the newest in github:aws/amazon-ssm-agent RELEASENOTES.md when written
_VERSION_RE = re.compile(r"^\d{1,5}(\.\d{1,5}){3}$")
_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_ENV_NAMES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy",
              "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE")  # IPv6-only subnets: IMDS at [fd00:ec2::254]


@dataclass(frozen=True)
class AgentSpec:
    state: str = "running"
    version: Optional[str] = DEFAULT_VERSION  # None: no binary (the check falls back to the log)
    user: str = "root"
    environment: Mapping[str, str] = field(default_factory=dict)  # in its process AND its unit drop-in
    log: str = "healthy"
    disk_full: bool = False
    config: Optional[Mapping[str, Any]] = None  # amazon-ssm-agent.json; None: no file

    def __eq__(self, other: object) -> bool:  # `sc.ssm_agent == "running"` keeps working
        if isinstance(other, str):
            return self.state == other
        return isinstance(other, AgentSpec) and self.__dict__ == other.__dict__

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = None  # type: ignore[assignment]


def parse(value: Any, fail: Callable[[str, str], None]) -> AgentSpec:
    """``fail(subkey, problem)`` raises the scenario's one-line error."""
    if value is None:
        return AgentSpec()
    if isinstance(value, str):
        if value not in STATES:
            fail("", f"expected one of {', '.join(STATES)} or a mapping, got {value!r}")
        return AgentSpec(state=value)
    if not isinstance(value, dict):
        fail("", f"expected one of {', '.join(STATES)} or a mapping, got {value!r}"[:120])
    known = ("state", "version", "user", "environment", "log", "disk_full", "config")
    for key in value:
        if key not in known:
            fail(str(key), f"unknown key (expected one of: {', '.join(known)})")
    state = value.get("state", "running")
    if state not in STATES:
        fail("state", f"expected one of {', '.join(STATES)}, got {state!r}")
    version = value.get("version", DEFAULT_VERSION)
    if version is not None and (not isinstance(version, str) or not _VERSION_RE.match(version)):
        fail("version", f"expected a quoted version like \"3.3.987.0\" (or null: no binary), got {version!r}")
    user = value.get("user", "root")
    if not isinstance(user, str) or not _USER_RE.match(user):
        fail("user", f"expected a user name like root or nobody, got {user!r}")
    env = value.get("environment", {}) or {}
    if not isinstance(env, dict) or any(k not in _ENV_NAMES or not isinstance(v, str) for k, v in env.items()):
        fail("environment", f"expected a mapping of {', '.join(_ENV_NAMES)} to strings, got {env!r}"[:160])
    log = value.get("log", "healthy")
    if log not in LOG_CONDITIONS:
        fail("log", f"expected one of {', '.join(LOG_CONDITIONS)}, got {log!r}")
    disk_full = value.get("disk_full", False)
    if not isinstance(disk_full, bool):
        fail("disk_full", f"expected true or false, got {disk_full!r}")
    config = value.get("config")
    if config is not None and not isinstance(config, dict):
        fail("config", f"expected a mapping (the content of amazon-ssm-agent.json), got {config!r}"[:120])
    env_copy: Dict[str, str] = dict(env)
    return AgentSpec(state=state, version=version, user=user, environment=env_copy, log=log, disk_full=disk_full,
                     config=config)
