"""The lab's world: every address and DNS answer a scenario implies, and world.json from it.

The address plan is docs/lab-contract.md's; keep the two in step. Everything here is pure
(no system calls), so the topology, firewall, resolver and AWS layer all derive from one place.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from . import ddbknobs, dnsknobs, ipv6lab, nacl, tlspath
from .scenario import Endpoint, Scenario, ScenarioError, StaleAnswer

PARTITION = "aws"
DOMAIN = "amazonaws.com"
VPC_CIDR = "10.0.0.0/16"
INSTANCE_IP = "10.0.1.10"
INSTANCE_PREFIX = 24
ROUTER_IP = "10.0.1.1"  # the VPC side of the veth: the instance's default gateway
INSTANCE_MAC = "0e:5a:0a:00:01:0a"  # fixed, so IMDS can report the real MAC of the instance's NIC
RESOLVER_IPS = ("10.0.0.2", "169.254.169.253")
IMDS_IP = "169.254.169.254"
LINK_LOCAL = "169.254.0.0/16"
SUBNETS = {"a": "10.0.1.0/24", "b": "10.0.2.0/24", "c": "10.0.3.0/24"}
S3_IPS = ("198.51.100.10", "198.51.100.11")
S3_PREFIX_LIST = "198.51.100.0/28"
S3_OTHER_REGION_IP = "198.51.100.200"
PUBLIC_NETS = ("198.51.100.0/24", "203.0.113.0/24")  # "the internet": routable only with an IGW/NAT
GOOGLE_IP = "203.0.113.10"
GOOGLE_NAMES = ("google.com", "www.google.com")
ROLE_NAME = "SSMInstanceRole"


def az_name(region: str, letter: str) -> str:
    return f"{region}{letter}"


def eni_ip(index: int, letter: str) -> str:
    return f"10.0.{'abc'.index(letter) + 1}.{101 + index}"


def public_service_ip(index: int) -> str:
    return f"198.51.100.{64 + index}"


@lru_cache(maxsize=1)
def _endpoint_data() -> Dict[str, Any]:
    from botocore.loaders import create_loader

    return create_loader().load_data("endpoints")


@lru_cache(maxsize=1)
def _endpoint_resolver() -> Any:
    from botocore.regions import EndpointResolver

    return EndpointResolver(_endpoint_data())


def service_hostname(service: str, region: str) -> str:
    """``ssm.us-east-1.amazonaws.com``; ``ecr.api`` -> ``api.ecr.us-east-1.amazonaws.com``.

    botocore keys dotted endpoint services by their reversed labels (``api.ecr``); it has no model
    for ec2messages/ssmmessages, whose names follow the partition's default template.
    """
    key = ".".join(reversed(service.split(".")))
    try:
        hostname = _endpoint_resolver().construct_endpoint(key, region).get("hostname")
    except Exception:  # noqa: BLE001 - unknown services raise on some botocore versions
        hostname = None
    return hostname or f"{key}.{region}.{DOMAIN}"


def scale_services(count: int, taken: Tuple[str, ...], region: str) -> Tuple[str, ...]:
    """``count`` real service names (from botocore's endpoint data) for benchmark scenarios."""
    names: List[str] = []
    for partition in _endpoint_data()["partitions"]:
        if partition["partition"] != PARTITION:
            continue
        for svc, spec in sorted(partition["services"].items()):
            if svc in taken or svc == "s3" or "." in svc or region not in spec.get("endpoints", {}):
                continue
            if service_hostname(svc, region) == f"{svc}.{region}.{DOMAIN}":
                names.append(svc)
    if len(names) < count:
        raise ScenarioError(f"scale.extra_interface_endpoints: botocore knows only {len(names)} more services")
    return tuple(names[:count])


@dataclass(frozen=True)
class Eni:
    az: str  # us-east-1a
    ip: str
    reachable: bool


@dataclass(frozen=True)
class Service:
    """One interface endpoint service, present or not (a missing endpoint still has a public name)."""

    name: str
    index: int
    hostname: str
    public_ip: str
    present: bool
    private_dns: bool
    state: str
    enis: Tuple[Eni, ...]  # empty when the endpoint is not present
    answers: Tuple[str, ...]  # what the Amazon resolver answers for hostname
    policy: str = "allow"  # the endpoint policy (scenario endpoints.<svc>.policy)


@dataclass(frozen=True)
class World:
    scenario: Scenario
    lab_name: str
    services: Tuple[Service, ...]
    stale_ips: Tuple[str, ...]

    @property
    def region(self) -> str:
        return self.scenario.region

    @property
    def eni_ips(self) -> Tuple[str, ...]:
        return tuple(e.ip for s in self.services for e in s.enis)

    @property
    def unreachable_eni_ips(self) -> Tuple[str, ...]:
        return tuple(e.ip for s in self.services for e in s.enis if not e.reachable)

    @property
    def s3_routed(self) -> bool:
        return self.scenario.s3_gateway_endpoint and self.scenario.s3_route and self.scenario.s3_route_table == "instance"

    @property
    def listen_ips(self) -> Tuple[str, ...]:
        """Where the AWS layer serves TLS 443: ENIs of present endpoints, public service and S3 IPs."""
        return (self.eni_ips + tuple(s.public_ip for s in self.services) + S3_IPS + (S3_OTHER_REGION_IP,)
                + ddbknobs.DYNAMODB_IPS + ipv6lab.listen_ips(self))  # IPv6 ENIs: none unless ipv6 is on

    @property
    def vpc_addresses(self) -> Tuple[str, ...]:
        """Every /32 the VPC namespace owns (on its dummy interface)."""
        extra = RESOLVER_IPS + (IMDS_IP, GOOGLE_IP) + self.scenario.dhcp_options.custom_servers
        return tuple(dict.fromkeys(self.listen_ips + extra + self.stale_ips))

    @property
    def vpc_addresses4(self) -> Tuple[str, ...]:
        """vpc_addresses without the IPv6 ones (those are added by ipv6lab.topology_commands)."""
        return tuple(ip for ip in self.vpc_addresses if ":" not in ip)

    @property
    def subnet_letters(self) -> Tuple[str, ...]:
        used = {e.az[-1] for s in self.services for e in s.enis}
        return tuple(letter for letter in "abc" if letter in ("a", "b") or letter in used
                     or letter in self.scenario.nacls)

    def s3_records(self) -> Dict[str, Tuple[str, ...]]:
        """S3 names; each covers the name and all its subdomains (virtual-hosted buckets)."""
        return {f"s3.{self.region}.{DOMAIN}": S3_IPS, f"s3.{DOMAIN}": S3_IPS,
                f"s3.us-west-2.{DOMAIN}": (S3_OTHER_REGION_IP,)}

    def host_records(self) -> Dict[str, Tuple[str, ...]]:
        """Exact names the resolver answers (services and the internet stand-in)."""
        records = {s.hostname: s.answers for s in self.services}
        records.update({name: (GOOGLE_IP,) for name in GOOGLE_NAMES})
        records.update(ddbknobs.host_records(self.region, DOMAIN))  # public names, as S3's
        if self.scenario.enable_dns_hostnames:
            records[f"ip-{INSTANCE_IP.replace('.', '-')}.ec2.internal"] = (INSTANCE_IP,)
        return records

    def instance_answers(self, service: str) -> Tuple[str, ...]:
        """What a program on the instance gets for a service name (/etc/hosts first, then DNS)."""
        svc = next(s for s in self.services if s.name == service)
        if svc.hostname in self.scenario.etc_hosts:
            return (self.scenario.etc_hosts[svc.hostname],)
        # glibc asks the resolv.conf nameservers in turn: the Amazon resolver, or a custom one (dnsknobs).
        sc = self.scenario
        return dnsknobs.system_answers(sc.resolv_conf_nameservers, sc.dhcp_options, RESOLVER_IPS,
                                       sc.enable_dns_support, service, svc.answers, svc.public_ip,
                                       sc.resolver_latency_ms)

    def to_json(self, state_dir: Path) -> Dict[str, Any]:
        sc = self.scenario
        return {
            "name": self.lab_name, "region": sc.region, "partition": PARTITION, "domain": DOMAIN,
            "vpc_cidr": VPC_CIDR, "instance_ip": INSTANCE_IP,
            "subnets": [{"az": az_name(sc.region, x), "cidr": SUBNETS[x]} for x in self.subnet_letters],
            "instance_subnet_az": az_name(sc.region, "a"),
            "enable_dns_support": sc.enable_dns_support, "enable_dns_hostnames": sc.enable_dns_hostnames,
            "interface_endpoints": [
                {"service": s.name, "hostname": s.hostname, "private_dns": s.private_dns, "state": s.state,
                 "enis": [{"az": e.az, "ip": e.ip} for e in s.enis], "policy": s.policy}
                for s in self.services if s.present],
            "public_service_ips": {s.hostname: s.public_ip for s in self.services},
            "endpoint_sg_inbound_443": sc.endpoint_sg_inbound_443,
            "instance_sg_outbound_443": sc.instance_sg_outbound_443,
            "dhcp_options": {"domain_name_servers": list(sc.dhcp_options.domain_name_servers)},
            "instance_sg_outbound_443_to": sc.instance_sg_outbound_443_to,
            "nacls": nacl.to_json(sc.nacls),
            "s3": {"gateway_endpoint": sc.s3_gateway_endpoint, "route": sc.s3_route, "route_table": sc.s3_route_table, "ips": list(S3_IPS),
                   "prefix_list_cidrs": [S3_PREFIX_LIST], "policy_allows": sc.s3_policy_allows,
                   "policy": sc.s3_policy},
            "dynamodb": sc.dynamodb.to_json(),
            "bucket": {"name": sc.bucket.name, "region": sc.bucket.region, "key": sc.bucket.key,
                       "body": sc.bucket.body},
            "instance": {"public_ip": sc.public_ip,
                         "profile": {"attached": sc.profile_attached, "role": ROLE_NAME,
                                     "s3_permission": sc.profile_s3_permission,
                                     "denied_actions": list(sc.profile_denied_actions),
                                     "trusts_ec2": sc.profile_trusts_ec2,
                                     "credentials_expired": sc.profile_credentials_expired}},
            "internet": sc.internet,
            "aws_clock_offset_s": sc.aws_clock_offset_s,
            "session_preferences": dict(sc.session_preferences) if sc.session_preferences is not None else None,
            "session_resources": dict(sc.session_resources),
            # ENIs behind the TLS-inspection front are its to answer (tlspath), not the AWS layer's
            "listen_ips": [ip for ip in self.listen_ips if ip not in tlspath.inspected_ips(self)],
            "cert": str(state_dir / "server.pem"), "key": str(state_dir / "server.key"),
            "ipv6": ipv6lab.to_json(self),
        }

    def write(self, state_dir: Path) -> Path:
        path = state_dir / "world.json"
        path.write_text(json.dumps(self.to_json(state_dir), indent=1) + "\n")
        return path


def build(scenario: Scenario, lab_name: str) -> World:
    endpoints = list(scenario.endpoints)
    if not any(e.service == "ec2" for e in endpoints):
        # The agent calls the EC2 API whether or not there is an endpoint: its public name must
        # resolve (to an unreachable public address), as it does in a real VPC.
        endpoints.append(Endpoint("ec2", present=False))
    if scenario.extra_interface_endpoints:
        taken = tuple(e.service for e in endpoints)
        endpoints += [Endpoint(s) for s in scale_services(scenario.extra_interface_endpoints, taken, scenario.region)]
    dns_private = scenario.enable_dns_support and scenario.enable_dns_hostnames
    services = []
    for index, ep in enumerate(endpoints):
        enis = tuple(Eni(az=az_name(scenario.region, x), ip=eni_ip(index, x), reachable=x not in ep.unreachable_azs)
                     for x in ep.azs) if ep.present else ()
        public = public_service_ip(index)
        # Private DNS applies only when the endpoint is available with Private DNS on, in a VPC with
        # both DNS attributes on; otherwise the name keeps its public answer.
        private = ep.present and ep.private_dns and dns_private and ep.state == "available"
        answers: Tuple[str, ...] = tuple(e.ip for e in enis) if private else (public,)
        hostname = service_hostname(ep.service, scenario.region)
        answers = dnsknobs.amazon_answers(scenario.dns_shadow_zone, hostname, answers, private)
        stale: Optional[StaleAnswer] = scenario.stale_answers.get(ep.service)
        if stale is not None:
            answers = (answers + stale.ips) if stale.keep_real else stale.ips
        services.append(Service(name=ep.service, index=index, hostname=service_hostname(ep.service, scenario.region),
                                public_ip=public, present=ep.present, private_dns=ep.private_dns, state=ep.state,
                                enis=enis, answers=tuple(dict.fromkeys(answers)), policy=ep.policy))
    world = World(scenario=scenario, lab_name=lab_name, services=tuple(services),
                  stale_ips=tuple(dict.fromkeys(ip for s in scenario.stale_answers.values() for ip in s.ips)))
    _check_stale(world)
    ipv6lab.validate(world, lambda problem: _fail(world, problem))
    return world


def _fail(world: World, problem: str) -> None:
    raise ScenarioError(f"{world.scenario.source.name if world.scenario.source else '<scenario>'}:{problem}")


def _check_stale(world: World) -> None:
    """A stale answer must be an address with nothing listening, or it would not be 'stale'."""
    served = set(world.listen_ips) | set(RESOLVER_IPS) | {IMDS_IP, GOOGLE_IP, ROUTER_IP, INSTANCE_IP}
    served |= set(world.scenario.dhcp_options.custom_servers)
    for ip in world.stale_ips:
        if ip in served:
            where = world.scenario.source.name if world.scenario.source else "<scenario>"
            raise ScenarioError(f"{where}:stale_answers: {ip} is a lab address that is served; a stale answer "
                                f"needs an unused one (e.g. 10.0.1.150)")
