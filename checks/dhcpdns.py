"""The resolver the instance really uses: a resolv.conf nameserver that is not the Amazon resolver
and answers the endpoint names with public addresses, and the DHCP option set that put it there.

On EC2, /etc/resolv.conf's nameservers come from the VPC's DHCP option set (``domain-name-servers``;
``AmazonProvidedDNS`` is the Amazon resolver). A custom DNS server that does not forward
amazonaws.com to the VPC resolver answers from public DNS, so every program here — the SSM agent
included — gets the public addresses although the Amazon resolver gives the endpoints' private ones.
With the EC2 API reachable (the ``ec2.api`` view), DescribeVpcs names the VPC's option set and
DescribeDhcpOptions shows its servers and an option set with AmazonProvidedDNS to switch back to;
those two calls are made here, only when the fault is seen, so a healthy run never pays for them.
"""
from __future__ import annotations

from concurrent import futures
from typing import Any, Dict, List, Mapping, Optional, Sequence

from . import workers
from .causes import explain
from .ec2view import Ec2View
from .model import Context

AMAZON_PROVIDED_DNS = "AmazonProvidedDNS"
CONNECT_TIMEOUT_S = 0.5
_RESERVE_S = 0.3  # stop waiting this long before the check's deadline, to report what is known


def _servers(options: Mapping[str, Any]) -> List[str]:
    for conf in options.get("DhcpConfigurations") or ():
        if conf.get("Key") == "domain-name-servers":
            return [str(v.get("Value")) for v in conf.get("Values") or () if v.get("Value")]
    return []


def _describe(ctx: Context, vpc_id: str) -> Dict[str, Any]:
    from . import awsclient

    ec2 = awsclient.client(ctx, "ec2", connect_timeout=CONNECT_TIMEOUT_S, read_timeout=ctx.settings.api_timeout_s)
    vpcs = ec2.describe_vpcs(VpcIds=[vpc_id]).get("Vpcs") or []
    dopt = str(vpcs[0].get("DhcpOptionsId") or "") if vpcs else ""
    out: Dict[str, Any] = {"dhcp_options_id": dopt or None, "domain_name_servers": []}
    if dopt and dopt != "default":
        sets = ec2.describe_dhcp_options(DhcpOptionsIds=[dopt]).get("DhcpOptions") or []
        out["domain_name_servers"] = _servers(sets[0]) if sets else []
    amazon = ec2.describe_dhcp_options(Filters=[{"Name": "key", "Values": ["domain-name-servers"]},
                                                {"Name": "value", "Values": [AMAZON_PROVIDED_DNS]}])
    ids = [str(o["DhcpOptionsId"]) for o in amazon.get("DhcpOptions") or () if _servers(o) == [AMAZON_PROVIDED_DNS]]
    out["amazon_dhcp_options_id"] = ids[0] if ids else None
    return out


def dhcp_options(ctx: Context) -> Dict[str, Any]:
    """The VPC's DHCP option set as far as the EC2 API shows it; ``known`` False with a ``reason``
    when it cannot (no view, not permitted, no answer in time)."""
    view = ctx.data("ec2.api") if ctx.ran("ec2.api") else None
    if not isinstance(view, Ec2View) or not view.available:
        reason = view.reason if isinstance(view, Ec2View) else "the EC2 API view did not run"
        return {"known": False, "reason": reason or "the EC2 API is not available"}
    vpc_id = view.vpc_id or ctx.facts.vpc_id
    if not vpc_id:
        return {"known": False, "reason": "vpc_id unknown"}
    job = workers.run(lambda: _describe(ctx, vpc_id))
    # botocore resolves the API name with the system resolver, which no timeout of ours bounds.
    done, _ = futures.wait([job], timeout=max(0.1, ctx.remaining() - _RESERVE_S))
    if not done:
        return {"known": False, "reason": "no answer from the EC2 API in time"}
    try:
        return dict(job.result(), known=True)
    except Exception as exc:  # noqa: BLE001 - an API refusal or a network error: reported, not raised
        from .ec2api import error_text

        reason, _ = error_text(exc)
        return {"known": False, "reason": f"DescribeVpcs/DescribeDhcpOptions: {reason}"}


def custom_dns_cause(ctx: Context, nameserver: str, path: str, hosts: Sequence[str], system: Sequence[str],
                     amazon: Sequence[str], amazon_server: str, vpc_resolver: Optional[str],
                     evidence: Dict[str, Any]) -> Dict[str, Optional[str]]:
    """The cause for ``nameserver`` answering ``hosts`` publicly, with the DHCP option set behind it."""
    dhcp = dhcp_options(ctx)
    evidence["dhcp_options"] = dhcp
    if dhcp.get("known") and dhcp.get("dhcp_options_id"):
        servers = ", ".join(dhcp.get("domain_name_servers") or ()) or "none"
        origin = (f"The VPC's DHCP option set {dhcp['dhcp_options_id']} hands out domain-name-servers={servers}"
                  + ("" if nameserver in (dhcp.get("domain_name_servers") or ()) else
                     f" (not {nameserver}: resolv.conf was set another way, e.g. by hand or a local "
                     f"resolver's config)"))
    else:
        origin = (f"On EC2 resolv.conf's servers come from the VPC's DHCP option set (domain-name-servers); "
                  f"the EC2 API could not confirm it ({dhcp.get('reason')})")
    return explain("custom_dns_public_answers", nameserver=nameserver, path=path, hosts=", ".join(hosts),
                   system_answers=", ".join(system), amazon_answers=", ".join(amazon), resolver=amazon_server,
                   vpc_resolver=vpc_resolver or amazon_server, origin=origin,
                   dhcp_options_id=dhcp.get("dhcp_options_id"), vpc_id=ctx.facts.vpc_id,
                   amazon_dhcp_options_id=dhcp.get("amazon_dhcp_options_id"))
