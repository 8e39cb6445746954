"""``ec2.api``: what the EC2 API says about this VPC, gathered once into an ``Ec2View``.

The view sharpens other checks' causes (Private DNS off vs endpoint missing, route table, security
groups, ENI identity). It is optional: the reference lab has no ``ec2`` interface endpoint, so the
EC2 API is blackholed there. Hence one connection attempt with a short connect timeout, status OK
either way, and ``Outcome.data`` is always an ``Ec2View`` (``available=False`` + reason when the
API can't be used) so that dependents are never blocked.

IAM: ec2:DescribeVpcAttribute, DescribeVpcEndpoints, DescribeNetworkInterfaces, DescribeRouteTables,
DescribePrefixLists, DescribeManagedPrefixLists, GetManagedPrefixListEntries, DescribeSecurityGroups,
DescribeNetworkAcls.
A call that is denied is recorded in ``errors``; the rest of the view still counts.
"""
from __future__ import annotations

import time
from concurrent import futures
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from . import workers
from .ec2view import Ec2View, EndpointView, Route, SecurityGroupRule
from .errortext import exception_text
from .hostnames import partition_name
from .model import Check, Context, Finding, Outcome, Settings, Status, outcome
from .nacls import NaclView, parse_acls

CHECK_ID = "ec2.api"
CONNECT_TIMEOUT_S = 0.5  # one short try: without an ec2 endpoint the public API address is dropped;
# an ENI or an in-region NAT path connects in milliseconds, and a miss only leaves identity unconfirmed
_REPORT_RESERVE_S = 0.3  # stop waiting this long before the check's deadline, to report a view
_MAX_PAGES = 20

# Errors that make every further call pointless (no path, no or bad credentials).
_FATAL_CODES = frozenset({
    "AuthFailure", "InvalidClientTokenId", "UnrecognizedClientException", "ExpiredToken",
    "RequestExpired", "SignatureDoesNotMatch", "OptInRequired", "Blocked", "IncompleteSignature",
})
_ROUTE_TARGET_KEYS = ("GatewayId", "NatGatewayId", "TransitGatewayId", "VpcPeeringConnectionId",
                      "NetworkInterfaceId", "InstanceId", "EgressOnlyInternetGatewayId",
                      "CarrierGatewayId", "LocalGatewayId", "CoreNetworkArn")
_ROUTE_DEST_KEYS = ("DestinationCidrBlock", "DestinationPrefixListId", "DestinationIpv6CidrBlock")


class _Fatal(Exception):
    """The API can't be used at all from here; ``reason`` says why."""


# --- error classification ---------------------------------------------------------------------

def error_text(exc: BaseException) -> Tuple[str, bool]:
    """(one-line reason, fatal?) for an exception raised by a botocore call."""
    from botocore import exceptions as bx

    if isinstance(exc, bx.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", "?"))
        return f"{code}: {err.get('Message', '')}".strip(), code in _FATAL_CODES
    if isinstance(exc, bx.ConnectTimeoutError):
        return f"no TCP connection to {exc.kwargs.get('endpoint_url')} within the connect timeout", True
    if isinstance(exc, bx.ReadTimeoutError):
        return f"no answer from {exc.kwargs.get('endpoint_url')} within the read timeout", True
    if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectionClosedError, bx.SSLError,
                        bx.ProxyConnectionError, bx.HTTPClientError, bx.NoCredentialsError,
                        bx.PartialCredentialsError, bx.CredentialRetrievalError, bx.NoRegionError)):
        return exception_text(exc), True
    raise exc  # our bug or something unexpected: the runner reports it with a traceback


# --- parsing (pure) ------------------------------------------------------------------------------

def parse_endpoint(d: Mapping[str, Any], enis: Mapping[str, Mapping[str, Any]]) -> EndpointView:
    """One DescribeVpcEndpoints item; ``enis`` maps ENI id -> DescribeNetworkInterfaces item."""
    eni_ids = tuple(d.get("NetworkInterfaceIds") or ())
    ips: List[str] = []
    azs: Dict[str, str] = {}
    subnets: Dict[str, str] = {}
    by_ip: Dict[str, str] = {}
    for eni_id in eni_ids:
        eni = enis.get(eni_id)
        if not eni:
            continue
        for ip in _eni_ips(eni):
            if ip not in ips:
                ips.append(ip)
                azs[ip] = str(eni.get("AvailabilityZone", ""))
                by_ip[ip] = str(eni_id)
                if eni.get("SubnetId"):
                    subnets[ip] = str(eni["SubnetId"])
    return EndpointView(
        id=str(d["VpcEndpointId"]),
        service_name=str(d.get("ServiceName", "")),
        type=str(d.get("VpcEndpointType", "")),
        state=str(d.get("State", "")).lower(),  # the API says "available"; the model's enum "Available"
        private_dns_enabled=bool(d.get("PrivateDnsEnabled", False)),
        subnet_ids=tuple(d.get("SubnetIds") or ()),
        eni_ids=eni_ids,
        eni_ips=tuple(ips),
        eni_azs=azs,
        eni_subnets=subnets,
        eni_by_ip=by_ip,
        security_group_ids=tuple(g["GroupId"] for g in d.get("Groups") or () if g.get("GroupId")),
        route_table_ids=tuple(d.get("RouteTableIds") or ()),
        dns_names=tuple(e["DnsName"] for e in d.get("DnsEntries") or () if e.get("DnsName")),
        policy=d.get("PolicyDocument"),
    )


def _eni_ips(eni: Mapping[str, Any]) -> List[str]:
    ips = [a["PrivateIpAddress"] for a in eni.get("PrivateIpAddresses") or () if a.get("PrivateIpAddress")]
    primary = eni.get("PrivateIpAddress")
    if primary and primary not in ips:
        ips.insert(0, primary)
    return ips


def parse_routes(table: Mapping[str, Any]) -> Tuple[Route, ...]:
    out = []
    for r in table.get("Routes") or ():
        dest = next((r[k] for k in _ROUTE_DEST_KEYS if r.get(k)), None)
        if dest is None:
            continue
        target = next((str(r[k]) for k in _ROUTE_TARGET_KEYS if r.get(k)), "unknown")
        out.append(Route(str(dest), target, str(r.get("State", "active"))))
    return tuple(out)


def _rules(perms: Iterable[Mapping[str, Any]], direction: str) -> List[SecurityGroupRule]:
    out = []
    for p in perms:
        out.append(SecurityGroupRule(
            direction=direction,
            protocol=str(p.get("IpProtocol", "-1")).lower(),
            from_port=p.get("FromPort"),
            to_port=p.get("ToPort"),
            cidrs=tuple([r["CidrIp"] for r in p.get("IpRanges") or () if r.get("CidrIp")]
                        + [r["CidrIpv6"] for r in p.get("Ipv6Ranges") or () if r.get("CidrIpv6")]),
            prefix_list_ids=tuple(r["PrefixListId"] for r in p.get("PrefixListIds") or () if r.get("PrefixListId")),
            group_ids=tuple(r["GroupId"] for r in p.get("UserIdGroupPairs") or () if r.get("GroupId")),
        ))
    return out


def parse_security_group(group: Mapping[str, Any]) -> Tuple[SecurityGroupRule, ...]:
    return tuple(_rules(group.get("IpPermissions") or (), "inbound")
                 + _rules(group.get("IpPermissionsEgress") or (), "outbound"))


def s3_prefix_list_names(region: str, endpoints: Sequence[EndpointView]) -> List[str]:
    """The managed prefix list of S3 is named like the S3 endpoint service (com.amazonaws.<region>.s3,
    cn.com.amazonaws.<region>.s3 in China); an S3 gateway endpoint in the view names it exactly."""
    names = [e.service_name for e in endpoints if e.type == "Gateway" and e.service_name.endswith(".s3")]
    names.append(f"com.amazonaws.{region}.s3")
    if partition_name(region) == "aws-cn":
        names.append(f"cn.com.amazonaws.{region}.s3")
    return list(dict.fromkeys(names))


# --- gathering -------------------------------------------------------------------------------------

class _Gatherer:
    """Runs the Describe* calls; a fatal error aborts, any other is recorded per call."""

    def __init__(self, ctx: Context, ec2: Any) -> None:
        self.ctx = ctx
        self.ec2 = ec2
        self.errors: Dict[str, str] = {}
        self.calls = 0

    def call(self, name: str, fn: Callable[[], Any]) -> Any:
        if self.ctx.remaining() < 0.1:
            self.errors[name] = "not called: the check's time budget is spent"
            return None
        self.calls += 1
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - classified; unknown kinds re-raise in error_text
            reason, fatal = error_text(exc)
            if fatal:
                raise _Fatal(reason) from exc
            self.errors[name] = reason
            return None

    def paged(self, op: str, key: str, **kwargs: Any) -> List[Dict[str, Any]]:
        """All pages of a NextToken-paginated call (bounded page count)."""
        items: List[Dict[str, Any]] = []
        token: Optional[str] = None
        for _ in range(_MAX_PAGES):
            args = dict(kwargs, NextToken=token) if token else kwargs
            page = getattr(self.ec2, op)(**args)
            items.extend(page.get(key) or ())
            token = page.get("NextToken")
            if not token:
                break
        return items


def _attribute(g: _Gatherer, vpc_id: str, attribute: str, key: str) -> Optional[bool]:
    resp = g.call(f"DescribeVpcAttribute({attribute})",
                  lambda: g.ec2.describe_vpc_attribute(VpcId=vpc_id, Attribute=attribute))
    return None if resp is None else bool(resp.get(key, {}).get("Value"))


def _endpoints(g: _Gatherer, vpc_id: str) -> List[Dict[str, Any]]:
    raw = g.call("DescribeVpcEndpoints", lambda: g.paged(
        "describe_vpc_endpoints", "VpcEndpoints", Filters=[{"Name": "vpc-id", "Values": [vpc_id]}]))
    return raw or []


def _enis(g: _Gatherer, eni_ids: List[str]) -> Dict[str, Dict[str, Any]]:
    if not eni_ids:
        return {}
    # A filter (not NetworkInterfaceIds=) so one deleted ENI doesn't fail the whole call.
    raw = g.call("DescribeNetworkInterfaces", lambda: g.paged(
        "describe_network_interfaces", "NetworkInterfaces",
        Filters=[{"Name": "network-interface-id", "Values": eni_ids}]))
    return {e["NetworkInterfaceId"]: e for e in raw or ()}


def _route_table(g: _Gatherer, vpc_id: str, subnet_id: Optional[str]) -> Tuple[Optional[str], Tuple[Route, ...]]:
    """The subnet's route table: its explicit association, else the VPC's main table (AWS: a subnet
    without an explicit association uses the main route table)."""
    if not subnet_id:
        g.errors["DescribeRouteTables"] = "not called: subnet_id unknown"
        return None, ()
    tables = g.call("DescribeRouteTables", lambda: g.paged(
        "describe_route_tables", "RouteTables",
        Filters=[{"Name": "association.subnet-id", "Values": [subnet_id]}]))
    if tables is None:
        return None, ()
    if not tables:
        tables = g.call("DescribeRouteTables(main)", lambda: g.paged(
            "describe_route_tables", "RouteTables",
            Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "association.main", "Values": ["true"]}]))
    if not tables:
        return None, ()
    return str(tables[0]["RouteTableId"]), parse_routes(tables[0])


def _s3_prefix_list(g: _Gatherer, region: str, endpoints: Sequence[EndpointView]) -> Tuple[Optional[str], Tuple[str, ...]]:
    names = s3_prefix_list_names(region, endpoints)
    lists = g.call("DescribePrefixLists", lambda: g.paged(
        "describe_prefix_lists", "PrefixLists", Filters=[{"Name": "prefix-list-name", "Values": names}]))
    pl_id: Optional[str] = None
    cidrs: Tuple[str, ...] = ()
    if lists:
        pl_id = str(lists[0]["PrefixListId"])
        cidrs = tuple(lists[0].get("Cidrs") or ())
    if pl_id is None:  # the newer API knows the same AWS-managed list
        managed = g.call("DescribeManagedPrefixLists", lambda: g.paged(
            "describe_managed_prefix_lists", "PrefixLists",
            Filters=[{"Name": "prefix-list-name", "Values": names}]))
        if managed:
            pl_id = str(managed[0]["PrefixListId"])
    if pl_id and not cidrs:
        entries = g.call("GetManagedPrefixListEntries", lambda: g.paged(
            "get_managed_prefix_list_entries", "Entries", PrefixListId=pl_id))
        cidrs = tuple(e["Cidr"] for e in entries or () if e.get("Cidr"))
    return pl_id, cidrs


def dynamodb_prefix_list(g: _Gatherer, region: str,
                         endpoints: Sequence[EndpointView]) -> Tuple[Optional[str], Tuple[str, ...]]:
    """DynamoDB's managed prefix list, only when DynamoDB is configured or has a gateway endpoint here."""
    if g.ctx.settings.dynamodb_table is None and not any(
            e.type == "Gateway" and e.short_service == "dynamodb" for e in endpoints):
        return None, ()
    names = [f"com.amazonaws.{region}.dynamodb"] + (
        [f"cn.com.amazonaws.{region}.dynamodb"] if partition_name(region) == "aws-cn" else [])
    lists = g.call("DescribePrefixLists(dynamodb)", lambda: g.paged(
        "describe_prefix_lists", "PrefixLists", Filters=[{"Name": "prefix-list-name", "Values": names}]))
    if not lists:
        return None, ()
    pl_id, cidrs = str(lists[0]["PrefixListId"]), tuple(lists[0].get("Cidrs") or ())
    if not cidrs:
        entries = g.call("GetManagedPrefixListEntries(dynamodb)", lambda: g.paged(
            "get_managed_prefix_list_entries", "Entries", PrefixListId=pl_id))
        cidrs = tuple(e["Cidr"] for e in entries or () if e.get("Cidr"))
    return pl_id, cidrs


def _security_groups(g: _Gatherer, group_ids: List[str]) -> Dict[str, Tuple[SecurityGroupRule, ...]]:
    if not group_ids:
        return {}
    # A filter so that one unknown group id doesn't fail the call (InvalidGroup.NotFound).
    raw = g.call("DescribeSecurityGroups", lambda: g.paged(
        "describe_security_groups", "SecurityGroups", Filters=[{"Name": "group-id", "Values": group_ids}]))
    return {str(sg["GroupId"]): parse_security_group(sg) for sg in raw or ()}


def _network_acls(g: _Gatherer, subnet_ids: List[str]) -> Dict[str, NaclView]:
    """The NACLs of the instance's subnet and the endpoints' subnets (subnet id -> NACL)."""
    if not subnet_ids:
        return {}
    raw = g.call("DescribeNetworkAcls", lambda: g.paged(
        "describe_network_acls", "NetworkAcls", Filters=[{"Name": "association.subnet-id", "Values": subnet_ids}]))
    return parse_acls(raw or ())


def gather(ctx: Context, ec2: Any, vpc_id: str, region: str) -> Ec2View:
    """Every Describe* call, in the order that lets later calls use earlier answers."""
    g = _Gatherer(ctx, ec2)
    facts = ctx.facts
    try:
        # enableDnsSupport + enableDnsHostnames: both must be true for interface endpoints' Private DNS.
        dns_support = _attribute(g, vpc_id, "enableDnsSupport", "EnableDnsSupport")
        dns_hostnames = _attribute(g, vpc_id, "enableDnsHostnames", "EnableDnsHostnames")
        raw_eps = _endpoints(g, vpc_id)
        eni_ids = [i for e in raw_eps for i in e.get("NetworkInterfaceIds") or ()]
        enis = _enis(g, eni_ids)
        endpoints = tuple(parse_endpoint(e, enis) for e in raw_eps)
        rtb_id, routes = _route_table(g, vpc_id, facts.subnet_id)
        pl_id, pl_cidrs = _s3_prefix_list(g, region, endpoints)
        ddb_pl_id, ddb_pl_cidrs = dynamodb_prefix_list(g, region, endpoints)
        sg_ids = list(dict.fromkeys(list(facts.security_group_ids)
                                    + [s for e in endpoints for s in e.security_group_ids]))
        rules = _security_groups(g, sg_ids)
        acls = _network_acls(g, list(dict.fromkeys(
            ([facts.subnet_id] if facts.subnet_id else []) + [s for e in endpoints for s in e.subnet_ids])))
    except _Fatal as exc:
        return Ec2View(available=False, reason=str(exc), vpc_id=vpc_id, errors=dict(g.errors))
    if g.calls and len([k for k in g.errors if not g.errors[k].startswith("not called")]) >= g.calls:
        first = next(iter(g.errors.values()))
        return Ec2View(available=False, reason=f"every call failed ({first})", vpc_id=vpc_id, errors=dict(g.errors))
    return Ec2View(
        available=True, vpc_id=vpc_id, enable_dns_support=dns_support, enable_dns_hostnames=dns_hostnames,
        endpoints=endpoints, route_table_id=rtb_id, routes=routes, s3_prefix_list_id=pl_id,
        s3_prefix_list_cidrs=pl_cidrs, instance_sg_ids=tuple(facts.security_group_ids),
        dynamodb_prefix_list_id=ddb_pl_id, dynamodb_prefix_list_cidrs=ddb_pl_cidrs,
        security_group_rules=rules, errors=dict(g.errors), network_acls=acls)


# --- the check --------------------------------------------------------------------------------------

def view_evidence(view: Ec2View) -> Dict[str, Any]:
    """The view as JSON-serialisable evidence."""
    return {
        "available": view.available,
        "reason": view.reason,
        "vpc_id": view.vpc_id,
        "enable_dns_support": view.enable_dns_support,
        "enable_dns_hostnames": view.enable_dns_hostnames,
        "endpoints": [{"id": e.id, "service": e.service_name, "type": e.type, "state": e.state,
                       "private_dns": e.private_dns_enabled, "eni_ids": list(e.eni_ids),
                       "eni_ips": list(e.eni_ips), "eni_azs": dict(e.eni_azs),
                       "security_group_ids": list(e.security_group_ids),
                       "route_table_ids": list(e.route_table_ids)} for e in view.endpoints],
        "route_table_id": view.route_table_id,
        "routes": [{"destination": r.destination, "target": r.target, "state": r.state} for r in view.routes],
        "s3_prefix_list_id": view.s3_prefix_list_id,
        "s3_prefix_list_cidrs": list(view.s3_prefix_list_cidrs),
        "dynamodb_prefix_list_id": view.dynamodb_prefix_list_id,
        "instance_sg_ids": list(view.instance_sg_ids),
        "errors": dict(view.errors),
    }


def _unavailable(reason: str, start: float, **extra: Any) -> Outcome:
    view = Ec2View(available=False, reason=reason, vpc_id=extra.pop("vpc_id", None), errors=extra.pop("errors", {}))
    return _report(view, start, extra)


def _report(view: Ec2View, start: float, extra: Mapping[str, Any]) -> Outcome:
    duration = time.monotonic() - start
    evidence = dict(view_evidence(view), api_ms=round(duration * 1000, 1), **extra)
    if not view.available:
        # Optional: OK either way (the healthy lab has no ec2 endpoint); the cause is a note.
        evidence["cause_code"] = "ec2_api_unavailable"
        summary = f"EC2 API not reachable from here ({view.reason}); identity checks rest on CIDR evidence"
    else:
        services = ", ".join(f"{e.short_service}/{e.type.lower()}" for e in view.endpoints) or "none"
        summary = (f"EC2 API: {view.vpc_id} enableDnsSupport={_tf(view.enable_dns_support)} "
                   f"enableDnsHostnames={_tf(view.enable_dns_hostnames)}; endpoints: {services}; "
                   f"route table {view.route_table_id or '?'}")
        if view.errors:
            summary += "; partial view, failed: " + ", ".join(
                f"{call} ({err.split(':', 1)[0]})" for call, err in view.errors.items())
    return outcome(Finding(CHECK_ID, Status.OK, summary, evidence=evidence, duration_s=duration,
                           verified=view.available), data=view)


def _tf(value: Optional[bool]) -> str:
    return "?" if value is None else str(value).lower()


def run(ctx: Context) -> Outcome:
    start = time.monotonic()
    region, vpc_id = ctx.facts.region, ctx.facts.vpc_id
    # Unknown facts make the view unavailable rather than blocking dependents (which still run
    # on data-plane evidence and raise MissingFact themselves if they need the fact).
    if not region:
        return _unavailable("region unknown", start, vpc_id=vpc_id)
    if not vpc_id:
        return _unavailable("vpc_id unknown", start)
    # botocore resolves the API name with the system resolver (getaddrinfo), which no timeout of
    # ours bounds: run the calls in a worker and stop waiting before the runner's timeout, so that
    # the dependents still get a view.
    box: Dict[str, Any] = {}

    def work() -> None:
        try:
            from . import awsclient

            silent = _no_tcp_answer(ctx, region)
            if silent is not None:  # what botocore would meet, without building the client first
                box["error_text"], box["endpoint_url"] = silent
                return
            ec2 = awsclient.client(ctx, "ec2", connect_timeout=CONNECT_TIMEOUT_S,
                                   read_timeout=ctx.settings.api_timeout_s)
            box["endpoint_url"] = ec2.meta.endpoint_url
            box["view"] = gather(ctx, ec2, vpc_id, region)
        except BaseException as exc:  # noqa: BLE001 - handed to the check's thread below
            box["error"] = exc

    job = workers.run(work)
    wait = max(0.1, ctx.remaining() - _REPORT_RESERVE_S)
    futures.wait([job], timeout=wait)
    if not job.done():
        return _unavailable(f"no complete answer within {wait:.1f} s (name resolution or the API hangs)",
                            start, vpc_id=vpc_id, endpoint_url=box.get("endpoint_url"))
    if "error_text" in box:
        return _unavailable(box["error_text"], start, vpc_id=vpc_id, endpoint_url=box["endpoint_url"])
    if "error" in box:  # client creation failed (NoRegionError, credentials…); our bugs re-raise
        reason, _ = error_text(box["error"])
        return _unavailable(reason, start, vpc_id=vpc_id)
    return _report(box["view"], start, {"endpoint_url": box["endpoint_url"]})


def _no_tcp_answer(ctx: Context, region: str) -> Optional[Tuple[str, str]]:
    """(reason, url) when the EC2 API's address does not answer a TCP connect within
    CONNECT_TIMEOUT_S — the usual case without an ec2 endpoint (the public address is dropped) —
    else None. A client costs ~0.3 s of CPU (the ec2 model, credentials) before its first connect
    would time out the same way; this dials what the client would dial (the system resolver, the
    same host and port) and nothing else. Any other outcome, and every case where the client might
    dial elsewhere (a proxy, configured endpoint URLs), is left to the client to meet and classify."""
    import socket
    from urllib.parse import urlsplit

    from botocore.utils import get_environ_proxies

    from . import awsclient
    from .hostnames import service_hostname

    if ctx.settings.use_configured_endpoint_urls:
        return None
    url = awsclient.endpoint_url("ec2") or f"https://{service_hostname('ec2', region, ctx.settings.fips)}"
    if get_environ_proxies(url):
        return None
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        # The system resolver has no timeout of ours: a name that does not resolve in time is left
        # to the client too (which meets it after building, or fails earlier, e.g. on credentials).
        lookup = workers.run(socket.getaddrinfo, parts.hostname, port, 0, socket.SOCK_STREAM)
        infos = lookup.result(timeout=CONNECT_TIMEOUT_S)
    except (OSError, ValueError, futures.TimeoutError):
        return None
    for family, kind, proto, _, address in infos:  # as urllib3's create_connection: each in turn
        sock = socket.socket(family, kind, proto)
        sock.settimeout(CONNECT_TIMEOUT_S)
        try:
            sock.connect(address)
            return None  # it answers: the client goes ahead
        except socket.timeout:
            continue
        except OSError:
            return None
        finally:
            sock.close()
    if not infos:
        return None
    return f"no TCP connection to {url.rstrip('/')}/ within the connect timeout", url


def _disabled(ctx: Context) -> Outcome:
    view = Ec2View(available=False, reason="disabled in config")
    return outcome(Finding(CHECK_ID, Status.OK, "EC2 API check disabled in config (check_ec2_api: false)",
                           evidence={"available": False, "reason": "disabled in config"}), data=view)


def checks(settings: Settings) -> List[Check]:
    if not settings.check_ec2_api:
        return [Check(CHECK_ID, _disabled, timeout_s=1.0)]
    # 1 s connect + up to ~8 calls over one kept-alive connection.
    return [Check(CHECK_ID, run, timeout_s=CONNECT_TIMEOUT_S + 3 * settings.api_timeout_s)]
