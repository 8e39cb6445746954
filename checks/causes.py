"""Every cause the agent can name, with its fix, in the words of the VPC console and API.

A finding refers to a cause by its stable code (JSON ``cause_code``; the fleet view and the
troubleshooting table group by it). ``explain(code, **params)`` fills the templates; a parameter
that is not known is simply left out of the ``cli`` command (the fix then names the console step).
Adding a cause: add it to the catalogue part of its concern (``causes_instance``, ``causes_network``,
``causes_gateway``, ``causes_aws``), nowhere else, with the ``resource`` kind its text points at
(checks/resources.py; pass the ids that kind needs to explain()); the code must be unique (a test checks).
"""
from __future__ import annotations

import re
from contextvars import ContextVar
from typing import Any, Dict, Mapping

from . import causes_aws, causes_gateway, causes_instance, causes_network, resources
from .causetype import Cause

_PARTS = (causes_instance.CAUSES, causes_network.CAUSES, causes_gateway.CAUSES, causes_aws.CAUSES)
CAUSES: Dict[str, Cause] = {c.code: c for part in _PARTS for c in part}
if len(CAUSES) != sum(len(part) for part in _PARTS):  # a code defined twice would silently shadow one
    raise ImportError("checks.causes: a cause code is defined twice")




# Causes that point at another finding ("fix that first"): a verdict names that finding, not these.
SYMPTOMS = frozenset({"ssm_agent_endpoints_failing", "ssm_agent_connected_path_failing", "ssm_agent_not_accepted",
                      "ssm_agent_waits_for",
                      "aws_call_blocked"})

_UNFILLED = re.compile(r"\{([a-z_]+)\}")

# What the instance knows about itself (IMDS or the config): vpc_id, subnet_id, region, … fill a
# fix's CLI command when the check that explains did not pass them. Set per check by the runner;
# the worker pool carries it into a check's own threads.
KNOWN_IDS: "ContextVar[Mapping[str, object]]" = ContextVar("vpce_doctor_known_ids", default={})


class _Partial(dict):  # leaves unknown {params} visible instead of raising
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _fmt(template: str, params: Dict[str, object]) -> str:
    return template.format_map(_Partial({k: v for k, v in params.items() if v not in (None, "", ())}))


def explain(code: str, **params: object) -> Dict[str, Any]:
    """``{"cause_code", "cause", "fix", "resource"}`` for a Finding. The fix ends with its CLI command,
    filled from ``params`` and then from what the instance knows (KNOWN_IDS); what nobody knows is a
    named ``<placeholder>``. ``resource`` is the AWS resource the cause points at (checks/resources.py)."""
    c = CAUSES[code]
    known = {k: v for k, v in KNOWN_IDS.get().items() if v not in (None, "", ())}
    merged = {**known, **{k: v for k, v in params.items() if v not in (None, "", ())}}
    fix = _fmt(c.fix, merged)
    if c.cli:
        cli = _fmt(c.cli, merged)
        cli = _UNFILLED.sub(lambda m: "<" + m.group(1).replace("_", "-") + ">", cli)
        fix = f"{fix}. CLI: {cli}"
    cause = _fmt(c.cause, merged)
    return {"cause_code": code, "cause": cause, "fix": fix,
            "resource": resources.build(c.resource, merged, code)}


def known_ids(facts: object) -> Dict[str, object]:
    """KNOWN_IDS from the instance facts (checks.model.Facts): only ids that name this instance's
    own resources — never a security group (a fix's sg_id may be the endpoint's, not ours)."""
    get = lambda name: getattr(facts, name, None)  # noqa: E731 - a local shorthand
    arn = str(get("instance_profile_arn") or "")
    credentials = get("credentials") or {}
    role = credentials.get("role") if isinstance(credentials, Mapping) else None
    return {"vpc_id": get("vpc_id"), "subnet_id": get("subnet_id"), "region": get("region"),
            "instance_id": get("instance_id"), "subnet_cidr": get("subnet_cidr"), "vpc_cidr": get("vpc_cidr"),
            "partition": get("partition"), "role": role,
            "profile": arn.rsplit("/", 1)[-1] if ":instance-profile/" in arn else None}
