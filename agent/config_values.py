"""The value checks of the config schema (agent/config.py): one function per kind of value, each
returning the clean value or raising ``Invalid(what, expected)``. The syntax checks for instance
facts (region, ids, CIDRs, MAC) are shared with ``vpce_doctor.imds``, which validates every IMDS
answer with them."""
from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

from .checks.model import Target
from .errors import show
from .publishers import settings as publish_rules


class Invalid(ValueError):
    """A value is wrong: ``what`` says how, ``expected`` what would be right (both one line)."""

    def __init__(self, what: str, expected: str) -> None:
        super().__init__(f"{what}; expected {expected}")
        self.what = what
        self.expected = expected


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a bool", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a mapping", bytes: "binary data"}.get(type(value), f"a {type(value).__name__}")


def need_str(value: Any, expected: str) -> str:
    if not isinstance(value, str):
        raise Invalid(f"{show(value)} is {type_name(value)}, not a string", expected)
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
    text = need_str(value, "a region name like us-east-1")
    if not _REGION.match(text):
        raise Invalid(f"{show(text)} is not a region name", "a region name like us-east-1")
    return text


def partition_name(value: Any) -> str:
    text = need_str(value, "a partition like aws, aws-cn or aws-us-gov")
    if not _PARTITION.match(text):
        raise Invalid(f"{show(text)} is not a partition", "a partition like aws, aws-cn or aws-us-gov")
    return text


def hostname(value: Any, expected: str = "a DNS name (RFC 1123) like amazonaws.com") -> str:
    """RFC 1123 host name: labels of 1-63 letters/digits/hyphens, no edge hyphens, <= 253 chars,
    and a top-level label that is not all digits (so 10.0.0.256 is not taken for a name)."""
    text = need_str(value, expected)
    name = text[:-1] if text.endswith(".") else text
    labels = name.lower().split(".")
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in labels) or labels[-1].isdigit():
        raise Invalid(f"{show(text)} is not a valid host name", expected)
    return name.lower()


def aws_id(prefix: str) -> Callable[[Any], str]:
    expected = f"an id like {prefix}-0123456789abcdef0"

    def check(value: Any) -> str:
        text = need_str(value, expected)
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
    text = need_str(value, expected).lower()
    if not _MAC.match(text):
        raise Invalid(f"{show(value)} is not a MAC address", expected)
    return text


def ipv4(value: Any) -> str:
    expected = "an IPv4 address like 10.0.0.2"
    text = need_str(value, expected)
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise Invalid(f"{show(text)} is not an IPv4 address", expected) from None


def ipv4_cidr(value: Any) -> str:
    expected = "an IPv4 CIDR block like 10.0.0.0/16"
    text = need_str(value, expected)
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
    text = need_str(value, expected)
    if not _PROFILE_ARN.match(text):
        raise Invalid(f"{show(text)} is not an instance profile ARN", expected)
    return text


def service_name(value: Any) -> str:
    expected = "an endpoint service short name like ssm or ecr.api"
    text = need_str(value, expected)
    full = re.match(r"^com\.amazonaws\.[a-z0-9-]+\.(.+)$", text)
    if full:  # "com.amazonaws.us-east-1.ssm" → the short name is the part after the region
        raise Invalid(f"{show(text)} is a full endpoint service name", f"the short name {show(full.group(1))}")
    if len(text) > 64 or not _SERVICE.match(text):
        raise Invalid(f"{show(text)} is not a service name", expected)
    return text


# --- other value checks ------------------------------------------------------------------------------
def boolean(value: Any) -> bool:
    if not isinstance(value, bool):  # YAML true/false only; "yes" in quotes is a string
        raise Invalid(f"{show(value)} is {type_name(value)}, not a bool", "true or false")
    return value


def seconds(maximum: float, zero_ok: bool = False) -> Callable[[Any], float]:
    expected = f"a number of seconds, 0 {'<=' if zero_ok else '<'} s <= {maximum:g}"

    def check(value: Any) -> float:
        # bool is an int subclass in Python: `dns_s: true` must not mean 1 second
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Invalid(f"{show(value)} is {type_name(value)}, not a number", expected)
        low_ok = value >= 0 if zero_ok else value > 0
        if not math.isfinite(value) or not low_ok or value > maximum:
            raise Invalid(f"{show(value)} is out of range", expected)
        return float(value)

    return check


def egress_target(value: Any) -> Target:
    """``host[:port]`` (port 443 by default); host is an RFC 1123 name or an IPv4 address."""
    expected = "host[:port] like google.com:443 (port 1-65535)"
    text = need_str(value, expected)
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


def url_text(value: Any, expected: str) -> str:
    """The common rules of every URL setting: a string without whitespace or control characters
    (urllib quietly drops tabs and newlines and strips the ends: the URL used would not be
    the one the file shows)."""
    text = need_str(value, expected)
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise Invalid(f"{show(value)} has whitespace or control characters in it", expected)
    return text


def url_port(port: Any, value: Any, expected: str) -> None:
    """A URL's explicit port: 1-65535 (urllib accepts :0, which no server listens on)."""
    if port is not None and port == 0:
        raise Invalid(f"{show(value)} names port 0", expected + " (port 1-65535)")


def imds_endpoint(value: Any) -> str:
    """``http://169.254.169.254`` or ``http://[fd00:ec2::254]`` (optionally with a port); no path."""
    expected = 'an http URL like "http://169.254.169.254" or "http://[fd00:ec2::254]"'
    text = url_text(value, expected).rstrip("/")
    try:
        parts = urlsplit(text)
        host, port = parts.hostname, parts.port  # .port raises ValueError when out of range
    except ValueError:
        raise Invalid(f"{show(value)} is not a valid URL", expected) from None
    if parts.scheme != "http" or not host or parts.path or parts.query or parts.fragment or parts.username:
        raise Invalid(f"{show(value)} is not a plain http://host[:port] URL", expected)
    url_port(port, value, expected)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        hostname(host, expected)
    return text


def region_partition_mismatch(region: str, partition: str) -> Optional[Invalid]:
    """What is wrong when botocore's endpoint data gives ``region`` to a partition other than
    ``partition`` (its region lists first, then each regionRegex); None when it belongs, or when
    no partition claims it: a region or partition newer than this botocore is not refused."""
    from .checks.awsclient import shared_loader  # the clients' loader: endpoints.json is read once

    partitions = list(shared_loader().load_data("endpoints").get("partitions") or ())
    owner = next((p for p in partitions if region in (p.get("regions") or {})), None)
    if owner is None:
        owner = next((p for p in partitions if re.match(str(p.get("regionRegex") or "^$"), region)), None)
    if owner is None or owner.get("partition") == partition:
        return None
    return Invalid(f"{show(region)} is a region of the {owner.get('partition')} partition, not of {partition}",
                   f"a region of the {partition} partition, or facts.partition: {owner.get('partition')}")


def bucket_name(value: Any) -> str:
    """General purpose bucket naming rules (S3 User Guide, "Bucket naming rules"). Legacy us-east-1
    names with capitals/underscores cannot be reached virtual-hosted style and are not accepted."""
    expected = "an S3 bucket name: 3-63 lowercase letters, digits, dots, hyphens"
    text = need_str(value, expected)
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


def s3_key(value: Any) -> str:
    expected = "an S3 object key of 1-1024 bytes"
    text = need_str(value, expected)
    if not 1 <= len(text.encode("utf-8", "surrogatepass")) <= 1024:
        raise Invalid(f"{show(text)} has a bad length", expected)
    return text


def interval(maximum: float) -> Callable[[Any], float]:
    """Like ``seconds`` but 0 is allowed (daemon.interval_s 0: cycles back to back, for soak tests)."""
    return seconds(maximum, zero_ok=True)


def choice(*options: str) -> Callable[[Any], str]:
    expected = " or ".join(options)

    def check(value: Any) -> str:
        text = need_str(value, expected)
        if text not in options:
            raise Invalid(f"{show(text)} is not a choice", expected)
        return text

    return check


def absolute_path(value: Any) -> str:
    # A daemon's working directory is "/" under systemd: a relative path would mean nothing useful.
    expected = "an absolute path like /var/lib/vpce-doctor"
    text = need_str(value, expected)
    if not text.startswith("/") or "\x00" in text:
        raise Invalid(f"{show(text)} is not an absolute path", expected)
    return os.path.normpath(text)


def publish_rule(rule: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A value check of ``vpce_doctor.publishers.settings`` (which owns the publish rules) in the
    schema's terms."""

    def check(value: Any) -> Any:
        try:
            return rule(value)
        except publish_rules.InvalidSetting as exc:
            raise Invalid(exc.what, exc.expected) from None

    return check


def file_path(value: Any) -> str:
    expected = "the path of a readable PEM CA bundle"
    return need_str(value, expected)  # existence is checked after parsing (relative to the file)


# The first component of every finding id (checks/__init__.py's registry and the runtime's imds).
CHECK_ROOTS = ("imds", "instance", "ssm_agent", "resolver", "ec2", "dns", "eni", "reach", "s3", "egress", "iam",
               "auth", "ssm", "clock", "session")
SEVERITIES = ("WARNING", "CRITICAL")


def check_selector(value: Any) -> str:
    expected = f"a finding id or prefix starting with one of {', '.join(CHECK_ROOTS)} (dns, reach.ssm, egress)"
    text = need_str(value, expected)
    root = text.split(".", 1)[0]
    if len(text) > 128 or not re.match(r"^[a-z0-9_]+(?:\.[A-Za-z0-9_.:-]+)?$", text) or root not in CHECK_ROOTS:
        close = difflib.get_close_matches(root, CHECK_ROOTS, n=1, cutoff=0.6) if len(root) <= 64 else []
        hint = f' (did you mean "{close[0]}"?)' if close else ""
        raise Invalid(f"{show(text)} is not a check id{hint}", expected)
    return text


class Problem(Exception):
    """Internal: a problem at a key path (turned into ConfigError with the file name)."""

    def __init__(self, path: str, what: str, expected: str) -> None:
        super().__init__(path)
        self.path, self.what, self.expected = path, what, expected


def join_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def one_line(text: str) -> str:
    return " ".join(str(text).split())
