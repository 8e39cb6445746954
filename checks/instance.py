"""The instance itself: ``instance.public_ip``, ``instance.profile`` (the SSM agent: ``checks/ssmagent.py``).

From IMDS facts (``public-ipv4`` is 404 when the instance has none; ``iam/info`` is 404 when no
instance profile is attached). None of these touches the network, so they are fast and independent
of the DNS checks.
"""
from __future__ import annotations

from typing import List

from .causes import explain
from .model import Check, Context, Facts, Finding, MissingFact, Outcome, Settings, Status, outcome


def _known(facts: Facts, name: str) -> bool:
    """A fact is trustworthy when IMDS answered or the config set it; None then means "none"."""
    return facts.imds_state == "ok" or name in facts.sources


# --- instance.public_ip / instance.profile ------------------------------------------------------

def run_public_ip(ctx: Context) -> Outcome:
    facts = ctx.facts
    if not _known(facts, "public_ipv4"):
        raise MissingFact("public_ipv4")
    ev = {"public_ipv4": facts.public_ipv4, "source": facts.sources.get("public_ipv4", "imds")}
    if facts.public_ipv4:
        return outcome(Finding("instance.public_ip", Status.WARNING,
                               f"the instance has a public IPv4 address {facts.public_ipv4}", evidence=ev,
                               **explain("public_ip_assigned", public_ipv4=facts.public_ipv4,
                                         subnet_id=facts.subnet_id)), data=ev)
    return outcome(Finding("instance.public_ip", Status.OK, "no public IPv4 address", evidence=ev), data=ev)


def run_profile(ctx: Context) -> Outcome:
    facts = ctx.facts
    if not _known(facts, "instance_profile_arn"):
        raise MissingFact("instance_profile_arn")
    arn = facts.instance_profile_arn
    ev = {"instance_profile_arn": arn, "source": facts.sources.get("instance_profile_arn", "imds")}
    if arn:
        return outcome(Finding("instance.profile", Status.OK, f"instance profile {arn}", evidence=ev), data=ev)
    # No data: without credentials nothing that signs AWS calls can work.
    return outcome(Finding("instance.profile", Status.CRITICAL, "no instance profile attached (IMDS iam/info: 404)",
                           evidence=ev, **explain("no_instance_profile", instance_id=facts.instance_id)))


def checks(settings: Settings) -> List[Check]:
    return [
        Check("instance.public_ip", run_public_ip, timeout_s=1.0),
        Check("instance.profile", run_profile, timeout_s=1.0),
    ]
