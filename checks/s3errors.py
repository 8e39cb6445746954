"""S3's answers and failures, in words and causes: which policy refused (from the AccessDenied
clause), a bucket in another region, a clock S3 refuses, and — when S3 did not answer at all — what
the evidence blames (the gateway route, the instance security group, or a drop elsewhere)."""
from __future__ import annotations

import ipaddress
import re
import time
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from .causes import explain
from .denials import classify
from .ec2view import Ec2View, EndpointView, Route
from .errortext import exception_text
from .model import Context
from .ssmapi import skew_words


def inside(ip: str, networks: Sequence[Any]) -> bool:
    addr = ipaddress.ip_address(ip)
    return any(addr.version == n.version and addr in n for n in networks)


def cidr_networks(cidrs: Sequence[str]) -> Tuple[Any, ...]:
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


class S3Call:
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


def client_error_cause(call: S3Call, exc: Any, ev: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
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
    """The botocore error in words, with the socket-level error it wraps ("Connection refused", …)."""
    return exception_text(exc)


def transport_cause(call: S3Call, exc: Exception, ev: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
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


def _path_cause(call: S3Call, text: str, ev: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
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
        if gateway is not None:  # the endpoint exists, this subnet's table lacks it: the same fix as s3.route
            return summary, explain("s3_route_missing", route_table_id=view.route_table_id,
                                    prefix_list_id=view.s3_prefix_list_id, endpoint_id=gateway.id)
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
        return any(answers and all(inside(a, cidr_networks([c])) for a in answers) for c in rule.cidrs)

    if known and not any(admits(r) for r in rules):
        return summary, explain("s3_sg_no_outbound_443", ip=ip, sg_ids=", ".join(sg_ids), sg_id=sg_ids[0],
                                prefix_list_id=pl_id)
    return summary, explain("s3_path_blocked", ip=ip, route_table_id=view.route_table_id,
                            endpoint_id=route.target)


def failure(call: S3Call, exc: Exception, ev: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
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
