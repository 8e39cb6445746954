"""The AWS resource a cause points at: ``{"type", "id", "name"}`` for a finding (JSON ``resource``,
inventory CauseResourceType/CauseResourceId/CauseResourceName), so a fleet view can group instances by it.

Each cause names a kind or a fallback chain (``Cause.resource``, e.g. "security-group|endpoint": the
endpoint's security group when its id is known, else the endpoint); ``build`` takes the first kind
whose id can be made from the explain() params and what the instance knows (causes.KNOWN_IDS), and
falls back to the instance itself. Ids are stable within (account, region) and — where the contract
allows — the same whether or not this instance could call the EC2 API:

    endpoint-eni      <vpc_id>/<service>/<eni ip>   name: "vpce-… eni-… us-east-1b" as known
    endpoint          <vpc_id>/<service>            name: the vpce id when known
    gateway-endpoint  <vpc_id>/<s3|dynamodb>        name: the vpce id when known
    vpc               vpc-…                         subnet   subnet-…
    route-table       rtb-… (else the subnet id)    name: "route table of subnet-…"
    network-acl       acl-… (else the subnet id)    name: "network ACL of subnet-…"
    security-group    sg-… (several sorted, joined with "+")
    dhcp-options      dopt-… (else the vpc id)      name: "DHCP option set of vpc-…"
    role / bucket / table   the name               session-preferences   the region
    instance          the instance id (anything local to it: agent, clock, disk, IMDS, no profile)

A value that is not a well-formed id (a "<sg-id>" placeholder, "(no ssm endpoint in …)") is not used.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

KINDS: Tuple[str, ...] = ("endpoint-eni", "endpoint", "gateway-endpoint", "vpc", "subnet", "route-table",
                          "network-acl", "security-group", "dhcp-options", "role", "bucket", "table",
                          "session-preferences", "instance")
GATEWAY_SERVICES = ("s3", "dynamodb")

_HEX = r"[0-9a-f]{8,17}"
_ID = {prefix: re.compile(rf"^{prefix}-{_HEX}$")
       for prefix in ("vpc", "subnet", "rtb", "acl", "sg", "dopt", "vpce", "eni", "i")}
_SERVICE = re.compile(r"^[a-z0-9]+(?:[.-][a-z0-9]+)*$")
_ROLE = re.compile(r"^[\w+=,.@-]{1,64}$")
_BUCKET = re.compile(r"^[A-Za-z0-9._-]{1,255}$")
_TABLE = re.compile(r"^[A-Za-z0-9._-]{3,255}$")
_REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}$")
_AZ = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}[a-z]$")  # us-east-1b
_IP_AZ = re.compile(r"^\s*([0-9A-Fa-f:.]+)(?:\s+\(([a-z0-9-]+)\))?\s*$")  # "10.0.1.21 (us-east-1a)"

Resource = Dict[str, str]


def _text(params: Mapping[str, Any], name: str) -> str:
    value = params.get(name)
    return value.strip() if isinstance(value, str) else ""


def _id(params: Mapping[str, Any], name: str, prefix: str) -> str:
    value = _text(params, name)
    return value if _ID[prefix].match(value) else ""


def _service(params: Mapping[str, Any]) -> str:
    value = _text(params, "service")
    return value if _SERVICE.match(value) else ""


def _ip_and_az(params: Mapping[str, Any]) -> Tuple[str, str]:
    """One address (``ip``, else a single ``bad_ips``) and the AZ written after it, if any."""
    for name in ("ip", "bad_ips"):
        m = _IP_AZ.match(_text(params, name))
        if m:
            try:
                return str(ipaddress.ip_address(m.group(1))), m.group(2) or ""
            except ValueError:
                continue
    return "", ""


def sg_ids(params: Mapping[str, Any]) -> Tuple[str, ...]:
    """Security group ids from ``sg_ids`` ("sg-a, sg-b" or a sequence) or ``sg_id``: sorted, unique."""
    raw = params.get("sg_ids")
    items: Sequence[Any] = (re.split(r"[,\s+]+", raw) if isinstance(raw, str)
                            else raw if isinstance(raw, (list, tuple)) else ())
    found = {str(i).strip() for i in items if _ID["sg"].match(str(i).strip())}
    single = _id(params, "sg_id", "sg")
    if not found and single:
        found = {single}
    return tuple(sorted(found))


def _one(kind: str, rid: str, name: str = "") -> Resource:
    return {"type": kind, "id": rid, "name": name}


def _endpoint_eni(params: Mapping[str, Any], code: str) -> Optional[Resource]:
    vpc, service = _id(params, "vpc_id", "vpc"), _service(params)
    ip, az = _ip_and_az(params)
    if not (vpc and service and ip):
        return None
    az = az or _text(params, "az")
    az = az if _AZ.match(az) else ""
    name = " ".join(x for x in (_id(params, "endpoint_id", "vpce"), _id(params, "eni_id", "eni"), az) if x)
    return _one("endpoint-eni", f"{vpc}/{service}/{ip}", name)


def _endpoint(params: Mapping[str, Any], code: str) -> Optional[Resource]:
    vpc, service = _id(params, "vpc_id", "vpc"), _service(params)
    if not (vpc and service):
        return None
    return _one("endpoint", f"{vpc}/{service}", _id(params, "endpoint_id", "vpce"))


def _gateway_endpoint(params: Mapping[str, Any], code: str) -> Optional[Resource]:
    vpc = _id(params, "vpc_id", "vpc")
    service = _service(params)
    if service not in GATEWAY_SERVICES:  # the cause's own service (s3_…, dynamodb_…, session_s3_…)
        service = next((s for s in GATEWAY_SERVICES if code.startswith((s + "_", f"session_{s}_"))), "")
    if not (vpc and service):
        return None
    return _one("gateway-endpoint", f"{vpc}/{service}", _id(params, "endpoint_id", "vpce"))


Builder = Callable[[Mapping[str, Any], str], Optional[Resource]]


def _of_subnet(kind: str, param: str, prefix: str, words: str) -> Builder:
    def build_it(params: Mapping[str, Any], code: str) -> Optional[Resource]:
        subnet = _id(params, "subnet_id", "subnet")
        rid = _id(params, param, prefix) or subnet
        return _one(kind, rid, f"{words} of {subnet}" if subnet else "") if rid else None
    return build_it


def _plain(kind: str, param: str, prefix: str) -> Builder:
    def build_it(params: Mapping[str, Any], code: str) -> Optional[Resource]:
        rid = _id(params, param, prefix)
        return _one(kind, rid) if rid else None
    return build_it


def _security_group(params: Mapping[str, Any], code: str) -> Optional[Resource]:
    ids = sg_ids(params)
    return _one("security-group", "+".join(ids)) if ids else None


def _dhcp_options(params: Mapping[str, Any], code: str) -> Optional[Resource]:
    vpc = _id(params, "vpc_id", "vpc")
    rid = _id(params, "dhcp_options_id", "dopt") or vpc
    return _one("dhcp-options", rid, f"DHCP option set of {vpc}" if vpc else "") if rid else None


def _named(kind: str, param: str, pattern: "re.Pattern[str]") -> Builder:
    def build_it(params: Mapping[str, Any], code: str) -> Optional[Resource]:
        value = _text(params, param)
        if kind == "table" and ":table/" in value:  # arn:aws:dynamodb:<region>:<account>:table/<name>
            value = value.split(":table/", 1)[1].split("/", 1)[0]
        return _one(kind, value) if pattern.match(value) else None
    return build_it


def _session_preferences(params: Mapping[str, Any], code: str) -> Optional[Resource]:
    region = _text(params, "region")
    return _one("session-preferences", region, "SSM-SessionManagerRunShell") if _REGION.match(region) else None


def _instance(params: Mapping[str, Any], code: str) -> Optional[Resource]:
    return _one("instance", _id(params, "instance_id", "i"))


_BUILDERS: Dict[str, Builder] = {
    "endpoint-eni": _endpoint_eni,
    "endpoint": _endpoint,
    "gateway-endpoint": _gateway_endpoint,
    "vpc": _plain("vpc", "vpc_id", "vpc"),
    "subnet": _plain("subnet", "subnet_id", "subnet"),
    "route-table": _of_subnet("route-table", "route_table_id", "rtb", "route table"),
    "network-acl": _of_subnet("network-acl", "nacl_id", "acl", "network ACL"),
    "security-group": _security_group,
    "dhcp-options": _dhcp_options,
    "role": _named("role", "role", _ROLE),
    "bucket": _named("bucket", "bucket", _BUCKET),
    "table": _named("table", "table", _TABLE),
    "session-preferences": _session_preferences,
    "instance": _instance,
}
if set(_BUILDERS) != set(KINDS):  # pragma: no cover - a kind without a builder is a bug here
    raise ImportError("checks.resources: KINDS and builders differ")


def chain(spec: str) -> Tuple[str, ...]:
    """The kinds of a ``Cause.resource`` spec, in order, ending with "instance"."""
    kinds = tuple(k.strip() for k in spec.split("|") if k.strip())
    return kinds if kinds[-1:] == ("instance",) else kinds + ("instance",)


def build(spec: str, params: Mapping[str, Any], code: str = "") -> Resource:
    """The first kind of ``spec`` whose id ``params`` can build; the instance at the end."""
    for kind in chain(spec):
        found = _BUILDERS[kind](params, code)
        if found is not None:
            return found
    return _one("instance", "")  # not reached: the instance builder always answers
