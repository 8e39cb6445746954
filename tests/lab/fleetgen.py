"""The test fleet of issue 13: 10,000 instances in 2 accounts x 3 regions with 5 planted resource faults.

    python -m tests.lab.fleetgen --size 10000 --out fleet.jsonl      # seed file; ground truth on stdout

Topology per (account, region): 3 VPCs, each with 2-3 subnets (one AZ each) and two route tables (the
first shared by two subnets), two instance security groups (each instance has one), the interface
endpoints ssm / ec2messages / ssmmessages with one ENI in every subnet's AZ, the S3 gateway endpoint;
two instance roles per (account, region).

What each instance publishes is made by the AGENT's code, never written here: ``checks.model`` Findings
with ``checks.causes.explain`` (cause, fix and the resource it points at), blocked findings through the
runner's own ``_blocked``, ``report.Report``/``verdicts`` and ``publishers.inventory.build_inventory``.
Only the observation (which check failed, and with what parameters) is chosen here, as the checks
would make it (checks/endpoints.py, s3.py, gateway_path.py, ssmapi.py).

Five resource faults, each on exactly the instances that share the resource (``Fleet.faults``):
one endpoint ENI (reach.ssm.<ip> times out in every instance of one VPC), one VPC's enableDnsHostnames
(dns.* CRITICAL, eni.*/reach.* blocked by them), one route table (s3.route and s3.api: the S3 route
missing, for the subnets that use it), one security group (no outbound 443), one role (its identity
policy denies the SSM API). Noise on other instances, sharing no resource: ~1% instance-local faults
(clock skew, agent not running, disk full), ~1% stale (checked 3 days ago), ~0.5% silent (managed, no
inventory), a few terminated, ~1% from an older agent (the 9 original attributes, an older version).
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import random
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

ACCOUNTS = ("111111111111", "222222222222")
REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2")
SERVICES = ("ssm", "ec2messages", "ssmmessages")
TYPE_NAME = "Custom:VpceDoctor"
VERDICT_TYPE_NAME = "Custom:VpceDoctorVerdict"
OLD_ATTRIBUTES = ("CheckId", "Status", "Summary", "Cause", "CauseCode", "Fix", "Evidence", "CheckedAt", "AgentVersion")
OLD_AGENT_VERSION = "0.0.9"
S3_PREFIX_LISTS = {"us-east-1": "pl-63a5400a", "eu-west-1": "pl-6da54004", "ap-southeast-2": "pl-6ca54005"}
STALE_S = 3 * 86400
VPCS_PER_PARTITION = 3
DEFAULT_SIZE = 10_000


@dataclass(frozen=True)
class Subnet:
    subnet_id: str
    az: str
    cidr: str
    route_table_id: str


@dataclass(frozen=True)
class Vpc:
    account_id: str
    region: str
    vpc_id: str
    cidr: str
    subnets: Tuple[Subnet, ...]
    sg_ids: Tuple[str, ...]                               # instance security groups
    endpoints: Dict[str, Tuple[str, Tuple[Tuple[str, str, str], ...]]]  # svc -> (vpce id, ((az, eni id, ip), ...))
    s3_endpoint_id: str

    def enis(self, service: str) -> Tuple[Tuple[str, str, str], ...]:
        return self.endpoints[service][1]


@dataclass(frozen=True)
class Instance:
    account_id: str
    region: str
    instance_id: str
    ip: str
    vpc: Vpc
    subnet: Subnet
    sg_id: str
    role: str
    fault: str = ""          # one of FAULTS, or ""
    noise: str = ""          # local:<code> | stale | silent | terminated | old_agent | ""

    @property
    def publishes(self) -> bool:
        return self.noise not in ("silent", "terminated")


@dataclass(frozen=True)
class PlantedFault:
    name: str                # eni | vpc_dns | route_table | security_group | role
    account_id: str
    region: str
    resource_type: str       # the contract's CauseResourceType
    resource_id: str         # the contract's CauseResourceId
    cause_code: str
    instance_ids: Tuple[str, ...]

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "account_id": self.account_id, "region": self.region,
                "resource_type": self.resource_type, "resource_id": self.resource_id,
                "cause_code": self.cause_code, "instances": len(self.instance_ids)}


FAULTS = ("eni", "vpc_dns", "route_table", "security_group", "role")
LOCAL_FAULTS = ("clock_skew", "ssm_agent_not_running", "ssm_agent_disk_full")


@dataclass
class Fleet:
    instances: List[Instance]
    vpcs: List[Vpc]
    faults: List[PlantedFault]
    now: float
    _cache: Dict[Any, Optional[Dict[str, Dict[str, Any]]]] = field(default_factory=dict, repr=False)

    def items(self, inst: Instance) -> Dict[str, Dict[str, Any]]:
        """{TypeName: InventoryResultItem} as SSM stores what the instance's daemon put; {} when silent."""
        if not inst.publishes:
            return {}
        # Everything but instance-local noise is the same for every instance of one shape: build once.
        key = None if inst.noise.startswith("local:") else (inst.account_id, inst.region, inst.vpc.vpc_id,
                                                             inst.subnet.subnet_id, inst.sg_id, inst.role,
                                                             inst.fault, inst.noise)
        cached = self._cache.get(key) if key is not None else None
        if cached is not None:
            return cached
        built = _inventory(inst, self.now)
        # A shape whose content names the instance itself (a cause local to it) is built per instance.
        if key is not None and key not in self._cache:
            self._cache[key] = None if inst.instance_id in json.dumps(built) else built
        return built

    def findings(self, inst: Instance) -> List[Any]:
        """The agent Findings behind what ``inst`` publishes (explain() ran as the runner runs it)."""
        with _known(_facts(inst)):
            return _findings(inst)

    def records(self) -> Iterator[Tuple[str, str, str, Dict[str, Dict[str, Any]]]]:
        """(account_id, region, instance_id, items) for every instance (the sync writer's input)."""
        for inst in self.instances:
            yield inst.account_id, inst.region, inst.instance_id, self.items(inst)

    def sync_records(self) -> Iterator[Tuple[str, str, str, Dict[str, Dict[str, Any]]]]:
        """As ``records``, with the AWS:InstanceInformation item too: what a Resource Data Sync holds for
        every managed instance, silent and terminated ones included."""
        for inst in self.instances:
            items = dict(self.items(inst))
            items["AWS:InstanceInformation"] = self.instance_information(inst)
            yield inst.account_id, inst.region, inst.instance_id, items

    def instance_information(self, inst: Instance) -> Dict[str, Any]:
        """The AWS:InstanceInformation item SSM keeps for the instance (the stand-in's own shape)."""
        from datetime import datetime, timezone

        from tests.lab.aws.inventory import ManagedInstance, _capture_time, _instance_information

        managed = ManagedInstance(inst.instance_id, inst.ip, "Terminated" if inst.noise == "terminated" else "Active")
        registered = _capture_time(datetime.fromtimestamp(self.now - 30 * 86400, timezone.utc))
        return _instance_information(managed, registered).result_item()

    def seed_lines(self) -> Iterator[str]:
        """The stand-in's seed file (tests/lab/aws/ssm_fleet_standin.py), one JSON line per instance."""
        for inst in self.instances:
            record: Dict[str, Any] = {"account_id": inst.account_id, "region": inst.region,
                                      "instance_id": inst.instance_id, "ip": inst.ip, "items": self.items(inst)}
            if inst.noise == "terminated":
                record["terminated"] = True
            yield json.dumps(record, separators=(",", ":"))

    def write_seed(self, path: Path) -> Path:
        with path.open("w", encoding="utf-8") as out:
            for line in self.seed_lines():
                out.write(line + "\n")
        return path

    def ground_truth(self) -> Dict[str, Any]:
        counts: Dict[str, int] = {}
        for inst in self.instances:
            kind = inst.noise.split(":")[0] or "none"
            counts[kind] = counts.get(kind, 0) + 1
        return {"instances": len(self.instances), "faults": [f.to_dict() for f in self.faults], "noise": counts,
                "partitions": sorted({f"{i.account_id}/{i.region}" for i in self.instances})}


# --- topology ------------------------------------------------------------------------------------------

def _hex_id(prefix: str, *parts: int) -> str:
    """A well-formed 17-hex-digit id that says where it belongs (account, region, vpc, n)."""
    return prefix + "-0" + "".join(f"{p:04x}" for p in parts).rjust(16, "0")[-16:]


def _topology() -> List[Vpc]:
    vpcs = []
    for a, account in enumerate(ACCOUNTS):
        for r, region in enumerate(REGIONS):
            for v in range(VPCS_PER_PARTITION):
                tag = (a + 1, r + 1, v + 1)
                base = ipaddress.ip_network(f"10.{(a * 3 + r) * 16 + v}.0.0/16")
                n_subnets = 3 if v != 1 else 2
                tables = (_hex_id("rtb", *tag, 1), _hex_id("rtb", *tag, 2))
                subnets = tuple(Subnet(_hex_id("subnet", *tag, s + 1), f"{region}{'abc'[s]}",
                                       str(list(base.subnets(new_prefix=20))[s]), tables[0 if s < 2 else 1])
                                for s in range(n_subnets))
                endpoints = {}
                for k, svc in enumerate(SERVICES):
                    enis = tuple((sn.az, _hex_id("eni", *tag, k * 8 + s + 1),
                                  str(ipaddress.ip_network(sn.cidr)[10 + k]))
                                 for s, sn in enumerate(subnets))
                    endpoints[svc] = (_hex_id("vpce", *tag, k + 1), enis)
                vpcs.append(Vpc(account, region, _hex_id("vpc", *tag), str(base), subnets,
                                (_hex_id("sg", *tag, 1), _hex_id("sg", *tag, 2)), endpoints, _hex_id("vpce", *tag, 9)))
    return vpcs


def _where(vpcs: Sequence[Vpc], account: str, region: str, index: int) -> Vpc:
    return [v for v in vpcs if v.account_id == account and v.region == region][index]


def generate(size: int = DEFAULT_SIZE, seed: int = 13, now: Optional[float] = None) -> Fleet:
    """The fleet: instances spread over every partition, VPC and subnet; faults and noise planted."""
    rng = random.Random(seed)
    vpcs = _topology()
    now = float(int(time.time() if now is None else now))
    eni_vpc = _where(vpcs, ACCOUNTS[0], REGIONS[0], 0)
    dns_vpc = _where(vpcs, ACCOUNTS[1], REGIONS[1], 1)
    rtb_vpc = _where(vpcs, ACCOUNTS[0], REGIONS[2], 0)
    sg_vpc = _where(vpcs, ACCOUNTS[1], REGIONS[0], 2)
    role_partition = (ACCOUNTS[0], REGIONS[1])

    instances: List[Instance] = []
    used_ips: Dict[str, int] = {}
    for n in range(size):
        vpc = vpcs[n % len(vpcs)]
        subnet = vpc.subnets[rng.randrange(len(vpc.subnets))]
        host = used_ips[subnet.subnet_id] = used_ips.get(subnet.subnet_id, 40) + 1
        ip = str(ipaddress.ip_network(subnet.cidr)[host])
        sg = vpc.sg_ids[rng.randrange(2)]
        role = f"vpce-fleet-{vpc.region}-{'ab'[rng.randrange(2)]}"
        fault = ("eni" if vpc is eni_vpc else "vpc_dns" if vpc is dns_vpc
                 else "route_table" if vpc is rtb_vpc and subnet.route_table_id == vpc.subnets[0].route_table_id
                 else "security_group" if vpc is sg_vpc and sg == vpc.sg_ids[1]
                 else "role" if (vpc.account_id, vpc.region) == role_partition and role.endswith("-b") else "")
        iid = "i-0" + f"{rng.getrandbits(64):016x}"
        instances.append(Instance(vpc.account_id, vpc.region, iid, ip, vpc, subnet, sg, role, fault))

    # Noise only where no planted fault is: it must share no resource with them.
    clean = [i for i, inst in enumerate(instances) if not inst.fault]
    rng.shuffle(clean)
    plan = ([f"local:{LOCAL_FAULTS[k % 3]}" for k in range(size // 100)] + ["stale"] * (size // 100)
            + ["silent"] * (size // 200) + ["terminated"] * max(3, size // 2000) + ["old_agent"] * (size // 100))
    for index, noise in zip(clean, plan):
        instances[index] = replace(instances[index], noise=noise)

    faults = []
    for name, vpc_or_none, rtype, rid, code in (
            # reach.ssm (az_unreachable) and reach.ssm.<ip> (tcp_timeout) both point at the ENI
            ("eni", eni_vpc, "endpoint-eni", f"{eni_vpc.vpc_id}/ssm/{eni_vpc.enis('ssm')[1][2]}", "az_unreachable"),
            ("vpc_dns", dns_vpc, "vpc", dns_vpc.vpc_id, "dns_hostnames_disabled"),
            ("route_table", rtb_vpc, "route-table", rtb_vpc.subnets[0].route_table_id, "s3_route_missing"),
            ("security_group", sg_vpc, "security-group", sg_vpc.sg_ids[1], "instance_sg_no_outbound_443"),
            ("role", None, "role", f"vpce-fleet-{role_partition[1]}-b", "access_denied_identity_policy")):
        hit = tuple(i.instance_id for i in instances if i.fault == name)
        account, region = (vpc_or_none.account_id, vpc_or_none.region) if vpc_or_none else role_partition
        faults.append(PlantedFault(name, account, region, rtype, rid, code, hit))
    return Fleet(instances, vpcs, faults, now)


# --- what one instance publishes, made by the agent's code ----------------------------------------------

@contextmanager
def _known(facts: Any) -> Iterator[None]:
    """What the runner does around every check: explain() fills ids from the instance's facts."""
    from vpce_doctor.checks.causes import KNOWN_IDS, known_ids

    token = KNOWN_IDS.set(known_ids(facts))
    try:
        yield
    finally:
        KNOWN_IDS.reset(token)


def _facts(inst: Instance) -> Any:
    from vpce_doctor.checks.model import Facts

    wanted = dict(region=inst.region, partition="aws", domain="amazonaws.com", instance_id=inst.instance_id,
                  vpc_id=inst.vpc.vpc_id, subnet_id=inst.subnet.subnet_id, vpc_cidr=inst.vpc.cidr,
                  vpc_cidrs=(inst.vpc.cidr,), subnet_cidr=inst.subnet.cidr, local_ipv4=inst.ip,
                  instance_profile_arn=f"arn:aws:iam::{inst.account_id}:instance-profile/{inst.role}",
                  security_group_ids=(inst.sg_id,), credentials={"role": inst.role}, imds_state="ok",
                  # Fields the contract's context attributes need, once Facts has them.
                  account_id=inst.account_id, availability_zone=inst.subnet.az)
    known = {f.name for f in fields(Facts)}
    return Facts(**{k: v for k, v in wanted.items() if k in known})


def _finding(fid: str, status: str, summary: str, code: str = "", evidence: Optional[Dict[str, Any]] = None,
             blocked_by: Optional[str] = None, **params: Any) -> Any:
    from vpce_doctor.checks.causes import explain
    from vpce_doctor.checks.model import Finding, Status

    known = {f.name for f in fields(Finding)}
    text = {k: v for k, v in explain(code, **params).items() if k in known} if code else {}
    return Finding(fid, Status[status], summary, evidence=evidence or {}, blocked_by=blocked_by, **text)


def _blocked(fid: str, blocker: Any) -> Any:
    from vpce_doctor.checks.model import Check
    from vpce_doctor.runner import _blocked as runner_blocked

    return runner_blocked(Check(fid, run=lambda ctx: None), blocker)  # type: ignore[arg-type,return-value]


def _findings(inst: Instance) -> List[Any]:
    vpc, region, fault = inst.vpc, inst.region, inst.fault
    local = inst.noise[6:] if inst.noise.startswith("local:") else ""
    out: List[Any] = [
        _finding("imds", "OK", "IMDSv2 answered in 2 ms"),
        _finding("instance.public_ip", "OK", "no public IPv4 address"),
        _finding("instance.profile", "OK", f"instance profile {inst.role} attached"),
        _finding("iam.credentials", "OK", f"role {inst.role}: credentials valid for 5 h"),
        _finding("ec2.api", "OK", "DescribeVpcEndpoints and 5 more answered in 40 ms"),
        _finding("resolver", "OK", f"{ipaddress.ip_network(vpc.cidr)[2]} answers in 1 ms"),
        _finding("resolver.system", "OK", "the system resolver gives the same answers"),
    ]
    if local == "clock_skew":
        out.append(_finding("clock", "CRITICAL", "the clock is 7 min 30 s ahead of AWS", "clock_skew",
                            {"skew_s": 450.0}, skew="7 min 30 s ahead", limit="5 minutes", breaks="every SSM call"))
    else:
        out.append(_finding("clock", "OK", "the clock is 0.2 s off AWS's", evidence={"skew_s": 0.2}))
    for svc in SERVICES:
        host = f"{svc}.{region}.amazonaws.com"
        vpce_id, enis = vpc.endpoints[svc]
        ips = [ip for _, _, ip in enis]
        dns_id, eni_id, reach_id = f"dns.{svc}", f"eni.{svc}", f"reach.{svc}"
        if fault == "vpc_dns":
            dns = _finding(dns_id, "CRITICAL", f"{host} resolves to public addresses 198.51.100.{20 + len(svc)}",
                           "dns_hostnames_disabled", {"host": host, "answers": [f"198.51.100.{20 + len(svc)}"]},
                           host=host, answers=f"198.51.100.{20 + len(svc)}", vpc_id=vpc.vpc_id, service=svc)
            out += [dns, _blocked(eni_id, dns), _blocked(reach_id, dns)]
            continue
        out.append(_finding(dns_id, "OK", f"Private DNS works: {host} -> {', '.join(ips)}",
                            evidence={"host": host, "answers": ips}))
        out.append(_finding(eni_id, "OK", f"{host} -> {', '.join(ips)} are exactly the ENIs of {vpce_id}"))
        per_ip = []
        bad = []
        for az, eni, ip in enis:
            ev = {"ip": ip, "host": host, "az": az}
            if fault == "security_group":
                bad.append(ip)
                per_ip.append(_finding(f"{reach_id}.{ip}", "CRITICAL", f"{ip}:443 ({az}) TCP timeout: timed out",
                                       "instance_sg_no_outbound_443", dict(ev, outcome="timeout"), ip=f"{ip} ({az})",
                                       host=host, sg_ids=inst.sg_id, sg_id=inst.sg_id, service=svc))
            elif fault == "eni" and svc == "ssm" and ip == enis[1][2]:
                bad.append(ip)
                per_ip.append(_finding(f"{reach_id}.{ip}", "WARNING", f"{ip}:443 ({az}) TCP timeout: timed out",
                                       "tcp_timeout", dict(ev, outcome="timeout"), ip=f"{ip} ({az})", host=host,
                                       service=svc, endpoint_id=vpce_id, eni_id=eni, az=az))
            else:
                per_ip.append(_finding(f"{reach_id}.{ip}", "OK", f"{ip}:443 ({az}) accepts TLS for {host}",
                                       evidence=ev))
        summary_ev = {"host": host, "total": len(ips), "bad_count": len(bad), "bad_ips": bad}
        if not bad:
            out.append(_finding(reach_id, "OK", f"All {len(ips)} endpoint addresses of {svc} accept TLS for {host}",
                                evidence=summary_ev))
        elif len(bad) < len(ips):  # checks/reach_causes.partial_cause: one AZ's ENI fails, no proof why
            out.append(_finding(reach_id, "WARNING", f"{len(bad)} of {len(ips)} endpoint addresses of {svc} fail "
                                f"({', '.join(bad)})", "az_unreachable", summary_ev, service=svc, bad_count=len(bad),
                                total=len(ips), bad_ips=", ".join(bad), endpoint_id=vpce_id))
        else:
            out.append(_finding(reach_id, "CRITICAL", f"None of the {len(ips)} endpoint addresses of {svc} accepts "
                                f"TLS for {host} (instance_sg_no_outbound_443)", "instance_sg_no_outbound_443",
                                summary_ev, ip=", ".join(bad), host=host, sg_ids=inst.sg_id, sg_id=inst.sg_id,
                                service=svc))
        out += per_ip
    out += _s3_findings(inst)
    out += _ssm_findings(inst, local)
    return out


def _s3_findings(inst: Instance) -> List[Any]:
    vpc, region = inst.vpc, inst.region
    pl = S3_PREFIX_LISTS[region]
    host, s3_ip = f"s3.{region}.amazonaws.com", "198.51.100.10"
    out = [_finding("s3.dns", "OK", f"{host} -> {s3_ip} (in {pl})")]
    if inst.fault == "route_table":
        params = dict(route_table_id=inst.subnet.route_table_id, prefix_list_id=pl, endpoint_id=vpc.s3_endpoint_id)
        out.append(_finding("s3.route", "CRITICAL", f"{inst.subnet.route_table_id} has no route to {pl}",
                            "s3_route_missing", {"route_table_id": inst.subnet.route_table_id}, **params))
        out.append(_finding("s3.api", "CRITICAL", f"ListBuckets: TCP 443 to {s3_ip} timed out", "s3_route_missing",
                            {"ip": s3_ip, "route_table_id": inst.subnet.route_table_id}, ip=s3_ip, **params))
    else:
        out.append(_finding("s3.route", "OK", f"{inst.subnet.route_table_id}: {pl} -> {vpc.s3_endpoint_id}"))
        if inst.fault == "security_group":  # checks/gateway_path.drop_cause: the route is there, the SG is not
            out.append(_finding("s3.api", "CRITICAL", f"ListBuckets: TCP 443 to {s3_ip} timed out",
                                "s3_sg_no_outbound_443",
                                {"ip": s3_ip}, ip=s3_ip, sg_ids=inst.sg_id, sg_id=inst.sg_id, prefix_list_id=pl))
        else:
            out.append(_finding("s3.api", "OK", "ListBuckets: 200 OK, 3 buckets in 30 ms"))
    return out


def _ssm_findings(inst: Instance, local: str) -> List[Any]:
    fault = inst.fault
    blocker = {"vpc_dns": "dns.ssm", "security_group": "reach.ssm"}.get(fault)
    if fault == "role":
        out = [_finding("auth.ssm", "CRITICAL", "UpdateInstanceInformation: AccessDeniedException",
                        "access_denied_identity_policy", {"error_code": "AccessDeniedException"}, role=inst.role,
                        action="ssm:UpdateInstanceInformation", error="AccessDeniedException")]
    elif blocker:
        out = [_finding("auth.ssm", "CRITICAL", f"UpdateInstanceInformation not tried: {blocker} fails",
                        "aws_call_blocked", blocked_by=blocker, action="ssm:UpdateInstanceInformation",
                        blocker=blocker)]
    else:
        out = [_finding("auth.ssm", "OK", "UpdateInstanceInformation accepted in 35 ms")]
    if local == "ssm_agent_not_running":
        out.append(_finding("ssm_agent", "CRITICAL", "amazon-ssm-agent is not running", "ssm_agent_not_running"))
    elif blocker:
        out.append(_finding("ssm_agent", "CRITICAL", "the agent holds no connection", "ssm_agent_endpoints_failing",
                            failing=blocker))
    elif fault == "role":
        out.append(_finding("ssm_agent", "CRITICAL", "the agent runs but SSM does not accept it",
                            "ssm_agent_not_accepted",
                            role=inst.role))
    else:
        out.append(_finding("ssm_agent", "OK", "amazon-ssm-agent 3.3.1142.0 runs, connected to ssmmessages"))
    if local == "ssm_agent_disk_full":
        out.append(_finding("ssm_agent.disk", "CRITICAL", "/var/lib/amazon/ssm: 0 B free", "ssm_agent_disk_full",
                            path="/var/lib/amazon/ssm", free="0 B", inodes="120000"))
    else:
        out.append(_finding("ssm_agent.disk", "OK", "/var/lib/amazon/ssm: 4.1 GB free"))
    return out


def _inventory(inst: Instance, now: float) -> Dict[str, Dict[str, Any]]:
    from vpce_doctor.publishers.inventory import build_inventory
    from vpce_doctor.report import Report, verdicts

    checked = now - (STALE_S if inst.noise == "stale" else 0)
    facts = _facts(inst)
    with _known(facts):
        findings = tuple(_findings(inst))
    extra = {"version": OLD_AGENT_VERSION} if inst.noise == "old_agent" else {}
    report = Report(findings, facts, tuple(verdicts(findings)), checked, 1.5, **extra)
    items = {}
    for item in build_inventory(report, TYPE_NAME, VERDICT_TYPE_NAME).items:
        api = item.api()
        if inst.noise == "old_agent" and api["TypeName"] == TYPE_NAME:  # what an agent before issue 13 sent
            api["Content"] = [{k: e[k] for k in OLD_ATTRIBUTES if k in e} for e in api["Content"]]
        items[api["TypeName"]] = api
    return items


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lab.fleetgen", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", type=Path, help="write the stand-in's seed file (JSON lines) here")
    args = parser.parse_args(argv)
    started, cpu = time.monotonic(), time.process_time()
    fleet = generate(args.size, args.seed)
    if args.out:
        fleet.write_seed(args.out)
    else:
        for _ in fleet.records():
            pass
    truth = fleet.ground_truth()
    truth.update(wall_s=round(time.monotonic() - started, 2), cpu_s=round(time.process_time() - cpu, 2))
    print(json.dumps(truth, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
