"""Scenario files: the knobs of the reference lab plus what the agent must conclude.

Every key is optional; the defaults are the healthy reference lab (docs in tests/lab/SCENARIOS.md).
Validation is strict — unknown keys are errors — and every error is one line that names the file and
the key path: ``healthy.yaml:endpoints.ssm.azs: expected a list of a, b, c, got 'x'``.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import yaml

from . import ddbknobs
from . import dnsknobs
from . import fake_agent_spec as agent_spec
from . import nacl
from . import tlspath
from . import ipv6lab
from .dnsknobs import DhcpOptions, ShadowZone
from .fake_agent_spec import AgentSpec
from .nacl import Nacl

DEFAULT_SERVICES = ("ssm", "ec2messages", "ssmmessages")
AZ_LETTERS = ("a", "b", "c")
ENDPOINT_STATES = ("available", "pending", "pendingAcceptance", "rejected", "failed", "deleting", "expired")
INTERNET_MODES = ("none", "igw", "nat")
INTERNET_443_MODES = ("open", "closed")  # closed: the internet host answers SYNs to 443 with an RST
SG_EGRESS_SCOPES = ("anywhere", "vpc")
IMDS_MODES = ("ok", "disabled", "token_403", "hop_limit")
ENDPOINT_POLICIES = ("allow", "deny", "no_allow")
SESSION_RESOURCE_STATES = {"log_group": ("present", "missing", "unencrypted"), "kms_key": ("present", "missing"),
                           "bucket": ("present", "missing", "unencrypted")}
# The preference naming each resource (session_resources.<kind> needs it set).
SESSION_RESOURCE_INPUTS = {"log_group": "cloudWatchLogGroupName", "kms_key": "kmsKeyId", "bucket": "s3BucketName"}
MAX_CLOCK_OFFSET_S = 86400
SSM_AGENT_MODES = ("running", "stopped", "not_connected")
STATUSES = ("OK", "WARNING", "CRITICAL", "UNKNOWN")
VERDICT_STATES = ("works", "broken")
BUCKET_REGIONS = ("us-east-1", "us-west-2")  # the resolver knows S3 names for these two only
MAX_SERVICES = 64  # public service addresses are 198.51.100.64-127
# Addresses a scenario may name (etc_hosts, stale answers): the VPC, loopback and the two
# documentation ranges that stand for public addresses. Nothing else may ever be dialled.
ALLOWED_NETS = tuple(ipaddress.ip_network(n) for n in
                     ("10.0.0.0/16", "127.0.0.0/8", "198.51.100.0/24", "203.0.113.0/24"))
PUBLIC_IP_NET = ipaddress.ip_network("203.0.113.0/24")

_IAM_ACTION_RE = re.compile(r"^(\*|[a-z0-9-]+:[A-Za-z0-9*?]+)$")
_SERVICE_RE = re.compile(r"^[a-z0-9][a-z0-9-]*(\.[a-z0-9-]+)*$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_HOST_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$")


class ScenarioError(Exception):
    """A scenario file that cannot be used; ``str()`` is a one-line ``file:key: problem``."""


@dataclass(frozen=True)
class Endpoint:
    service: str
    present: bool = True
    private_dns: bool = True
    azs: Tuple[str, ...] = ("a", "b")
    unreachable_azs: Tuple[str, ...] = ()
    state: str = "available"
    policy: str = "allow"  # the endpoint policy: allow | deny (explicit deny) | no_allow (allows nothing)
    ip_address_type: str = "ipv4"  # ipv4 | dualstack (A and AAAA records; tests/lab/ipv6lab.py)


@dataclass(frozen=True)
class StaleAnswer:
    ips: Tuple[str, ...]
    keep_real: bool = False  # True: the stale addresses are added to the real answers


@dataclass(frozen=True)
class Bucket:
    name: str = "vpce-lab-bucket"
    region: str = "us-east-1"
    key: str = "hello.txt"
    body: str = "hello from the private subnet\n"


@dataclass(frozen=True)
class FindingExpect:
    statuses: Tuple[str, ...] = ()  # any of these; empty: the finding only has to exist
    cause_codes: Tuple[str, ...] = ()  # any of these; empty: not compared
    evidence: Mapping[str, Any] = field(default_factory=dict)  # a subset of the finding's evidence
    resource_types: Tuple[str, ...] = ()  # its resource.type, any of these (checks/resources.py); empty: any


@dataclass(frozen=True)
class Expect:
    exit_code: Optional[int] = None
    findings: Mapping[str, FindingExpect] = field(default_factory=dict)
    verdicts: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    name: str = "healthy"
    description: str = ""
    region: str = "us-east-1"
    enable_dns_support: bool = True
    enable_dns_hostnames: bool = True
    endpoints: Tuple[Endpoint, ...] = tuple(Endpoint(s) for s in DEFAULT_SERVICES)
    endpoint_sg_inbound_443: bool = True
    instance_sg_outbound_443: bool = True
    instance_sg_outbound_443_to: str = "anywhere"  # anywhere (0.0.0.0/0) | vpc (the VPC CIDR only: not S3, not the internet)
    nacls: Mapping[str, Nacl] = field(default_factory=dict)  # subnet letter -> its network ACL (tests/lab/nacl.py)
    s3_gateway_endpoint: bool = True
    s3_route: bool = True
    s3_route_table: str = "instance"  # the table the gateway endpoint is associated with: instance | other (subnet b's)
    s3_policy_allows: bool = True
    s3_policy: str = "allow"  # the gateway endpoint policy: allow | deny | no_allow (policy_allows false = deny)
    bucket: Bucket = Bucket()
    dynamodb: ddbknobs.DynamoDb = ddbknobs.DynamoDb()  # the DynamoDB gateway endpoint and table (ddbknobs)
    public_ip: Optional[str] = None
    profile_attached: bool = True
    profile_s3_permission: bool = True
    profile_denied_actions: Tuple[str, ...] = ()  # IAM action patterns no identity-based policy allows
    profile_trusts_ec2: bool = True
    profile_credentials_expired: bool = False
    aws_clock_offset_s: int = 0  # AWS's clock = the lab host's + this
    session_preferences: Optional[Mapping[str, Any]] = None  # SSM-SessionManagerRunShell inputs; None: no document
    session_resources: Mapping[str, str] = field(default_factory=dict)  # kind -> present|missing|unencrypted
    internet: str = "none"
    internet_443: str = "open"  # closed: google.com's port 443 refuses (RST), seen only with internet igw|nat
    imds: str = "ok"
    ipv6: str = "none"  # none | dual_stack | ipv6_only (the instance's subnet a; tests/lab/ipv6lab.py)
    imds_ipv6: str = "enabled"  # enabled | disabled: IMDS's IPv6 endpoint (http-protocol-ipv6), with ipv6 on
    endpoint_sg_inbound_443_ipv6: bool = True  # false: the endpoint SG admits 443 over IPv4 only (ipv6lab)
    etc_hosts: Mapping[str, str] = field(default_factory=dict)
    resolv_conf_nameservers: Tuple[str, ...] = ("10.0.0.2",)  # the instance's /etc/resolv.conf
    dhcp_options: DhcpOptions = DhcpOptions()  # the VPC's DHCP option set; a custom server runs (dnsknobs)
    dns_shadow_zone: Optional[ShadowZone] = None  # a private hosted zone shadowing AWS names (dnsknobs)
    resolver_latency_ms: int = 0
    stale_answers: Mapping[str, StaleAnswer] = field(default_factory=dict)
    tls_inspection: Tuple[str, ...] = ()  # services whose ENIs a TLS-inspecting firewall answers (tlspath)
    instance_ca_bundle: str = "ok"  # ok | missing_amazon_root: the instance's CA bundle (tlspath)
    path_mtu: Optional[int] = None  # bigger packets from the ENIs toward the instance vanish (tlspath)
    ssm_agent: AgentSpec = AgentSpec()  # compares equal to its state string ("running", ...)
    agent_config: Optional[Mapping[str, Any]] = None
    extra_interface_endpoints: int = 0
    expect: Expect = Expect()
    source: Optional[Path] = None


# --- a strict reader over one YAML mapping ----------------------------------------------------

class _Section:
    """Reads typed keys out of one mapping and remembers which were read (the rest are errors)."""

    def __init__(self, where: str, path: str, data: Any) -> None:
        self.where, self.path = where, path
        if data is None:
            data = {}
        if not isinstance(data, dict):
            self.fail(None, f"expected a mapping, got {_show(data)}")
        self.data: Dict[str, Any] = data
        self.seen: set = set()

    def key(self, key: Optional[str]) -> str:
        return ".".join(p for p in (self.path, key) if p)

    def fail(self, key: Optional[str], problem: str) -> None:
        raise ScenarioError(f"{self.where}:{self.key(key) or '<top>'}: {problem}")

    def raw(self, key: str, default: Any) -> Any:
        self.seen.add(key)
        return self.data.get(key, default)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {_show(value)}")
        return value

    def integer(self, key: str, default: Optional[int], lo: int, hi: int) -> Optional[int]:
        value = self.raw(key, default)
        if value is None and default is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            self.fail(key, f"expected an integer {lo}..{hi}, got {_show(value)}")
        return value

    def string(self, key: str, default: Optional[str], choices: Tuple[str, ...] = (),
               pattern: Optional[re.Pattern] = None) -> Optional[str]:
        value = self.raw(key, default)
        if value is None and default is None:
            return None
        if not isinstance(value, str):
            self.fail(key, f"expected a string, got {_show(value)}")
        if choices and value not in choices:
            self.fail(key, f"expected one of {', '.join(choices)}, got {_show(value)}")
        if pattern is not None and not pattern.match(value):
            self.fail(key, f"expected a name matching {pattern.pattern}, got {_show(value)}")
        return value

    def section(self, key: str) -> "_Section":
        self.seen.add(key)
        return _Section(self.where, self.key(key), self.data.get(key))

    def finish(self) -> None:
        unknown = sorted(str(k) for k in self.data if k not in self.seen)
        if unknown:
            known = ", ".join(sorted(self.seen))
            self.fail(unknown[0], f"unknown key (expected one of: {known})")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _address(sec: _Section, key: str, value: Any) -> str:
    try:
        ip = ipaddress.IPv4Address(value)
    except (ValueError, TypeError):
        sec.fail(key, f"expected an IPv4 address, got {_show(value)}")
        raise  # unreachable: fail() raises
    if not any(ip in net for net in ALLOWED_NETS):
        sec.fail(key, f"{ip} is outside the lab's ranges (10.0.0.0/16, 127.0.0.0/8, 198.51.100.0/24, "
                      f"203.0.113.0/24): the lab never dials real addresses")
    return str(ip)


# --- the scenario ---------------------------------------------------------------------------

def load(path: Path) -> Scenario:
    path = Path(path)
    where = path.name
    try:
        text = path.read_text()
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise ScenarioError(f"{where}:{line.strip() or '<top>'}: not valid YAML: "
                            f"{getattr(exc, 'problem', None) or exc}") from exc
    return parse(data, where, default_name=path.stem, source=path)


def parse(data: Any, where: str = "<scenario>", default_name: str = "scenario",
          source: Optional[Path] = None) -> Scenario:
    top = _Section(where, "", data)
    name = top.string("name", default_name, pattern=re.compile(r"^[A-Za-z0-9_.-]{1,64}$"))
    description = top.string("description", "")
    region = top.string("region", "us-east-1", choices=("us-east-1",))

    vpc = top.section("vpc")
    dns_support = vpc.boolean("enable_dns_support", True)
    dns_hostnames = vpc.boolean("enable_dns_hostnames", True)
    vpc.finish()

    endpoints = _endpoints(top.section("endpoints"))

    s3 = top.section("s3")
    s3_gateway = s3.boolean("gateway_endpoint", True)
    s3_route = s3.boolean("route", True)
    s3_route_table = s3.string("route_table", "instance", ("instance", "other")) or "instance"
    s3_policy = s3.boolean("policy_allows", True)
    s3_policy_mode = s3.string("policy", "allow" if s3_policy else "deny", choices=ENDPOINT_POLICIES) or "allow"
    if not s3_policy and s3_policy_mode != "deny":
        s3.fail("policy", f"{s3_policy_mode} contradicts policy_allows: false (an explicit deny); set only one")
    s3.finish()

    b = top.section("bucket")
    bucket = Bucket(name=b.string("name", Bucket.name, pattern=_BUCKET_RE) or Bucket.name,
                    region=b.string("region", Bucket.region, choices=BUCKET_REGIONS) or Bucket.region,
                    key=b.string("key", Bucket.key) or Bucket.key,
                    body=b.string("body", Bucket.body) or "")
    b.finish()

    inst = top.section("instance")
    public_ip = inst.raw("public_ip", None)
    if public_ip is not None:
        public_ip = _address(inst, "public_ip", public_ip)
        if ipaddress.IPv4Address(public_ip) not in PUBLIC_IP_NET or public_ip == "203.0.113.10":
            inst.fail("public_ip", f"expected an address in 203.0.113.0/24 other than 203.0.113.10, got {public_ip}")
    prof = inst.section("profile")
    attached = prof.boolean("attached", True)
    s3_permission = prof.boolean("s3_permission", True)
    denied_actions = _denied_actions(prof)
    trusts_ec2 = prof.boolean("trusts_ec2", True)
    credentials_expired = prof.boolean("credentials_expired", False)
    prof.finish()
    inst.finish()

    etc = top.section("etc_hosts")
    etc_hosts: Dict[str, str] = {}
    for host, ip in etc.data.items():
        etc.seen.add(host)
        if not isinstance(host, str) or not _HOST_RE.match(host):
            etc.fail(str(host), "expected a host name")
        etc_hosts[host] = _address(etc, host, ip)

    stale = _stale_answers(top.section("stale_answers"), {e.service for e in endpoints})

    dhcp = dnsknobs.parse_dhcp(top.raw("dhcp_options", None), top.fail)
    nameservers = top.raw("resolv_conf_nameservers", list(dhcp.resolv_conf))  # DHCP writes it by default
    if not isinstance(nameservers, list) or not 1 <= len(nameservers) <= 3:
        top.fail("resolv_conf_nameservers", f"expected a list of 1-3 IPv4 addresses (glibc reads three), "
                                            f"got {_show(nameservers)}")
    resolv_conf = tuple(_address(top, "resolv_conf_nameservers", ip) for ip in nameservers)

    agent_config = top.raw("agent_config", None)
    if agent_config is not None and not isinstance(agent_config, dict):
        top.fail("agent_config", f"expected a mapping (a vpce-doctor config), got {_show(agent_config)}")

    preferences = _session_preferences(top)
    resources = _session_resources(top.section("session_resources"), preferences)

    sc = top.section("scale")
    implicit_ec2 = 0 if any(e.service == "ec2" for e in endpoints) else 1  # see world.build
    extra = sc.integer("extra_interface_endpoints", 0, 0, MAX_SERVICES - len(endpoints) - implicit_ec2) or 0
    sc.finish()

    scenario = Scenario(
        name=name or default_name, description=description or "", region=region or "us-east-1",
        enable_dns_support=dns_support, enable_dns_hostnames=dns_hostnames, endpoints=endpoints,
        endpoint_sg_inbound_443=top.boolean("endpoint_sg_inbound_443", True),
        instance_sg_outbound_443=top.boolean("instance_sg_outbound_443", True),
        instance_sg_outbound_443_to=top.string("instance_sg_outbound_443_to", "anywhere", SG_EGRESS_SCOPES) or "anywhere",
        nacls=nacl.parse(top.raw("nacls", None), top.fail, AZ_LETTERS),
        s3_gateway_endpoint=s3_gateway, s3_route=s3_route, s3_route_table=s3_route_table, s3_policy_allows=s3_policy_mode == "allow",
        s3_policy=s3_policy_mode,
        bucket=bucket, dynamodb=ddbknobs.parse(top.raw("dynamodb", None), top.fail),
        public_ip=public_ip, profile_attached=attached, profile_s3_permission=s3_permission,
        profile_denied_actions=denied_actions, profile_trusts_ec2=trusts_ec2,
        profile_credentials_expired=credentials_expired,
        aws_clock_offset_s=top.integer("aws_clock_offset_s", 0, -MAX_CLOCK_OFFSET_S, MAX_CLOCK_OFFSET_S) or 0,
        session_preferences=preferences, session_resources=resources,
        internet=top.string("internet", "none", choices=INTERNET_MODES) or "none",
        internet_443=top.string("internet_443", "open", choices=INTERNET_443_MODES) or "open",
        imds=top.string("imds", "ok", choices=IMDS_MODES) or "ok",
        ipv6=top.string("ipv6", "none", choices=ipv6lab.MODES) or "none",
        imds_ipv6=top.string("imds_ipv6", "enabled", choices=("enabled", "disabled")) or "enabled",
        endpoint_sg_inbound_443_ipv6=top.boolean("endpoint_sg_inbound_443_ipv6", True),
        etc_hosts=etc_hosts,
        resolv_conf_nameservers=resolv_conf,
        dhcp_options=dhcp,
        dns_shadow_zone=dnsknobs.parse_shadow(top.raw("dns_shadow_zone", None), top.fail),
        resolver_latency_ms=top.integer("resolver_latency_ms", 0, 0, 5000) or 0,
        stale_answers=stale,
        tls_inspection=tlspath.parse_inspection(top.raw("tls_inspection", None), top.fail,
                                                {e.service for e in endpoints if e.present}),
        instance_ca_bundle=tlspath.parse_ca_bundle(top.raw("instance_ca_bundle", None), top.fail),
        path_mtu=tlspath.parse_path_mtu(top.raw("path_mtu", None), top.fail),
        ssm_agent=_ssm_agent(top),
        agent_config=agent_config,
        extra_interface_endpoints=extra,
        expect=_expect(top.section("expect")),
        source=source,
    )
    top.finish()
    return scenario


def _ssm_agent(top: _Section) -> AgentSpec:
    def fail(sub: str, problem: str) -> None:
        top.fail("ssm_agent" + (f".{sub}" if sub else ""), problem)
    return agent_spec.parse(top.raw("ssm_agent", None), fail)


def _endpoints(sec: _Section) -> Tuple[Endpoint, ...]:
    """The three SSM endpoints always exist (index 0-2, so addresses never move); listed keys
    override their fields, other services are appended in file order."""
    order: List[str] = list(DEFAULT_SERVICES)
    given: Dict[str, Endpoint] = {}
    for service in sec.data:
        sec.seen.add(service)
        if not isinstance(service, str) or not _SERVICE_RE.match(service):
            sec.fail(str(service), "expected an endpoint service name like ssm or ecr.api")
        if service == "s3":
            sec.fail(service, "S3 is the gateway endpoint of the s3: section, not an interface endpoint")
        ep = sec.section(service)
        azs = _az_list(ep, "azs", ("a", "b"))
        unreachable = _az_list(ep, "unreachable_azs", ())
        present = ep.boolean("present", True)
        for az in unreachable:
            if az not in azs:
                ep.fail("unreachable_azs", f"AZ {az} is not in azs {list(azs)}")
        if present and not azs:
            ep.fail("azs", "a present endpoint needs at least one AZ")
        given[service] = Endpoint(service=service, present=present,
                                  private_dns=ep.boolean("private_dns", True), azs=azs,
                                  unreachable_azs=unreachable,
                                  state=ep.string("state", "available", choices=ENDPOINT_STATES) or "available",
                                  policy=ep.string("policy", "allow", choices=ENDPOINT_POLICIES) or "allow",
                                  ip_address_type=ep.string("ip_address_type", "ipv4",
                                                            choices=ipv6lab.IP_ADDRESS_TYPES) or "ipv4")
        ep.finish()
        if service not in order:
            order.append(service)
    if len(order) > MAX_SERVICES:
        sec.fail(None, f"at most {MAX_SERVICES} interface endpoint services, got {len(order)}")
    return tuple(given.get(s, Endpoint(s)) for s in order)


def _denied_actions(sec: _Section) -> Tuple[str, ...]:
    value = sec.raw("denied_actions", [])
    if not isinstance(value, list):
        sec.fail("denied_actions", f"expected a list of IAM actions like ssm:* or s3:PutObject, got {_show(value)}")
    for action in value:
        if not isinstance(action, str) or not _IAM_ACTION_RE.match(action):
            sec.fail("denied_actions", f"expected IAM actions like ssm:*, kms:Decrypt or s3:PutObject, "
                                       f"got {_show(action)}")
    return tuple(value)


def _session_preferences(top: _Section) -> Optional[Dict[str, Any]]:
    """``none`` (the default: no SSM-SessionManagerRunShell document) or its inputs, typed strictly."""
    value = top.raw("session_preferences", "none")
    if value is None or value == "none":
        return None
    if not isinstance(value, dict):
        top.fail("session_preferences", f"expected none or a mapping of the document's inputs, got {_show(value)}")
    from .aws.session_prefs import input_problems  # botocore-heavy: only for scenarios that use it

    for name, problem in input_problems(value):
        top.fail(f"session_preferences.{name}", problem)
    return dict(value)


def _session_resources(sec: _Section, preferences: Optional[Mapping[str, Any]]) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for kind, states in SESSION_RESOURCE_STATES.items():
        state = sec.string(kind, "present", choices=states) or "present"
        if state != "present" and not (preferences or {}).get(SESSION_RESOURCE_INPUTS[kind]):
            sec.fail(kind, f"the preferences name no such resource (set session_preferences."
                           f"{SESSION_RESOURCE_INPUTS[kind]})")
        out[kind] = state
    sec.finish()
    return out


def _az_list(sec: _Section, key: str, default: Tuple[str, ...]) -> Tuple[str, ...]:
    value = sec.raw(key, list(default))
    if not isinstance(value, list) or any(v not in AZ_LETTERS for v in value) or len(set(value)) != len(value):
        sec.fail(key, f"expected a list of distinct AZ letters from a, b, c, got {_show(value)}")
    return tuple(sorted(value))


def _stale_answers(sec: _Section, services: set) -> Dict[str, StaleAnswer]:
    out: Dict[str, StaleAnswer] = {}
    for service, value in sec.data.items():
        sec.seen.add(service)
        if service not in services:
            sec.fail(str(service), f"not an interface endpoint service of this scenario ({', '.join(sorted(services))})")
        keep_real = False
        if isinstance(value, dict):
            inner = sec.section(service)
            keep_real = inner.boolean("keep_real", False)
            value = inner.raw("ips", None)
            inner.finish()
        if not isinstance(value, list) or not value:
            sec.fail(service, f"expected a non-empty list of IPv4 addresses (or {{ips: [...], keep_real: bool}}), "
                              f"got {_show(value)}")
        ips = tuple(_address(sec, service, ip) for ip in value)
        for ip in ips:
            if ipaddress.IPv4Address(ip) in ipaddress.ip_network("127.0.0.0/8"):
                sec.fail(service, f"{ip}: a stale answer must be an address inside the VPC namespace, not loopback")
        out[service] = StaleAnswer(ips=ips, keep_real=keep_real)
    return out


def _known_cause_codes() -> Optional[set]:
    """The agent's cause codes, to catch typos in ``expect``; None when the agent isn't importable."""
    try:
        from checks.causes import CAUSES
    except Exception:  # noqa: BLE001 - the lab must not depend on the agent being importable
        return None
    return set(CAUSES)


def _resource_kinds() -> Optional[Tuple[str, ...]]:
    """The resource kinds a finding can name (checks/resources.py); None when the agent isn't importable."""
    try:
        from checks.resources import KINDS
    except Exception:  # noqa: BLE001 - the lab must not depend on the agent being importable
        return None
    return KINDS


def _one_or_many(sec: _Section, key: str, choices: Optional[Tuple[str, ...]]) -> Tuple[str, ...]:
    value = sec.raw(key, None)
    if value is None:
        return ()
    values = value if isinstance(value, list) else [value]
    for v in values:
        if not isinstance(v, str) or (choices is not None and v not in choices):
            allowed = ", ".join(choices) if choices is not None else "strings"
            sec.fail(key, f"expected one of {allowed} (or a list of them), got {_show(v)}")
    return tuple(values)


def _expect(sec: _Section) -> Expect:
    exit_code = sec.integer("exit_code", None, 0, 3)
    causes = _known_cause_codes()
    findings: Dict[str, FindingExpect] = {}
    fsec = sec.section("findings")
    for fid, _ in fsec.data.items():
        fsec.seen.add(fid)
        if not isinstance(fid, str) or not fid:
            fsec.fail(str(fid), "expected a finding id like dns.ssm")
        one = fsec.section(fid)
        evidence = one.raw("evidence", {})
        if not isinstance(evidence, dict):
            one.fail("evidence", f"expected a mapping (a subset of the finding's evidence), got {_show(evidence)}")
        cause_codes = _one_or_many(one, "cause_code", None)
        for code in cause_codes:
            if causes is not None and code not in causes:
                one.fail("cause_code", f"{code!r} is not a cause code of checks/causes.py")
        findings[fid] = FindingExpect(statuses=_one_or_many(one, "status", STATUSES),
                                      cause_codes=cause_codes, evidence=evidence,
                                      resource_types=_one_or_many(one, "resource_type", _resource_kinds()))
        one.finish()
    fsec.finish()
    vsec = sec.section("verdicts")
    verdicts: Dict[str, str] = {}
    for name in vsec.data:
        verdicts[str(name)] = vsec.string(name, None, choices=VERDICT_STATES) or ""
    vsec.finish()
    sec.finish()
    return Expect(exit_code=exit_code, findings=findings, verdicts=verdicts)
