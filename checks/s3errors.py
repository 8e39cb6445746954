"""S3's answers and failures, in words and causes: which policy refused (from the AccessDenied
clause), a bucket in another region, a clock S3 refuses, and — when S3 did not answer at all — what
the evidence blames (the gateway route, the instance security group, or a drop elsewhere)."""
from __future__ import annotations

import re
import time
from typing import Any, Dict, Mapping, Optional, Tuple

from .causes import explain
from .denials import classify
from .dialled import Dialled, failed_host, resolve, same_destination
from .dnsquery import query_a
from .ec2view import Ec2View, EndpointView, Route
from .errortext import exception_text
from .gateway_path import GatewayService, cidr_networks, drop_cause, inside  # noqa: F401 - re-exported
from .model import Context
from .ssmapi import skew_words
from .tlsprobe import handshake_cause


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


def route_missing(view: Ec2View, gateway: EndpointView) -> Dict[str, Any]:
    """The gateway endpoint exists but this subnet's table lacks its route: s3.route and s3.api say
    the same. When the endpoint is associated with other tables, name them (the wrong table)."""
    others = [t for t in gateway.route_table_ids if t != view.route_table_id]
    if others:
        return explain("s3_route_other_tables", endpoint_id=gateway.id, other_tables=", ".join(others),
                       route_table_id=view.route_table_id, prefix_list_id=view.s3_prefix_list_id)
    return explain("s3_route_missing", route_table_id=view.route_table_id, prefix_list_id=view.s3_prefix_list_id,
                   endpoint_id=gateway.id)


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
            explain("s3_error", error=f"{status} {code}: {message}".rstrip(": "), bucket=call.bucket))


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
    """(summary, explain(...)) for a connection-level failure of an S3 call. The addresses named
    are the ones botocore dialled (glibc's answer for the host it used), not the Amazon resolver's."""
    from botocore import exceptions as bx

    text = transport_text(exc)
    ev["error"] = text
    dialled = _dialled(call, exc, ev)
    ip = ", ".join(dialled.addresses) if dialled and dialled.addresses else call.ips
    if isinstance(exc, bx.ConnectionClosedError):
        return f"{call.op}: S3 at {ip} closed the connection", explain("s3_error", error=text)
    if isinstance(exc, bx.SSLError):
        host = dialled.host if dialled else str(call.dns.get("host"))
        first = dialled.addresses[0] if dialled and dialled.addresses else None
        return f"{call.op}: TLS failed with {host}", handshake_cause(call.ctx, host, first, ip, text, ev)
    if isinstance(exc, bx.ReadTimeoutError):
        return f"{call.op}: connected, but no answer within the read timeout", explain(
            "s3_error", error=f"no answer within {call.ctx.settings.api_timeout_s:g} s ({text})")
    misled = _misled(call, dialled, ev)
    if misled is not None:
        return misled
    low = text.lower()
    if "refused" in low:
        return f"{call.op}: connection to S3 ({ip}) refused", explain("tcp_refused", ip=ip)
    if "name or service not known" in low or "nodename nor servname" in low or "temporary failure in name" in low:
        return f"{call.op}: the system resolver could not resolve the S3 name", explain(
            "dns_no_answer", resolver="the system resolver", host=call.dns.get("host"), rcode=text)
    return _path_cause(call, text, ev, ip)


def _dialled(call: S3Call, exc: BaseException, ev: Dict[str, Any]) -> Optional[Dialled]:
    """What botocore dialled for the host of the failed request, within the time left."""
    host = failed_host(exc) or call.dns.get("host")
    if not host or call.ctx.remaining() < 0.2:
        return None
    dialled = resolve(str(host), min(1.0, call.ctx.remaining() / 2))
    ev["dialled"] = dialled.to_evidence()
    return dialled


def _misled(call: S3Call, dialled: Optional[Dialled], ev: Dict[str, Any]) -> Optional[Tuple[str, Dict[str, Any]]]:
    """The dialled addresses are not where the Amazon resolver sends the same name (an /etc/hosts
    pin, a custom DNS server): that is the cause, whatever the path to S3 would do."""
    if dialled is None or not dialled.addresses:
        return None
    amazon = _amazon_answers(call, dialled.host)
    ev["amazon_answers"] = list(amazon) if amazon is not None else None
    prefix = cidr_networks(call.view.s3_prefix_list_cidrs) if call.view.available and call.view.s3_prefix_list_cidrs else None
    if amazon is None:  # the resolver could not be asked: only a pin outside S3's ranges is evidence
        if not dialled.pinned or (prefix and all(inside(a, prefix) for a in dialled.addresses)):
            return None
        amazon = ()
    elif same_destination(dialled.addresses, amazon, dialled.pinned, prefix):
        return None
    got = ", ".join(dialled.addresses)
    return (f"{call.op}: no connection to {dialled.host} at {got} (from {dialled.source}); the Amazon resolver "
            f"answers {', '.join(amazon) or 'nothing'}",
            explain("system_dns_differs", source=dialled.source, host=dialled.host, system_answers=got,
                    amazon_answers=", ".join(amazon) or "nothing"))


def _amazon_answers(call: S3Call, host: str) -> Optional[Tuple[str, ...]]:
    """The Amazon resolver's A records for ``host`` (s3.dns's answers when it is the same name)."""
    if host == call.dns.get("host"):
        return tuple(call.dns.get("answers", ()))
    try:
        resolver = call.ctx.data("resolver")
    except KeyError:
        return None
    server = resolver.get("server") if isinstance(resolver, Mapping) else None
    if not server or call.ctx.remaining() < 0.2:
        return None
    port = int(resolver.get("port", 53) or 53)
    ans = query_a(host, str(server), min(call.ctx.settings.dns_timeout_s, call.ctx.remaining() / 2), port=port)
    return tuple(ans.addresses) if ans.outcome == "answer" else ()


def _path_cause(call: S3Call, text: str, ev: Dict[str, Any], ip: str) -> Tuple[str, Dict[str, Any]]:
    """S3 did not answer (a drop, as a VPC does without a route or an allowing rule)."""
    view = call.view
    summary = f"{call.op}: no connection to S3 at {ip} ({text})"
    if call.dns.get("interface_endpoint"):
        iface = view.endpoint_for("s3", "Interface") if view.available else None
        az = iface.eni_azs.get(call.dns["answers"][0], "?") if iface else "?"
        return summary, explain("tcp_timeout", ip=ip, az=az, service="s3")
    return summary, drop_cause(call.ctx, view, gateway_service(view), ip, list(call.dns.get("answers", ())), ev)


def gateway_service(view: Ec2View) -> GatewayService:
    return GatewayService("s3", view.s3_prefix_list_id if view.available else None,
                          tuple(view.s3_prefix_list_cidrs) if view.available else (), s3_gateway_route, route_missing)


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
