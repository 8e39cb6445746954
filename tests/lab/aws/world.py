"""world.json, typed: what the lab core decided the VPC looks like (docs/lab-contract.md).

Only the keys the AWS layer needs are parsed; anything else in the file is ignored so the lab core
can grow the format without breaking this layer.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

from .dynamodb_gateway import DynamoDbSpec
from .dynamodb_gateway import parse_spec as parse_dynamodb

ENDPOINT_POLICIES = ("allow", "deny", "no_allow")


@dataclass(frozen=True)
class SubnetSpec:
    az: str
    cidr: str


@dataclass(frozen=True)
class EniSpec:
    az: str
    ip: str


@dataclass(frozen=True)
class InterfaceEndpointSpec:
    service: str          # "ssm", "ec2messages", …
    hostname: str         # the Private DNS name, e.g. ssm.us-east-1.amazonaws.com
    private_dns: bool
    state: str            # DescribeVpcEndpoints State: available, pending, …
    enis: Tuple[EniSpec, ...]
    policy: str = "allow"  # allow | deny (explicit deny) | no_allow (the policy allows nothing the caller asks)


@dataclass(frozen=True)
class S3Spec:
    gateway_endpoint: bool
    route: bool           # the gateway endpoint's prefix-list route on the instance subnet's table
    ips: Tuple[str, ...]
    prefix_list_cidrs: Tuple[str, ...]
    policy_allows: bool   # False: the endpoint policy does not allow (see policy)
    policy: str = "allow"  # allow | deny (explicit deny) | no_allow (allows nothing the caller asks)
    route_table: str = "instance"  # instance: the route is on the instance subnet's table; other: on subnet b's only


@dataclass(frozen=True)
class BucketSpec:
    name: str
    region: str
    key: str
    body: str


@dataclass(frozen=True)
class ProfileSpec:
    attached: bool
    role: str
    s3_permission: bool
    denied_actions: Tuple[str, ...] = ()  # IAM action patterns no identity-based policy allows
    trusts_ec2: bool = True               # False: the trust policy lacks ec2.amazonaws.com (IMDS only)
    credentials_expired: bool = False     # IMDS serves an Expiration in the past; AWS refuses the token


@dataclass(frozen=True)
class SessionResources:
    """What exists of the resources the Session Manager preferences name."""

    log_group: str = "present"   # present | missing | unencrypted
    kms_key: str = "present"     # present | missing
    bucket: str = "present"      # present | missing | unencrypted (no default encryption)


@dataclass(frozen=True)
class World:
    name: str
    region: str
    partition: str
    domain: str
    vpc_cidr: str
    instance_ip: str
    subnets: Tuple[SubnetSpec, ...]
    instance_subnet_az: str
    enable_dns_support: bool
    enable_dns_hostnames: bool
    interface_endpoints: Tuple[InterfaceEndpointSpec, ...]
    endpoint_sg_inbound_443: bool
    instance_sg_outbound_443: bool
    s3: S3Spec
    bucket: BucketSpec
    public_ip: Optional[str]
    profile: ProfileSpec
    internet: str         # none | igw | nat
    listen_ips: Tuple[str, ...]
    cert: str
    key: str
    aws_clock_offset_s: int = 0                              # AWS's clock = this host's + offset
    session_preferences: Optional[Dict[str, Any]] = None    # SSM-SessionManagerRunShell inputs; None: no document
    session_resources: SessionResources = SessionResources()
    instance_sg_outbound_443_to: str = "anywhere"  # anywhere | vpc (the VPC CIDR only)
    nacls: Mapping[str, Any] = field(default_factory=dict)  # subnet letter -> {inbound, outbound} (tests/lab/nacl.py)
    dhcp_domain_name_servers: Tuple[str, ...] = ("AmazonProvidedDNS",)  # the VPC's DHCP option set (dnsknobs)
    dynamodb: Optional[DynamoDbSpec] = None  # the DynamoDB gateway endpoint and table (dynamodb_gateway.py)
    ipv6: Mapping[str, Any] = field(default_factory=dict)  # tests/lab/ipv6lab.to_json ({"mode": "none"}: no IPv6)

    @property
    def instance_subnet(self) -> SubnetSpec:
        for subnet in self.subnets:
            if subnet.az == self.instance_subnet_az:
                return subnet
        raise WorldError(f"instance_subnet_az {self.instance_subnet_az!r} is not in subnets")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> World:
        try:
            return _parse(raw)
        except (KeyError, TypeError, ValueError) as exc:
            raise WorldError(f"world.json is not in the contract's shape: {exc!r}") from exc

    @classmethod
    def load(cls, path: Path) -> World:
        return cls.from_dict(json.loads(Path(path).read_text()))


class WorldError(Exception):
    """world.json cannot be used; the message says which key."""


def _parse(raw: Mapping[str, Any]) -> World:
    s3 = raw.get("s3") or {}
    bucket = raw["bucket"]
    instance = raw.get("instance") or {}
    profile = instance.get("profile") or {}
    resources = raw.get("session_resources") or {}
    region = raw.get("region", "us-east-1")
    world = World(
        name=raw.get("name", "lab"),
        region=region,
        partition=raw.get("partition", "aws"),
        domain=raw.get("domain", "amazonaws.com"),
        vpc_cidr=raw.get("vpc_cidr", "10.0.0.0/16"),
        instance_ip=raw["instance_ip"],
        subnets=tuple(SubnetSpec(az=s["az"], cidr=s["cidr"]) for s in raw["subnets"]),
        instance_subnet_az=raw.get("instance_subnet_az", region + "a"),
        enable_dns_support=bool(raw.get("enable_dns_support", True)),
        enable_dns_hostnames=bool(raw.get("enable_dns_hostnames", True)),
        interface_endpoints=tuple(
            InterfaceEndpointSpec(
                service=ep["service"],
                hostname=ep.get("hostname") or f"{ep['service']}.{region}.{raw.get('domain', 'amazonaws.com')}",
                private_dns=bool(ep.get("private_dns", True)),
                state=ep.get("state", "available"),
                enis=tuple(EniSpec(az=e["az"], ip=e["ip"]) for e in ep.get("enis", [])),
                policy=_choice(ep.get("policy", "allow"), ENDPOINT_POLICIES, f"endpoint {ep['service']} policy"),
            )
            for ep in raw.get("interface_endpoints", [])
        ),
        endpoint_sg_inbound_443=bool(raw.get("endpoint_sg_inbound_443", True)),
        instance_sg_outbound_443=bool(raw.get("instance_sg_outbound_443", True)),
        instance_sg_outbound_443_to=str(raw.get("instance_sg_outbound_443_to", "anywhere")),
        nacls=dict(raw.get("nacls") or {}),
        dhcp_domain_name_servers=tuple(str(s) for s in (raw.get("dhcp_options") or {}).get(
            "domain_name_servers", ["AmazonProvidedDNS"])),
        s3=S3Spec(
            gateway_endpoint=bool(s3.get("gateway_endpoint", True)),
            route=bool(s3.get("route", True)),
            route_table=str(s3.get("route_table", "instance")),
            ips=tuple(s3.get("ips", [])),
            prefix_list_cidrs=tuple(s3.get("prefix_list_cidrs", [])),
            policy_allows=_s3_policy(s3) == "allow",
            policy=_s3_policy(s3),
        ),
        bucket=BucketSpec(
            name=bucket["name"],
            region=bucket.get("region", region),
            key=bucket["key"],
            body=bucket.get("body", ""),
        ),
        public_ip=instance.get("public_ip"),
        profile=ProfileSpec(
            attached=bool(profile.get("attached", True)),
            role=profile.get("role", "SSMInstanceRole"),
            s3_permission=bool(profile.get("s3_permission", True)),
            denied_actions=tuple(str(a) for a in profile.get("denied_actions") or ()),
            trusts_ec2=bool(profile.get("trusts_ec2", True)),
            credentials_expired=bool(profile.get("credentials_expired", False)),
        ),
        internet=raw.get("internet", "none"),
        listen_ips=tuple(ip for ip in raw.get("listen_ips", []) if ip != "..."),
        cert=raw.get("cert", ""),
        key=raw.get("key", ""),
        aws_clock_offset_s=int(raw.get("aws_clock_offset_s", 0)),
        session_preferences=_preferences(raw.get("session_preferences")),
        dynamodb=parse_dynamodb(raw.get("dynamodb")),
        ipv6=dict(raw.get("ipv6") or {}),
        session_resources=SessionResources(
            log_group=_choice(resources.get("log_group", "present"), ("present", "missing", "unencrypted"),
                              "session_resources.log_group"),
            kms_key=_choice(resources.get("kms_key", "present"), ("present", "missing"), "session_resources.kms_key"),
            bucket=_choice(resources.get("bucket", "present"), ("present", "missing", "unencrypted"),
                           "session_resources.bucket"),
        ),
    )
    world.instance_subnet  # fail early on an inconsistent file
    known_azs = {s.az for s in world.subnets}
    for ep in world.interface_endpoints:
        for eni in ep.enis:
            if eni.az not in known_azs:
                raise ValueError(f"endpoint {ep.service}: ENI AZ {eni.az} has no subnet")
    return world


def _s3_policy(s3: Mapping[str, Any]) -> str:
    """``policy`` when given; else the older ``policy_allows`` (false: an explicit deny)."""
    if "policy" in s3:
        return _choice(s3["policy"], ENDPOINT_POLICIES, "s3 policy")
    return "allow" if s3.get("policy_allows", True) else "deny"


def _choice(value: Any, choices: Tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise ValueError(f"{what}: {value!r} is not one of {', '.join(choices)}")
    return str(value)


def _preferences(value: Any) -> Optional[Dict[str, Any]]:
    if value is None or value == "none":
        return None
    if not isinstance(value, dict):
        raise ValueError(f"session_preferences: expected a mapping of document inputs, got {type(value).__name__}")
    return dict(value)
