"""The config file: YAML, every key optional, validated against ONE declarative schema table.

``load_config(path)`` reads ``/etc/vpce-doctor/config.yaml`` by default (absent → defaults);
``parse_config(data, source)`` validates an already-loaded object. Every problem raises
``ConfigError`` with one line: ``<file>: <key.path>: <what was wrong>; expected <what>``.

Adding a section (e.g. ``daemon:``): add a ``Section`` to ``SCHEMA``; its validated values appear
in ``Config.values`` without touching the loader. The value checks (shared with ``vpce_doctor.imds``
for instance facts) are in ``config_values``; reading the file safely is ``config_file``.
"""
from __future__ import annotations

import difflib
import ipaddress
import os
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

from .checks.model import Settings, Target
from .config_dynamodb import dynamodb_section
from .config_file import MAX_FILE_BYTES, load_yaml, read_text
from .config_values import (SEVERITIES, Invalid, Problem, absolute_path, boolean, bucket_name,
                            check_selector, choice, egress_target, file_path, hostname, imds_endpoint, instance_id,
                            interval, ipv4, ipv4_cidr, join_path, mac_address, one_line, partition_name, profile_arn,
                            publish_rule, region_name, s3_key, seconds, service_name, sg_id, subnet_id, type_name,
                            vpc_id, region_partition_mismatch)
from .errors import ConfigError, show
from .publishers import settings as publish_rules
from .publishers.settings import PublishSettings

DEFAULT_CONFIG_PATH = "/etc/vpce-doctor/config.yaml"


# --- the declarative schema ------------------------------------------------------------------------
@dataclass(frozen=True)
class Value:
    check: Callable[[Any], Any]
    default: Any = None
    nullable: bool = False  # null is accepted (and means "none"/"default")


@dataclass(frozen=True)
class ListOf:
    item: Callable[[Any], Any]
    expected: str
    default: Tuple[Any, ...] = ()
    min_items: int = 0


@dataclass(frozen=True)
class Section:
    fields: Mapping[str, "Node"]
    fill_defaults: bool = True  # False: absent keys stay absent (the facts overrides)


@dataclass(frozen=True)
class MapOf:
    """A mapping with keys the user chooses (checked by ``key``) and one schema for every value."""
    key: Callable[[Any], str]
    value: "Node"
    expected: str
    max_items: int = 64


Node = Union[Value, ListOf, Section, MapOf]

FACTS = Section({
    "region": Value(region_name),
    "partition": Value(partition_name),
    "domain": Value(hostname),
    "instance_id": Value(instance_id),
    "mac": Value(mac_address),
    "vpc_id": Value(vpc_id),
    "subnet_id": Value(subnet_id),
    "vpc_cidr": Value(ipv4_cidr),
    "vpc_cidrs": ListOf(ipv4_cidr, "a list of IPv4 CIDR blocks, primary first", min_items=1),
    "subnet_cidr": Value(ipv4_cidr),
    "local_ipv4": Value(ipv4),
    "public_ipv4": Value(ipv4, nullable=True),  # null: the instance has none
    "instance_profile_arn": Value(profile_arn, nullable=True),  # null: none attached
    "security_group_ids": ListOf(sg_id, "a list of security group ids like sg-0123456789abcdef0"),
}, fill_defaults=False)

SCHEMA = Section({
    "facts": FACTS,
    "imds": Section({
        "enabled": Value(boolean, True),
        "endpoint": Value(imds_endpoint, "http://169.254.169.254"),
        "timeout_s": Value(seconds(300), 1.0),
    }),
    "services": ListOf(service_name, "a list of service names like [ssm, ec2messages, ssmmessages]",
                       ("ssm", "ec2messages", "ssmmessages")),
    "extra_services": ListOf(service_name, "a list of service names like [kms, logs]"),
    "fips": Value(boolean, False),
    "resolver": Value(ipv4, None, nullable=True),
    "timeouts": Section({
        "deadline_s": Value(seconds(600), 10.0),
        "dns_s": Value(seconds(300), 2.0),
        "connect_s": Value(seconds(300), 2.0),
        "tls_s": Value(seconds(300), 3.0),
        "api_s": Value(seconds(300), 3.0),
    }),
    "egress": Section({
        "targets": ListOf(egress_target, 'a list of "host[:port]" strings like ["google.com:443"]',
                          (Target("google.com", 443),)),
        # The wait for the SYN's answer: an open path answers within one round trip, and Linux's
        # first SYN retransmit goes at 1 s (TCP_TIMEOUT_INIT, RFC 6298 2.1): silence until then is a drop.
        "timeout_s": Value(seconds(300), 1.0),
    }),
    "s3": Section({
        "bucket": Value(bucket_name, None, nullable=True),
        "key": Value(s3_key, None, nullable=True),
        "get_object": Value(boolean, False),
    }),
    # DynamoDB through its gateway endpoint (checks/dynamodb.py); absent or null: checked only where
    # the EC2 view shows a DynamoDB gateway endpoint in the VPC.
    "dynamodb": Value(dynamodb_section, None, nullable=True),
    "ca_bundle": Value(file_path, None, nullable=True),
    # How AWS clients pick their endpoint (checks/awsclient.py).
    "aws": Section({
        "use_configured_endpoint_urls": Value(boolean, False),
    }),
    "checks": Section({
        "ssm_agent": Value(boolean, True),
        "ec2_api": Value(boolean, True),
        # Per check id or prefix: enabled (false: not run) and severity (the most a failure counts).
        "overrides": MapOf(check_selector, Section({
            "enabled": Value(boolean, True),
            "severity": Value(choice(*SEVERITIES), None, nullable=True),
        }), "a mapping of check ids to {enabled: true|false, severity: WARNING|CRITICAL}"),
    }),
    # The SSM agent's own files (checks/ssmagent.py): where to read its evidence; defaults are the agent's.
    "ssm_agent": Section({
        "log_dir": Value(absolute_path, "/var/log/amazon/ssm"),
        "data_dir": Value(absolute_path, "/var/lib/amazon/ssm"),
        "config_file": Value(absolute_path, "/etc/amazon/ssm/amazon-ssm-agent.json"),
        "binaries": ListOf(absolute_path, "a list of absolute paths like [/usr/bin/amazon-ssm-agent]",
                           Settings.ssm_agent_binaries, min_items=1),
        "dropin_dirs": ListOf(absolute_path, "a list of absolute paths like "
                              "[/etc/systemd/system/amazon-ssm-agent.service.d]", Settings.ssm_agent_dropin_dirs),
    }),
    # `vpce-doctor daemon` (agent/daemon.py).
    "daemon": Section({
        "interval_s": Value(interval(86400), 300.0),  # between cycle starts
        "jitter_s": Value(interval(3600), 30.0),  # + uniform(0, jitter_s): a fleet does not call in lockstep
        "state_dir": Value(absolute_path, "/var/lib/vpce-doctor"),
        "log_format": Value(choice("text", "json"), "text"),
    }),
    # Where each report goes (agent/publishers/); the value rules live in publishers/settings.py.
    "publish": Section({
        "publishers": ListOf(publish_rule(publish_rules.publisher_name),
                             f"a list of publishers from {', '.join(publish_rules.PUBLISHER_NAMES)}",
                             publish_rules.DEFAULT_PUBLISHERS),
        "inventory": Section({
            "type_name": Value(publish_rule(publish_rules.inventory_type_name), publish_rules.DEFAULT_TYPE_NAME),
            "timeout_s": Value(publish_rule(publish_rules.timeout_s), 5.0),
        }),
        "inventory_file": Section({
            "root": Value(absolute_path, "/var/lib/amazon/ssm"),
            "timeout_s": Value(publish_rule(publish_rules.timeout_s), 2.0),
        }),
        "cloudwatch": Section({
            "namespace": Value(publish_rule(publish_rules.cloudwatch_namespace), "VpceDoctor"),
            "timeout_s": Value(publish_rule(publish_rules.timeout_s), 5.0),
        }),
        "http": Section({
            "bind": Value(publish_rule(publish_rules.bind_address), "127.0.0.1"),
            "port": Value(publish_rule(publish_rules.port), 9464),
        }),
        "last_report": Section({
            "path": Value(absolute_path, None, nullable=True),  # null: <state_dir>/last-report.json
        }),
    }),
})


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


def _key_text(key: str) -> str:
    """A key as it appears in a message: plain keys as they are, anything else only described
    (a file that is not a config, /etc/shadow say, must not come back through the error message)."""
    if _PLAIN_KEY.match(key):
        return key
    return f"<a key of {len(key)} characters that is not a setting name>"


def _validate(node: Node, value: Any, path: str) -> Any:
    if isinstance(node, Section):
        return _validate_section(node, value, path)
    if isinstance(node, MapOf):
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise Problem(path, f"{show(value)} is {type_name(value)}, not a mapping", node.expected)
        if len(value) > node.max_items:
            raise Problem(path, f"{len(value)} entries", f"at most {node.max_items}")
        out_map: Dict[str, Any] = {}
        for key, item in value.items():
            try:
                checked_key = node.key(key)
            except Invalid as exc:
                where = join_path(path, _key_text(key) if isinstance(key, str) else show(key, 40))
                raise Problem(where, exc.what, exc.expected) from None
            out_map[checked_key] = _validate(node.value, item, join_path(path, checked_key))
        return out_map
    if isinstance(node, ListOf):
        if value is None:
            raise Problem(path, "null is not a list (write [] for an empty list)", node.expected)
        if not isinstance(value, list):
            raise Problem(path, f"{show(value)} is {type_name(value)}, not a list", node.expected)
        if len(value) < node.min_items:
            raise Problem(path, "the list is empty", node.expected)
        out: List[Any] = []
        seen: set = set()  # a set, not `in out`: a long list must not cost quadratic time
        for i, item in enumerate(value):
            try:
                checked = node.item(item)
            except Invalid as exc:
                raise Problem(f"{path}[{i}]", exc.what, exc.expected) from None
            try:
                twice = checked in seen
                seen.add(checked)
            except TypeError:  # an unhashable entry: compare the slow way
                twice = checked in out
            if twice:
                raise Problem(f"{path}[{i}]", f"{show(item)} is listed twice", "each entry once")
            out.append(checked)
        return tuple(out)
    if value is None:
        if node.nullable:
            return None
        try:  # let the check describe what a good value looks like
            node.check(value)
        except Invalid as exc:
            raise Problem(path, "null is not allowed here (omit the key instead)",
                           exc.expected) from None
    try:
        return node.check(value)
    except Invalid as exc:
        raise Problem(path, exc.what, exc.expected) from None


def _validate_section(section: Section, value: Any, path: str) -> Dict[str, Any]:
    known = list(section.fields)
    if value is None:  # `imds:` with nothing under it: all defaults
        value = {}
    if not isinstance(value, dict):
        if not path:  # the whole file is not settings (a wrong file?): say what it is, never echo it
            raise Problem("(document)", f"the file holds {type_name(value)}, not a mapping of settings",
                           f"a mapping with keys {', '.join(known)}")
        raise Problem(path, f"{show(value)} is {type_name(value)}, not a mapping",
                       f"a mapping with keys {', '.join(known)}")
    out: Dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise Problem(join_path(path, show(key, 40)), f"the key is {type_name(key)}, not a string",
                           f"one of {', '.join(known)}")
        if key not in section.fields:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6) if len(key) <= 64 else []
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            raise Problem(join_path(path, _key_text(key)), f"unknown key{hint}", f"one of {', '.join(known)}")
        out[key] = _validate(section.fields[key], item, join_path(path, key))
    if section.fill_defaults:
        for key, node in section.fields.items():
            if key not in out:
                out[key] = (_validate(node, None, join_path(path, key)) if isinstance(node, (Section, MapOf))
                            else node.default)
    return out


def _cross_checks(values: Dict[str, Any], base_dir: Optional[str]) -> None:
    """Rules that span keys: facts must agree with each other (as AWS guarantees), S3 needs its bucket."""
    facts = values["facts"]
    cidrs = facts.get("vpc_cidrs")
    if cidrs and facts.get("vpc_cidr") and facts["vpc_cidr"] != cidrs[0]:
        raise Problem("facts.vpc_cidrs", f"the first entry {cidrs[0]} is not facts.vpc_cidr {facts['vpc_cidr']}",
                       "the primary CIDR (the resolver's) first")
    vpc_nets = [ipaddress.IPv4Network(c) for c in (cidrs or ([facts["vpc_cidr"]] if facts.get("vpc_cidr") else []))]
    if facts.get("subnet_cidr") and vpc_nets:
        subnet = ipaddress.IPv4Network(facts["subnet_cidr"])
        if not any(subnet.subnet_of(n) for n in vpc_nets):
            raise Problem("facts.subnet_cidr", f"{subnet} is outside the VPC CIDRs {', '.join(map(str, vpc_nets))}",
                           "a subnet inside the VPC")
    if facts.get("local_ipv4") and facts.get("subnet_cidr"):
        if ipaddress.IPv4Address(facts["local_ipv4"]) not in ipaddress.IPv4Network(facts["subnet_cidr"]):
            raise Problem("facts.local_ipv4", f"{facts['local_ipv4']} is outside facts.subnet_cidr "
                           f"{facts['subnet_cidr']}", "the instance's address inside its subnet")
    if facts.get("region") and facts.get("partition"):  # cn-north-1 with partition aws: no name would resolve
        wrong = region_partition_mismatch(facts["region"], facts["partition"])
        if wrong:
            raise Problem("facts.region", wrong.what, wrong.expected)
    s3 = values["s3"]
    if s3["key"] is not None and s3["bucket"] is None:
        raise Problem("s3.bucket", "s3.key is set but s3.bucket is not", "a bucket name with the key")
    if s3["get_object"] and (s3["bucket"] is None or s3["key"] is None):
        missing = "s3.bucket" if s3["bucket"] is None else "s3.key"
        raise Problem(missing, "s3.get_object is true but no object is named", "s3.bucket and s3.key")
    if values["ca_bundle"] is not None:
        values["ca_bundle"] = _check_ca_bundle(values["ca_bundle"], base_dir)
    _check_meaning(values)


def _check_meaning(values: Dict[str, Any]) -> None:
    """What the shape allows but cannot work: a service name one letter off a real one (at run time
    its NXDOMAIN would be blamed on DNS), verdicts without ssm, an isolation target that is an AWS
    service name (the endpoints answer it: a false "not isolated")."""
    from .checks.hostnames import known_services, partition_name

    region = values["facts"].get("region")
    partition = values["facts"].get("partition") or (partition_name(region) if region else None)
    known = known_services(partition)
    where_known = f"a service of the {partition} partition" if partition else "an AWS service name"
    for key in ("services", "extra_services"):
        for i, name in enumerate(values[key]):
            if name in known:
                continue
            close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
            if close:  # a typo; a name with no near neighbour may be newer than this botocore: allowed
                raise Problem(f"{key}[{i}]", f"{show(name)} is not a known endpoint service "
                               f"(did you mean \"{close[0]}\"?)", where_known)
    if values["services"] and "ssm" not in values["services"]:  # [] is an explicit "no endpoint checks"
        raise Problem("services", "ssm is missing: every verdict (Session Manager, Run Command) needs it",
                       "a list that includes ssm, like [ssm, ec2messages, ssmmessages]")
    _check_isolation_targets(values)


def _check_isolation_targets(values: Dict[str, Any]) -> None:
    for i, target in enumerate(values["egress"]["targets"]):
        host = target.host.lower().rstrip(".")
        if host.endswith((".amazonaws.com", ".amazonaws.com.cn", ".api.aws")):
            raise Problem(f"egress.targets[{i}]", f"{show(target.host)} is an AWS service name: the VPC's "
                           "endpoints may answer it, which would read as a path to the internet",
                           "an internet host that only an IGW or NAT reaches, like google.com:443")


def _check_ca_bundle(path: str, base_dir: Optional[str]) -> str:
    expected = "the path of a readable PEM CA bundle"
    full = os.path.abspath(os.path.join(base_dir or os.getcwd(), os.path.expanduser(path)))
    try:
        with open(full, "rb") as fh:
            head = fh.read(MAX_FILE_BYTES)
    except OSError as exc:
        raise Problem("ca_bundle", f"cannot read {show(full)}: {exc.strerror or exc}", expected) from None
    if b"-----BEGIN CERTIFICATE-----" not in head:
        raise Problem("ca_bundle", f"{show(full)} holds no PEM certificate", expected)
    return full


# --- the result -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImdsSettings:
    enabled: bool = True
    endpoint: str = "http://169.254.169.254"  # or http://[fd00:ec2::254] (Nitro, when enabled)
    timeout_s: float = 1.0  # read timeout of one request
    connect_timeout_s: float = 0.5  # link-local: an answer comes in microseconds or not at all


@dataclass(frozen=True)
class DaemonSettings:
    interval_s: float = 300.0  # between cycle starts; 0: back to back
    jitter_s: float = 30.0  # each wait is interval_s + uniform(0, jitter_s)
    state_dir: str = "/var/lib/vpce-doctor"
    log_format: str = "text"  # text | json


@dataclass(frozen=True)
class Config:
    settings: Settings
    fact_overrides: Mapping[str, Any]
    imds: ImdsSettings
    deadline_s: float
    source: str
    values: Mapping[str, Any] = field(default_factory=dict)  # the whole validated tree, defaults filled
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    publish: PublishSettings = field(default_factory=PublishSettings)


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    return value


def _build(values: Dict[str, Any], source: str) -> Config:
    t, e, s3, imds = values["timeouts"], values["egress"], values["s3"], values["imds"]
    services = values["services"] + tuple(x for x in values["extra_services"] if x not in values["services"])
    settings = Settings(
        services=services, fips=values["fips"], resolver=values["resolver"],
        dns_timeout_s=t["dns_s"], connect_timeout_s=t["connect_s"], tls_timeout_s=t["tls_s"],
        api_timeout_s=t["api_s"], egress_targets=e["targets"], egress_timeout_s=e["timeout_s"],
        s3_bucket=s3["bucket"], s3_key=s3["key"], s3_get_object=s3["get_object"],
        dynamodb_table=values["dynamodb"],
        ca_bundle=values["ca_bundle"], check_ssm_agent=values["checks"]["ssm_agent"],
        check_ec2_api=values["checks"]["ec2_api"],
        use_configured_endpoint_urls=values["aws"]["use_configured_endpoint_urls"],
        overrides=tuple((sel, o["enabled"], o["severity"]) for sel, o in values["checks"]["overrides"].items()),
        ssm_agent_log_dir=values["ssm_agent"]["log_dir"], ssm_agent_data_dir=values["ssm_agent"]["data_dir"],
        ssm_agent_config_file=values["ssm_agent"]["config_file"], ssm_agent_binaries=values["ssm_agent"]["binaries"],
        ssm_agent_dropin_dirs=values["ssm_agent"]["dropin_dirs"])
    imds_settings = ImdsSettings(enabled=imds["enabled"], endpoint=imds["endpoint"], timeout_s=imds["timeout_s"],
                                 connect_timeout_s=min(0.5, imds["timeout_s"]))
    d, p = values["daemon"], values["publish"]
    daemon = DaemonSettings(interval_s=d["interval_s"], jitter_s=d["jitter_s"], state_dir=d["state_dir"],
                            log_format=d["log_format"])
    publish = PublishSettings(
        publishers=p["publishers"], inventory_type_name=p["inventory"]["type_name"],
        inventory_timeout_s=p["inventory"]["timeout_s"], inventory_file_root=p["inventory_file"]["root"],
        inventory_file_timeout_s=p["inventory_file"]["timeout_s"], cloudwatch_namespace=p["cloudwatch"]["namespace"],
        cloudwatch_timeout_s=p["cloudwatch"]["timeout_s"], http_bind=p["http"]["bind"], http_port=p["http"]["port"],
        last_report_path=p["last_report"]["path"])
    return Config(settings=settings, fact_overrides=MappingProxyType(dict(values["facts"])), imds=imds_settings,
                  deadline_s=t["deadline_s"], source=source, values=_freeze(values), daemon=daemon, publish=publish)


def parse_config(data: object, source: str, base_dir: Optional[str] = None) -> Config:
    """Validate a loaded YAML document (None = empty = all defaults). Relative paths in it
    (ca_bundle) are taken from ``base_dir`` (the config file's folder), else the working directory."""
    try:
        values = _validate_section(SCHEMA, data, "")
        _cross_checks(values, base_dir)
    except Problem as p:
        raise ConfigError(one_line(f"{source}: {p.path}: {p.what}; expected {p.expected}")) from None
    return _build(values, source)


def load_config(path: Optional[str] = None) -> Config:
    """The config from ``path``, or from ``/etc/vpce-doctor/config.yaml`` when ``path`` is None
    (a missing default file means all defaults; a missing named file is an error)."""
    if path is None:
        if not os.path.exists(DEFAULT_CONFIG_PATH):
            return parse_config(None, f"{DEFAULT_CONFIG_PATH} (absent: defaults)")
        path = DEFAULT_CONFIG_PATH
    text = read_text(path)
    data = load_yaml(text, path)
    return parse_config(data, path, base_dir=os.path.dirname(os.path.abspath(path)))


def load_config_ahead(path: Optional[str] = None) -> Optional[Config]:
    """``load_config`` without the rules that need botocore's endpoint data (service-name typos, a
    region of another partition) or other files (ca_bundle): what ``vpce-doctor check`` reads first,
    to start the isolation probe before botocore is imported. The full ``load_config`` follows and
    decides; None when this one fails (the full load then says why)."""
    try:
        if path is None:
            if not os.path.exists(DEFAULT_CONFIG_PATH):
                return _build(_validate_section(SCHEMA, None, ""), DEFAULT_CONFIG_PATH)
            path = DEFAULT_CONFIG_PATH
        values = _validate_section(SCHEMA, load_yaml(read_text(path), path), "")
        _check_isolation_targets(values)
        return _build(values, path)
    except Exception:  # noqa: BLE001 - only a head start: the full load reports every problem
        return None


def validate_file(path: str) -> Config:
    """For ``vpce-doctor config check FILE``: load and validate exactly that file."""
    return load_config(path)
