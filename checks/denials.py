"""Which policy refused a signed call, read from AWS's own answer.

Classified by the structured error code first, then by the policy-type clause AWS appends to the
message (IAM User Guide, "Troubleshoot access denied error messages"):

    User: <principal> is not authorized to perform: <action> on resource: <arn>
        because no <policy type> allows the <action> action          (implicit deny)
        with an explicit deny in a <policy type>                     (explicit deny)

where <policy type> is one of: identity-based policy, resource-based policy, permissions
boundary, service control policy, resource control policy, session policy, VPC endpoint policy.
Older answers, ec2messages, and S3 answers to callers outside the bucket owner's account or
organization carry no clause ("Access Denied"); a HEAD has no body at all. Those are
``ambiguous``: the finding names every candidate instead of guessing one.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Tuple

# The error codes AWS services use for an authorization refusal.
DENIED_CODES = frozenset({"AccessDeniedException", "AccessDenied", "UnauthorizedOperation",
                          "UnauthorizedAccess", "Forbidden", "403"})

# Longest first where one clause contains another ("policy" alone is in all of them).
_KINDS: Tuple[Tuple[str, str], ...] = (
    ("vpc endpoint policy", "endpoint_policy"),
    ("service control polic", "scp"),
    ("resource control polic", "rcp"),
    ("permissions boundar", "permissions_boundary"),
    ("session polic", "session_policy"),
    ("identity-based polic", "identity_policy"),
    ("resource-based polic", "resource_policy"),
)
KINDS = tuple(kind for _, kind in _KINDS) + ("ambiguous",)

# What each kind means in words, for causes and summaries.
KIND_WORDS = {
    "identity_policy": "the instance role's identity-based policies",
    "endpoint_policy": "the VPC endpoint policy",
    "scp": "a service control policy (AWS Organizations)",
    "rcp": "a resource control policy (AWS Organizations)",
    "permissions_boundary": "the role's permissions boundary",
    "session_policy": "a session policy",
    "resource_policy": "a resource-based policy (e.g. the bucket policy or key policy)",
    "ambiguous": "a policy AWS did not name",
}

_ACTION = re.compile(r"not authorized to perform:? ([A-Za-z0-9-]+:[A-Za-z0-9*]+)")
_RESOURCE = re.compile(r'on resource:? "?([^"\s]+?)"?(?:\s|$)')
_PRINCIPAL = re.compile(r"User: (arn:[^\s]+)")


@dataclass(frozen=True)
class Denial:
    kind: str  # one of KINDS
    explicit: bool  # an explicit Deny statement (True) or no Allow (False); False when unknown
    action: Optional[str] = None
    resource: Optional[str] = None
    principal: Optional[str] = None

    @property
    def words(self) -> str:
        return KIND_WORDS[self.kind]

    @property
    def how(self) -> str:
        if self.kind == "ambiguous":
            return "denied (AWS did not say which policy)"
        return f"explicitly denied by {self.words}" if self.explicit else f"not allowed by {self.words}"


def is_denial(code: Optional[str], status: Optional[int] = None) -> bool:
    """Whether an error answer is an authorization refusal (not a throttle, a bad request, …)."""
    return (code or "") in DENIED_CODES or (status == 403 and not code)


def classify(code: Optional[str], message: Optional[str]) -> Denial:
    """The policy type that refused, from an AWS error's code and message."""
    text = (message or "").strip()
    lower = text.lower()
    kind = "ambiguous"
    for clause, name in _KINDS:
        if clause in lower:
            kind = name
            break
    explicit = kind != "ambiguous" and "explicit deny" in lower
    action = _first(_ACTION, text)
    resource = _first(_RESOURCE, text)
    principal = _first(_PRINCIPAL, text)
    return Denial(kind=kind, explicit=explicit, action=action, resource=resource, principal=principal)


def _first(pattern: "re.Pattern[str]", text: str) -> Optional[str]:
    match = pattern.search(text)
    return match.group(1).rstrip(".,") if match else None
