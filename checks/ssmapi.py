"""Does AWS accept this instance? ``iam.credentials``, ``auth.ssm``, ``ssm.preferences`` (the clock
that every signature depends on is ``checks.clock``).

The network checks prove that packets reach the endpoints; these prove that the service accepts
what the SSM agent sends, the way the agent itself would meet a refusal (AWS-FACTS "When AWS
refuses the instance"):

* ``iam.credentials``: the role credentials IMDS hands out (``iam/security-credentials/<role>``):
  ``AssumeRoleUnauthorizedAccess`` when the role's trust policy does not trust ec2.amazonaws.com,
  no role in the profile, an ``Expiration`` already past.
* ``auth.ssm``: ``ssm:ListInstanceAssociations`` for this instance, signed with those credentials,
  through the ssm endpoint — the agent's own read-only call, allowed by AmazonSSMManagedInstanceCore.
  A refusal is classified by policy type (``checks.denials``), a signature refusal by the clock.
* ``ssm.preferences``: ``ssm:GetDocument SSM-SessionManagerRunShell`` (the Session Manager
  preferences); its data always says what a session needs, read or assumed (``checks.session``).
* Every answer's ``Date`` header goes into the check's data (``clock``) for ``checks.clock``.

ec2messages and ssmmessages have no read-only call: every ec2messages action reads or acknowledges
the agent's message queue (GetMessages consumes a message meant for the agent) and every
ssmmessages action opens a channel. So they are not called; the ssm call proves the role and the
credentials (AmazonSSMManagedInstanceCore grants ec2messages:* and ssmmessages:* with ssm's
actions), and the agent's own log (``ssm_agent.log``) shows a refusal of those endpoints' policies.
"""
from __future__ import annotations

import calendar
import json
import re
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .awsjson import JsonAnswer, bounded, json_call
from .causes import explain
from .denials import classify, is_denial
from .hostnames import partition_name, service_hostname
from .model import Check, Context, Finding, MissingFact, Outcome, Settings, Status, outcome
from .resolver import misleads

CREDENTIALS, AUTH_SSM, PREFERENCES = "iam.credentials", "auth.ssm", "ssm.preferences"
PREFERENCES_DOCUMENT = "SSM-SessionManagerRunShell"
SSM_SKEW_S = 300  # SigV4: SSM, ec2messages, ssmmessages refuse signatures more than 5 min off
S3_SKEW_S = 900  # S3: RequestTimeTooSkewed beyond 15 min (MaxAllowedSkewMilliseconds 900000)
MAX_DOCUMENT_CHARS = 64 * 1024  # a Session preferences document is well under 2 KB
_EXPIRED = re.compile(r"Signature (?:expired|not yet current): (\d{8}T\d{6}Z) is (?:now earlier|still later) "
                      r"than (\d{8}T\d{6}Z) \((\d{8}T\d{6}Z) [-+] 5 min\.\)")


# --- iam.credentials ----------------------------------------------------------------------------------

def _epoch(iso: Optional[str]) -> Optional[float]:
    try:
        return float(calendar.timegm(time.strptime(str(iso), "%Y-%m-%dT%H:%M:%SZ")))
    except (TypeError, ValueError):
        return None


def run_credentials(ctx: Context) -> Outcome:
    facts = ctx.facts
    creds = dict(facts.credentials or {})
    if facts.imds_state == "skipped":
        # IMDS not used by choice (facts in the config): the signed calls use whatever botocore's
        # credential chain finds; auth.ssm still proves they are accepted.
        return outcome(Finding(CREDENTIALS, Status.OK, f"not checked: IMDS not used ({facts.imds_error}); the "
                               "signed calls use botocore's credential chain", evidence={"checked": False}),
                       data={"role": None})
    if facts.imds_state != "ok" or not creds:
        raise MissingFact("credentials")  # "blocked by imds"
    role = creds.get("role") or "<role>"
    ev: Dict[str, Any] = {k: v for k, v in creds.items() if k != "has_keys"}
    state, code = creds.get("state"), creds.get("code")
    arn = facts.instance_profile_arn or ""
    profile = arn.rsplit("/", 1)[-1] if "/" in arn else "<instance-profile>"

    def bad(summary: str, cause_code: str, **params: Any) -> Outcome:
        return outcome(Finding(CREDENTIALS, Status.CRITICAL, summary, evidence=ev,
                               **explain(cause_code, role=role, profile=profile, partition=facts.partition
                                         or partition_name(facts.region or ""), **params)))

    if state == "no_role":
        return bad(f"the instance profile {profile} holds no role: IMDS lists no security credentials",
                   "credentials_no_role")
    if state != "ok":
        return bad(f"IMDS gave no usable role credentials: {bounded(creds.get('message', state))}",
                   "credentials_unreadable", error=bounded(creds.get("message", state)))
    if code == "AssumeRoleUnauthorizedAccess":
        first = bounded(str(creds.get("message", "")).split(".")[0], 120)  # the rest is a documentation link
        return bad(f"IMDS: AssumeRoleUnauthorizedAccess for role {role} ({first})", "role_not_assumable")
    if code != "Success" or not creds.get("has_keys"):
        return bad(f"IMDS answered role {role} with Code {code!s}: {bounded(creds.get('message', ''))}",
                   "credentials_error", code=str(code), error=bounded(creds.get("message", "")))
    expires = _epoch(creds.get("expiration"))
    now = time.time()
    if expires is not None and expires <= now:
        return bad(f"role {role} credentials expired at {creds.get('expiration')} (local clock "
                   f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(now))})", "credentials_expired",
                   expiration=creds.get("expiration"))
    left = f", valid for {(expires - now) / 3600:.1f} h more" if expires is not None else ""
    return outcome(Finding(CREDENTIALS, Status.OK, f"role {role} credentials from IMDS (Code Success{left})",
                           evidence=ev), data={"role": role, "expiration": creds.get("expiration")})


# --- signed calls -------------------------------------------------------------------------------------

def _role_name(ctx: Context) -> str:
    data = ctx.data(CREDENTIALS)
    if isinstance(data, Mapping) and data.get("role"):
        return str(data["role"])
    role = (ctx.facts.credentials or {}).get("role")
    return str(role) if role else "<role-name>"


def _endpoint_id(ctx: Context, service: str) -> Optional[str]:
    view = ctx.data("ec2.api")
    if view is None or not getattr(view, "available", False):
        return None
    ep = view.endpoint_for(service)
    return ep.id if ep is not None else None


def refusal(ctx: Context, answer: JsonAnswer, service: str, action: str) -> Tuple[str, Dict[str, Optional[str]]]:
    """(summary, explain(...)) for an error answer of an SSM-family call."""
    code, message = answer.code or str(answer.status), answer.message
    full = answer.full_message or message
    partition = ctx.facts.partition or partition_name(ctx.facts.region or "")
    if is_denial(code, answer.status):
        denial = classify(code, full)
        params = dict(action=denial.action or action, role=_role_name(ctx), partition=partition,
                      service=service, endpoint_id=_endpoint_id(ctx, service), error=f"{code}: {message}")
        cause = {"identity_policy": "access_denied_identity_policy", "endpoint_policy": "access_denied_endpoint_policy",
                 "scp": "access_denied_scp", "rcp": "access_denied_scp",
                 "permissions_boundary": "access_denied_boundary"}.get(denial.kind, "access_denied_ambiguous"
                                                                         if denial.kind == "ambiguous"
                                                                         else "access_denied_other")
        params["policy"] = denial.words
        return f"{action}: {code}, {denial.how}", explain(cause, **params)
    if code == "InvalidSignatureException" and "Signature" in full and ("expired" in full or "not yet" in full):
        skew = (answer.clock or {}).get("skew_s")
        if skew is None:
            skew = _skew_from_message(full)
        return (f"{action}: InvalidSignatureException ({message})",
                explain("clock_skew", skew=skew_words(skew), limit="5 minutes", breaks="SSM (ssm, ec2messages, "
                        "ssmmessages): Session Manager and Run Command" + ("" if skew is None or abs(skew) <= S3_SKEW_S
                                                                             else ", and S3")))
    if code in ("ExpiredTokenException", "UnrecognizedClientException", "InvalidClientTokenId",
                "IncompleteSignature", "SignatureDoesNotMatch"):
        return f"{action}: {code}", explain("credentials_rejected", code=code, error=message, role=_role_name(ctx))
    if code == "BadAnswer":
        return f"{action}: {message}", explain("aws_bad_answer", service=service, action=action)
    if code in ("ThrottlingException", "TooManyRequestsException"):
        return f"{action}: {code} (throttled; try again)", explain("aws_throttled", service=service, error=message)
    return f"{action}: HTTP {answer.status} {code} {message}".rstrip(), explain("aws_error", service=service,
                                                                          error=f"{code}: {message}")


def _skew_from_message(message: str) -> Optional[float]:
    """SSM's "Signature expired: <signed> is now earlier than <limit> (<now> - 5 min.)": now - signed."""
    match = _EXPIRED.search(message)
    if not match:
        return None
    try:
        signed, now = (calendar.timegm(time.strptime(match.group(i), "%Y%m%dT%H%M%SZ")) for i in (1, 3))
    except ValueError:
        return None
    return float(signed - now)


def skew_words(skew: Optional[float]) -> str:
    if skew is None:
        return "off by more than 5 minutes"
    return f"{abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} AWS"


def _blocked_by_path(ctx: Context, service: str) -> Optional[str]:
    """The network check whose failure already explains a failed call: the system resolver sends
    the service's name elsewhere (as it would for the agent), or the path to it failed."""
    if misleads(ctx, service_hostname(service, ctx.facts.region or "", ctx.settings.fips)):
        return "resolver.system"
    for cid in (f"reach.{service}", f"dns.{service}"):
        if ctx.ran(cid) and ctx.data(cid) is None:
            return cid
    return None


def _transport(ctx: Context, fid: str, service: str, action: str, answer: JsonAnswer, ev: Dict[str, Any]) -> Finding:
    blocker = _blocked_by_path(ctx, service)
    if blocker:
        return Finding(fid, Status.CRITICAL, f"{action} failed ({answer.transport}): {blocker} failed first",
                       evidence=ev, blocked_by=blocker,
                       **explain("aws_call_blocked", blocker=blocker, action=action))
    return Finding(fid, Status.CRITICAL, f"{action} through {answer.endpoint_url or service}: {answer.transport}",
                   evidence=ev, **explain("aws_call_failed", action=action, service=service, error=answer.transport))


def _blocked_outcome(ctx: Context, fid: str, action: str) -> Optional[Outcome]:
    """Don't call when the path to the endpoint is already known broken: that finding is the cause."""
    blocker = _blocked_by_path(ctx, "ssm")
    if blocker is None:
        return None
    return outcome(Finding(fid, Status.CRITICAL, f"not run: blocked by {blocker}", blocked_by=blocker,
                           evidence={"action": action}, **explain("aws_call_blocked", blocker=blocker, action=action)))


def _evidence(answer: JsonAnswer, action: str) -> Dict[str, Any]:
    ev: Dict[str, Any] = {"action": action, "endpoint_url": answer.endpoint_url}
    if answer.code or answer.status:
        ev.update(error_code=answer.code, http_status=answer.status, message=answer.message)
    if answer.transport:
        ev["error"] = answer.transport
    if answer.clock:
        ev["aws_date"] = answer.clock
    return ev


def run_auth(ctx: Context) -> Outcome:
    start = time.monotonic()
    instance_id = ctx.facts.require("instance_id")
    action = "ssm:ListInstanceAssociations"
    blocked = _blocked_outcome(ctx, AUTH_SSM, action)
    if blocked is not None:
        return blocked
    answer = json_call(ctx, "ssm", "ListInstanceAssociations", {"InstanceId": instance_id, "MaxResults": 1})
    ev = _evidence(answer, action)
    data_clock = {"clock": answer.clock} if answer.clock else {}
    if answer.transport:
        # No data: dependents (the agent check) see that the service could not be asked.
        return outcome(_transport(ctx, AUTH_SSM, "ssm", action, answer, ev))
    if answer.response is not None:
        if not isinstance(answer.response.get("Associations"), list):
            ev["keys"] = sorted(str(k) for k in answer.response)[:10]
            return outcome(Finding(AUTH_SSM, Status.WARNING, f"{action}: the answer is not a ListInstanceAssociations "
                                   "reply (a proxy or an interceptor answered?)", evidence=ev,
                                   **explain("aws_bad_answer", service="ssm", action=action)), data=data_clock)
        n = len(answer.response["Associations"])
        # ec2messages and ssmmessages have no read-only action to try (module docstring): said here.
        ev["not_called"] = ("ec2messages, ssmmessages: no read-only action (GetMessages would consume the "
                            "agent's commands); the role is proven by this call, their endpoint policies by "
                            "the agent's log (ssm_agent.log)")
        return outcome(Finding(AUTH_SSM, Status.OK, f"SSM accepts this instance: {action} for {instance_id} "
                               f"answered ({n} association{'s' if n != 1 else ''} on the first page); "
                               "ec2messages/ssmmessages have no read-only call to try",
                               evidence=ev, duration_s=time.monotonic() - start),
                       data={"accepted": True, **data_clock})
    if answer.code == "InvalidInstanceId":
        # Authenticated and authorized; only the registration is missing (the agent's part).
        return outcome(Finding(AUTH_SSM, Status.WARNING, f"{action}: SSM accepts the signature and the role, but "
                               f"{instance_id} is not a registered managed node (InvalidInstanceId)", evidence=ev,
                               **explain("ssm_not_registered", instance_id=instance_id)),
                       data={"accepted": True, "registered": False, **data_clock})
    summary, cause = refusal(ctx, answer, "ssm", action)
    status = Status.WARNING if cause.get("cause_code") == "aws_throttled" else Status.CRITICAL
    return outcome(Finding(AUTH_SSM, status, summary, evidence=ev, **cause),
                   data={"accepted": None, **data_clock} if status == Status.WARNING else None)


# --- ssm.preferences ----------------------------------------------------------------------------------

def _document_inputs(response: Mapping[str, Any]) -> Tuple[Optional[Dict[str, Any]], str]:
    content = response.get("Content")
    if not isinstance(content, str) or len(content) > MAX_DOCUMENT_CHARS:
        return None, "the document has no readable Content"
    fmt = str(response.get("DocumentFormat") or "JSON").upper()
    try:
        if fmt == "YAML":
            import yaml

            doc = yaml.safe_load(content)
        else:
            doc = json.loads(content)
    except Exception:  # noqa: BLE001 - any parse error of a foreign document is "unreadable"
        return None, f"the document's {fmt} Content does not parse"
    inputs = doc.get("inputs") if isinstance(doc, dict) else None
    if not isinstance(inputs, dict):
        return None, "the document has no inputs mapping"
    clean = {str(k)[:64]: v for k, v in list(inputs.items())[:64]
             if isinstance(v, (str, bool, int, float)) or v is None}
    return clean, ""


def describe_preferences(inputs: Mapping[str, Any]) -> str:
    parts = []
    if inputs.get("kmsKeyId"):
        parts.append(f"KMS encryption ({bounded(inputs['kmsKeyId'], 120)})")
    if inputs.get("cloudWatchLogGroupName"):
        enc = ", encrypted" if _true(inputs.get("cloudWatchEncryptionEnabled")) else ""
        parts.append(f"CloudWatch Logs group {bounded(inputs['cloudWatchLogGroupName'], 120)}{enc}")
    if inputs.get("s3BucketName"):
        enc = ", encrypted" if _true(inputs.get("s3EncryptionEnabled")) else ""
        parts.append(f"S3 logging to {bounded(inputs['s3BucketName'], 80)}{enc}")
    return ", ".join(parts) or "no encryption or logging"


def _true(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def run_preferences(ctx: Context) -> Outcome:
    action = f"ssm:GetDocument {PREFERENCES_DOCUMENT}"
    blocked = _blocked_outcome(ctx, PREFERENCES, action)
    if blocked is not None:  # dependents still get what was assumed
        return outcome(*blocked.findings, data={"source": "assumed", "inputs": {},
                                                "why": f"not read: {blocked.findings[0].blocked_by} failed"})
    answer = json_call(ctx, "ssm", "GetDocument", {"Name": PREFERENCES_DOCUMENT})
    ev = _evidence(answer, action)
    clock = {"clock": answer.clock} if answer.clock else {}

    def assumed(status: Status, summary: str, why: str, **cause: Any) -> Outcome:
        ev["assumed"] = "Session Manager defaults (no KMS encryption, no session logging)"
        return outcome(Finding(PREFERENCES, status, summary, evidence=ev, **cause),
                       data={"source": "assumed", "inputs": {}, "why": why, **clock})

    if answer.response is not None:
        inputs, problem = _document_inputs(answer.response)
        if inputs is None:
            return assumed(Status.WARNING, f"{PREFERENCES_DOCUMENT} is unreadable ({problem}): assumed Session "
                           "Manager defaults", problem, **explain("aws_bad_answer", service="ssm", action=action))
        ev["inputs"] = {k: bounded(v, 200) for k, v in inputs.items()}
        return outcome(Finding(PREFERENCES, Status.OK, f"Session Manager preferences ({PREFERENCES_DOCUMENT}): "
                               f"{describe_preferences(inputs)}", evidence=ev),
                       data={"source": "document", "inputs": inputs, "why": "read with GetDocument", **clock})
    if answer.code == "InvalidDocument":
        why = f"no {PREFERENCES_DOCUMENT} document in this account: Session Manager uses its defaults"
        return outcome(Finding(PREFERENCES, Status.OK, why + " (no encryption, no session logging)", evidence=ev),
                       data={"source": "document", "inputs": {}, "why": why, **clock})
    if answer.transport:
        why = f"GetDocument failed: {answer.transport}"
        return assumed(Status.WARNING, f"could not read the Session Manager preferences ({answer.transport}): "
                       "assumed the defaults", why, **explain("preferences_unreadable", error=answer.transport))
    summary, cause = refusal(ctx, answer, "ssm", action)
    why = f"GetDocument: {answer.code}: {answer.message}"
    # GetDocument is for this proof only (the service, not the agent, reads the preferences): a
    # refused permission is what could not be proven, not a broken path (auth.ssm names the role's
    # problem). Anything else (the clock, the credentials) keeps its own cause.
    if cause.get("cause_code", "").startswith("access_denied"):
        cause = explain("preferences_unreadable", error=f"{answer.code}: {answer.message}")
    return assumed(Status.WARNING, f"could not read the Session Manager preferences ({summary}): assumed the "
                   "defaults", why, **cause)


def checks(settings: Settings) -> List[Check]:
    path = tuple(f"{kind}.ssm" for kind in ("dns", "reach")) + ("resolver.system", "ec2.api")
    call_s = settings.connect_timeout_s + settings.api_timeout_s + 0.5
    return [
        Check(CREDENTIALS, run_credentials, needs=("instance.profile",), timeout_s=1.0),
        Check(AUTH_SSM, run_auth, needs=(CREDENTIALS,), wants=path, timeout_s=call_s),
        # After auth.ssm: its kept-alive connection carries this call too (one TLS handshake and one
        # name lookup less per run; the pool is dropped when the run ends).
        Check(PREFERENCES, run_preferences, needs=(CREDENTIALS,), wants=path + (AUTH_SSM,), timeout_s=call_s),
    ]
