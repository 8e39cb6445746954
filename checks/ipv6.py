"""IPv6 on the instance: what kind of subnet it is in (``instance.ipv6``), and for a dual-stack
instance the IPv6 side of each interface endpoint (``ipv6.<svc>``: AAAA answers, TCP 443 + TLS).

AWS facts relied on (AWS-FACTS "DNS"/"IMDS"; EC2 API DnsOptions, VpcEndpointIpAddressType):
* IPv6-only subnets exist only on Nitro instances; their ENIs have no IPv4 address, so the Amazon
  resolver is reached at fd00:ec2::253 and IMDS at [fd00:ec2::254] (agent/imds6.py).
* An interface endpoint's IpAddressType is ipv4 | dualstack | ipv6; its DnsRecordIpType says which
  Private DNS records exist: ipv4 → A only, dualstack → A and AAAA, ipv6 → AAAA only. An IPv4-only
  endpoint therefore gives an IPv6-only instance nothing it can dial (AAAA: no data).

The IPv6-only case runs through the ordinary dns/eni/reach checks (they ask AAAA instead of A,
``query_service``); this module names the subnet and sharpens the causes there.
"""
from __future__ import annotations

import ipaddress
from typing import Any, Dict, List, Mapping, Optional, Sequence

from . import workers
from .causes import explain
from .dnsquery import DnsAnswer, Exchange, query_a
from .hostnames import service_hostname
from .model import Check, Context, Facts, Finding, Outcome, Settings, Status, outcome
from .net import ca_bundle_from, tcp_connect, tls_context, tls_handshake

RESOLVER6 = "fd00:ec2::253"  # the Amazon resolver over IPv6 (Nitro)
# What tells the SSM agent's AWS SDK (aws-sdk-go v1) to use IMDS over IPv6 (agent/imds6.ssm_agent_note).
IMDS_ENV = ("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "AWS_EC2_METADATA_SERVICE_ENDPOINT")
MAX_ENVIRON_BYTES = 256 * 1024
PORT = 443
CHECK_ID = "instance.ipv6"


_imds_endpoint: Optional[str] = None  # set by agent/imds6.announce when only IPv6 IMDS answers


def use_imds_endpoint(url: Optional[str]) -> None:
    global _imds_endpoint
    _imds_endpoint = url


def configure_session(session: Any) -> None:
    """Point a botocore session's credential fetch at IMDS's IPv6 endpoint when that is the one
    that answers (botocore defaults to 169.254.169.254, unreachable in an IPv6-only subnet)."""
    if _imds_endpoint:
        session.set_config_variable("ec2_metadata_service_endpoint", _imds_endpoint)


def mode(facts: Facts) -> str:
    """none | dual_stack | ipv6_only."""
    if not facts.ipv6s:
        return "none"
    return "ipv6_only" if facts.ipv6_only else "dual_stack"


def resolver_candidates(facts: Facts, configured: Optional[str]) -> List[str]:
    """An IPv6-only instance reaches the Amazon resolver only at fd00:ec2::253 (a configured IPv6
    resolver first); its IPv4 addresses have no route from here."""
    first = configured if configured and ":" in configured else None
    return list(dict.fromkeys([x for x in (first, RESOLVER6) if x]))


def query_aaaa(host: str, server: str, timeout_s: float) -> DnsAnswer:
    ex = Exchange(host, server, rdtype="AAAA")
    try:
        return ex.wait(ex.start + timeout_s) or ex.timed_out(timeout_s)
    finally:
        ex.close()


def query_service(facts: Facts, host: str, server: str, timeout_s: float) -> DnsAnswer:
    """What a client here dials: AAAA on an IPv6-only instance (it has no IPv4), else A."""
    if facts.ipv6_only:
        return query_aaaa(host, server, timeout_s)
    return query_a(host, server, timeout_s)


def ipv4_only_cause(facts: Facts, host: str, server: str, timeout_s: float, params: Mapping[str, Any],
                    endpoint_id: Optional[str], evidence: Dict[str, Any]) -> Optional[Dict[str, Optional[str]]]:
    """AAAA gave no data on an IPv6-only instance: when the A answers lie in the VPC, the endpoint
    (with Private DNS) serves IPv4 only. None when that is not what the A query shows."""
    if not facts.ipv6_only:
        return None
    a = query_a(host, server, timeout_s)
    evidence["ipv4_answers"] = list(a.addresses)
    if a.outcome != "answer":
        return None
    nets = [ipaddress.ip_network(c, strict=False) for c in facts.vpc_cidrs]
    if not all(any(ipaddress.ip_address(ip) in n for n in nets) for ip in a.addresses):
        return None
    # an unknown endpoint id stays a <endpoint-id> placeholder in the CLI command (causes.explain)
    return explain("endpoint_ipv4_only", **dict(params, answers=", ".join(a.addresses), endpoint_id=endpoint_id,
                                                 aaaa=f"no AAAA from {server}"))


DNS64_PREFIX = ipaddress.ip_network("64:ff9b::/96")  # the well-known NAT64 prefix (RFC 6052) Route 53's DNS64 uses


def dns64_cause(facts: Facts, answers: Sequence[str], params: Mapping[str, Any], endpoint_id: Optional[str],
                evidence: Dict[str, Any]) -> Optional[Dict[str, Optional[str]]]:
    """AAAA answers that are all DNS64-synthesized (64:ff9b::<IPv4>) from addresses inside the VPC:
    the endpoint is IPv4-only and the subnet's DNS64 dresses its A records up as IPv6; dialling them
    needs a NAT64 path (a NAT gateway route for 64:ff9b::/96), not the endpoint's own ENIs."""
    if not facts.ipv6_only or not answers:
        return None
    embedded = []
    for ip in answers:
        addr = ipaddress.ip_address(ip)
        if addr.version != 6 or addr not in DNS64_PREFIX:
            return None
        embedded.append(str(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)))
    nets = [ipaddress.ip_network(c, strict=False) for c in facts.vpc_cidrs]
    if not all(any(ipaddress.ip_address(ip) in n for n in nets) for ip in embedded):
        return None
    evidence.update(dns64=True, ipv4_answers=embedded)
    return explain("endpoint_ipv4_only", **dict(params, answers=", ".join(embedded), endpoint_id=endpoint_id,
                                                 aaaa="the AAAA answers are DNS64-synthesized from them (64:ff9b::/96)"))


def source_for(ip: str, facts: Facts) -> Optional[str]:
    """The instance address a connection to ``ip`` leaves from: its IPv4, or for an IPv6 peer its IPv6."""
    if ":" in ip:
        return facts.ipv6s[0] if facts.ipv6s else None
    return facts.local_ipv4


def endpoint_sg_cause(ip: str, facts: Facts, params: Dict[str, Any]) -> "tuple[str, Dict[str, Any]]":
    """endpoint_sg_no_inbound_443, or its IPv6 form (another CLI: --cidr takes IPv4 only)."""
    if ":" not in ip:
        return "endpoint_sg_no_inbound_443", params
    return "endpoint_sg_no_inbound_443_ipv6", dict(params, source=source_for(ip, facts),
                                                   subnet_ipv6_cidr=next(iter(facts.subnet_ipv6_cidrs), None))


def family_gap(answers: Sequence[str], eni_ips: Sequence[str]) -> Optional[str]:
    """Why answers of one IP family cannot be matched with ENI addresses of the other (the EC2
    view lists the IPv4 addresses of the ENIs); None when they can be compared."""
    v6 = [ip for ip in answers if ":" in ip]
    if v6 and not any(":" in ip for ip in eni_ips):
        return "the EC2 API view lists no IPv6 addresses of the endpoint's ENIs"
    return None


def ipv4_only_s3(ctx: Context, check_id: str, action: str) -> Optional[Outcome]:
    """On an IPv6-only instance an S3 call to the regional name cannot be made: that name answers
    IPv4 addresses only (the dual-stack name is s3.dualstack.<region>.amazonaws.com). Said, not failed."""
    facts = ctx.facts
    if not facts.ipv6_only:
        return None
    region = facts.region or "<region>"
    return outcome(Finding(
        check_id, Status.OK,
        f"{action} not tried: this subnet is IPv6-only (no IPv4 address) and s3.{region}.amazonaws.com has IPv4 "
        f"addresses only; S3 clients here need the dual-stack name s3.dualstack.{region}.amazonaws.com "
        "(AWS CLI: aws configure set default.s3.use_dualstack_endpoint true) and a dual-stack route to S3",
        evidence={"ipv6_only": True, "ipv6s": list(facts.ipv6s)}, verified=False), data={"ok": None})


def agent_imds_env(ctx: Context) -> Dict[str, Any]:
    return ssm_agent_imds_env() if ctx.settings.check_ssm_agent else {}


def agent_uses_ipv6_imds(agent: Mapping[str, Any]) -> bool:
    """The agent's SDK asks [fd00:ec2::254]: ENDPOINT_MODE=IPv6, or an explicit IPv6 ENDPOINT URL."""
    variables = agent.get("variables") or {}
    return (str(variables.get(IMDS_ENV[0], "")).lower() == "ipv6"
            or "fd00:ec2::254" in str(variables.get(IMDS_ENV[1], "")))


def ssm_agent_imds_env() -> Dict[str, Any]:
    """The IMDS variables in the running SSM agent's environment (/proc/<pid>/environ): without one
    its SDK asks 169.254.169.254, which an IPv6-only instance cannot reach. {} when no agent runs."""
    from .agentctx import find_agents  # a /proc scan, only in an IPv6-only subnet

    agents = find_agents()
    if not agents:
        return {}
    pid = agents[0].pid  # the main process; its worker inherits the environment
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            raw = fh.read(MAX_ENVIRON_BYTES)
    except OSError as exc:
        return {"pid": pid, "error": f"/proc/{pid}/environ: {exc.strerror or exc}"}
    found = {}
    for entry in raw.split(b"\0"):
        name, sep, value = entry.decode("utf-8", "replace").partition("=")
        if sep and name in IMDS_ENV:
            found[name] = value[:200]
    return {"pid": pid, "variables": found}


def _agent_text(agent: Mapping[str, Any]) -> str:
    if not agent or "variables" not in agent:
        return ""
    variables = agent["variables"]
    if agent_uses_ipv6_imds(agent):
        return "; the SSM agent (pid {}) has {}".format(agent["pid"], ", ".join(f"{k}={v}" for k, v in variables.items()))
    return (f"; the SSM agent (pid {agent['pid']}) has no {IMDS_ENV[0]} in its environment: its SDK asks IMDS at "
            "169.254.169.254 (see imds)")


def local_addresses() -> "tuple[List[str], List[str]]":
    """(IPv4, global/ULA IPv6) addresses of this host's interfaces, loopback and link-local left out."""
    import psutil

    v4: List[str] = []
    v6: List[str] = []
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            try:
                ip = ipaddress.ip_address(a.address.split("%", 1)[0])
            except ValueError:
                continue
            if ip.is_loopback or ip.is_link_local:
                continue
            (v4 if ip.version == 4 else v6).append(str(ip))
    return v4, v6


# --- instance.ipv6 and ipv6.<svc> ---------------------------------------------------------------

def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _in_vpc6(ip: str, facts: Facts) -> bool:
    nets = [ipaddress.ip_network(c, strict=False) for c in facts.vpc_ipv6_cidrs]
    try:
        return any(ipaddress.ip_address(ip) in n for n in nets)
    except ValueError:
        return False


def _dial(ctx: Context, ip: str, host: str, tls_ctx: Any) -> Dict[str, Any]:
    tcp, sock = tcp_connect(ip, PORT, ctx.budget(ctx.settings.connect_timeout_s))
    out: Dict[str, Any] = dict(tcp.to_evidence())
    if sock is None:
        out["ok"] = False
        return out
    tls = tls_handshake(sock, host, tls_ctx, ctx.budget(ctx.settings.tls_timeout_s))
    out.update(tls.to_evidence(), ok=tls.ok)
    return out


def _service(ctx: Context, service: str, server: str, tls_ctx: Any) -> Finding:
    facts = ctx.facts
    fid = f"ipv6.{service}"
    host = service_hostname(service, facts.require("region"), ctx.settings.fips)
    ans = query_aaaa(host, server, ctx.budget(ctx.settings.dns_timeout_s))
    evidence: Dict[str, Any] = dict(ans.to_evidence(), vpc_ipv6_cidrs=list(facts.vpc_ipv6_cidrs))
    if ans.outcome == "nodata":
        return Finding(fid, Status.OK, f"{host} has no IPv6 (AAAA) answer: the endpoint serves IPv4 only, "
                                       "so clients here use IPv4", evidence=evidence)
    if ans.outcome != "answer":
        return Finding(fid, Status.OK, f"{host}: the AAAA query gave {ans.rcode or ans.outcome}; dns.{service} "
                                       "judges the name", evidence=evidence, verified=False)
    outside = [ip for ip in ans.addresses if not _in_vpc6(ip, facts)]
    evidence["outside_vpc"] = outside
    if outside:
        return Finding(fid, Status.WARNING, f"{host} has IPv6 answers outside the VPC's IPv6 CIDRs "
                                            f"({', '.join(outside)})", evidence=evidence,
                       **explain("private_dns_not_effective", host=host, service=service, region=facts.region,
                                 vpc_id=facts.vpc_id, resolver=server, answers=", ".join(ans.addresses)))
    dials = workers.map_all(lambda ip: _dial(ctx, ip, host, tls_ctx), list(ans.addresses))
    evidence["dials"] = dials
    bad = [d["ip"] for d in dials if not d.get("ok")]
    if bad:
        # Dual-stack clients try IPv6 first (RFC 8305) and fall back to IPv4: slower, not broken.
        code, params = _failure_cause(ctx, service, [d for d in dials if not d.get("ok")], host)
        return Finding(fid, Status.WARNING, f"{host}: IPv6 endpoint addresses fail ({', '.join(bad)}); "
                                            "clients that prefer IPv6 wait for the IPv4 fallback", evidence=evidence,
                       **explain(code, **params))
    slowest = max(d.get("connect_ms", 0.0) for d in dials)
    return Finding(fid, Status.OK, f"{host} -> {', '.join(ans.addresses)} (IPv6, inside the VPC) accept TLS "
                                   f"(connect ≤ {slowest} ms)", evidence=evidence)


def _failure_cause(ctx: Context, service: str, failed: List[Dict[str, Any]], host: str) -> "tuple[str, Dict[str, Any]]":
    """What the EC2 view proves about IPv6 timeouts (an SG rule for IPv4 only is the usual one)."""
    from .ec2view import Ec2View
    from .endpoints import _endpoints_known, _sg_causes  # endpoints imports this module: not at load

    ips = ", ".join(d["ip"] for d in failed)
    view = ctx.data("ec2.api")
    if all(d.get("tcp") == "timeout" for d in failed) and isinstance(view, Ec2View) and _endpoints_known(view):
        proven = _sg_causes(view, view.endpoint_for(service), failed[0]["ip"], ctx.facts)
        if proven:
            code, params = proven[0]
            return code, dict(params, ip=ips, host=host, service=service)
    if all(d.get("tcp") == "timeout" for d in failed):
        return "tcp_timeout", {"ip": ips, "host": host, "service": service}
    return "tls_failed", {"ip": ips, "host": host, "service": service,
                          "error": failed[0].get("tls_error") or failed[0].get("tcp_error")}


def run(ctx: Context) -> Outcome:
    facts = ctx.facts
    kind = mode(facts)
    evidence: Dict[str, Any] = {"mode": kind, "ipv6s": list(facts.ipv6s), "local_ipv4": facts.local_ipv4,
                                "subnet_ipv6_cidrs": list(facts.subnet_ipv6_cidrs),
                                "vpc_ipv6_cidrs": list(facts.vpc_ipv6_cidrs), "imds_endpoint": facts.imds_endpoint}
    if kind == "none" and facts.imds_state not in ("ok", "skipped"):
        # IMDS did not say: the interfaces here tell whether this is an IPv6-only subnet.
        ipv4s, ipv6s = local_addresses()
        evidence.update(local_ipv4s=ipv4s, local_ipv6s=ipv6s)
        if ipv6s and not ipv4s:
            return outcome(Finding(CHECK_ID, Status.OK, f"IPv6-only subnet, by the interfaces here ({', '.join(ipv6s)}; "
                                   "no IPv4 address): IMDS and the resolver are reachable only over IPv6",
                                   evidence=dict(evidence, mode="ipv6_only"), verified=False), data={"mode": "ipv6_only"})
        return outcome(Finding(CHECK_ID, Status.OK, "IPv6 not known: IMDS did not answer", evidence=evidence,
                               verified=False), data={"mode": kind})
    if kind == "none":
        return outcome(Finding(CHECK_ID, Status.OK, "No IPv6 address on this instance's ENI: IPv4 only",
                               evidence=evidence), data={"mode": kind})
    if kind == "ipv6_only":
        agent = agent_imds_env(ctx)
        evidence["ssm_agent_imds_env"] = agent
        return outcome(Finding(
            CHECK_ID, Status.OK,
            f"IPv6-only subnet: {', '.join(facts.ipv6s)} in {', '.join(facts.subnet_ipv6_cidrs) or 'its IPv6 CIDR'}, "
            f"no IPv4 address; the Amazon resolver is {RESOLVER6}, IMDS [fd00:ec2::254], endpoints are dialled over "
            f"IPv6 (AAAA){_agent_text(agent)}", evidence=evidence), data={"mode": kind})
    summary = Finding(CHECK_ID, Status.OK, f"Dual-stack: {facts.local_ipv4} and {', '.join(facts.ipv6s)}; "
                                           "the IPv6 side of each endpoint is checked (ipv6.<svc>)", evidence=evidence)
    resolver = ctx.data("resolver")
    if not isinstance(resolver, Mapping) or not resolver.get("server"):
        return outcome(summary, data={"mode": kind})
    tls_ctx = tls_context(ca_bundle_from(ctx.settings.ca_bundle))
    per_service = workers.map_all(lambda s: _service(ctx, s, str(resolver["server"]), tls_ctx),
                                  list(ctx.settings.services))
    return Outcome((summary, *per_service), {"mode": kind})


def checks(settings: Settings) -> List[Check]:
    wait = settings.dns_timeout_s + settings.connect_timeout_s + settings.tls_timeout_s + 1.0
    return [Check(CHECK_ID, run, wants=("resolver", "ec2.api"), timeout_s=wait)]
