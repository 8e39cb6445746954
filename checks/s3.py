"""S3 through the gateway endpoint: ``s3.dns``, ``s3.route``, ``s3.api``, ``s3.object``.

AWS facts relied on (AWS-FACTS.md): a gateway endpoint does not change DNS — S3's regional name
keeps resolving to public S3 addresses, which lie in the region's ``com.amazonaws.<region>.s3``
prefix list; the subnet's route table sends that prefix list (``pl-…``) to the ``vpce-…`` target;
gateway endpoints only reach buckets in the VPC's own region. With an S3 *interface* endpoint and
Private DNS the regional name resolves to ENI IPs instead (that is fine too).
"""
from __future__ import annotations

import ipaddress
import re
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .causes import explain
from .denials import classify
from .dnsquery import query_a
from .ec2view import Ec2View, EndpointView, Route
from .hostnames import partition_name, service_hostname
from .model import Check, Context, Facts, Finding, MissingFact, Outcome, Settings, Status, outcome
from .ssmapi import skew_words

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


def _inside(ip: str, networks: Sequence[Any]) -> bool:
    addr = ipaddress.ip_address(ip)
    return any(addr.version == n.version and addr in n for n in networks)


def _cidrs(cidrs: Sequence[str]) -> Tuple[Any, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def s3_gateway_route(view: Ec2View) -> Tuple[Optional[EndpointView], Optional[Route]]:
    """(the VPC's S3 gateway endpoint, the active route on the subnet's table that uses it)."""
    gateway = view.endpoint_for("s3", "Gateway")
    gateway_ids = {e.id for e in view.endpoints if e.type == "Gateway" and e.short_service == "s3"}
    for r in view.routes:
        if r.state != "active" or not r.destination.startswith("pl-") or not r.target.startswith("vpce-"):
            continue
        if view.s3_prefix_list_id and r.destination != view.s3_prefix_list_id:
            continue
        if gateway_ids and r.target not in gateway_ids:
            continue
        return gateway, r
    return gateway, None


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
    timeout = ctx.budget(ctx.settings.dns_timeout_s)
    ans = query_a(host, server, timeout, port=port)
    ev: Dict[str, Any] = ans.to_evidence()
    if ans.outcome != "answer":
        return outcome(_dns_failure(ctx, ans, host, server, timeout, view, ev, start))
    answers = list(ans.addresses)
    nets = vpc_networks(ctx.facts)
    private = [a for a in answers if _inside(a, nets)]
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
    if view.available and view.s3_prefix_list_cidrs:
        pl = _cidrs(view.s3_prefix_list_cidrs)
        outside = [a for a in answers if not _inside(a, pl)]
        ev.update(prefix_list_id=view.s3_prefix_list_id, prefix_list_cidrs=list(view.s3_prefix_list_cidrs),
                  outside_prefix_list=outside)
        if outside:
            return done(Status.WARNING, f"{host} -> {shown}: {', '.join(outside)} not in the S3 prefix list "
                        f"{view.s3_prefix_list_id}",
                        **explain("s3_outside_prefix_list", host=host, answers=", ".join(outside),
                                  prefix_list_id=view.s3_prefix_list_id))
        return done(Status.OK, f"{host} -> {shown} (public S3, inside prefix list {view.s3_prefix_list_id}; "
                    f"TTL {ans.ttl}, {_ms(ans.latency_s)} ms)")
    note = view.reason if not view.available else "prefix list unknown"
    return done(Status.OK, f"{host} -> {shown} (public S3 addresses; prefix list not verified: {note}; "
                f"{_ms(ans.latency_s)} ms)")


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
        cause = explain("dns_nxdomain", host=host, resolver=server, zone=host)
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
        return outcome(Finding(S3_ROUTE, status, summary, evidence=ev, duration_s=time.monotonic() - start,
                               **cause), data={"verified": bool(ev.get("route_table_id"))})

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
                    **explain("s3_route_missing", route_table_id=view.route_table_id,
                              prefix_list_id=view.s3_prefix_list_id, endpoint_id=gateway.id))
    return done(Status.CRITICAL, f"no S3 gateway endpoint in {view.vpc_id}; route table {view.route_table_id} "
                "has no S3 route", ev,
                **explain("s3_no_gateway_route", ip=view.s3_prefix_list_id or "the S3 prefix list",
                          vpc_id=view.vpc_id, region=ctx.facts.region, route_table_id=view.route_table_id))


# --- S3 calls: errors to causes -----------------------------------------------------------------------

def access_denied_cause(message: str) -> str:
    """Which policy denied, from S3's AccessDenied message (the policy-type clause AWS appends;
    ``checks.denials`` reads it for every service)."""
    kind = classify("AccessDenied", message).kind
    return {"endpoint_policy": "s3_access_denied_endpoint_policy", "resource_policy": "s3_access_denied_bucket_policy",
            "identity_policy": "s3_access_denied_iam"}.get(kind, "s3_access_denied")


_REGION_IN_ENDPOINT = re.compile(r"\.s3[.-]([a-z]{2}(?:-[a-z]+)+-\d+)\.")


def bucket_region_from(resp: Mapping[str, Any]) -> Optional[str]:
    """The bucket's region as S3 tells it: the x-amz-bucket-region header (on 301/400/403/200 of
    bucket operations), the <Region> of AuthorizationHeaderMalformed, or the <Endpoint> of a 301."""
    headers = resp.get("ResponseMetadata", {}).get("HTTPHeaders", {}) or {}
    err = resp.get("Error", {}) or {}
    region = headers.get("x-amz-bucket-region") or err.get("Region")
    if not region and err.get("Endpoint"):
        m = _REGION_IN_ENDPOINT.search("." + str(err["Endpoint"]))
        region = m.group(1) if m else None
    return str(region) if region else None


class _Call:
    """One S3 operation's context for error classification."""

    def __init__(self, ctx: Context, op: str, action: str, resource: str, bucket: Optional[str] = None,
                 key: Optional[str] = None) -> None:
        self.ctx, self.op, self.action, self.resource, self.bucket, self.key = ctx, op, action, resource, bucket, key
        self.region = str(ctx.facts.region)
        self.view: Ec2View = ctx.data("ec2.api")
        self.dns: Mapping[str, Any] = ctx.data("s3.dns")

    @property
    def ips(self) -> str:
        return ", ".join(self.dns.get("answers", ())) or str(self.dns.get("host"))


def client_error_cause(call: _Call, exc: Any, ev: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
    """(summary, explain(...)) for a botocore ClientError from S3."""
    resp = exc.response
    err = resp.get("Error", {}) or {}
    meta = resp.get("ResponseMetadata", {}) or {}
    status = meta.get("HTTPStatusCode")
    code = str(err.get("Code", status))
    message = str(err.get("Message", ""))
    headers = meta.get("HTTPHeaders", {}) or {}
    bucket_region = bucket_region_from(resp)
    ev.update(http_status=status, error_code=code, message=message, bucket_region=bucket_region,
              request_id=meta.get("RequestId") or headers.get("x-amz-request-id"),
              host_id=meta.get("HostId") or headers.get("x-amz-id-2"))
    target = f"s3://{call.bucket}/{call.key}" if call.key else (f"s3://{call.bucket}" if call.bucket else "")
    what = f"{call.op} {target}" if target else call.op
    redirect = status in (301, 307) or code in ("PermanentRedirect", "TemporaryRedirect", "301", "307")
    # S3 names the bucket's region on 301/307 redirects and on 400 (wrong signing region, e.g.
    # AuthorizationHeaderMalformed) and 403 answers of bucket operations.
    if bucket_region and bucket_region != call.region and (redirect or status in (400, 403)):
        return (f"{what}: {status} {code}, the bucket is in {bucket_region}",
                explain("s3_bucket_other_region", bucket=call.bucket, bucket_region=bucket_region, region=call.region))
    if redirect:  # a redirect without a region: still another region
        return (f"{what}: {status} {code} (redirect to another region)",
                explain("s3_bucket_other_region", bucket=call.bucket, bucket_region="another region",
                        region=call.region))
    if code == "RequestTimeTooSkewed":
        return (f"{what}: RequestTimeTooSkewed (request {err.get('RequestTime', '?')}, S3 {err.get('ServerTime', '?')})",
                explain("clock_skew", skew=_s3_skew_words(err), limit="15 minutes",
                        breaks="S3, and SSM (which allows only 5 minutes): Session Manager and Run Command"))
    if code == "NoSuchBucket" or (call.op == "HeadBucket" and status == 404):
        return f"{what}: NoSuchBucket", explain("s3_no_such_bucket", bucket=call.bucket)
    if code in ("NoSuchKey",):
        return f"{what}: NoSuchKey", explain("s3_no_such_key", bucket=call.bucket, key=call.key)
    if status == 403 or code == "AccessDenied":
        gateway = call.view.endpoint_for("s3", "Gateway") if call.view.available else None
        if message and code == "AccessDenied":
            which = access_denied_cause(message)
            error = f"AccessDenied: {message}"
        else:  # HEAD responses carry no body: only the status is known
            which = "s3_access_denied"
            error = f"403 Forbidden on {call.op}"
            if call.op == "HeadObject":
                error += " (S3 also answers 403 for a missing key when s3:ListBucket is not allowed)"
        return (f"{what}: {error}",
                explain(which, action=call.action, resource=call.resource, error=error,
                        bucket=call.bucket or "the bucket",
                        endpoint_id=gateway.id if gateway else None))
    return (f"{what}: {status} {code} {message}".rstrip(),
            explain("s3_error", error=f"{status} {code}: {message}".rstrip(": ")))


def _s3_skew_words(err: Mapping[str, Any]) -> str:
    """The skew from RequestTimeTooSkewed's RequestTime (20261202T180000Z) and ServerTime
    (2026-12-02T18:20:00Z); "off by more than 15 minutes" when they don't parse (a HEAD has no body)."""
    import calendar

    try:
        sent = calendar.timegm(time.strptime(str(err["RequestTime"]), "%Y%m%dT%H%M%SZ"))
        server = calendar.timegm(time.strptime(str(err["ServerTime"]), "%Y-%m-%dT%H:%M:%SZ"))
    except (KeyError, ValueError):
        return "off by more than 15 minutes"
    return skew_words(float(sent - server))


def transport_text(exc: BaseException) -> str:
    """The botocore message plus the socket-level error it wraps ("Connection refused", …)."""
    kwargs = getattr(exc, "kwargs", None) or {}
    detail = kwargs.get("error")
    text = f"{exc.__class__.__name__}: {exc}"
    return f"{text} ({detail})" if detail is not None and str(detail) not in text else text


def transport_cause(call: _Call, exc: Exception, ev: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
    """(summary, explain(...)) for a connection-level failure of an S3 call."""
    from botocore import exceptions as bx

    text = transport_text(exc)
    ev["error"] = text
    ip = call.ips
    if isinstance(exc, bx.ConnectionClosedError):
        return f"{call.op}: S3 at {ip} closed the connection", explain("s3_error", error=text)
    if isinstance(exc, bx.SSLError):
        return f"{call.op}: TLS failed with {call.dns.get('host')}", explain(
            "tls_failed", host=call.dns.get("host"), ip=ip, error=text)
    if isinstance(exc, bx.ReadTimeoutError):
        return f"{call.op}: connected, but no answer within the read timeout", explain(
            "s3_error", error=f"no answer within {call.ctx.settings.api_timeout_s:g} s ({text})")
    low = text.lower()
    if "refused" in low:
        return f"{call.op}: connection to S3 ({ip}) refused", explain("tcp_refused", ip=ip)
    if "name or service not known" in low or "nodename nor servname" in low or "temporary failure in name" in low:
        return f"{call.op}: the system resolver could not resolve the S3 name", explain(
            "dns_no_answer", resolver="the system resolver", host=call.dns.get("host"), rcode=text)
    return _path_cause(call, text, ev)


def _path_cause(call: _Call, text: str, ev: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
    """S3 did not answer (a drop, as a VPC does without a route). Blame what the evidence points to."""
    view, ip = call.view, call.ips
    timeout = call.ctx.settings.connect_timeout_s
    summary = f"{call.op}: no connection to S3 at {ip} ({text})"
    if call.dns.get("interface_endpoint"):
        iface = view.endpoint_for("s3", "Interface") if view.available else None
        az = iface.eni_azs.get(call.dns["answers"][0], "?") if iface else "?"
        return summary, explain("tcp_timeout", ip=ip, az=az)
    gateway, route = s3_gateway_route(view) if view.available else (None, None)
    ev.update(ip=ip, connect_timeout_s=timeout, route_table_id=view.route_table_id,
              gateway_route=(f"{route.destination} -> {route.target}" if route else None))
    if route is None:
        return summary, explain("s3_no_gateway_route", ip=ip, vpc_id=call.ctx.facts.vpc_id or view.vpc_id,
                                region=call.region, route_table_id=view.route_table_id)
    # The route is there: the drop is elsewhere — the instance SG's egress, a NACL or a host firewall.
    sg_ids = list(view.instance_sg_ids)
    rules = [r for g in sg_ids for r in view.security_group_rules.get(g, ()) if r.direction == "outbound"]
    known = bool(sg_ids) and all(g in view.security_group_rules for g in sg_ids)
    pl_id = view.s3_prefix_list_id

    def admits(rule: Any) -> bool:
        if not rule.covers_tcp_port(443):
            return False
        if pl_id and pl_id in rule.prefix_list_ids:
            return True
        answers = list(call.dns.get("answers", ()))
        return any(answers and all(_inside(a, _cidrs([c])) for a in answers) for c in rule.cidrs)

    if known and not any(admits(r) for r in rules):
        return summary, explain("s3_sg_no_outbound_443", ip=ip, sg_ids=", ".join(sg_ids), sg_id=sg_ids[0],
                                prefix_list_id=pl_id)
    return summary, explain("s3_path_blocked", ip=ip, route_table_id=view.route_table_id,
                            endpoint_id=route.target)


def _failure(call: _Call, exc: Exception, ev: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
    from botocore import exceptions as bx

    if isinstance(exc, bx.ClientError):
        return client_error_cause(call, exc, ev)
    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError, bx.CredentialRetrievalError)):
        text = f"{exc.__class__.__name__}: {exc}"
        ev["error"] = text
        return f"{call.op}: no credentials", explain("s3_no_credentials", error=text)
    if isinstance(exc, (bx.ConnectTimeoutError, bx.EndpointConnectionError, bx.ConnectionClosedError,
                        bx.ReadTimeoutError, bx.SSLError, bx.HTTPClientError)):
        return transport_cause(call, exc, ev)
    raise exc  # not an S3 answer: our trouble (the runner reports it with the traceback)


def _s3_client(ctx: Context) -> Any:
    from . import awsclient

    return awsclient.no_region_redirect(awsclient.client(ctx, "s3"))


def _timed(fn: Any, **kwargs: Any) -> Tuple[Any, float]:
    start = time.monotonic()
    return fn(**kwargs), time.monotonic() - start


def _base_evidence(call: _Call, client: Optional[Any]) -> Dict[str, Any]:
    return {"operation": call.op, "host": call.dns.get("host"), "answers": list(call.dns.get("answers", ())),
            "endpoint_url": client.meta.endpoint_url if client is not None else None, "region": call.region,
            "bucket": call.bucket, "key": call.key}


def _ok_meta(resp: Mapping[str, Any], ev: Dict[str, Any], latency: float) -> None:
    meta = resp.get("ResponseMetadata", {}) or {}
    ev.update(http_status=meta.get("HTTPStatusCode"), request_id=meta.get("RequestId"),
              latency_ms=_ms(latency))


# --- s3.api ----------------------------------------------------------------------------------------

def run_api(ctx: Context) -> Outcome:
    """A real signed ListBuckets (what the reference lab does: ``aws s3 ls``); needs s3:ListAllMyBuckets."""
    start = time.monotonic()
    call = _Call(ctx, "ListBuckets", "s3:ListAllMyBuckets", _arn(str(ctx.facts.require("region")), "*"))
    client = None
    ev = _base_evidence(call, None)
    try:
        client = _s3_client(ctx)
        ev = _base_evidence(call, client)
        resp, latency = _timed(client.list_buckets)
    except Exception as exc:  # noqa: BLE001 - classified in _failure; anything else re-raises
        ev["latency_ms"] = _ms(time.monotonic() - start)
        summary, cause = _failure(call, exc, ev)
        return outcome(Finding(S3_API, Status.CRITICAL, summary, evidence=ev,
                               duration_s=time.monotonic() - start, **cause))
    _ok_meta(resp, ev, latency)
    ev["bucket_count"] = len(resp.get("Buckets") or ())
    return outcome(Finding(S3_API, Status.OK, f"ListBuckets: {resp['ResponseMetadata'].get('HTTPStatusCode')} OK, "
                           f"{ev['bucket_count']} buckets in {ev['latency_ms']} ms", evidence=ev,
                           duration_s=time.monotonic() - start), data={"ok": True})


# --- s3.object -------------------------------------------------------------------------------------

def run_object(ctx: Context) -> Outcome:
    """HeadObject (and GetObject when asked) of the configured test object; HeadBucket when only
    the bucket is set. Redirects are not followed: a bucket in another region is the finding."""
    start = time.monotonic()
    s = ctx.settings
    region = str(ctx.facts.require("region"))
    bucket, key = str(s.s3_bucket), s.s3_key
    if key:
        call = _Call(ctx, "HeadObject", "s3:GetObject", _arn(region, f"{bucket}/{key}"), bucket, key)
    else:
        call = _Call(ctx, "HeadBucket", "s3:ListBucket", _arn(region, bucket), bucket)
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
        summary, cause = _failure(call, exc, ev)
        if cause["cause_code"] == "s3_error" and key and ev.get("http_status") == 404:
            summary, cause = _missing_key_or_bucket(call, client, ev)
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


def _missing_key_or_bucket(call: _Call, client: Any, ev: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
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
    call = _Call(ctx, "GetObject", "s3:GetObject", _arn(region, f"{bucket}/{key}"), bucket, key)
    try:
        resp = client.get_object(Bucket=bucket, Key=key)
        body = resp["Body"]
        try:
            data = body.read(GET_OBJECT_MAX_BYTES)
        finally:
            body.close()
    except Exception as exc:  # noqa: BLE001 - classified in _failure
        get_ev = dict(ev, operation="GetObject", latency_ms=_ms(time.monotonic() - start))
        summary, cause = _failure(call, exc, get_ev)
        return Finding(S3_OBJECT, Status.CRITICAL, summary, evidence=get_ev, duration_s=time.monotonic() - start,
                       **cause)
    ev.update(get_bytes=len(data), get_latency_ms=_ms(time.monotonic() - start))
    return None


def _not_configured(ctx: Context) -> Outcome:
    return outcome(Finding(S3_OBJECT, Status.OK, "no test object configured (s3.bucket/s3.key)",
                           evidence={"bucket": None, "key": None}), data={"ok": None})


def checks(settings: Settings) -> List[Check]:
    api = settings.connect_timeout_s + settings.api_timeout_s + 2.0
    out = [
        Check(S3_DNS, run_dns, needs=("resolver", "ec2.api"), timeout_s=settings.dns_timeout_s + 2.0),
        Check(S3_ROUTE, run_route, needs=("ec2.api",), timeout_s=2.0),
        Check(S3_API, run_api, needs=(S3_DNS, "ec2.api"), timeout_s=api),
    ]
    if settings.s3_bucket:
        # HEAD, then GetObject or a HeadBucket follow-up on 404.
        out.append(Check(S3_OBJECT, run_object, needs=(S3_DNS, "ec2.api"), timeout_s=2 * api))
    else:
        out.append(Check(S3_OBJECT, _not_configured, timeout_s=1.0))
    return out
