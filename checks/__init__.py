"""The probes. One module per concern; ONE explicit registry below.

Each registry entry is a factory ``(Settings) -> list[Check]`` (per-service checks depend on the
configured services). The runner (``vpce_doctor.runner``) owns ordering, concurrency, timing and
the overall result; see ``checks.model`` for the contract.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Dict, List

from .model import Check, Settings


@lru_cache(maxsize=1)
def _registry() -> Dict[str, Callable[[Settings], List[Check]]]:
    # The check modules load on first use, not with the package: `vpce-doctor check` starts the
    # isolation probe (checks.egress) before the rest of them, botocore and IMDS are loaded.
    from . import clock, dynamodb, ec2api, egress, endpoints, instance, ipv6, resolver, s3, session, ssmagent, ssmapi

    return {
        "instance": instance.checks,  # instance.public_ip, instance.profile
        "ssm_agent": ssmagent.checks,  # ssm_agent, ssm_agent.{user,version,proxy,log,disk,config}
        "resolver": resolver.checks,  # resolver, resolver.system
        "ipv6": ipv6.checks,  # instance.ipv6 (none | dual_stack | ipv6_only), ipv6.<svc> when dual-stack
        "ec2": ec2api.checks,  # ec2.api (the EC2 API view, for identity and sharper causes)
        "endpoints": endpoints.checks,  # dns.<svc>, eni.<svc>, reach.<svc>[.<ip>]
        "s3": s3.checks,  # s3.dns, s3.route, s3.api, s3.object
        "dynamodb": dynamodb.checks,  # dynamodb.dns, .route, .api (configured, or a gateway endpoint seen)
        "egress": egress.checks,  # egress.<host>
        "ssmapi": ssmapi.checks,  # iam.credentials, auth.ssm, ssm.preferences (does AWS accept us)
        "clock": clock.checks,  # clock (the Date of AWS's answers vs ours)
        "session": session.checks,  # session.requirements (+ session.kms / .logs / .s3 when the preferences need them)
    }


def __getattr__(name: str) -> Any:  # PEP 562: REGISTRY is built on first use
    if name == "REGISTRY":
        return _registry()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build(settings: Settings) -> List[Check]:
    """Every check for these settings, in registry order."""
    out: List[Check] = []
    for factory in _registry().values():
        out.extend(factory(settings))
    return out
