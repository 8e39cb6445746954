"""Why a gateway-endpoint service (S3, DynamoDB) did not answer TCP 443: one diagnosis for both.

A drop looks the same from the instance whatever drops it, so the cause comes from what the EC2
API proves, in the order packets meet them: the subnet's route table (the prefix list -> vpce-…
route), the instance security group's egress (a rule for the prefix list, or CIDRs that hold the
addresses), the subnet's network ACL (which cannot reference prefix lists: it needs the list's
CIDRs). What the API does not show is named as unproven, the likelier first — never a guess
presented as the cause.

Cause codes are the service's own (``<service>_route_missing``, ``<service>_sg_no_outbound_443``,
``<service>_path_blocked``, ``<service>_no_answer``, ``<service>_no_gateway_route``) plus the shared
``nacl_blocks``.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from .causes import explain
from .ec2view import Ec2View, EndpointView, Route
from .model import Context
from .nacls import ephemeral_ports, tcp_drop
from .reach_causes import drop_params


@dataclass(frozen=True)
class GatewayService:
    """What differs between S3 and DynamoDB."""

    name: str  # "s3" | "dynamodb": the cause code prefix and the prefix list's last label
    prefix_list_id: Optional[str]
    prefix_list_cidrs: Tuple[str, ...]
    route: Callable[[Ec2View], Tuple[Optional[EndpointView], Optional[Route]]]  # (gateway, its route here)
    route_missing: Callable[[Ec2View, EndpointView], Dict[str, Any]]  # explain(...): gateway exists, not here


def inside(ip: str, networks: Sequence[Any]) -> bool:
    addr = ipaddress.ip_address(ip)
    return any(addr.version == n.version and addr in n for n in networks)


def cidr_networks(cidrs: Sequence[str]) -> Tuple[Any, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def public_answers(label: str, code: str, host: str, answers: Sequence[str], view: Ec2View,
                   pl_id: Optional[str], cidrs: Sequence[str], latency_s: float, ev: Dict[str, Any],
                   ttl: Optional[int] = None) -> Tuple[Any, str, Dict[str, Any]]:
    """(status, summary, cause) for the public answers of a gateway service's name (a gateway
    endpoint does not change DNS): inside the service's prefix list, outside it (``<code>_outside_
    prefix_list``: the gateway does not carry those), or not verifiable without the EC2 view."""
    from .model import Status

    shown = ", ".join(answers)
    timing = (f"TTL {ttl}, " if ttl is not None else "") + f"{round(latency_s * 1000, 1)} ms"
    if view.available and cidrs:
        outside = [a for a in answers if not inside(a, cidr_networks(cidrs))]
        ev.update(prefix_list_id=pl_id, prefix_list_cidrs=list(cidrs), outside_prefix_list=outside)
        if outside:
            return (Status.WARNING, f"{host} -> {shown}: {', '.join(outside)} not in the {label} prefix list {pl_id}",
                    explain(f"{code}_outside_prefix_list", host=host, answers=", ".join(outside), prefix_list_id=pl_id))
        return Status.OK, f"{host} -> {shown} (public {label}, inside prefix list {pl_id}; {timing})", {}
    note = view.reason if not view.available else "prefix list unknown"
    return Status.OK, f"{host} -> {shown} (public {label} addresses; prefix list not verified: {note}; {timing})", {}


def sg_admits(view: Ec2View, sg_ids: Sequence[str], pl_id: Optional[str], answers: Sequence[str]) -> bool:
    """Does an outbound rule of the instance's groups let TCP 443 reach the service's addresses?
    A prefix list we cannot compare counts as "could be the service's"."""
    for rule in (r for g in sg_ids for r in view.security_group_rules.get(g, ()) if r.direction == "outbound"):
        if not rule.covers_tcp_port(443):
            continue
        if rule.prefix_list_ids and (not pl_id or pl_id in rule.prefix_list_ids):
            return True
        if answers and any(all(inside(a, cidr_networks([c])) for a in answers) for c in rule.cidrs):
            return True
    return False


def nacl_drop(ctx: Context, view: Ec2View, service: GatewayService, ip: str) -> Optional[Dict[str, Any]]:
    """The instance subnet's NACL entry that drops TCP 443 to the service (outside the VPC: only that
    one NACL applies), with the prefix list's CIDRs to allow — a NACL cannot name the list."""
    facts = ctx.facts
    first = ip.split(",")[0].strip()
    if not view.available or facts.subnet_id not in view.network_acls or not facts.local_ipv4 or not first:
        return None
    try:
        drop = tcp_drop(view.network_acls, facts.subnet_id, facts.local_ipv4, None, first, 443, ephemeral_ports())
    except ValueError:  # not an address (a host name stood in for the answers)
        return None
    if drop is None:
        return None
    params = drop_params(drop, first)
    if drop.leg == "request" or drop.direction == "inbound":  # the peer is the service: its whole list
        cidrs = list(service.prefix_list_cidrs)
        params.update(cidr=cidrs[0] if cidrs else f"<each CIDR of the {service.name} prefix list>",
                      scope=(f" — one entry per CIDR of the {service.name} prefix list {service.prefix_list_id or ''} "
                             f"({', '.join(cidrs) or 'aws ec2 get-managed-prefix-list-entries'}): NACLs cannot "
                             "reference prefix lists"))
    return explain("nacl_blocks", **params)


def drop_cause(ctx: Context, view: Ec2View, service: GatewayService, ip: str, answers: Sequence[str],
               ev: Dict[str, Any]) -> Dict[str, Any]:
    """explain(...) for "the service at ``ip`` did not answer TCP 443" (``ev`` gets what was known)."""
    code = service.name
    pl_id = service.prefix_list_id if view.available else None
    sg_ids = list(view.instance_sg_ids) if view.available else []
    sg_ids = sg_ids or list(ctx.facts.security_group_ids or ())
    sg_known = view.available and bool(sg_ids) and all(g in view.security_group_rules for g in sg_ids)
    sg_lacks = sg_known and not sg_admits(view, sg_ids, pl_id, answers)
    routes_known = view.available and view.route_table_id is not None
    gateway, route = service.route(view) if routes_known else (None, None)
    ev.update(ip=ip, connect_timeout_s=ctx.settings.connect_timeout_s,
              route_table_id=view.route_table_id if view.available else None,
              gateway_route=(f"{route.destination} -> {route.target}" if route else None),
              routes_known=routes_known, instance_sg_rules_known=sg_known)
    if routes_known and route is None:
        ev["also"] = [f"{code}_sg_no_outbound_443"] if sg_lacks else []
        if gateway is not None:  # the endpoint exists, this subnet's table lacks it
            return service.route_missing(view, gateway)
        return explain(f"{code}_no_gateway_route", ip=ip, vpc_id=ctx.facts.vpc_id or view.vpc_id,
                       region=ctx.facts.region, route_table_id=view.route_table_id)
    if sg_lacks:
        return explain(f"{code}_sg_no_outbound_443", ip=ip, sg_ids=", ".join(sg_ids), sg_id=sg_ids[0],
                       prefix_list_id=pl_id or "<pl-id>")
    nacl = nacl_drop(ctx, view, service, ip)
    if nacl is not None:
        return nacl
    if routes_known and sg_known:  # route and rules allow it: the drop is elsewhere (NACL, host firewall)
        return explain(f"{code}_path_blocked", ip=ip, route_table_id=view.route_table_id,
                       endpoint_id=route.target if route else None)
    # Route table or security group unknown: a drop looks the same from here either way.
    unknown = [w for w, known in (("route table", routes_known), ("security group rules", sg_known)) if not known]
    ev["unproven"] = unknown
    why = view.reason if not view.available else "the EC2 API did not return the " + " and ".join(unknown)
    return explain(f"{code}_no_answer", ip=ip, why=why, region=ctx.facts.region,
                   route_table_id=(view.route_table_id if view.available else None) or "<route-table-id>",
                   sg_id=sg_ids[0] if sg_ids else "<instance-sg-id>", prefix_list_id=pl_id or "<pl-id>",
                   order=("the instance security group's egress, then the route" if routes_known
                          else "the route, then the instance security group's egress"))
