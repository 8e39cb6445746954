"""From instances to resources: which AWS resource is broken, and for how many instances.

Each finding an agent publishes names the resource its cause points at (ResourceType/ResourceId:
an endpoint's ENI, a VPC, a route table, a security group, a role …; checks/resources.py). A root
cause here is one such resource with every instance whose failure points at it, however many
subnets, VPCs or check ids that spans. What is left are the instances whose failures share no
resource (the clock, the agent, the disk: causes local to one instance, or an agent too old to say).

Not root causes: findings blocked by another (counted under their blocker's resource) and causes
that only point at another finding (checks.causes.SYMPTOMS: "the agent cannot reach its endpoints").
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

from .checks.causes import SYMPTOMS
from .fleet_collect import FleetData
from .fleet_model import InstanceReport, Row, epoch, rank, worst

SAMPLE = 5  # instance ids shown per resource


@dataclass
class RootCause:
    account_id: str
    region: str
    resource_type: str
    resource_id: str
    names: Counter = field(default_factory=Counter)
    causes: Counter = field(default_factory=Counter)      # cause code -> findings
    severity: Dict[str, int] = field(default_factory=dict)  # cause code -> worst status rank
    instances: Set[str] = field(default_factory=set)
    vpcs: Set[str] = field(default_factory=set)
    subnets: Set[str] = field(default_factory=set)
    zones: Set[str] = field(default_factory=set)
    checks: Counter = field(default_factory=Counter)
    blocked: int = 0          # findings not run because of this
    stale: Set[str] = field(default_factory=set)  # instances whose last report is older than --stale-after
    status: str = "OK"
    since: str = ""           # the earliest StatusSince among its findings
    fix: str = ""
    cause: str = ""

    @property
    def key(self) -> Tuple[str, str, str, str]:
        return (self.account_id, self.region, self.resource_type, self.resource_id)

    @property
    def cause_code(self) -> str:
        """The cause most findings name; on a tie, the one of the worst findings."""
        if not self.causes:
            return ""
        return max(self.causes, key=lambda c: (self.causes[c], self.severity.get(c, 0)))

    @property
    def name(self) -> str:
        """The most specific name an instance gave (the vpce/eni/rtb id when one could call EC2)."""
        named = [(len(n), c, n) for n, c in self.names.items() if n]
        return max(named)[2] if named else ""

    def sample(self, n: int = SAMPLE) -> List[str]:
        return sorted(self.instances)[:n]

    def add(self, row: Row) -> None:
        self.names[row.resource_name] += 1
        self.causes[row.cause_code or "-"] += 1
        self.severity[row.cause_code or "-"] = max(self.severity.get(row.cause_code or "-", 0), rank(row.status))
        self.instances.add(row.instance_id)
        for values, value in ((self.vpcs, row.vpc_id), (self.subnets, row.subnet_id), (self.zones, row.availability_zone)):
            if value:
                values.add(value)
        self.checks[row.check_id] += 1
        if rank(row.status) > rank(self.status):
            self.status = row.status
        if row.status_since and (not self.since or epoch(row.status_since) < epoch(self.since)):
            self.since = row.status_since
        # One fix for the resource: prefer a text whose CLI command names every id (no <placeholder>).
        if row.cause_code == self.cause_code and (not self.fix or ("<" in self.fix and "<" not in row.fix)):
            self.fix, self.cause = row.fix, row.cause

    def to_dict(self) -> Dict[str, Any]:
        return {"account_id": self.account_id, "region": self.region, "resource_type": self.resource_type,
                "resource_id": self.resource_id, "resource_name": self.name, "status": self.status,
                "cause_code": self.cause_code, "cause_codes": dict(self.causes), "cause": self.cause, "fix": self.fix,
                "instance_count": len(self.instances), "instances_sample": self.sample(),
                "vpcs": sorted(self.vpcs), "subnets": sorted(self.subnets), "availability_zones": sorted(self.zones),
                "checks": dict(self.checks), "blocked_findings": self.blocked, "since": self.since,
                "stale_instances": len(self.stale)}


@dataclass
class Unshared:
    """An instance whose failures (or some of them) point at no resource it shares."""
    report: InstanceReport
    rows: List[Row]
    stale: bool = False

    @property
    def status(self) -> str:
        return worst(r.status for r in self.rows)

    def to_dict(self) -> Dict[str, Any]:
        first = self.rows[0]
        return {"instance_id": self.report.instance_id, "account_id": self.report.account_id,
                "region": self.report.region, "vpc_id": first.vpc_id, "subnet_id": first.subnet_id,
                "status": self.status, "agent_version": self.report.agent_version, "old_agent": self.report.old_agent, "stale": self.stale,
                "findings": [{"check_id": r.check_id, "status": r.status, "cause_code": r.cause_code,
                              "cause": r.cause, "fix": r.fix, "since": r.status_since} for r in self.rows]}


@dataclass
class Correlation:
    root_causes: List[RootCause]
    unshared: List[Unshared]


def _is_symptom(row: Row) -> bool:
    return bool(row.blocked_by) or (row.cause_code in SYMPTOMS)


def _key(row: Row, report: InstanceReport) -> Tuple[str, str, str, str]:
    return (row.account_id or report.account_id, row.region or report.region, row.resource_type, row.resource_id)


def correlate(data: FleetData, reports: Optional[Iterable[InstanceReport]] = None,
              stale_ids: Optional[Set[str]] = None) -> Correlation:
    """Group the failing findings by the resource they point at; root causes first (most instances,
    then the worst status), then the instances whose failures share no resource. A stale instance's
    last failures count too (its silence may be the same fault); each group says how many are stale."""
    stale_ids = stale_ids or set()
    groups: Dict[Tuple[str, str, str, str], RootCause] = {}
    unshared: List[Unshared] = []
    for report in reports if reports is not None else data.reports.values():
        failing = [r for r in report.rows if r.failing]
        by_id = {r.check_id: r for r in failing}
        own: List[Row] = []
        keys: Set[Tuple[str, str, str, str]] = set()
        for row in failing:
            if _is_symptom(row):
                continue
            if row.shared_resource:
                key = _key(row, report)
                group = groups.get(key)
                if group is None:
                    group = groups[key] = RootCause(*key)
                group.add(row)
                if report.instance_id in stale_ids:
                    group.stale.add(report.instance_id)
                keys.add(key)
            else:
                own.append(row)
        for row in failing:  # a blocked finding counts under its blocker's resource
            blocker = by_id.get(row.blocked_by) if row.blocked_by else None
            if blocker is not None and blocker.shared_resource and not _is_symptom(blocker):
                groups[_key(blocker, report)].blocked += 1
        # A symptom with nothing behind it in the same report is the instance's own to explain.
        if not own and not keys:
            own = [r for r in failing if r.cause_code in SYMPTOMS and not r.blocked_by]
            if not own:
                own = [r for r in failing if r.blocked_by and r.blocked_by not in by_id]
        if own:
            unshared.append(Unshared(report, own, report.instance_id in stale_ids))
    roots = sorted(groups.values(), key=lambda g: (-len(g.instances), -rank(g.status), g.key))
    unshared.sort(key=lambda u: (-rank(u.status), u.report.instance_id))
    return Correlation(roots, unshared)


def by_cause(data: FleetData) -> List[Dict[str, Any]]:
    """Instances, findings and resources per cause code (blocked findings left out), most instances first."""
    instances: Dict[str, Set[str]] = defaultdict(set)
    findings: Counter = Counter()
    resources: Dict[str, Set[Tuple[str, str]]] = defaultdict(set)
    for report in data.reports.values():
        for row in report.rows:
            if not row.failing or row.blocked_by:
                continue
            code = row.cause_code or "-"
            instances[code].add(report.instance_id)
            findings[code] += 1
            if row.shared_resource:
                resources[code].add((row.resource_type, row.resource_id))
    return [{"cause_code": code, "instances": len(ids), "findings": findings[code], "resources": len(resources[code])}
            for code, ids in sorted(instances.items(), key=lambda kv: (-len(kv[1]), kv[0]))]
