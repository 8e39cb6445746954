"""What the EC2 API says about this instance's VPC, gathered once by the ``ec2.api`` check.

Other checks use it to confirm endpoint identity (answers == that endpoint's ENI IPs) and to
sharpen causes (Private DNS off vs endpoint missing vs enableDnsHostnames false, route table,
security groups). When the API is unreachable or not permitted, ``available`` is False and
``reason`` says why; checks then fall back to data-plane evidence.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Tuple

from .nacls import NaclView


@dataclass(frozen=True)
class SecurityGroupRule:
    direction: str  # "inbound" | "outbound"
    protocol: str  # "tcp", "udp", "-1" (all)
    from_port: Optional[int]
    to_port: Optional[int]
    cidrs: Tuple[str, ...] = ()
    prefix_list_ids: Tuple[str, ...] = ()
    group_ids: Tuple[str, ...] = ()

    def covers_tcp_port(self, port: int) -> bool:
        if self.protocol == "-1":
            return True
        if self.protocol not in ("tcp", "6"):
            return False
        lo = self.from_port if self.from_port is not None else 0
        hi = self.to_port if self.to_port is not None else 65535
        return lo <= port <= hi


@dataclass(frozen=True)
class EndpointView:
    id: str
    service_name: str  # com.amazonaws.us-east-1.ssm
    type: str  # Interface | Gateway | GatewayLoadBalancer
    state: str
    private_dns_enabled: bool = False
    subnet_ids: Tuple[str, ...] = ()
    eni_ids: Tuple[str, ...] = ()
    eni_ips: Tuple[str, ...] = ()  # private IPs of eni_ids (DescribeNetworkInterfaces)
    eni_azs: Mapping[str, str] = field(default_factory=dict)  # ip -> AZ
    eni_subnets: Mapping[str, str] = field(default_factory=dict)  # ip -> subnet id
    eni_by_ip: Mapping[str, str] = field(default_factory=dict)  # ip -> ENI id (a finding's resource name)
    security_group_ids: Tuple[str, ...] = ()
    route_table_ids: Tuple[str, ...] = ()
    dns_names: Tuple[str, ...] = ()  # DnsEntries, regional first
    policy: Optional[str] = None  # the endpoint policy document (JSON text)

    @property
    def short_service(self) -> str:
        """"ssm" for com.amazonaws.us-east-1.ssm, "ecr.api" for com.amazonaws.us-east-1.ecr.api."""
        # com.amazonaws.<region>.<svc>, and cn.com.amazonaws.<region>.<svc> in aws-cn
        parts = self.service_name.split(".")
        if "amazonaws" in parts:
            rest = parts[parts.index("amazonaws") + 2:]
            if rest:
                return ".".join(rest)
        return self.service_name


@dataclass(frozen=True)
class Route:
    destination: str  # CIDR or prefix list id (pl-…)
    target: str  # local, igw-…, nat-…, vpce-…, …
    state: str = "active"


@dataclass(frozen=True)
class Ec2View:
    available: bool
    reason: Optional[str] = None  # why not available (error code / timeout text)
    vpc_id: Optional[str] = None
    enable_dns_support: Optional[bool] = None
    enable_dns_hostnames: Optional[bool] = None
    endpoints: Tuple[EndpointView, ...] = ()
    route_table_id: Optional[str] = None
    routes: Tuple[Route, ...] = ()
    s3_prefix_list_id: Optional[str] = None
    s3_prefix_list_cidrs: Tuple[str, ...] = ()
    dynamodb_prefix_list_id: Optional[str] = None  # com.amazonaws.<region>.dynamodb (checks.dynamodb)
    dynamodb_prefix_list_cidrs: Tuple[str, ...] = ()
    instance_sg_ids: Tuple[str, ...] = ()
    security_group_rules: Mapping[str, Tuple[SecurityGroupRule, ...]] = field(default_factory=dict)
    errors: Mapping[str, str] = field(default_factory=dict)  # per API call that failed (partial view)
    network_acls: Mapping[str, NaclView] = field(default_factory=dict)  # subnet id -> its NACL (checks.nacls)

    def endpoint_for(self, service: str, type_: str = "Interface") -> Optional[EndpointView]:
        """The endpoint of this VPC for a short service name ("ssm"), preferring an available one."""
        matches = [e for e in self.endpoints if e.short_service == service and e.type == type_]
        matches.sort(key=lambda e: e.state != "available")
        return matches[0] if matches else None
