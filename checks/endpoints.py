"""Interface endpoints, per configured service: Private DNS (``dns.<svc>``), identity of the answers
(``eni.<svc>``) and TCP 443 + TLS to every ENI (``reach.<svc>`` and ``reach.<svc>.<ip>``).

AWS facts relied on (AWS-FACTS "DNS" / "Endpoints SSM needs"):
* With Private DNS, ``<svc>.<region>.amazonaws.com`` resolves to the private IPs of the endpoint's
  ENIs, one per chosen subnet/AZ; that needs enableDnsSupport and enableDnsHostnames both true.
  Without it the name resolves to public regional addresses.
* The endpoint's security group must admit TCP 443 from the instance; the instance's security group
  must allow TCP 443 out. A security group drops silently, so a blocked connect times out.
"""
from __future__ import annotations

import ipaddress
from functools import partial
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import tlsprobe, workers
from .causes import explain
from . import ipv6
from .dnsshadow import dns_attributes_first, nxdomain_cause, public_record_cause
from .ec2view import Ec2View, EndpointView, SecurityGroupRule
from .hostnames import service_hostname
from .model import Check, Context, Facts, Finding, Outcome, Settings, Status, outcome
from .net import TcpResult, TlsResult, ca_bundle_from, tcp_connect, tls_context, tls_handshake
from .public_path import blocked_eni, public_data, public_reach
from .reach_causes import nacl_cause, partial_cause
from .resolver import address_kind, query_timeout

PORT = 443  # every interface endpoint serves HTTPS on 443


# --- helpers -------------------------------------------------------------------------------------

def _view(ctx: Context) -> Ec2View:
    """The ec2.api view; when that check is not configured, an unavailable view."""
    try:
        view = ctx.data("ec2.api")
    except KeyError:
        return Ec2View(available=False, reason="the EC2 API check is disabled")
    if not isinstance(view, Ec2View):
        return Ec2View(available=False, reason="no EC2 API view")
    return view


def _endpoints_known(view: Ec2View) -> bool:
    """The view is available and DescribeVpcEndpoints itself did not fail (partial views exist)."""
    return view.available and not any("endpoint" in call.lower() for call in view.errors)


def _host(ctx: Context, service: str) -> str:
    return service_hostname(service, ctx.facts.require("region"), ctx.settings.fips)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _join(items: Sequence[str]) -> str:
    return ", ".join(items) if items else "none"


# --- dns.<svc> -----------------------------------------------------------------------------------

def _public_cause(view: Ec2View, service: str, facts: Facts, params: Dict[str, Any]) -> Dict[str, Optional[str]]:
    """The sharpest reason public answers come back, as far as the EC2 API view can tell."""
    if not view.available:
        return explain("private_dns_not_effective", **params)
    if not _endpoints_known(view):  # partial view: only the VPC attribute may still be telling
        code = "dns_hostnames_disabled" if view.enable_dns_hostnames is False else "private_dns_not_effective"
        return explain(code, **params)
    ep = view.endpoint_for(service)
    off = [a for a, v in (("enableDnsSupport", view.enable_dns_support),
                          ("enableDnsHostnames", view.enable_dns_hostnames)) if v is False]
    if off and (ep is None or not ep.private_dns_enabled):
        # AWS refuses Private DNS (create or modify) while a VPC DNS attribute is false: that step first.
        return dns_attributes_first(off, ep, service, facts, params)
    if ep is None:
        return explain("endpoint_missing", subnet_id=facts.subnet_id, **params)
    params = dict(params, endpoint_id=ep.id)
    if not ep.private_dns_enabled:
        return explain("private_dns_disabled", **params)
    if view.enable_dns_hostnames is False:
        return explain("dns_hostnames_disabled", **params)
    if ep.state.lower() != "available":
        return explain("endpoint_not_available", state=ep.state, **params)
    # Everything the API shows is right, yet answers are public: something overrides Private DNS
    # (a Route 53 Resolver rule, another resolver); name the remaining possibilities.
    return explain("private_dns_not_effective", **params)


def run_dns(ctx: Context, service: str) -> Outcome:
    facts = ctx.facts
    fid = f"dns.{service}"
    host = _host(ctx, service)
    networks = facts.networks()
    server = ctx.data("resolver")["server"]
    view = _view(ctx)
    timeout = query_timeout(ctx)  # longer when the resolver check measured a slow resolver
    ans = ipv6.query_service(facts, host, server, timeout)  # AAAA on an IPv6-only instance, else A
    kinds = {ip: address_kind(ip, networks) for ip in ans.addresses}
    evidence: Dict[str, Any] = dict(ans.to_evidence(), resolver=server, address_kinds=kinds,
                                    vpc_cidrs=[str(n) for n in networks])
    params: Dict[str, Any] = {"host": host, "service": service, "region": facts.region, "vpc_id": facts.vpc_id,
                              "resolver": server, "answers": _join(ans.addresses)}

    def critical(summary: str, cause: Dict[str, Optional[str]]) -> Outcome:
        return outcome(Finding(fid, Status.CRITICAL, summary, evidence=evidence, **cause))

    if ans.outcome in ("timeout", "unreachable"):
        if view.available and view.enable_dns_support is False:
            return critical(f"{server} does not answer for {host}: enableDnsSupport is false",
                            explain("dns_support_disabled", **params))
        return critical(f"{server} did not answer for {host} ({ans.error})",
                        explain("dns_timeout", timeout_s=round(timeout, 2), **params))
    if ans.outcome == "nxdomain":
        # The siblings' answers say which zone shadows the name (dnsshadow).
        return critical(f"{host} does not exist according to {server} (NXDOMAIN)",
                        nxdomain_cause(ctx, host, server, timeout, params, evidence))
    if ans.outcome == "nodata" and facts.ipv6_only:  # no AAAA: an IPv4-only endpoint?
        ep = view.endpoint_for(service) if _endpoints_known(view) else None
        v4only = ipv6.ipv4_only_cause(facts, host, server, timeout, params, ep.id if ep else None, evidence)
        if v4only is not None:
            return critical(f"{host} has no IPv6 address (AAAA) and this subnet is IPv6-only", v4only)
    if ans.outcome != "answer":  # nodata, or an error rcode
        rcode = ans.rcode or ans.outcome
        return critical(f"{server} gives no address for {host} ({rcode})",
                        explain("dns_no_answer", rcode=rcode, **params))

    answers = list(ans.addresses)
    ep6 = view.endpoint_for(service) if facts.ipv6_only and _endpoints_known(view) else None
    dns64 = ipv6.dns64_cause(facts, answers, params, ep6.id if ep6 else None, evidence)  # IPv4-only behind DNS64
    if dns64 is not None:
        return critical(f"{host} has only DNS64-synthesized IPv6 answers ({_join(answers)}): the endpoint is IPv4-only",
                        dns64)
    public = [ip for ip in answers if kinds[ip] == "public"]
    data = {"host": host, "answers": answers, "ttl": ans.ttl, "resolver": server}
    if all(kinds[ip] == "vpc" for ip in answers):
        return outcome(Finding(fid, Status.OK, f"Private DNS works: {host} -> {_join(answers)} (inside the VPC CIDRs, "
                                               f"TTL {ans.ttl})", evidence=evidence), data=data)
    if len(public) == len(answers):
        # reach.<svc> still dials them: over a NAT/IGW, or through an /etc/hosts pin, the service works
        cause = _public_cause(view, service, facts, params)
        if cause["cause_code"] == "private_dns_not_effective":  # the view cannot tell: do the siblings?
            cause = public_record_cause(ctx, host, server, timeout, params, evidence) or cause
        return outcome(Finding(fid, Status.CRITICAL, f"{host} resolves to public addresses {_join(answers)}: "
                               "Private DNS is not in effect", evidence=evidence, **cause),
                       data=public_data(host, answers, ans.ttl, server, cause))
    if public:
        return critical(f"{host} resolves to private and public addresses {_join(answers)}",
                        explain("dns_mixed_answers", **params))
    # Private, but (partly) outside this VPC: a centralized endpoint or a stale record. reach.<svc>
    # proves whether it works, so dependents run.
    outside = [ip for ip in answers if kinds[ip] != "vpc"]
    return outcome(Finding(fid, Status.WARNING, f"{host} resolves to private addresses outside the VPC CIDRs "
                                                f"({_join(outside)})", evidence=evidence,
                           **explain("dns_private_outside_vpc", vpc_cidrs=_join([str(n) for n in networks]), **params)),
                   data=data)


# --- eni.<svc> -----------------------------------------------------------------------------------

def run_eni(ctx: Context, service: str) -> Outcome:
    fid = f"eni.{service}"
    dns = ctx.data(f"dns.{service}")
    if dns.get("public"):
        return blocked_eni(service, dns)
    host, answers = dns["host"], list(dns["answers"])
    networks = ctx.facts.networks()
    in_vpc = [ip for ip in answers if address_kind(ip, networks) == "vpc"]
    view = _view(ctx)

    def unconfirmed(reason: str) -> Outcome:
        where = "inside the VPC CIDRs" if len(in_vpc) == len(answers) else "private, outside the VPC CIDRs"
        return outcome(Finding(fid, Status.OK, f"{host}: identity not confirmed ({reason}); answers lie {where}",
                               evidence={"confirmed": False, "reason": reason, "answers": answers}, verified=False))

    if not view.available:
        return unconfirmed(view.reason or "EC2 API not available")
    if not _endpoints_known(view):
        return unconfirmed("DescribeVpcEndpoints failed: " + "; ".join(f"{k}: {v}" for k, v in view.errors.items()))
    ep = view.endpoint_for(service)
    if ep is None:
        if not in_vpc:  # dns.<svc> already warned: a shared endpoint elsewhere cannot be matched here
            return unconfirmed(f"no {service} endpoint in {view.vpc_id or 'this VPC'}; answers lie outside it")
        return outcome(Finding(
            fid, Status.CRITICAL, f"{host} resolves to {_join(answers)} but {view.vpc_id or 'this VPC'} has no "
                                  f"interface endpoint for {service}",
            evidence={"confirmed": False, "answers": answers, "endpoint_id": None, "eni_ids": [], "eni_ips": []},
            **explain("eni_mismatch", host=host, answers=_join(answers), service=service,
                      endpoint_id=f"(no {service} endpoint in {view.vpc_id or 'this VPC'})", eni_ips="no addresses")),
            data=None)
    if not ep.eni_ips:
        return unconfirmed(f"the ENI addresses of {ep.id} are unknown")
    gap = ipv6.family_gap(answers, ep.eni_ips)
    if gap:
        return unconfirmed(gap)
    evidence: Dict[str, Any] = {"endpoint_id": ep.id, "eni_ids": list(ep.eni_ids), "eni_ips": list(ep.eni_ips),
                                "answers": answers, "state": ep.state}
    foreign = [ip for ip in answers if ip not in ep.eni_ips]
    missing = [ip for ip in ep.eni_ips if ip not in answers]
    if foreign or missing:
        # Foreign answers send clients somewhere else: CRITICAL. Only missing ENIs: clients still reach
        # the endpoint, with fewer AZs than it has.
        status = Status.CRITICAL if foreign else Status.WARNING
        detail = (f"answers not among its ENIs: {_join(foreign)}" if foreign
                  else f"ENIs not in the answers: {_join(missing)}")
        return outcome(Finding(fid, status, f"{host} -> {_join(answers)} does not match endpoint {ep.id} ({detail})",
                               evidence=dict(evidence, confirmed=False, foreign=foreign, missing=missing),
                               **explain("eni_mismatch", host=host, answers=_join(answers), endpoint_id=ep.id,
                                         service=service,
                                         eni_ips=_join(list(ep.eni_ips)))),
                       data=ep if not foreign else None)
    return outcome(Finding(fid, Status.OK, f"{host} -> {_join(answers)} are exactly the ENIs of {ep.id}",
                           evidence=dict(evidence, confirmed=True)), data=ep)


# --- reach.<svc> ---------------------------------------------------------------------------------

def _admits(rule: SecurityGroupRule, direction: str, addr: Optional[str], peer_groups: Sequence[str]) -> bool:
    """Could this rule let TCP 443 through for ``addr`` / a member of ``peer_groups``? Unknown parts
    (prefix list contents, an unknown address or peer group) count as "could": we only sharpen a
    timeout into a security group cause when the rules leave no doubt."""
    if rule.direction != direction or not rule.covers_tcp_port(PORT):
        return False
    if rule.prefix_list_ids:
        return True
    if rule.group_ids and (not peer_groups or set(rule.group_ids) & set(peer_groups)):
        return True
    for cidr in rule.cidrs:
        if addr is None:
            return True
        try:
            if ipaddress.ip_address(addr) in ipaddress.ip_network(cidr, strict=False):
                return True
        except ValueError:
            continue
    return False


def _rules(view: Ec2View, groups: Sequence[str]) -> Optional[List[SecurityGroupRule]]:
    """All rules of these groups, or None when any group's rules are unknown."""
    if not groups or any(g not in view.security_group_rules for g in groups):
        return None
    return [r for g in groups for r in view.security_group_rules[g]]


def _sg_causes(view: Ec2View, ep: Optional[EndpointView], ip: str, facts: Facts) -> List[Tuple[str, Dict[str, Any]]]:
    """Security-group causes the view proves for a timeout to ``ip``, instance side first."""
    if not view.available:
        return []
    instance_sgs = list(view.instance_sg_ids or facts.security_group_ids)
    endpoint_sgs = list(ep.security_group_ids) if ep else []
    found: List[Tuple[str, Dict[str, Any]]] = []
    out_rules = _rules(view, instance_sgs)
    if out_rules is not None and not any(_admits(r, "outbound", ip, endpoint_sgs) for r in out_rules):
        found.append(("instance_sg_no_outbound_443", {"sg_ids": _join(instance_sgs), "sg_id": instance_sgs[0],
                                                      "vpc_cidr": facts.vpc_cidr}))
    in_rules = _rules(view, endpoint_sgs)
    source = ipv6.source_for(ip, facts)  # the instance's address of ip's family (IPv6 ENIs: its IPv6)
    if in_rules is not None and not any(_admits(r, "inbound", source, instance_sgs) for r in in_rules):
        found.append(ipv6.endpoint_sg_cause(ip, facts, {"sg_ids": _join(endpoint_sgs), "sg_id": endpoint_sgs[0],
                                                        "subnet_cidr": facts.subnet_cidr}))
    return found


def _probe(ip: str, host: str, tls_ctx: Any, ctx: Context) -> Tuple[TcpResult, Optional[TlsResult]]:
    tcp, sock = tcp_connect(ip, PORT, ctx.budget(ctx.settings.connect_timeout_s))
    if sock is None:
        return tcp, None
    tls = tls_handshake(sock, host, tls_ctx, ctx.budget(ctx.settings.tls_timeout_s))
    if not tls.ok:  # only a failure pays for a second look (who issued it; does a small MSS pass)
        tls = tlsprobe.diagnose(ip, PORT, host, tls, tls_ctx, ctx.budget, ctx.settings.connect_timeout_s,
                                ctx.settings.tls_timeout_s, ca_bundle_from(ctx.settings.ca_bundle))
    return tcp, tls


def _ip_cause(tcp: TcpResult, tls: Optional[TlsResult], host: str, az: Optional[str], view: Ec2View,
              ep: Optional[EndpointView], facts: Facts) -> Tuple[str, Dict[str, Any], Dict[str, Any]]:
    """(cause code, explain params, extra evidence) for one failing IP."""
    # the AZ goes into the address text when the EC2 view knows it ("10.0.1.21 (us-east-1a)")
    base: Dict[str, Any] = {"ip": f"{tcp.ip} ({az})" if az else tcp.ip, "host": host}
    if tcp.outcome == "timeout":
        sg = _sg_causes(view, ep, tcp.ip, facts)
        nacl = nacl_cause(view, ep, tcp.ip, facts)
        proven = sg + ([nacl] if nacl else [])
        if proven:
            code, params = proven[0]
            return code, dict(base, **params), {"also": [c for c, _ in proven[1:]]}
        return "tcp_timeout", base, {}
    if tcp.outcome == "refused":
        return "tcp_refused", base, {}
    if tcp.outcome != "connected":
        return "tcp_unreachable", dict(base, error=tcp.error), {}
    if tls is not None and tls.cause:  # checks.tlsprobe proved a sharper cause
        return tls.cause, dict(base, **tls.cause_params), {}
    return "tls_failed", dict(base, error=tls.error if tls else "no TLS result"), {}


def run_reach(ctx: Context, service: str) -> Outcome:
    fid = f"reach.{service}"
    dns = ctx.data(f"dns.{service}")
    host, ips = dns["host"], list(dns["answers"])
    view = _view(ctx)
    ep = view.endpoint_for(service) if _endpoints_known(view) else None
    azs = dict(ep.eni_azs) if ep else {}
    tls_ctx = tls_context(ca_bundle_from(ctx.settings.ca_bundle))
    if dns.get("public"):
        return public_reach(ctx, service, dns, lambda ip: _probe(ip, host, tls_ctx, ctx))
    # Every ENI at once: one per AZ, and a blocked one costs a whole connect timeout.
    results = workers.map_all(lambda ip: _probe(ip, host, tls_ctx, ctx), ips)

    ok_ips = [tcp.ip for tcp, tls in results if tls is not None and tls.ok]
    all_bad = not ok_ips
    per_ip: List[Finding] = []
    failures: List[Tuple[str, str, Dict[str, Any]]] = []  # (ip, code, params)
    for tcp, tls in results:
        az = azs.get(tcp.ip)
        evidence: Dict[str, Any] = dict(tcp.to_evidence(), host=host, az=az,
                                        **(tls.to_evidence() if tls else {"tls": "not attempted"}))
        if tls is not None and tls.ok:
            per_ip.append(Finding(f"{fid}.{tcp.ip}", Status.OK,
                                  f"{tcp.ip}:{PORT}{f' ({az})' if az else ''} accepts TLS for {host} "
                                  f"(connect {_ms(tcp.connect_s)} ms, TLS {_ms(tls.handshake_s)} ms, {tls.version})",
                                  evidence=evidence))
            continue
        code, params, extra = _ip_cause(tcp, tls, host, az, view, ep, ctx.facts)
        # which endpoint ENI this is: the finding's resource (checks/resources.py), not in any text
        params = dict(params, service=service, endpoint_id=ep.id if ep else None,
                      eni_id=ep.eni_by_ip.get(tcp.ip) if ep else None)
        failures.append((tcp.ip, code, params))
        what = f"TLS failed: {tls.error}" if tls is not None else f"TCP {tcp.outcome}: {tcp.error}"
        per_ip.append(Finding(f"{fid}.{tcp.ip}", Status.CRITICAL if all_bad else Status.WARNING,
                              f"{tcp.ip}:{PORT}{f' ({az})' if az else ''} {what}", evidence=dict(evidence, **extra),
                              **explain(code, **params)))

    summary_ev: Dict[str, Any] = {"host": host, "total": len(ips), "ok_ips": ok_ips, "bad_count": len(failures),
                                  "bad_ips": [ip for ip, _, _ in failures],
                                  "causes": {ip: code for ip, code, _ in failures}}
    if not failures:
        summary = Finding(fid, Status.OK, f"All {len(ips)} endpoint addresses of {service} accept TLS for {host}",
                          evidence=summary_ev)
        return Outcome((summary, *per_ip), {"ok_ips": ok_ips, "host": host})
    bad_ips = [ip for ip, _, _ in failures]
    if not all_bad:
        summary = Finding(fid, Status.WARNING,
                          f"{len(bad_ips)} of {len(ips)} endpoint addresses of {service} fail ({_join(bad_ips)})",
                          evidence=summary_ev,
                          **partial_cause(service, ips, ok_ips, failures, ctx.facts, view, ep))
        return Outcome((summary, *per_ip), {"ok_ips": ok_ips, "host": host})
    # All fail: the summary carries the per-IP cause (the most common one; ties keep answer order).
    codes = [code for _, code, _ in failures]
    code = max(dict.fromkeys(codes), key=codes.count)
    params = dict(next(p for _, c, p in failures if c == code))
    params.update(ip=_join([str(p["ip"]) for _, c, p in failures if c == code]))
    text = (f"The only endpoint address of {service} ({ips[0]}) does not accept TLS for {host} ({code})"
            if len(ips) == 1 else
            f"None of the {len(ips)} endpoint addresses of {service} accepts TLS for {host} ({code})")
    summary = Finding(fid, Status.CRITICAL, text, evidence=summary_ev, **explain(code, **params))
    return Outcome((summary, *per_ip), None)


def checks(settings: Settings) -> List[Check]:
    out: List[Check] = []
    reach_wait = settings.connect_timeout_s + settings.tls_timeout_s + 2.0
    for s in settings.services:
        out.append(Check(f"dns.{s}", partial(run_dns, service=s), needs=("resolver", "ec2.api"),
                         timeout_s=settings.dns_timeout_s + 2.0))
        out.append(Check(f"eni.{s}", partial(run_eni, service=s), needs=(f"dns.{s}", "ec2.api"), timeout_s=2.0))
        out.append(Check(f"reach.{s}", partial(run_reach, service=s), needs=(f"dns.{s}", "ec2.api"),
                         timeout_s=reach_wait))
    return out
