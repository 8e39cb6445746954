"""IMDS over IPv6: the ENI's IPv6 facts and the fallback to ``http://[fd00:ec2::254]``.

AWS-FACTS "IMDS": the IPv6 endpoint exists on Nitro instances when ``http-protocol-ipv6`` is enabled
(default disabled). An instance in an IPv6-only subnet has no IPv4 address, so 169.254.169.254 is
unreachable there (no route: the connect fails at once) and only the IPv6 endpoint answers.

The fallback is tried only when the IPv4 endpoint is *unreachable* (refused, no route): a 403
(disabled) or a timeout (hop limit) is the same over IPv6, and waiting on a second endpoint there
would only cost time. It shares the IMDS budget of the gather.

Paths (per MAC, 404 when the ENI has no IPv6; 404 is normal): ``ipv6s``, ``subnet-ipv6-cidr-blocks``,
``vpc-ipv6-cidr-blocks``. An IPv6-only ENI answers 404 for ``local-ipv4`` and ``subnet-ipv4-cidr-block``
too; those two are then no failure.
"""
from __future__ import annotations

import ipaddress
from typing import Any, Dict, List, Optional, Tuple

from .config import Invalid, show

IPV6_ENDPOINT = "http://[fd00:ec2::254]"
IPV4_ENDPOINT = "http://169.254.169.254"
# Facts an IPv6-only ENI does not have (IMDS answers 404): a failure only when the ENI has no IPv6 either.
IPV4_ONLY_FACTS = ("local_ipv4", "subnet_cidr")


def ipv6_address(text: str) -> str:
    expected = "an IPv6 address like fd0e:5a00:0:1::10"
    try:
        return str(ipaddress.IPv6Address(text.strip()))
    except ValueError:
        raise Invalid(f"{show(text)} is not an IPv6 address", expected) from None


def ipv6_cidr(text: str) -> str:
    expected = "an IPv6 CIDR block like fd0e:5a00::/56"
    if "/" not in text:
        raise Invalid(f"{show(text)} has no prefix length", expected)
    try:
        return str(ipaddress.IPv6Network(text.strip(), strict=False))
    except ValueError:
        raise Invalid(f"{show(text)} is not an IPv6 CIDR block", expected) from None


def fallback_endpoint(configured: str, state: str) -> Optional[str]:
    """The IPv6 endpoint to try after the configured IPv4 one failed with ``state``; None: no try."""
    if state != "unreachable" or configured.rstrip("/") != IPV4_ENDPOINT:
        return None
    return IPV6_ENDPOINT


_announced = False


def announce(base: str) -> None:
    """Tell the checks' AWS clients which IMDS answered: botocore asks 169.254.169.254 for the
    instance role's credentials unless told otherwise (config ``ec2_metadata_service_endpoint``)."""
    global _announced
    if base != IPV6_ENDPOINT and not _announced:
        return  # the usual case: nothing to tell, nothing to import
    from .checks import ipv6  # only now: the checks package loads late (startup speed)

    ipv6.use_imds_endpoint(base if base == IPV6_ENDPOINT else None)
    _announced = base == IPV6_ENDPOINT


def ssm_agent_env() -> Dict[str, Any]:
    """The IMDS variables of the running SSM agent (checks/ipv6.ssm_agent_imds_env); {} on any trouble."""
    from .checks import ipv6

    try:
        return ipv6.ssm_agent_imds_env()
    except Exception:  # noqa: BLE001 - evidence only; the warning stands without it
        return {}


def agent_told(agent: Dict[str, Any]) -> bool:
    from .checks import ipv6

    return ipv6.agent_uses_ipv6_imds(agent)


def both_failed(state: str, cause: Optional[str], error4: str, error6: Optional[str]) -> Tuple[str, Optional[str], str]:
    """(state, cause, error) when IPv4 failed with ``error4`` and IPv6 with ``error6`` (None: not
    tried). No IPv4 route at all (ENETUNREACH) means an IPv6-only ENI; [fd00:ec2::254] then is the
    only IMDS, and it is off unless enabled (AWS: disabled by default, also in IPv6-only subnets)."""
    if error6 is None:
        return state, cause, error4
    text = f"{error4}; {error6}"
    if "Network is unreachable" in error4 or "[Errno 101]" in error4:
        return "unreachable", "imds_ipv6_disabled", text
    return state, cause, text


def missing_ipv4_failures(values: Dict[str, Any], base: str) -> List[str]:
    """404s for the IPv4 facts that are failures: the ENI has no IPv6 either (not IPv6-only).
    Returns the failure messages (the same text a required path gives)."""
    if values.get("ipv6s"):
        return []
    paths = {"local_ipv4": "local-ipv4", "subnet_cidr": "network/interfaces/macs/<mac>/subnet-ipv4-cidr-block"}
    return [f"{base} GET /latest/meta-data/{paths[f]}: 404 Not Found" for f in IPV4_ONLY_FACTS
            if f in values and values[f] is None]


def ssm_agent_note() -> str:
    """What an IPv6-only IMDS means for the SSM agent (aws/amazon-ssm-agent @1c217c89:
    common/identity/availableidentities/ec2/ec2_identity.go builds ``ec2metadata.New(session.New())``;
    aws-sdk-go v1's default is ``http://169.254.169.254`` (aws/endpoints/v3model.go) unless
    AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6 or AWS_EC2_METADATA_SERVICE_ENDPOINT is set)."""
    return ("the SSM agent's AWS SDK (aws-sdk-go) asks http://169.254.169.254 unless its environment sets "
            "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6")
