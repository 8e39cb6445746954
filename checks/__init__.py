"""The probes. One module per concern; ONE explicit registry below.

Each registry entry is a factory ``(Settings) -> list[Check]`` (per-service checks depend on the
configured services). The runner (``vpce_doctor.runner``) owns ordering, concurrency, timing and
the overall result; see ``checks.model`` for the contract.
"""
from __future__ import annotations

from typing import Callable, Dict, List

from . import clock, ec2api, egress, endpoints, instance, resolver, s3, session, ssmagent, ssmapi
from .model import Check, Settings

REGISTRY: Dict[str, Callable[[Settings], List[Check]]] = {
    "instance": instance.checks,  # instance.public_ip, instance.profile
    "ssm_agent": ssmagent.checks,  # ssm_agent, ssm_agent.{user,version,proxy,log,disk,config}
    "resolver": resolver.checks,  # resolver, resolver.system
    "ec2": ec2api.checks,  # ec2.api (the EC2 API view, for identity and sharper causes)
    "endpoints": endpoints.checks,  # dns.<svc>, eni.<svc>, reach.<svc>[.<ip>]
    "s3": s3.checks,  # s3.dns, s3.route, s3.api, s3.object
    "egress": egress.checks,  # egress.<host>
    "ssmapi": ssmapi.checks,  # iam.credentials, auth.ssm, ssm.preferences (does AWS accept us)
    "clock": clock.checks,  # clock (the Date of AWS's answers vs ours)
    "session": session.checks,  # session.requirements (+ session.kms / .logs / .s3 when the preferences need them)
}


def build(settings: Settings) -> List[Check]:
    """Every check for these settings, in registry order."""
    out: List[Check] = []
    for factory in REGISTRY.values():
        out.extend(factory(settings))
    return out
