"""Names the Amazon resolver should know but does not: which zone shadows them, and what AWS wants
fixed first.

* A Route 53 private hosted zone associated with the VPC answers for its whole namespace: a name
  under it that the zone lacks is NXDOMAIN, although public DNS has it (Route 53 "Considerations
  when working with a private hosted zone": "If there's a matching private hosted zone but there's
  no record that matches the domain name and type in the request, Resolver doesn't forward the
  request to a public DNS resolver. Instead, it returns NXDOMAIN"). Route 53 Resolver picks the
  most specific zone, so an endpoint's own Private DNS zone (``ssm.<region>.amazonaws.com``) still
  wins over a hand-made ``<region>.amazonaws.com``; what stays shadowed is every other name under
  it. NXDOMAIN (not NODATA) means the zone is a proper parent of the name: a zone named exactly
  like it would hold its apex. So the likely zone is the deepest common parent of the names that
  fail, which siblings that resolve make plausible (they are records of that zone, or of a more
  specific one).
* S3 answers every virtual-hosted name ``<bucket>.s3.<region>.amazonaws.com`` publicly (any bucket
  label), so an NXDOMAIN there while the regional name resolves is a zone for the S3 name without a
  wildcard record.
* AWS refuses Private DNS on an endpoint (create or modify) while the VPC's enableDnsSupport or
  enableDnsHostnames is false (``InvalidParameter: Enabling private DNS requires both
  enableDnsSupport and enableDnsHostnames VPC attributes set to true for vpc-…``): that step first.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from . import workers
from .causes import explain
from .dnsquery import DnsAnswer, query_a
from .ec2view import EndpointView
from .hostnames import service_hostname
from .model import Context, Facts

# A bucket every region has and the SSM agent reads (agent updates, AWS-FACTS "Endpoints SSM
# needs"): its virtual-hosted name stands in for the user's when no bucket is configured.
SSM_BUCKET = "aws-ssm-{region}"
_MIN_ZONE_LABELS = 2  # "amazonaws.com" is the shallowest zone worth naming
_RESERVE_S = 0.2


# --- which zone shadows the names that fail ---------------------------------------------------------

def parents(name: str) -> List[str]:
    """Proper parents of ``name``, deepest first: a.b.c.d -> [b.c.d, c.d]."""
    labels = name.rstrip(".").lower().split(".")
    return [".".join(labels[i:]) for i in range(1, len(labels) - 1)]


def shadow_zone(failing: Sequence[str], resolving: Sequence[str] = ()) -> Optional[str]:
    """The deepest common proper parent of the names that fail (NXDOMAIN); None when they share
    none deeper than two labels. ``resolving`` siblings do not move it (they may be the zone's own
    records or a more specific zone's), they only back it up in the evidence."""
    if not failing:
        return None
    common = set(parents(failing[0]))
    for name in failing[1:]:
        common &= set(parents(name))
    candidates = [z for z in parents(failing[0]) if z in common and len(z.split(".")) >= _MIN_ZONE_LABELS]
    return candidates[0] if candidates else None


def under(name: str, zone: str) -> bool:
    name, zone = name.rstrip(".").lower(), zone.rstrip(".").lower()
    return name == zone or name.endswith("." + zone)


def bucket_hostname(regional_host: str, bucket: Optional[str], region: str) -> str:
    """The virtual-hosted name botocore dials for ``bucket`` (the SSM agent's bucket when none is
    configured or the name holds dots, which botocore sends path-style)."""
    label = bucket if bucket and "." not in bucket else SSM_BUCKET.format(region=region)
    return f"{label}.{regional_host}"


def sibling_names(ctx: Context) -> List[str]:
    """What else to ask when a name fails: every configured service, S3's regional name and a
    virtual-hosted bucket name under it."""
    region = str(ctx.facts.require("region"))
    names = [service_hostname(s, region, ctx.settings.fips) for s in ctx.settings.services]
    s3 = service_hostname("s3", region)
    names += [s3, bucket_hostname(s3, ctx.settings.s3_bucket, region)]
    return list(dict.fromkeys(names))


def _left(ctx: Context, timeout: float) -> float:
    """``timeout``, but leave the check time to report (these are second looks, after the first)."""
    return max(0.05, min(timeout, ctx.remaining() - _RESERVE_S))


def _ask_all(names: Sequence[str], server: str, timeout: float, port: int = 53) -> Dict[str, DnsAnswer]:
    return dict(zip(names, workers.map_all(lambda n: query_a(n, server, timeout, port=port), list(names))))


def nxdomain_cause(ctx: Context, host: str, server: str, timeout: float, params: Mapping[str, Any],
                   evidence: Dict[str, Any], port: int = 53) -> Dict[str, Optional[str]]:
    """The cause of an NXDOMAIN for ``host``: asks the siblings (at once, each bounded by
    ``timeout``) and names the zone their pattern points to; ``dns_nxdomain`` when there is none."""
    others = [n for n in sibling_names(ctx) if n != host]
    answers = _ask_all(others, server, _left(ctx, timeout), port)
    failing = [host] + [n for n in others if answers[n].outcome == "nxdomain"]
    resolving = [n for n in others if answers[n].outcome == "answer"]
    # Only a pattern names a zone: with nothing resolving, a wrong region or name fits as well.
    zone = shadow_zone(failing, resolving) if resolving else None
    evidence["siblings"] = {n: list(a.addresses) or a.outcome for n, a in answers.items()}
    if zone is None:
        return explain("dns_nxdomain", zone=host.split(".", 1)[-1], **params)
    evidence["shadow_zone"] = zone
    return zone_cause(zone, failing, [n for n in resolving if under(n, zone)], ctx.facts, params)


def public_record_cause(ctx: Context, host: str, server: str, timeout: float, params: Mapping[str, Any],
                        evidence: Dict[str, Any], port: int = 53) -> Optional[Dict[str, Optional[str]]]:
    """Public answers the EC2 view cannot explain: when siblings under a common parent of ``host`` are
    NXDOMAIN, a zone answers for that namespace (public DNS is not asked there), so the public
    answer is that zone's own record. None when the siblings show no such zone."""
    others = [n for n in sibling_names(ctx) if n != host]
    answers = _ask_all(others, server, _left(ctx, timeout), port)
    failing = [n for n in others if answers[n].outcome == "nxdomain"]
    zone = shadow_zone(failing) if failing else None
    evidence["siblings"] = {n: list(a.addresses) or a.outcome for n, a in answers.items()}
    if zone is None or not under(host, zone):
        return None
    evidence["shadow_zone"] = zone
    merged = dict(params, zone=zone, failing=", ".join(failing), vpc_id=ctx.facts.vpc_id, region=ctx.facts.region)
    return explain("dns_shadow_zone_public_record", **merged)


def zone_cause(zone: str, failing: Sequence[str], resolving: Sequence[str], facts: Facts,
               params: Mapping[str, Any]) -> Dict[str, Optional[str]]:
    inside = ", ".join(resolving) if resolving else "none"
    merged = dict(params, zone=zone, failing=", ".join(failing), resolving=inside, vpc_id=facts.vpc_id,
                  region=facts.region)
    return explain("dns_shadow_zone", **merged)


def bucket_name_shadowed(ctx: Context, regional_host: str, server: str, timeout: float,
                         port: int = 53) -> Optional[Tuple[str, Dict[str, Any], Dict[str, Optional[str]]]]:
    """After S3's regional name resolved: does a virtual-hosted bucket name under it resolve too?
    (summary, evidence, cause) when it is NXDOMAIN; None otherwise (any answer, or no answer in time:
    s3.dns already proved the resolver answers, and a lost packet is no zone)."""
    region = str(ctx.facts.require("region"))
    name = bucket_hostname(regional_host, ctx.settings.s3_bucket, region)
    if ctx.remaining() < 2 * _RESERVE_S:
        return None  # no time left to ask: not evidence of anything
    ans = query_a(name, server, _left(ctx, timeout), port=port)
    evidence = {"bucket_host": name, "bucket_host_outcome": ans.outcome, "bucket_host_answers": list(ans.addresses)}
    if ans.outcome != "nxdomain":
        return None
    zone = shadow_zone([name]) or regional_host
    evidence["shadow_zone"] = zone
    cause = zone_cause(zone, [name], [regional_host], ctx.facts,
                       {"host": name, "resolver": server, "answers": "NXDOMAIN"})
    summary = (f"{regional_host} resolves, but the virtual-hosted bucket name {name} is NXDOMAIN at {server}: "
               f"a private hosted zone for {zone} without a wildcard record")
    return summary, evidence, cause


# --- what AWS wants done first ------------------------------------------------------------------------

def dns_attributes_first(off: Sequence[str], ep: Optional[EndpointView], service: str, facts: Facts,
                         params: Mapping[str, Any]) -> Dict[str, Optional[str]]:
    """Public answers while a VPC DNS attribute is false and the endpoint lacks Private DNS (or is
    missing): the attribute first, since AWS refuses Private DNS until it is on; then the endpoint."""
    vpc = facts.vpc_id or "<vpc-id>"
    flags = {"enableDnsSupport": "--enable-dns-support", "enableDnsHostnames": "--enable-dns-hostnames"}
    attribute_cli = " && ".join(f"aws ec2 modify-vpc-attribute --vpc-id {vpc} {flags[a]} '{{\"Value\":true}}'"
                                for a in off)  # one attribute per call; DNS support before hostnames
    if ep is not None:
        state = f"the endpoint {ep.id} has Private DNS off"
        step = f"enable Private DNS on {ep.id}"
        endpoint_cli = f"aws ec2 modify-vpc-endpoint --vpc-endpoint-id {ep.id} --private-dns-enabled"
    else:
        region = facts.region or "<region>"
        state = f"there is no interface endpoint for {service}"
        step = f"create the interface endpoint com.amazonaws.{region}.{service} with Private DNS"
        endpoint_cli = (f"aws ec2 create-vpc-endpoint --vpc-id {vpc} --vpc-endpoint-type Interface --service-name "
                        f"com.amazonaws.{region}.{service} --subnet-ids {facts.subnet_id or '<subnet-id>'} "
                        f"--private-dns-enabled")
    attributes = " and ".join(off)
    return explain("vpc_dns_attribute_before_private_dns", attributes=attributes,
                   attributes_are=f"{attributes} {'are' if len(off) > 1 else 'is'}", endpoint_state=state,
                   endpoint_step=step, attribute_cli=attribute_cli, endpoint_cli=endpoint_cli, vpc_id=vpc,
                   **{k: v for k, v in params.items() if k != "vpc_id"})
