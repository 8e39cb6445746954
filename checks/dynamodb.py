"""DynamoDB through its gateway endpoint: ``dynamodb.dns``, ``dynamodb.route``, ``dynamodb.api``.

AWS facts relied on (AWS-FACTS.md; VPC User Guide, "Gateway endpoints for Amazon DynamoDB"): like S3,
a gateway endpoint does not change DNS — ``dynamodb.<region>.amazonaws.com`` keeps resolving to public
addresses, which lie in the region's ``com.amazonaws.<region>.dynamodb`` prefix list; the subnet's
route table sends that prefix list (``pl-…``) to the ``vpce-…`` target; the instance security group's
egress must allow it (the prefix list can be the destination); NACLs cannot reference prefix lists;
a gateway endpoint reaches only its own region's DynamoDB. DynamoDB has no table resource policies
in the endpoint's sense: refusals name the identity policy or the VPC endpoint policy.

Runs only where it means something: when ``dynamodb:`` is configured, or the EC2 view shows a
DynamoDB gateway endpoint in the VPC. Otherwise one OK finding ``dynamodb`` with
``evidence.applicable = false`` (the report then shows no DynamoDB verdict).
"""
from __future__ import annotations

import dataclasses
import re
import time
from typing import Any, Dict, List, Optional, Tuple

from .causes import explain
from .denials import classify
from .dnsquery import query_a
from .ec2view import Ec2View, EndpointView, Route
from .errortext import exception_text
from .gateway_path import GatewayService, drop_cause, inside, public_answers
from .hostnames import service_hostname
from .model import Check, Context, Finding, Outcome, Settings, Status, outcome
from .resolver import query_timeout
from .tlsprobe import handshake_cause
from .s3 import _dns_failure, resolver_address, vpc_networks

CHECK_ID = "dynamodb"
DDB_DNS, DDB_ROUTE, DDB_API = "dynamodb.dns", "dynamodb.route", "dynamodb.api"
_ARN = re.compile(r"^arn:[a-z-]+:dynamodb:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):table/(?P<name>.+)$")
_DENIED = ("AccessDeniedException", "AccessDenied", "UnauthorizedOperation")


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def gateway_route(view: Ec2View) -> Tuple[Optional[EndpointView], Optional[Route]]:
    """(the VPC's DynamoDB gateway endpoint, the active route of the subnet's table that uses it).
    Only a route to the DynamoDB prefix list (or to that endpoint) counts: S3's route is no proof."""
    gateway = view.endpoint_for("dynamodb", "Gateway")
    ids = {e.id for e in view.endpoints if e.type == "Gateway" and e.short_service == "dynamodb"}
    for r in view.routes:
        if r.state != "active" or not r.destination.startswith("pl-") or not r.target.startswith("vpce-"):
            continue
        if view.dynamodb_prefix_list_id and r.destination == view.dynamodb_prefix_list_id:
            return gateway, r
        if not view.dynamodb_prefix_list_id and r.target in ids:
            return gateway, r
    return gateway, None


def _route_missing(view: Ec2View, gateway: EndpointView) -> Dict[str, Any]:
    others = [t for t in gateway.route_table_ids if t != view.route_table_id]
    return explain("dynamodb_route_missing", route_table_id=view.route_table_id, endpoint_id=gateway.id,
                   prefix_list_id=view.dynamodb_prefix_list_id or "com.amazonaws.<region>.dynamodb",
                   other_tables=(f"; the endpoint is associated with {', '.join(others)} only" if others
                                 else "; the endpoint is associated with no route table"))


# --- the three steps -------------------------------------------------------------------------------

def dns_step(ctx: Context, view: Ec2View, region: str) -> Tuple[Finding, Dict[str, Any]]:
    start = time.monotonic()
    host = service_hostname("dynamodb", region, ctx.settings.fips)
    server, port = resolver_address(ctx)
    timeout = query_timeout(ctx)
    ans = query_a(host, server, ctx.budget(timeout), port=port)
    ev: Dict[str, Any] = ans.to_evidence()
    data: Dict[str, Any] = {"host": host, "answers": [], "server": server}
    if ans.outcome != "answer":
        failed = _dns_failure(ctx, ans, host, server, timeout, view, ev, start)
        return dataclasses.replace(failed, id=DDB_DNS), dict(data, failed=True)
    answers = list(ans.addresses)
    data["answers"] = answers
    shown = ", ".join(answers)
    private = [a for a in answers if inside(a, vpc_networks(ctx.facts))]

    def done(status: Status, summary: str, **cause: Any) -> Tuple[Finding, Dict[str, Any]]:
        return Finding(DDB_DNS, status, summary, evidence=ev, duration_s=time.monotonic() - start, **cause), data

    if private and len(private) == len(answers):
        data["interface_endpoint"] = ev["interface_endpoint"] = True
        return done(Status.OK, f"{host} -> {shown}: a DynamoDB interface endpoint with Private DNS serves it")
    if private:
        return done(Status.WARNING, f"{host} -> {shown}: a mix of private and public addresses",
                    **explain("dns_mixed_answers", host=host, answers=shown))
    status, summary, cause = public_answers("DynamoDB", "dynamodb", host, answers, view,
                                            view.dynamodb_prefix_list_id, view.dynamodb_prefix_list_cidrs,
                                            ans.latency_s, ev)
    return done(status, summary, **cause)


def route_step(ctx: Context, view: Ec2View, region: str, dns: Dict[str, Any]) -> Finding:
    start = time.monotonic()

    def done(status: Status, summary: str, ev: Dict[str, Any], **cause: Any) -> Finding:
        verified = bool(ev.get("route_table_id"))
        return Finding(DDB_ROUTE, status, summary, evidence=ev, duration_s=time.monotonic() - start,
                       verified=verified or status != Status.OK, **cause)

    if not view.available:
        return done(Status.OK, f"route not verified ({view.reason})", {"available": False, "reason": view.reason})
    if view.route_table_id is None:
        why = view.errors.get("DescribeRouteTables") or "no route table found for the subnet"
        return done(Status.OK, f"route not verified ({why})", {"available": True, "reason": why})
    gateway, route = gateway_route(view)
    ev: Dict[str, Any] = {"route_table_id": view.route_table_id, "prefix_list_id": view.dynamodb_prefix_list_id,
                          "gateway_endpoint_id": gateway.id if gateway else None,
                          "gateway_route_tables": list(gateway.route_table_ids) if gateway else []}
    if route is not None:
        return done(Status.OK, f"route table {view.route_table_id} sends {route.destination} to {route.target}", ev)
    if dns.get("interface_endpoint"):
        return done(Status.OK, f"no DynamoDB gateway route in {view.route_table_id}; an interface endpoint with "
                    "Private DNS serves DynamoDB", ev)
    if gateway is not None:
        return done(Status.CRITICAL, f"route table {view.route_table_id} has no route for "
                    f"{view.dynamodb_prefix_list_id or 'the DynamoDB prefix list'} to {gateway.id}", ev,
                    **_route_missing(view, gateway))
    return done(Status.CRITICAL, f"no DynamoDB gateway endpoint in {view.vpc_id} for route table "
                f"{view.route_table_id}", ev,
                **explain("dynamodb_no_gateway_route", ip=", ".join(dns.get("answers") or ()) or "DynamoDB",
                          vpc_id=view.vpc_id, region=region, route_table_id=view.route_table_id))


def _table(ctx: Context, region: str) -> Tuple[Optional[str], Optional[str]]:
    """(table name, its region when an ARN names one) of the configured table; (None, None) without."""
    table = ctx.settings.dynamodb_table
    if not table:
        return None, None
    m = _ARN.match(table)
    return (m.group("name"), m.group("region")) if m else (table, None)


def api_step(ctx: Context, view: Ec2View, region: str, dns: Dict[str, Any]) -> Finding:
    start = time.monotonic()
    name, table_region = _table(ctx, region)
    op = "DescribeTable" if name else "ListTables"
    action = f"dynamodb:{op}"
    account = ""
    arn_match = _ARN.match(ctx.settings.dynamodb_table or "")
    if arn_match:
        account = arn_match.group("account")
    resource = f"arn:aws:dynamodb:{region}:{account or '<account>'}:table/{name}" if name else "*"
    ev: Dict[str, Any] = {"operation": op, "table": name, "host": dns.get("host"),
                          "answers": list(dns.get("answers") or ())}

    def done(status: Status, summary: str, **cause: Any) -> Finding:
        return Finding(DDB_API, status, summary, evidence=ev, duration_s=time.monotonic() - start, **cause)

    if dns.get("failed"):
        return Finding(DDB_API, Status.CRITICAL, f"not run: blocked by {DDB_DNS}", blocked_by=DDB_DNS,
                       evidence=ev, cause_code=None, cause=f"blocked by {DDB_DNS}", fix=f"fix {DDB_DNS} first")
    if table_region and table_region != region:
        ev["table_region"] = table_region
        return done(Status.CRITICAL, f"{op} {name}: the table is in {table_region}, not {region}",
                    **explain("dynamodb_table_other_region", table=name, table_region=table_region, region=region))
    try:
        from . import awsclient

        client = awsclient.client(ctx, "dynamodb")
        ev["endpoint_url"] = client.meta.endpoint_url
        call_start = time.monotonic()
        resp = client.describe_table(TableName=name) if name else client.list_tables(Limit=1)
        ev["latency_ms"] = _ms(time.monotonic() - call_start)
    except Exception as exc:  # noqa: BLE001 - classified below; anything else re-raises
        ev.setdefault("latency_ms", _ms(time.monotonic() - start))
        return _failure(ctx, view, region, dns, exc, ev, op, action, resource, name, done)
    meta = resp.get("ResponseMetadata", {}) or {}
    ev.update(http_status=meta.get("HTTPStatusCode"), request_id=meta.get("RequestId"))
    if name:
        table = resp.get("Table") or {}
        ev.update(table_status=table.get("TableStatus"), table_arn=table.get("TableArn"))
        return done(Status.OK, f"DescribeTable {name}: {table.get('TableStatus', '?')} in {ev['latency_ms']} ms")
    ev["table_count"] = len(resp.get("TableNames") or ())
    return done(Status.OK, f"ListTables: {meta.get('HTTPStatusCode')} OK in {ev['latency_ms']} ms")


def _failure(ctx: Context, view: Ec2View, region: str, dns: Dict[str, Any], exc: Exception,
             ev: Dict[str, Any], op: str, action: str, resource: str, name: Optional[str], done: Any) -> Finding:
    from botocore import exceptions as bx

    gateway = view.endpoint_for("dynamodb", "Gateway") if view.available else None
    if isinstance(exc, bx.ClientError):
        err = exc.response.get("Error", {}) or {}
        meta = exc.response.get("ResponseMetadata", {}) or {}
        code, message = str(err.get("Code", meta.get("HTTPStatusCode"))), str(err.get("Message", ""))
        ev.update(http_status=meta.get("HTTPStatusCode"), error_code=code, message=message,
                  request_id=meta.get("RequestId"))
        error = f"{code}: {message}".rstrip(": ")
        if code in _DENIED:
            denial = classify(code, message)
            kind, resource = denial.kind, denial.resource or resource  # AWS names the table's ARN
            which = {"endpoint_policy": "dynamodb_access_denied_endpoint_policy",
                     "identity_policy": "dynamodb_access_denied_iam"}.get(kind, "dynamodb_access_denied")
            if not name:  # ListTables refused: DynamoDB answered, so the path works (as s3.api)
                ev.update(path_proven=True, refused_by=which)
                why = ("the gateway endpoint's policy does not allow dynamodb:ListTables (fine if it allows your "
                       "tables)" if which.endswith("endpoint_policy") else
                       "this role may not dynamodb:ListTables (configure dynamodb.table to prove a table)")
                return done(Status.OK, f"DynamoDB answered {code} in {ev['latency_ms']} ms: the path works; {why}")
            return done(Status.CRITICAL, f"{op} {name}: {error}",
                        **explain(which, action=action, resource=resource, error=error,
                                  endpoint_id=gateway.id if gateway else None))
        if code == "ResourceNotFoundException" and name:
            return done(Status.CRITICAL, f"{op} {name}: ResourceNotFoundException in {region}",
                        **explain("dynamodb_table_not_found", table=name, region=region, error=error))
        if not name:  # any signed answer proves the path; the clock check names a skew
            ev.update(path_proven=True)
            return done(Status.OK, f"DynamoDB answered {code} in {ev['latency_ms']} ms: the path works")
        return done(Status.CRITICAL, f"{op} {name}: {error}", **explain("dynamodb_error", error=error, table=name))
    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError, bx.CredentialRetrievalError)):
        text = f"{exc.__class__.__name__}: {exc}"
        ev["error"] = text
        return done(Status.CRITICAL, f"{op}: no credentials", **explain("dynamodb_no_credentials", error=text))
    if isinstance(exc, (bx.ConnectTimeoutError, bx.EndpointConnectionError, bx.ConnectionClosedError,
                        bx.ReadTimeoutError, bx.SSLError, bx.HTTPClientError)):
        text = exception_text(exc)
        ev["error"] = text
        ip = ", ".join(dns.get("answers") or ()) or str(dns.get("host"))
        if isinstance(exc, bx.SSLError):
            first = (dns.get("answers") or [None])[0]
            return done(Status.CRITICAL, f"{op}: TLS failed with {dns.get('host')}",
                        **handshake_cause(ctx, str(dns.get("host")), first, ip, text, ev))
        if isinstance(exc, bx.ReadTimeoutError):
            return done(Status.CRITICAL, f"{op}: connected, but no answer within the read timeout",
                        **explain("dynamodb_error", error=f"no answer within {ctx.settings.api_timeout_s:g} s ({text})"))
        if "refused" in text.lower():
            return done(Status.CRITICAL, f"{op}: connection to DynamoDB ({ip}) refused", **explain("tcp_refused", ip=ip))
        return done(Status.CRITICAL, f"{op}: no connection to DynamoDB at {ip} ({text})",
                    **path_cause(ctx, view, region, ip, dns, ev))
    raise exc  # not a DynamoDB answer: our trouble (the runner reports it with the traceback)


def path_cause(ctx: Context, view: Ec2View, region: str, ip: str, dns: Dict[str, Any],
               ev: Dict[str, Any]) -> Dict[str, Any]:
    """DynamoDB did not answer (a drop): the same diagnosis as S3's (checks.gateway_path)."""
    if dns.get("interface_endpoint"):
        return explain("tcp_timeout", ip=ip, service="dynamodb")
    service = GatewayService("dynamodb", view.dynamodb_prefix_list_id if view.available else None,
                             tuple(view.dynamodb_prefix_list_cidrs) if view.available else (), gateway_route,
                             _route_missing)
    return drop_cause(ctx, view, service, ip, list(dns.get("answers") or ()), ev)


# --- the check ---------------------------------------------------------------------------------------

def run(ctx: Context) -> Outcome:
    start = time.monotonic()
    view: Ec2View = ctx.data("ec2.api")
    configured = ctx.settings.dynamodb_table is not None
    gateway = view.endpoint_for("dynamodb", "Gateway") if view.available else None
    if not configured and gateway is None:
        seen = "the VPC has no DynamoDB gateway endpoint" if view.available else \
            f"the EC2 API cannot show DynamoDB gateway endpoints ({view.reason})"
        return outcome(Finding(CHECK_ID, Status.OK, f"DynamoDB not checked: not configured (dynamodb:) and {seen}",
                               evidence={"applicable": False}, duration_s=time.monotonic() - start))
    region = str(ctx.facts.require("region"))
    if ctx.data("resolver") is None:  # no Amazon resolver to ask: the name is not checked, nor the call
        dns_finding = Finding(DDB_DNS, Status.CRITICAL, "not run: blocked by resolver", blocked_by="resolver",
                              cause="blocked by resolver", fix="fix resolver first")
        dns: Dict[str, Any] = {"host": service_hostname("dynamodb", region, ctx.settings.fips), "answers": [],
                               "failed": True}
    else:
        dns_finding, dns = dns_step(ctx, view, region)
    route_finding = route_step(ctx, view, region, dns)
    api_finding = api_step(ctx, view, region, dns)
    return outcome(dns_finding, route_finding, api_finding, data={"ok": api_finding.status == Status.OK})


def checks(settings: Settings) -> List[Check]:
    api = settings.connect_timeout_s + settings.api_timeout_s + 2.0
    # The resolver is wanted, not needed: without DynamoDB to check, its failure must not add a row here.
    return [Check(CHECK_ID, run, needs=("ec2.api",), wants=("resolver",), timeout_s=settings.dns_timeout_s + api + 2.0)]
