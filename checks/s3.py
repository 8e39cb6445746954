"""S3 through the gateway endpoint: ``s3.dns``, ``s3.route``, ``s3.api``, ``s3.object``.

AWS facts relied on (AWS-FACTS.md): a gateway endpoint does not change DNS — S3's regional name
keeps resolving to public S3 addresses, which lie in the region's ``com.amazonaws.<region>.s3``
prefix list; the subnet's route table sends that prefix list (``pl-…``) to the ``vpce-…`` target;
gateway endpoints only reach buckets in the VPC's own region. With an S3 *interface* endpoint and
Private DNS the regional name resolves to ENI IPs instead (that is fine too).
"""
from __future__ import annotations

import ipaddress
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

from . import ipv6
from .causes import explain
from .dnsquery import query_a
from .dnsshadow import bucket_name_shadowed, nxdomain_cause
from .ec2view import Ec2View
from .hostnames import partition_name, service_hostname
from .model import Check, Context, Facts, Finding, MissingFact, Outcome, Settings, Status, outcome
from .resolver import misleads, query_timeout
from .gateway_path import public_answers
from .s3errors import S3Call, client_error_cause, failure, inside, route_missing, s3_gateway_route

S3_DNS, S3_ROUTE, S3_API, S3_OBJECT = "s3.dns", "s3.route", "s3.api", "s3.object"
GET_OBJECT_MAX_BYTES = 1 << 20  # read at most this much of the test object

# "Private" when the VPC CIDRs are unknown: RFC 1918 and RFC 6598 (VPCs may use 100.64/10).
# Not ipaddress.is_private, which also counts the documentation ranges and more.
_PRIVATE = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                                   "100.64.0.0/10", "fc00::/7"))


# --- small helpers ---------------------------------------------------------------------------------

def resolver_address(ctx: Context) -> Tuple[str, int]:
    """The Amazon resolver chosen by the ``resolver`` check (``server`` and optional ``port``)."""
    data = ctx.data("resolver")
    get = data.get if isinstance(data, Mapping) else (lambda k, d=None: getattr(data, k, d))
    return str(get("server")), int(get("port", 53) or 53)


def vpc_networks(facts: Facts) -> Tuple[Any, ...]:
    """The VPC CIDRs, or the private ranges when they are unknown."""
    try:
        return facts.networks()
    except MissingFact:
        return _PRIVATE


def _arn(region: str, resource: str) -> str:
    return f"arn:{partition_name(region)}:s3:::{resource}"


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


# --- s3.dns ------------------------------------------------------------------------------------------

def run_dns(ctx: Context) -> Outcome:
    start = time.monotonic()
    region = ctx.facts.require("region")
    host = service_hostname("s3", region, ctx.settings.fips)
    server, port = resolver_address(ctx)
    view: Ec2View = ctx.data("ec2.api")
    timeout = query_timeout(ctx)  # longer when the resolver check measured a slow resolver
    ans = query_a(host, server, timeout, port=port)
    ev: Dict[str, Any] = ans.to_evidence()
    if ans.outcome != "answer":
        return outcome(_dns_failure(ctx, ans, host, server, timeout, view, ev, start))
    shadowed = bucket_name_shadowed(ctx, host, server, timeout, port=port)  # <bucket>.<host> must resolve too
    if shadowed is not None:
        return outcome(Finding(S3_DNS, Status.CRITICAL, shadowed[0], evidence=dict(ev, **shadowed[1]),
                               duration_s=time.monotonic() - start, **shadowed[2]))
    answers = list(ans.addresses)
    nets = vpc_networks(ctx.facts)
    private = [a for a in answers if inside(a, nets)]
    data = {"host": host, "answers": answers, "interface_endpoint": bool(private) and len(private) == len(answers),
            "server": server}
    ev["interface_endpoint"] = data["interface_endpoint"]  # the report's S3 verdict names the path
    shown = ", ".join(answers)

    def done(status: Status, summary: str, **cause: Any) -> Outcome:
        return outcome(Finding(S3_DNS, status, summary, evidence=ev, duration_s=time.monotonic() - start,
                               **cause), data=data)

    if data["interface_endpoint"]:
        # Private DNS of an S3 interface endpoint: correct too, just not the gateway path.
        ev["cause_code"] = "s3_interface_endpoint"
        return done(Status.OK, f"{host} -> {shown}: S3 interface endpoint with Private DNS serves S3")
    if private:
        return done(Status.WARNING, f"{host} -> {shown}: a mix of private and public addresses",
                    **explain("dns_mixed_answers", host=host, answers=shown))
    status, summary, cause = public_answers("S3", "s3", host, answers, view, view.s3_prefix_list_id,
                                            view.s3_prefix_list_cidrs, ans.latency_s, ev, ttl=ans.ttl)
    return done(status, summary, **cause)


def _dns_failure(ctx: Context, ans: Any, host: str, server: str, timeout: float, view: Ec2View,
                 ev: Dict[str, Any], start: float) -> Finding:
    vpc_id = ctx.facts.vpc_id
    if ans.outcome == "timeout":
        if view.available and view.enable_dns_support is False:
            cause = explain("dns_support_disabled", vpc_id=vpc_id)
        else:
            cause = explain("dns_timeout", resolver=server, host=host, timeout_s=f"{timeout:g}")
        summary = f"{host}: no answer from {server} within {timeout:g} s"
    elif ans.outcome == "unreachable":
        cause = explain("resolver_unreachable", resolver=server, vpc_id=vpc_id)
        summary = f"{host}: resolver {server} unreachable ({ans.error})"
    elif ans.outcome == "nxdomain":
        cause = nxdomain_cause(ctx, host, server, timeout, {"host": host, "resolver": server}, ev)
        summary = f"{host}: NXDOMAIN from {server}"
    elif ans.outcome == "nodata":
        cause = explain("dns_no_answer", resolver=server, host=host, rcode="NOERROR without A records")
        summary = f"{host}: no A record from {server}"
    else:
        cause = explain("resolver_error", resolver=server, rcode=ans.rcode or ans.error)
        summary = f"{host}: {server} answered {ans.rcode or ans.error}"
    return Finding(S3_DNS, Status.CRITICAL, summary, evidence=ev, duration_s=time.monotonic() - start, **cause)


# --- s3.route ----------------------------------------------------------------------------------------

def run_route(ctx: Context) -> Outcome:
    start = time.monotonic()
    view: Ec2View = ctx.data("ec2.api")

    def done(status: Status, summary: str, ev: Dict[str, Any], **cause: Any) -> Outcome:
        verified = bool(ev.get("route_table_id"))
        return outcome(Finding(S3_ROUTE, status, summary, evidence=ev, duration_s=time.monotonic() - start,
                               verified=verified or status != Status.OK, **cause), data={"verified": verified})

    if not view.available:
        return done(Status.OK, f"route not verified ({view.reason})", {"available": False, "reason": view.reason})
    if view.route_table_id is None:
        why = view.errors.get("DescribeRouteTables") or view.errors.get("DescribeRouteTables(main)") \
            or "no route table found for the subnet"
        return done(Status.OK, f"route not verified ({why})", {"available": True, "reason": why})
    gateway, route = s3_gateway_route(view)
    ev: Dict[str, Any] = {
        "route_table_id": view.route_table_id, "prefix_list_id": view.s3_prefix_list_id,
        "gateway_endpoint_id": gateway.id if gateway else None,
        "gateway_route_tables": list(gateway.route_table_ids) if gateway else [],
        "routes": [{"destination": r.destination, "target": r.target, "state": r.state} for r in view.routes],
    }
    if route is not None:
        return done(Status.OK, f"route table {view.route_table_id} sends {route.destination} to {route.target}", ev)
    interface = view.endpoint_for("s3", "Interface")
    if interface and interface.private_dns_enabled and interface.state == "available":
        ev["interface_endpoint_id"] = interface.id
        return done(Status.OK, f"no S3 gateway route in {view.route_table_id}; S3 is served by the interface "
                    f"endpoint {interface.id} with Private DNS", ev)
    default = [r for r in view.routes if r.destination == "0.0.0.0/0"]
    ev["default_route"] = {"target": default[0].target, "state": default[0].state} if default else None
    if gateway is not None:
        return done(Status.CRITICAL, f"route table {view.route_table_id} has no route for "
                    f"{view.s3_prefix_list_id or 'the S3 prefix list'} to {gateway.id}", ev,
                    **route_missing(view, gateway))
    return done(Status.CRITICAL, f"no S3 gateway endpoint in {view.vpc_id}; route table {view.route_table_id} "
                "has no S3 route", ev,
                **explain("s3_no_gateway_route", ip=view.s3_prefix_list_id or "the S3 prefix list",
                          vpc_id=view.vpc_id, region=ctx.facts.region, route_table_id=view.route_table_id))


def _s3_client(ctx: Context) -> Any:
    from . import awsclient

    return awsclient.no_region_redirect(awsclient.client(ctx, "s3"))


def _timed(fn: Any, **kwargs: Any) -> Tuple[Any, float]:
    start = time.monotonic()
    return fn(**kwargs), time.monotonic() - start


def _base_evidence(call: S3Call, client: Optional[Any]) -> Dict[str, Any]:
    return {"operation": call.op, "host": call.dns.get("host"), "answers": list(call.dns.get("answers", ())),
            "endpoint_url": client.meta.endpoint_url if client is not None else None, "region": call.region,
            "bucket": call.bucket, "key": call.key}


def _ok_meta(resp: Mapping[str, Any], ev: Dict[str, Any], latency: float) -> None:
    meta = resp.get("ResponseMetadata", {}) or {}
    ev.update(http_status=meta.get("HTTPStatusCode"), request_id=meta.get("RequestId"),
              latency_ms=_ms(latency))


# --- s3.api ----------------------------------------------------------------------------------------

# S3 refusals that still prove the path: S3 itself answered, through whatever path it took.
_PATH_PROVEN = frozenset({"s3_access_denied", "s3_access_denied_iam", "s3_access_denied_endpoint_policy",
                          "s3_access_denied_bucket_policy"})


def _misled(ctx: Context, check_id: str, action: str) -> Optional[Outcome]:
    """Don't call S3 when this instance's own resolver already fails its name (resolver.system: a
    dead or too-slow nameserver, a pin elsewhere): botocore would fail the same way, and later."""
    host = service_hostname("s3", str(ctx.facts.region), ctx.settings.fips)
    if not misleads(ctx, host):
        return None
    return outcome(Finding(check_id, Status.CRITICAL, f"{action} not tried: resolver.system fails {host} here",
                           blocked_by="resolver.system",
                           **explain("aws_call_blocked", action=action, blocker="resolver.system")))


def run_api(ctx: Context) -> Outcome:
    """A real signed ListBuckets (what the reference lab does: ``aws s3 ls``). It proves the path:
    an AccessDenied answer proves it as well as a list does (S3 answered), so a role with only
    AmazonSSMManagedInstanceCore passes; the permission matters only for an object the user
    configured (s3.object), where a refusal is a finding of its own."""
    blocked = _misled(ctx, S3_API, "ListBuckets") or ipv6.ipv4_only_s3(ctx, S3_API, "ListBuckets")
    if blocked is not None:
        return blocked
    start = time.monotonic()
    call = S3Call(ctx, "ListBuckets", "s3:ListAllMyBuckets", _arn(str(ctx.facts.require("region")), "*"))
    client = None
    ev = _base_evidence(call, None)
    try:
        client = _s3_client(ctx)
        ev = _base_evidence(call, client)
        resp, latency = _timed(client.list_buckets)
    except Exception as exc:  # noqa: BLE001 - classified in _failure; anything else re-raises
        ev["latency_ms"] = _ms(time.monotonic() - start)
        summary, cause = failure(call, exc, ev)
        if cause.get("cause_code") in _PATH_PROVEN:
            return outcome(_path_proven(call, ev, cause, time.monotonic() - start), data={"ok": True})
        return outcome(Finding(S3_API, Status.CRITICAL, summary, evidence=ev,
                               duration_s=time.monotonic() - start, **cause))
    _ok_meta(resp, ev, latency)
    ev["bucket_count"] = len(resp.get("Buckets") or ())
    return outcome(Finding(S3_API, Status.OK, f"ListBuckets: {resp['ResponseMetadata'].get('HTTPStatusCode')} OK, "
                           f"{ev['bucket_count']} buckets in {ev['latency_ms']} ms", evidence=ev,
                           duration_s=time.monotonic() - start), data={"ok": True})


def _path_proven(call: S3Call, ev: Dict[str, Any], cause: Mapping[str, Any], duration: float) -> Finding:
    """ListBuckets refused: the path works; what the refusal says goes in the summary, not a cause."""
    ev.update(path_proven=True, refused_by=cause.get("cause_code"))
    if cause.get("cause_code") == "s3_access_denied_endpoint_policy":
        why = (f"the gateway endpoint's policy does not allow {call.action} (fine if it allows only your buckets; "
               f"the SSM agent needs arn:aws:s3:::aws-ssm-{call.region}/* and amazon-ssm-{call.region}/*)")
    else:
        why = f"this role may not {call.action}, which the SSM agent does not need"
    return Finding(S3_API, Status.OK, f"S3 answered {ev.get('http_status') or 403} AccessDenied in "
                   f"{ev.get('latency_ms')} ms: the path works; {why}", evidence=ev, duration_s=duration)


# --- s3.object -------------------------------------------------------------------------------------

def run_object(ctx: Context) -> Outcome:
    """HeadObject (and GetObject when asked) of the configured test object; HeadBucket when only
    the bucket is set. Redirects are not followed: a bucket in another region is the finding."""
    blocked = (_misled(ctx, S3_OBJECT, "HeadObject" if ctx.settings.s3_key else "HeadBucket")
               or ipv6.ipv4_only_s3(ctx, S3_OBJECT, "HeadObject" if ctx.settings.s3_key else "HeadBucket"))
    if blocked is not None:
        return blocked
    start = time.monotonic()
    s = ctx.settings
    region = str(ctx.facts.require("region"))
    bucket, key = str(s.s3_bucket), s.s3_key
    if key:
        call = S3Call(ctx, "HeadObject", "s3:GetObject", _arn(region, f"{bucket}/{key}"), bucket, key)
    else:
        call = S3Call(ctx, "HeadBucket", "s3:ListBucket", _arn(region, bucket), bucket)
    client = None
    ev = _base_evidence(call, None)
    try:
        client = _s3_client(ctx)
        ev = _base_evidence(call, client)
        if key:
            resp, latency = _timed(client.head_object, Bucket=bucket, Key=key)
        else:
            resp, latency = _timed(client.head_bucket, Bucket=bucket)
    except Exception as exc:  # noqa: BLE001 - classified in _failure; anything else re-raises
        ev["latency_ms"] = _ms(time.monotonic() - start)
        summary, cause = failure(call, exc, ev)
        if cause["cause_code"] == "s3_error" and key and ev.get("http_status") == 404:
            summary, cause = _missing_key_or_bucket(call, client, ev)
        elif cause["cause_code"] == "s3_access_denied" and key and client is not None and ev.get("http_status") == 403:
            summary, cause = _which_policy(ctx, call, client, ev, summary, cause)
        return outcome(Finding(S3_OBJECT, Status.CRITICAL, summary, evidence=ev,
                               duration_s=time.monotonic() - start, **cause))
    _ok_meta(resp, ev, latency)
    target = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
    summary = f"{call.op} {target}: 200 in {ev['latency_ms']} ms"
    if key:
        ev.update(content_length=resp.get("ContentLength"), etag=resp.get("ETag"))
        summary += f", {resp.get('ContentLength')} bytes"
        if s.s3_get_object:
            got = _get_object(ctx, client, bucket, key, region, ev)
            if got is not None:
                return outcome(got)
            summary += f"; GetObject read {ev['get_bytes']} bytes in {ev['get_latency_ms']} ms"
    return outcome(Finding(S3_OBJECT, Status.OK, summary, evidence=ev, duration_s=time.monotonic() - start),
                   data={"ok": True})


def _which_policy(ctx: Context, call: S3Call, client: Any, ev: Dict[str, Any], summary: str,
                  cause: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
    """A HEAD 403 has no body, so no policy clause: a GET of one byte gets the error document that
    names the policy (identity, VPC endpoint, bucket) that refused."""
    if ctx.remaining() < 0.5:
        return summary, cause
    get_call = S3Call(ctx, "GetObject", "s3:GetObject", call.resource, call.bucket, call.key)
    get_ev: Dict[str, Any] = {}
    try:
        client.get_object(Bucket=call.bucket, Key=call.key, Range="bytes=0-0")["Body"].close()
    except Exception as exc:  # noqa: BLE001 - only an S3 answer helps here
        from botocore import exceptions as bx

        if not isinstance(exc, bx.ClientError):
            return summary, cause
        get_summary, get_cause = client_error_cause(get_call, exc, get_ev)
        if get_cause.get("cause_code") in _PATH_PROVEN and get_cause["cause_code"] != "s3_access_denied":
            ev.update(get_error_code=get_ev.get("error_code"), get_message=get_ev.get("message"))
            return f"{summary}; {get_summary}", get_cause
    return summary, cause


def _missing_key_or_bucket(call: S3Call, client: Any, ev: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
    """HEAD has no body: a 404 is a missing key or a missing bucket; HeadBucket tells which."""
    from botocore.exceptions import ClientError

    missing_bucket = False
    try:
        client.head_bucket(Bucket=call.bucket)
    except ClientError as exc:
        missing_bucket = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404
    except Exception:  # noqa: BLE001 - the follow-up is best effort; the 404 stands
        pass
    ev["bucket_exists"] = not missing_bucket
    if missing_bucket:
        return f"HeadObject s3://{call.bucket}/{call.key}: 404, no such bucket", explain(
            "s3_no_such_bucket", bucket=call.bucket)
    return f"HeadObject s3://{call.bucket}/{call.key}: 404, no such key", explain(
        "s3_no_such_key", bucket=call.bucket, key=call.key)


def _get_object(ctx: Context, client: Any, bucket: str, key: str, region: str,
                ev: Dict[str, Any]) -> Optional[Finding]:
    """GetObject, reading at most GET_OBJECT_MAX_BYTES; a Finding only when it fails."""
    start = time.monotonic()
    call = S3Call(ctx, "GetObject", "s3:GetObject", _arn(region, f"{bucket}/{key}"), bucket, key)
    try:
        resp = client.get_object(Bucket=bucket, Key=key)
        body = resp["Body"]
        try:
            data = body.read(GET_OBJECT_MAX_BYTES)
        finally:
            body.close()
    except Exception as exc:  # noqa: BLE001 - classified in _failure
        get_ev = dict(ev, operation="GetObject", latency_ms=_ms(time.monotonic() - start))
        summary, cause = failure(call, exc, get_ev)
        return Finding(S3_OBJECT, Status.CRITICAL, summary, evidence=get_ev, duration_s=time.monotonic() - start,
                       **cause)
    ev.update(get_bytes=len(data), get_latency_ms=_ms(time.monotonic() - start))
    return None


def _not_configured(ctx: Context) -> Outcome:
    return outcome(Finding(S3_OBJECT, Status.OK, "no test object configured (s3.bucket/s3.key): object access "
                           "not proven", evidence={"bucket": None, "key": None}, verified=False), data={"ok": None})


def checks(settings: Settings) -> List[Check]:
    api = settings.connect_timeout_s + settings.api_timeout_s + 2.0
    out = [
        Check(S3_DNS, run_dns, needs=("resolver", "ec2.api"), timeout_s=settings.dns_timeout_s + 2.0),
        Check(S3_ROUTE, run_route, needs=("ec2.api",), timeout_s=2.0),
        Check(S3_API, run_api, needs=(S3_DNS, "ec2.api"), wants=("resolver.system",), timeout_s=api),
    ]
    if settings.s3_bucket:
        # HEAD, then GetObject or a HeadBucket follow-up on 404.
        out.append(Check(S3_OBJECT, run_object, needs=(S3_DNS, "ec2.api"), wants=("resolver.system",),
                         timeout_s=2 * api))
    else:
        out.append(Check(S3_OBJECT, _not_configured, timeout_s=1.0))
    return out
