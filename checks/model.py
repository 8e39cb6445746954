"""Core types shared by every probe and by the runtime.

The check contract, in one place:

* A check is a ``Check``: an id, the ids of the checks whose data it needs, a per-check timeout
  and a plain function ``run(ctx) -> Outcome``.
* ``run`` returns an ``Outcome``: one or more ``Finding`` s (the first one carries the check's own id)
  and ``data`` for dependents. ``data=None`` means "I could not produce what dependents need": the
  runner then skips every dependent as "blocked by <id>".
* ``run`` never needs to catch its own bugs: the runner turns an exception into an UNKNOWN finding
  with the traceback in its evidence. ``run`` must bound every network wait by ``ctx.budget(...)``.
* A missing instance fact (IMDS down and not set in the config) raises ``MissingFact`` from
  ``ctx.facts.require(...)``; the runner reports it as "blocked by imds" with IMDS's own cause.
* Checks never import the runtime (``vpce_doctor.cli``, daemon, publishers).
"""
from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple


class Status(IntEnum):
    """Nagios / Datadog numbers: the worst status is the exit code."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


@dataclass(frozen=True)
class Finding:
    """One result. ``cause_code`` is a stable key of ``checks.causes.CAUSES``; ``cause`` and ``fix``
    are the human text (the fix includes an exact AWS CLI command when resource ids are known)."""

    id: str
    status: Status
    summary: str
    cause_code: Optional[str] = None
    cause: Optional[str] = None
    fix: Optional[str] = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    blocked_by: Optional[str] = None
    # False: the check ran but could not prove its point (no EC2 API to confirm an ENI's identity,
    # no test object configured, no Date header to compare the clock with). The status stays OK for
    # the exit code (``--strict`` makes it count); every format shows the state as UNVERIFIED.
    verified: bool = True
    # The AWS resource the cause points at, {"type", "id", "name"} (checks/resources.py, from explain()).
    # A finding blocked by another has none of its own: its blocker's resource is the one to fix.
    resource: Optional[Mapping[str, str]] = None

    def __post_init__(self) -> None:
        if self.blocked_by is not None and self.resource is not None:
            object.__setattr__(self, "resource", None)

    @property
    def state(self) -> str:
        """The status as shown: OK, WARNING, CRITICAL, UNKNOWN, or UNVERIFIED (OK but not proven)."""
        return "UNVERIFIED" if self.status == Status.OK and not self.verified else self.status.name

    def to_dict(self) -> Dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status.name,
            "verified": self.verified,
            "summary": self.summary,
            "cause_code": self.cause_code,
            "cause": self.cause,
            "fix": self.fix,
            "evidence": dict(self.evidence),
            "duration_s": round(self.duration_s, 4),
            "blocked_by": self.blocked_by,
            "resource": dict(self.resource) if self.resource else None,
        }


@dataclass(frozen=True)
class Outcome:
    findings: Tuple[Finding, ...]
    data: Any = None


class MissingFact(Exception):
    """A check needs an instance fact that neither IMDS nor the config provided."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


@dataclass(frozen=True)
class Facts:
    """What the instance knows about itself (IMDSv2, each field overridable in the config).

    ``sources`` maps a field name to "imds" or "config". ``imds_*`` describe how IMDS answered:
    ``imds_state`` is one of ok | disabled | unreachable | timeout | error | skipped.
    """

    region: Optional[str] = None
    partition: Optional[str] = None
    domain: Optional[str] = None
    instance_id: Optional[str] = None
    mac: Optional[str] = None
    vpc_id: Optional[str] = None
    subnet_id: Optional[str] = None
    vpc_cidr: Optional[str] = None  # the primary CIDR (the resolver is its base + 2)
    vpc_cidrs: Tuple[str, ...] = ()
    subnet_cidr: Optional[str] = None
    local_ipv4: Optional[str] = None
    public_ipv4: Optional[str] = None
    instance_profile_arn: Optional[str] = None
    security_group_ids: Tuple[str, ...] = ()
    availability_zone: Optional[str] = None  # IMDS placement/availability-zone
    account_id: Optional[str] = None  # from the instance profile ARN (iam/info); None without a profile
    # IPv6 (checks/ipv6.py): the primary ENI's addresses and the CIDRs IMDS gives; () = no IPv6.
    ipv6s: Tuple[str, ...] = ()
    vpc_ipv6_cidrs: Tuple[str, ...] = ()
    subnet_ipv6_cidrs: Tuple[str, ...] = ()
    imds_endpoint: Optional[str] = None  # the IMDS URL that answered (IPv6 after an IPv4 failure)
    # The role credentials IMDS hands out (agent/imds.role_credentials): a summary, never the keys.
    credentials: Mapping[str, Any] = field(default_factory=dict)
    imds_state: str = "skipped"
    imds_cause_code: Optional[str] = None
    imds_error: Optional[str] = None
    sources: Mapping[str, str] = field(default_factory=dict)

    def require(self, name: str) -> Any:
        value = getattr(self, name)
        if value in (None, (), ""):
            raise MissingFact(name)
        return value

    def networks(self) -> Tuple[ipaddress.IPv4Network, ...]:
        """All VPC CIDRs as networks (primary first); raises MissingFact when unknown."""
        cidrs = self.vpc_cidrs or ((self.vpc_cidr,) if self.vpc_cidr else ())
        if not cidrs:
            raise MissingFact("vpc_cidrs")
        v6 = tuple(ipaddress.ip_network(c, strict=False) for c in self.vpc_ipv6_cidrs)  # AAAA answers too
        return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs) + v6  # type: ignore[misc,return-value]

    @property
    def ipv6_only(self) -> bool:
        """IPv6 addresses and no IPv4 on the ENI: an IPv6-only subnet (Nitro)."""
        return bool(self.ipv6s) and not self.local_ipv4

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else (
                dict(value) if isinstance(value, Mapping) else value)
        return out


@dataclass(frozen=True)
class Target:
    host: str
    port: int


@dataclass(frozen=True)
class Settings:
    """The check-relevant part of the config (validated by ``vpce_doctor.config``)."""

    services: Tuple[str, ...] = ("ssm", "ec2messages", "ssmmessages")
    fips: bool = False
    resolver: Optional[str] = None  # default: primary CIDR base + 2, then 169.254.169.253
    dns_timeout_s: float = 2.0
    connect_timeout_s: float = 2.0
    tls_timeout_s: float = 3.0
    api_timeout_s: float = 3.0
    egress_targets: Tuple[Target, ...] = (Target("google.com", 443),)
    egress_timeout_s: float = 1.0  # one SYN's wait: Linux retransmits it at 1 s (TCP_TIMEOUT_INIT)
    s3_bucket: Optional[str] = None
    s3_key: Optional[str] = None
    s3_get_object: bool = False
    # config dynamodb: (checks/dynamodb.py): None = not configured (checked only when the EC2 view shows a
    # DynamoDB gateway endpoint); "" = configured without a table (ListTables); else the table's name or ARN.
    dynamodb_table: Optional[str] = None
    ca_bundle: Optional[str] = None  # extra CA bundle; AWS_CA_BUNDLE is honoured too
    check_ssm_agent: bool = True
    check_ec2_api: bool = True
    # AWS_ENDPOINT_URL* / endpoint_url in AWS config files: ignored unless the config says so.
    use_configured_endpoint_urls: bool = False
    # config checks.overrides: (id or prefix, enabled, severity cap or None), applied by the runtime.
    overrides: Tuple[Tuple[str, bool, Optional[str]], ...] = ()
    # The SSM agent's files (config ssm_agent:, checks/ssmagent.py); defaults are the agent's own paths.
    ssm_agent_log_dir: str = "/var/log/amazon/ssm"
    ssm_agent_data_dir: str = "/var/lib/amazon/ssm"
    ssm_agent_config_file: str = "/etc/amazon/ssm/amazon-ssm-agent.json"
    ssm_agent_binaries: Tuple[str, ...] = ("/usr/bin/amazon-ssm-agent", "/snap/amazon-ssm-agent/current/amazon-ssm-agent")
    ssm_agent_dropin_dirs: Tuple[str, ...] = ("/etc/systemd/system/amazon-ssm-agent.service.d",
                                              "/etc/systemd/system/snap.amazon-ssm-agent.amazon-ssm-agent.service.d")


class Context:
    """What a check sees: facts, settings, data of the checks it needs, and its time budget."""

    def __init__(self, facts: Facts, settings: Settings, data: Mapping[str, Any],
                 deadline: float, check_timeout_s: float) -> None:
        self.facts = facts
        self.settings = settings
        self._data = data
        self._deadline = min(deadline, time.monotonic() + check_timeout_s)

    def data(self, check_id: str) -> Any:
        """The ``Outcome.data`` of a check listed in ``needs`` (never None: the runner blocks first)
        or in ``wants`` (None when it produced none or was not run)."""
        return self._data.get(check_id)

    def ran(self, check_id: str) -> bool:
        """Whether a needed or wanted check ran in this run (it may still have produced no data)."""
        return check_id in self._data

    def remaining(self) -> float:
        return max(0.0, self._deadline - time.monotonic())

    def budget(self, wanted: float) -> float:
        """A timeout for one network wait: ``wanted`` but never past the check's deadline."""
        return max(0.05, min(wanted, self.remaining()))


@dataclass(frozen=True)
class Check:
    """``needs``: checks whose data this one cannot do without (no data: "blocked by").
    ``wants``: checks it runs after and reads when they have data (``ctx.data`` gives None when
    they produced none) — for a sharper cause, never a reason to skip."""

    id: str
    run: Callable[[Context], Outcome]
    needs: Tuple[str, ...] = ()
    timeout_s: float = 8.0
    wants: Tuple[str, ...] = ()


def outcome(*findings: Finding, data: Any = None) -> Outcome:
    return Outcome(tuple(findings), data)


def worst(statuses: Sequence[Status]) -> Status:
    return max(statuses, default=Status.OK)
