"""The config file: YAML, every key optional, validated against ONE declarative schema table.

``load_config(path)`` reads ``/etc/vpce-doctor/config.yaml`` by default (absent → defaults);
``parse_config(data, source)`` validates an already-loaded object. Every problem raises
``ConfigError`` with one line: ``<file>: <key.path>: <what was wrong>; expected <what>``.

Adding a section (e.g. ``daemon:``): add a ``Section`` to ``SCHEMA``; its validated values appear
in ``Config.values`` without touching the loader. The syntax checks for instance facts (region,
ids, CIDRs, MAC) live here too: ``vpce_doctor.imds`` validates every IMDS answer with them.
"""
from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
import stat
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Dict, List, Mapping, Optional, Set, Tuple, Union
from urllib.parse import urlsplit

import yaml

from .checks.model import Settings, Target
from .errors import ConfigError, show
from .publishers import settings as publish_rules
from .publishers.settings import PublishSettings

DEFAULT_CONFIG_PATH = "/etc/vpce-doctor/config.yaml"
MAX_FILE_BYTES = 1024 * 1024  # refuse bigger files before parsing: a config is a few KiB


class Invalid(ValueError):
    """A value is wrong: ``what`` says how, ``expected`` what would be right (both one line)."""

    def __init__(self, what: str, expected: str) -> None:
        super().__init__(f"{what}; expected {expected}")
        self.what = what
        self.expected = expected


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a bool", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a mapping", bytes: "binary data"}.get(type(value), f"a {type(value).__name__}")


def _need_str(value: Any, expected: str) -> str:
    if not isinstance(value, str):
        raise Invalid(f"{show(value)} is {_type_name(value)}, not a string", expected)
    return value


# --- syntax of instance facts (shared with vpce_doctor.imds) -----------------------------------------
# Region names: us-east-1, us-gov-west-1, cn-north-1, us-isob-east-1, eu-isoe-west-1, ap-southeast-5.
_REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}$")
# Partitions in botocore's endpoint data: aws, aws-cn, aws-us-gov, aws-iso, aws-iso-b, aws-iso-e, ...
_PARTITION = re.compile(r"^aws(?:-[a-z]+)*$")
# EC2 ids: 8 hex digits (old style) or 17 (since 2016/2018).
_HEX_ID = r"(?:[0-9a-f]{8}|[0-9a-f]{17})"
_IDS = {prefix: re.compile(rf"^{prefix}-{_HEX_ID}$") for prefix in ("i", "vpc", "subnet", "sg")}
_MAC = re.compile(r"^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
# Instance profile ARN: arn:<partition>:iam::<12-digit account>:instance-profile/<path/name>
_PROFILE_ARN = re.compile(r"^arn:aws(?:-[a-z]+)*:iam::[0-9]{12}:instance-profile/[\w+=,.@/-]{1,512}$")
# Endpoint service short names: ssm, ec2messages, ecr.api, execute-api, sagemaker.runtime.
_SERVICE = re.compile(r"^[a-z0-9]+(?:[.-][a-z0-9]+)*$")


def region_name(value: Any) -> str:
    text = _need_str(value, "a region name like us-east-1")
    if not _REGION.match(text):
        raise Invalid(f"{show(text)} is not a region name", "a region name like us-east-1")
    return text


def partition_name(value: Any) -> str:
    text = _need_str(value, "a partition like aws, aws-cn or aws-us-gov")
    if not _PARTITION.match(text):
        raise Invalid(f"{show(text)} is not a partition", "a partition like aws, aws-cn or aws-us-gov")
    return text


def hostname(value: Any, expected: str = "a DNS name (RFC 1123) like amazonaws.com") -> str:
    """RFC 1123 host name: labels of 1-63 letters/digits/hyphens, no edge hyphens, <= 253 chars,
    and a top-level label that is not all digits (so 10.0.0.256 is not taken for a name)."""
    text = _need_str(value, expected)
    name = text[:-1] if text.endswith(".") else text
    labels = name.lower().split(".")
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in labels) or labels[-1].isdigit():
        raise Invalid(f"{show(text)} is not a valid host name", expected)
    return name.lower()


def aws_id(prefix: str) -> Callable[[Any], str]:
    expected = f"an id like {prefix}-0123456789abcdef0"

    def check(value: Any) -> str:
        text = _need_str(value, expected)
        if not _IDS[prefix].match(text):
            raise Invalid(f"{show(text)} is not a valid {prefix}- id", expected)
        return text

    return check


instance_id, vpc_id, subnet_id, sg_id = aws_id("i"), aws_id("vpc"), aws_id("subnet"), aws_id("sg")


def mac_address(value: Any) -> str:
    expected = "a MAC address like 0e:12:34:56:78:9a"
    if isinstance(value, int) and not isinstance(value, bool):  # YAML 1.1 reads 12:34:56:10:20:30 as base 60
        raise Invalid(f"{value} is an integer, not a string (an unquoted MAC of digits reads as a number)",
                      'a quoted MAC address like "12:34:56:10:20:30"')
    text = _need_str(value, expected).lower()
    if not _MAC.match(text):
        raise Invalid(f"{show(value)} is not a MAC address", expected)
    return text


def ipv4(value: Any) -> str:
    expected = "an IPv4 address like 10.0.0.2"
    text = _need_str(value, expected)
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise Invalid(f"{show(text)} is not an IPv4 address", expected) from None


def ipv4_cidr(value: Any) -> str:
    expected = "an IPv4 CIDR block like 10.0.0.0/16"
    text = _need_str(value, expected)
    if "/" not in text:
        raise Invalid(f"{show(text)} has no prefix length", expected)
    try:
        return str(ipaddress.IPv4Network(text, strict=True))
    except ValueError as exc:
        if "host bits set" in str(exc):
            net = ipaddress.IPv4Network(text, strict=False)
            raise Invalid(f"{show(text)} has host bits set", f"the network address, {net}") from None
        raise Invalid(f"{show(text)} is not a CIDR block", expected) from None


def profile_arn(value: Any) -> str:
    expected = "an instance profile ARN like arn:aws:iam::123456789012:instance-profile/Name"
    text = _need_str(value, expected)
    if not _PROFILE_ARN.match(text):
        raise Invalid(f"{show(text)} is not an instance profile ARN", expected)
    return text


def service_name(value: Any) -> str:
    expected = "an endpoint service short name like ssm or ecr.api"
    text = _need_str(value, expected)
    full = re.match(r"^com\.amazonaws\.[a-z0-9-]+\.(.+)$", text)
    if full:  # "com.amazonaws.us-east-1.ssm" → the short name is the part after the region
        raise Invalid(f"{show(text)} is a full endpoint service name", f"the short name {show(full.group(1))}")
    if len(text) > 64 or not _SERVICE.match(text):
        raise Invalid(f"{show(text)} is not a service name", expected)
    return text


# --- other value checks ------------------------------------------------------------------------------
def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):  # YAML true/false only; "yes" in quotes is a string
        raise Invalid(f"{show(value)} is {_type_name(value)}, not a bool", "true or false")
    return value


def _seconds(maximum: float) -> Callable[[Any], float]:
    expected = f"a number of seconds, 0 < s <= {maximum:g}"

    def check(value: Any) -> float:
        # bool is an int subclass in Python: `dns_s: true` must not mean 1 second
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Invalid(f"{show(value)} is {_type_name(value)}, not a number", expected)
        if not math.isfinite(value) or not 0 < value <= maximum:
            raise Invalid(f"{show(value)} is out of range", expected)
        return float(value)

    return check


def egress_target(value: Any) -> Target:
    """``host[:port]`` (port 443 by default); host is an RFC 1123 name or an IPv4 address."""
    expected = "host[:port] like google.com:443 (port 1-65535)"
    text = _need_str(value, expected)
    host, sep, port_text = text.rpartition(":") if ":" in text else (text, "", "")
    port = 443
    if sep:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise Invalid(f"{show(text)} has a bad port {show(port_text)}", expected)
        port = int(port_text)
    if re.match(r"^[0-9.]+$", host):
        try:
            return Target(str(ipaddress.IPv4Address(host)), port)
        except ValueError:
            raise Invalid(f"{show(text)} is not a valid IPv4 address", expected) from None
    try:
        return Target(hostname(host, expected), port)
    except Invalid:
        raise Invalid(f"{show(text)} does not start with a valid host name", expected) from None


def imds_endpoint(value: Any) -> str:
    """``http://169.254.169.254`` or ``http://[fd00:ec2::254]`` (optionally with a port); no path."""
    expected = 'an http URL like "http://169.254.169.254" or "http://[fd00:ec2::254]"'
    text = _need_str(value, expected).rstrip("/")
    try:
        parts = urlsplit(text)
        host, port = parts.hostname, parts.port  # .port raises ValueError when out of range
    except ValueError:
        raise Invalid(f"{show(value)} is not a valid URL", expected) from None
    if parts.scheme != "http" or not host or parts.path or parts.query or parts.fragment or parts.username:
        raise Invalid(f"{show(value)} is not a plain http://host[:port] URL", expected)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        hostname(host, expected)
    del port
    return text


def bucket_name(value: Any) -> str:
    """General purpose bucket naming rules (S3 User Guide, "Bucket naming rules"). Legacy us-east-1
    names with capitals/underscores cannot be reached virtual-hosted style and are not accepted."""
    expected = "an S3 bucket name: 3-63 lowercase letters, digits, dots, hyphens"
    text = _need_str(value, expected)
    problem = None
    if not 3 <= len(text) <= 63:
        problem = f"is {len(text)} characters long"
    elif not re.match(r"^[a-z0-9.-]+$", text):
        bad = sorted(set(re.sub(r"[a-z0-9.-]", "", text)))
        problem = f"has characters other than a-z 0-9 . - ({show(''.join(bad))})"
    elif not re.match(r"^[a-z0-9].*[a-z0-9]$", text):
        problem = "does not start and end with a letter or digit"
    elif ".." in text or ".-" in text or "-." in text:
        problem = "has adjacent periods"
    elif re.match(r"^\d+\.\d+\.\d+\.\d+$", text):
        problem = "is formatted as an IP address"
    elif text.startswith(("xn--", "sthree-", "amzn-s3-demo-")):
        problem = "starts with a reserved prefix"
    elif text.endswith(("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")):
        problem = "ends with a reserved suffix (access point alias or directory bucket)"
    if problem:
        raise Invalid(f"{show(text)} {problem}", expected)
    return text


def _s3_key(value: Any) -> str:
    expected = "an S3 object key of 1-1024 bytes"
    text = _need_str(value, expected)
    if not 1 <= len(text.encode("utf-8", "surrogatepass")) <= 1024:
        raise Invalid(f"{show(text)} has a bad length", expected)
    return text


def _interval(maximum: float) -> Callable[[Any], float]:
    """Like ``_seconds`` but 0 is allowed (daemon.interval_s 0: cycles back to back, for soak tests)."""
    expected = f"a number of seconds, 0 <= s <= {maximum:g}"

    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Invalid(f"{show(value)} is {_type_name(value)}, not a number", expected)
        if not math.isfinite(value) or not 0 <= value <= maximum:
            raise Invalid(f"{show(value)} is out of range", expected)
        return float(value)

    return check


def _choice(*options: str) -> Callable[[Any], str]:
    expected = " or ".join(options)

    def check(value: Any) -> str:
        text = _need_str(value, expected)
        if text not in options:
            raise Invalid(f"{show(text)} is not a choice", expected)
        return text

    return check


def _absolute_path(value: Any) -> str:
    # A daemon's working directory is "/" under systemd: a relative path would mean nothing useful.
    expected = "an absolute path like /var/lib/vpce-doctor"
    text = _need_str(value, expected)
    if not text.startswith("/") or "\x00" in text:
        raise Invalid(f"{show(text)} is not an absolute path", expected)
    return os.path.normpath(text)


def _publish_rule(rule: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A value check of ``vpce_doctor.publishers.settings`` (which owns the publish rules) in the
    schema's terms."""

    def check(value: Any) -> Any:
        try:
            return rule(value)
        except publish_rules.InvalidSetting as exc:
            raise Invalid(exc.what, exc.expected) from None

    return check


def _file_path(value: Any) -> str:
    expected = "the path of a readable PEM CA bundle"
    return _need_str(value, expected)  # existence is checked after parsing (relative to the file)


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


Node = Union[Value, ListOf, Section]

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
        "enabled": Value(_boolean, True),
        "endpoint": Value(imds_endpoint, "http://169.254.169.254"),
        "timeout_s": Value(_seconds(300), 1.0),
    }),
    "services": ListOf(service_name, "a list of service names like [ssm, ec2messages, ssmmessages]",
                       ("ssm", "ec2messages", "ssmmessages")),
    "extra_services": ListOf(service_name, "a list of service names like [kms, logs]"),
    "fips": Value(_boolean, False),
    "resolver": Value(ipv4, None, nullable=True),
    "timeouts": Section({
        "deadline_s": Value(_seconds(600), 10.0),
        "dns_s": Value(_seconds(300), 2.0),
        "connect_s": Value(_seconds(300), 2.0),
        "tls_s": Value(_seconds(300), 3.0),
        "api_s": Value(_seconds(300), 3.0),
    }),
    "egress": Section({
        "targets": ListOf(egress_target, 'a list of "host[:port]" strings like ["google.com:443"]',
                          (Target("google.com", 443),)),
        "timeout_s": Value(_seconds(300), 3.0),
    }),
    "s3": Section({
        "bucket": Value(bucket_name, None, nullable=True),
        "key": Value(_s3_key, None, nullable=True),
        "get_object": Value(_boolean, False),
    }),
    "ca_bundle": Value(_file_path, None, nullable=True),
    "checks": Section({
        "ssm_agent": Value(_boolean, True),
        "ec2_api": Value(_boolean, True),
    }),
    # The SSM agent's own files (checks/ssmagent.py): where to read its evidence; defaults are the agent's.
    "ssm_agent": Section({
        "log_dir": Value(_absolute_path, "/var/log/amazon/ssm"),
        "data_dir": Value(_absolute_path, "/var/lib/amazon/ssm"),
        "config_file": Value(_absolute_path, "/etc/amazon/ssm/amazon-ssm-agent.json"),
        "binaries": ListOf(_absolute_path, "a list of absolute paths like [/usr/bin/amazon-ssm-agent]",
                           Settings.ssm_agent_binaries, min_items=1),
        "dropin_dirs": ListOf(_absolute_path, "a list of absolute paths like "
                              "[/etc/systemd/system/amazon-ssm-agent.service.d]", Settings.ssm_agent_dropin_dirs),
    }),
    # `vpce-doctor daemon` (agent/daemon.py).
    "daemon": Section({
        "interval_s": Value(_interval(86400), 300.0),  # between cycle starts
        "jitter_s": Value(_interval(3600), 30.0),  # + uniform(0, jitter_s): a fleet does not call in lockstep
        "state_dir": Value(_absolute_path, "/var/lib/vpce-doctor"),
        "log_format": Value(_choice("text", "json"), "text"),
    }),
    # Where each report goes (agent/publishers/); the value rules live in publishers/settings.py.
    "publish": Section({
        "publishers": ListOf(_publish_rule(publish_rules.publisher_name),
                             f"a list of publishers from {', '.join(publish_rules.PUBLISHER_NAMES)}",
                             publish_rules.DEFAULT_PUBLISHERS),
        "inventory": Section({
            "type_name": Value(_publish_rule(publish_rules.inventory_type_name), publish_rules.DEFAULT_TYPE_NAME),
            "timeout_s": Value(_publish_rule(publish_rules.timeout_s), 5.0),
        }),
        "inventory_file": Section({
            "root": Value(_absolute_path, "/var/lib/amazon/ssm"),
            "timeout_s": Value(_publish_rule(publish_rules.timeout_s), 2.0),
        }),
        "cloudwatch": Section({
            "namespace": Value(_publish_rule(publish_rules.cloudwatch_namespace), "VpceDoctor"),
            "timeout_s": Value(_publish_rule(publish_rules.timeout_s), 5.0),
        }),
        "http": Section({
            "bind": Value(_publish_rule(publish_rules.bind_address), "127.0.0.1"),
            "port": Value(_publish_rule(publish_rules.port), 9464),
        }),
        "last_report": Section({
            "path": Value(_absolute_path, None, nullable=True),  # null: <state_dir>/last-report.json
        }),
    }),
})


class _Problem(Exception):
    """Internal: a problem at a key path (turned into ConfigError with the file name)."""

    def __init__(self, path: str, what: str, expected: str) -> None:
        super().__init__(path)
        self.path, self.what, self.expected = path, what, expected


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _validate(node: Node, value: Any, path: str) -> Any:
    if isinstance(node, Section):
        return _validate_section(node, value, path)
    if isinstance(node, ListOf):
        if value is None:
            raise _Problem(path, "null is not a list (write [] for an empty list)", node.expected)
        if not isinstance(value, list):
            raise _Problem(path, f"{show(value)} is {_type_name(value)}, not a list", node.expected)
        if len(value) < node.min_items:
            raise _Problem(path, "the list is empty", node.expected)
        out: List[Any] = []
        seen: set = set()  # a set, not `in out`: a long list must not cost quadratic time
        for i, item in enumerate(value):
            try:
                checked = node.item(item)
            except Invalid as exc:
                raise _Problem(f"{path}[{i}]", exc.what, exc.expected) from None
            try:
                twice = checked in seen
                seen.add(checked)
            except TypeError:  # an unhashable entry: compare the slow way
                twice = checked in out
            if twice:
                raise _Problem(f"{path}[{i}]", f"{show(item)} is listed twice", "each entry once")
            out.append(checked)
        return tuple(out)
    if value is None:
        if node.nullable:
            return None
        try:  # let the check describe what a good value looks like
            node.check(value)
        except Invalid as exc:
            raise _Problem(path, "null is not allowed here (omit the key instead)",
                           exc.expected) from None
    try:
        return node.check(value)
    except Invalid as exc:
        raise _Problem(path, exc.what, exc.expected) from None


def _validate_section(section: Section, value: Any, path: str) -> Dict[str, Any]:
    known = list(section.fields)
    if value is None:  # `imds:` with nothing under it: all defaults
        value = {}
    if not isinstance(value, dict):
        where = path or "(document)"
        raise _Problem(where, f"{show(value)} is {_type_name(value)}, not a mapping",
                       f"a mapping with keys {', '.join(known)}")
    out: Dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise _Problem(_join(path, str(key)), f"the key {show(key)} is {_type_name(key)}, not a string",
                           f"one of {', '.join(known)}")
        if key not in section.fields:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            raise _Problem(_join(path, key), f"unknown key{hint}", f"one of {', '.join(known)}")
        out[key] = _validate(section.fields[key], item, _join(path, key))
    if section.fill_defaults:
        for key, node in section.fields.items():
            if key not in out:
                out[key] = _validate(node, None, _join(path, key)) if isinstance(node, Section) else node.default
    return out


def _cross_checks(values: Dict[str, Any], base_dir: Optional[str]) -> None:
    """Rules that span keys: facts must agree with each other (as AWS guarantees), S3 needs its bucket."""
    facts = values["facts"]
    cidrs = facts.get("vpc_cidrs")
    if cidrs and facts.get("vpc_cidr") and facts["vpc_cidr"] != cidrs[0]:
        raise _Problem("facts.vpc_cidrs", f"the first entry {cidrs[0]} is not facts.vpc_cidr {facts['vpc_cidr']}",
                       "the primary CIDR (the resolver's) first")
    vpc_nets = [ipaddress.IPv4Network(c) for c in (cidrs or ([facts["vpc_cidr"]] if facts.get("vpc_cidr") else []))]
    if facts.get("subnet_cidr") and vpc_nets:
        subnet = ipaddress.IPv4Network(facts["subnet_cidr"])
        if not any(subnet.subnet_of(n) for n in vpc_nets):
            raise _Problem("facts.subnet_cidr", f"{subnet} is outside the VPC CIDRs {', '.join(map(str, vpc_nets))}",
                           "a subnet inside the VPC")
    if facts.get("local_ipv4") and facts.get("subnet_cidr"):
        if ipaddress.IPv4Address(facts["local_ipv4"]) not in ipaddress.IPv4Network(facts["subnet_cidr"]):
            raise _Problem("facts.local_ipv4", f"{facts['local_ipv4']} is outside facts.subnet_cidr "
                           f"{facts['subnet_cidr']}", "the instance's address inside its subnet")
    s3 = values["s3"]
    if s3["key"] is not None and s3["bucket"] is None:
        raise _Problem("s3.bucket", "s3.key is set but s3.bucket is not", "a bucket name with the key")
    if s3["get_object"] and (s3["bucket"] is None or s3["key"] is None):
        missing = "s3.bucket" if s3["bucket"] is None else "s3.key"
        raise _Problem(missing, "s3.get_object is true but no object is named", "s3.bucket and s3.key")
    if values["ca_bundle"] is not None:
        values["ca_bundle"] = _check_ca_bundle(values["ca_bundle"], base_dir)


def _check_ca_bundle(path: str, base_dir: Optional[str]) -> str:
    expected = "the path of a readable PEM CA bundle"
    full = os.path.abspath(os.path.join(base_dir or os.getcwd(), os.path.expanduser(path)))
    try:
        with open(full, "rb") as fh:
            head = fh.read(MAX_FILE_BYTES)
    except OSError as exc:
        raise _Problem("ca_bundle", f"cannot read {show(full)}: {exc.strerror or exc}", expected) from None
    if b"-----BEGIN CERTIFICATE-----" not in head:
        raise _Problem("ca_bundle", f"{show(full)} holds no PEM certificate", expected)
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
        ca_bundle=values["ca_bundle"], check_ssm_agent=values["checks"]["ssm_agent"],
        check_ec2_api=values["checks"]["ec2_api"],
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


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def parse_config(data: object, source: str, base_dir: Optional[str] = None) -> Config:
    """Validate a loaded YAML document (None = empty = all defaults). Relative paths in it
    (ca_bundle) are taken from ``base_dir`` (the config file's folder), else the working directory."""
    try:
        values = _validate_section(SCHEMA, data, "")
        _cross_checks(values, base_dir)
    except _Problem as p:
        raise ConfigError(_one_line(f"{source}: {p.path}: {p.what}; expected {p.expected}")) from None
    return _build(values, source)


# --- reading the file -------------------------------------------------------------------------------
class _Loader(yaml.SafeLoader):
    """safe_load semantics (no arbitrary objects); duplicate keys are found on the node tree."""


def _check_duplicates(node: yaml.Node, path: str, seen: Set[int]) -> None:
    if id(node) in seen:  # aliases share nodes: visit each once (no exponential walk on anchors)
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: Dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            child = _join(path, str(key)) if key is not None else path
            if key is not None and key != "<<":
                if key in keys:
                    mark = key_node.start_mark
                    raise _Problem(child, f"duplicate key {show(key)} (line {mark.line + 1}; first on line "
                                   f"{keys[key].start_mark.line + 1})", "each key once")
                keys[key] = key_node
            _check_duplicates(value_node, child, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicates(item, f"{path}[{i}]", seen)


def _load_yaml(text: str, source: str) -> Any:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_duplicates(node, "", set())
        return loader.construct_document(node)
    except _Problem as p:
        raise ConfigError(_one_line(f"{source}: {p.path}: {p.what}; expected {p.expected}")) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(document)"
        problem = " ".join(x for x in (exc.context, exc.problem) if x) or "invalid YAML"
        if isinstance(exc, yaml.constructor.ConstructorError):
            problem = f"{problem} (only plain YAML values are allowed)"
        raise ConfigError(_one_line(f"{source}: {where}: YAML error: {problem}; expected valid YAML "
                                    "with plain values")) from None
    except yaml.YAMLError as exc:
        raise ConfigError(_one_line(f"{source}: (document): YAML error: {exc}; expected valid YAML")) from None
    except RecursionError:
        raise ConfigError(f"{source}: (document): the YAML is nested too deeply; expected a plain "
                          "settings file") from None
    finally:
        loader.dispose()


def _read_text(path: str) -> str:
    expected = "a readable YAML file"
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):  # a directory, FIFO or device: open() could block or mislead
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise ConfigError(f"{path}: (file): is {kind}; expected {expected}")
        with open(path, "rb") as fh:
            if st.st_size > MAX_FILE_BYTES:
                raise ConfigError(f"{path}: (file): {st.st_size} bytes is too large; expected a YAML file "
                                  f"of at most {MAX_FILE_BYTES} bytes (1 MiB)")
            raw = fh.read(MAX_FILE_BYTES + 1)  # bounded even for a FIFO or /dev/zero
    except OSError as exc:
        raise ConfigError(_one_line(f"{path}: (file): cannot read: {exc.strerror or exc}; expected {expected}")) \
            from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: (file): more than {MAX_FILE_BYTES} bytes; expected a YAML file "
                          "of at most 1 MiB")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: (file): not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                          "expected a UTF-8 YAML file") from None
    if "\x00" in text:
        raise ConfigError(f"{path}: (file): binary data (a NUL byte at offset {text.index(chr(0))}); "
                          "expected a UTF-8 YAML file")
    return text


def load_config(path: Optional[str] = None) -> Config:
    """The config from ``path``, or from ``/etc/vpce-doctor/config.yaml`` when ``path`` is None
    (a missing default file means all defaults; a missing named file is an error)."""
    if path is None:
        if not os.path.exists(DEFAULT_CONFIG_PATH):
            return parse_config(None, f"{DEFAULT_CONFIG_PATH} (absent: defaults)")
        path = DEFAULT_CONFIG_PATH
    text = _read_text(path)
    data = _load_yaml(text, path)
    return parse_config(data, path, base_dir=os.path.dirname(os.path.abspath(path)))


def validate_file(path: str) -> Config:
    """For ``vpce-doctor config check FILE``: load and validate exactly that file."""
    return load_config(path)
