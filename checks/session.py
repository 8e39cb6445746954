"""Session Manager preferences -> what a session needs: ``session.requirements`` and, only for what the
preferences require, ``session.kms``, ``session.logs``, ``session.s3``.

The preferences come from ``ssm.preferences`` (``ssm:GetDocument SSM-SessionManagerRunShell``; its data is
``{"source": "document"|"assumed", "inputs": {...}, "why": "..."}``). What the agent does with them, from
its source (github.com/aws/amazon-ssm-agent):

* ``kmsKeyId``: the client generates the data key; the agent only calls ``kms:Decrypt`` (with encryption
  context aws:ssm:SessionId / aws:ssm:TargetId) on the regional ``kms`` endpoint
  (agent/session/crypto/kmsservice.go). A failed Decrypt ends the session.
* ``cloudWatchLogGroupName``: before each session the agent calls ``logs:DescribeLogGroups`` with the
  group name as prefix (agent/session/shell/shell.go ``validate``). A missing group (or a failed call)
  turns CloudWatch logging off; with ``cloudWatchEncryptionEnabled`` the session is refused unless the
  group has a ``kmsKeyId``: "We couldn't start the session because encryption is not set up on the
  selected CloudWatch Logs log group. …" (agent/session/config/config.go). Without a reachable logs
  endpoint session start stalls for minutes (amazon-ssm-agent#639, #432).
* ``s3BucketName`` with ``s3EncryptionEnabled``: ``s3:GetBucketEncryption`` (IAM action
  s3:GetEncryptionConfiguration) must show aws:kms or AES256, else the session is refused
  (agent/s3util/s3util.go ``IsBucketEncrypted``); the log itself goes up with s3:PutObject.

Least privilege: a refused call the agent itself makes (logs:DescribeLogGroups, s3:GetEncryptionConfiguration)
is CRITICAL with the statement to add; a refused call only this proof makes (kms:DescribeKey, s3:ListBucket
for HeadBucket) is a WARNING "could not prove …". ``kms:Decrypt`` cannot be proven read-only: Decrypt,
with ``DryRun`` too, needs a ciphertext made under the key with this session's encryption context, which
only a session start produces; ``kms:DescribeKey`` proves path, signature and the key's state under another
permission. So the finding says so and rests on the path. Writes (PutLogEvents, CreateLogStream,
PutObject) are never tried.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from . import endpoints, workers
from .causes import explain
from .denials import Denial, classify, is_denial
from .ec2view import Ec2View
from .hostnames import partition_name, service_hostname
from .model import Check, Context, Finding, Outcome, Settings, Status, outcome
from .awsjson import bounded, json_call
from .ssmapi import PREFERENCES

CHECK_ID = "session.requirements"
KMS, LOGS, S3 = "session.kms", "session.logs", "session.s3"
MAX_LOG_GROUP_PAGES = 5  # the agent pages through every prefix match; we stop after 5 x 50 groups
_ENCRYPTED_SSE = ("aws:kms", "AES256")  # what the agent accepts as an encrypted bucket
_ASSUMED_ROLE = re.compile(r":assumed-role/([\w+=,.@-]+)/")
_KEY_ARN = re.compile(r"^arn:[\w-]+:kms:([a-z0-9-]+):(\d{12}):(key|alias)/")


def _line(text: Any, limit: int = 240) -> str:
    """One bounded, credential-free line without markup (a proxy's HTML error page)."""
    return bounded(re.sub(r"<[^>]{0,200}>", " ", str(text)[:4096]), limit)


# --- the preferences --------------------------------------------------------------------------------

def _flag(value: Any) -> bool:
    """Document inputs are booleans or their strings ("true")."""
    if isinstance(value, bool):
        return value
    return isinstance(value, str) and value.strip().lower() in ("true", "yes", "1")


def _name(value: Any) -> Optional[str]:
    """A resource name input: a non-empty string, bounded (garbage becomes None)."""
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip()[:512]


@dataclass(frozen=True)
class Requirements:
    source: str  # "document" | "assumed"
    why: str
    kms_key: Optional[str] = None
    log_group: Optional[str] = None
    log_encrypted: bool = False
    log_streaming: bool = False
    bucket: Optional[str] = None
    bucket_encrypted: bool = False

    @property
    def needed(self) -> List[str]:
        return [n for n, v in (("kms", self.kms_key), ("logs", self.log_group), ("s3", self.bucket)) if v]


def requirements(data: Any) -> Requirements:
    """What the preferences require; anything unusable counts as "assumed defaults" (nothing required)."""
    if not isinstance(data, Mapping):
        return Requirements("assumed", "the preferences were not read in this run (ssm.preferences did not run)")
    inputs = data.get("inputs")
    source = "document" if data.get("source") == "document" else "assumed"
    why = _line(data.get("why") or "", 200)
    if not isinstance(inputs, Mapping):
        return Requirements("assumed", why or "ssm.preferences gave no inputs")
    return Requirements(source, why, kms_key=_name(inputs.get("kmsKeyId")),
                        log_group=_name(inputs.get("cloudWatchLogGroupName")),
                        log_encrypted=_flag(inputs.get("cloudWatchEncryptionEnabled")),
                        log_streaming=_flag(inputs.get("cloudWatchStreamingEnabled")),
                        bucket=_name(inputs.get("s3BucketName")),
                        bucket_encrypted=_flag(inputs.get("s3EncryptionEnabled")))


# --- shared helpers ---------------------------------------------------------------------------------

def _sub(ctx: Context, data: Mapping[str, Any]) -> Context:
    """A context for a reused probe (endpoints / s3) with the data it reads, under our deadline."""
    left = ctx.remaining()
    return Context(ctx.facts, ctx.settings, dict(data), deadline=time.monotonic() + left, check_timeout_s=left)


def _view(ctx: Context) -> Ec2View:
    view = ctx.data("ec2.api")
    return view if isinstance(view, Ec2View) else Ec2View(available=False, reason="no EC2 API view")


def _role(ctx: Context, denial: Optional[Denial]) -> str:
    match = _ASSUMED_ROLE.search(denial.principal or "") if denial else None
    if match:
        return match.group(1)
    creds = getattr(ctx.facts, "credentials", None) or {}
    return str(creds.get("role") or "<role-name>")


def _policy(actions: List[str], resources: List[str]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": actions, "Resource": resources if len(resources) > 1 else resources[0]}]},
        separators=(",", ":"))


def _denied(ctx: Context, fid: str, service: str, action: str, code: str, message: str, *, agent_needs: bool,
            purpose: str, actions: List[str], resources: List[str], ev: Dict[str, Any], effect: str = "") -> Finding:
    """A refused call: CRITICAL with the exact grant when the agent needs the permission too; else
    UNVERIFIED (OK, not proven), naming what could not be proven and how to let it be."""
    denial = classify(code, message)
    ev.update(denial={"kind": denial.kind, "explicit": denial.explicit, "action": denial.action or action})
    error = _line(f"{code}: {message}" if message else code)
    if not agent_needs:
        return Finding(fid, Status.OK, f"could not prove {purpose}: {action} {denial.how}", evidence=ev,
                       verified=False,
                       **explain("session_proof_denied", action=action, what=purpose, how=denial.how, error=error))
    view = _view(ctx)
    ep = view.endpoint_for(service) if view.available else None
    params: Dict[str, Any] = dict(action=action, purpose=f"{purpose}: {effect}", how=denial.how, error=error,
                                  service=service, role=_role(ctx, denial), actions=", ".join(actions),
                                  resource=", ".join(resources), policy=_policy(actions, resources),
                                  words=denial.words, endpoint_id=ep.id if ep else None,
                                  policy_name=f"session-manager-{service}")
    code_for = {"identity_policy": "session_access_denied_identity",
                "endpoint_policy": "session_access_denied_endpoint_policy"}
    return Finding(fid, Status.CRITICAL, f"{purpose}: {action} {denial.how}: {effect}", evidence=ev,
                   **explain(code_for.get(denial.kind, "session_access_denied_other"), **params))


def _call_evidence(answer: Any, action: str) -> Dict[str, Any]:
    ev: Dict[str, Any] = {"action": action, "endpoint_url": answer.endpoint_url}
    if answer.code or answer.status:
        ev.update(error_code=_line(answer.code or "", 80), http_status=answer.status, message=_line(answer.message))
    if answer.transport:
        ev["error"] = _line(answer.transport)
    return ev


def _proven(fid: str, summary: str, ev: Dict[str, Any]) -> Finding:
    """OK, or WARNING when only some of the endpoint's addresses work (the agent may pick a bad one)."""
    bad = ev.get("degraded")
    if not bad:
        return Finding(fid, Status.OK, summary, evidence=ev)
    return Finding(fid, Status.WARNING, f"{summary}; but {bad['summary']}", evidence=ev, cause_code=bad["cause_code"],
                   cause=bad["cause"], fix=bad["fix"], resource=bad.get("resource"))


def _unproven(fid: str, what: str, action: str, error: str, ev: Dict[str, Any]) -> Finding:
    return Finding(fid, Status.WARNING, f"could not prove {what}: {action}: {error}", evidence=ev,
                   **explain("session_proof_failed", what=what, action=action, error=error))


# --- the interface endpoint path (kms, logs): endpoints.run_dns / run_reach, reused ------------------

_MISSING = ("endpoint_missing", "private_dns_not_effective")


def _path(ctx: Context, service: str, fid: str, purpose: str, ev: Dict[str, Any]) -> Optional[Finding]:
    """DNS (private answers in the VPC), then TCP 443 + TLS to every answer. None when the path works;
    else the CRITICAL finding (the endpoint's absence named as a session cause)."""
    resolver = ctx.data("resolver")
    if not isinstance(resolver, Mapping) or not resolver.get("server"):
        return Finding(fid, Status.CRITICAL, f"{purpose} needs the {service} endpoint; not checked: the Amazon "
                       "resolver failed", evidence=ev, blocked_by="resolver",
                       **explain("session_path_blocked", what=purpose, service=service, blocker="resolver"))
    view = ctx.data("ec2.api")
    dns = endpoints.run_dns(_sub(ctx, {"resolver": resolver, "ec2.api": view}), service)
    first = dns.findings[0]
    ev.update(host=first.evidence.get("host"), answers=first.evidence.get("answers"),
              address_kinds=first.evidence.get("address_kinds"), dns=first.status.name)
    reach = None
    if dns.data is not None and dns.data.get("public"):  # works only if the public path does (a NAT)
        reach = endpoints.run_reach(_sub(ctx, {f"dns.{service}": dns.data, "ec2.api": view}), service)
    if dns.data is None or (reach is not None and reach.data is None):
        if first.cause_code in _MISSING:
            ep = _view(ctx).endpoint_for("ssm") if _view(ctx).available else None
            sg = ep.security_group_ids[0] if ep and ep.security_group_ids else "<endpoint-sg-id>"
            return Finding(fid, Status.CRITICAL, f"{purpose} needs the {service} endpoint: {first.summary}",
                           evidence=ev, **explain(f"session_{service}_endpoint_missing", host=ev["host"],
                                                   answers=", ".join(ev["answers"] or ()) or "none",
                                                   region=ctx.facts.region, vpc_id=ctx.facts.vpc_id,
                                                   subnet_id=ctx.facts.subnet_id, sg_id=sg, service=service))
        return replace(first, id=fid, summary=f"{purpose} needs the {service} endpoint: {first.summary}",
                       evidence=ev)
    if reach is None:
        reach = endpoints.run_reach(_sub(ctx, {f"dns.{service}": dns.data, "ec2.api": view}), service)
    head = reach.findings[0]
    ev["reach"] = {f.evidence.get("ip"): "ok" if f.status == Status.OK else
                   f"{f.evidence.get('tcp')}/{f.evidence.get('tls')}" for f in reach.findings[1:]}
    if reach.data is None:
        return replace(head, id=fid, summary=f"{purpose} needs the {service} endpoint: {head.summary}", evidence=ev)
    if head.status != Status.OK:  # some AZs fail: clients that pick them stall
        ev["degraded"] = {"summary": head.summary, "cause_code": head.cause_code, "cause": head.cause,
                          "fix": head.fix, "resource": dict(head.resource) if head.resource else None}
    return None


# --- session.kms --------------------------------------------------------------------------------------

def run_kms(ctx: Context, req: Requirements) -> Finding:
    key = str(req.kms_key)
    region = str(ctx.facts.require("region"))
    purpose = f"session encryption (kmsKeyId {_line(key, 120)})"
    ev: Dict[str, Any] = {"kms_key_id": _line(key, 200)}
    m = _KEY_ARN.match(key)
    if m and m.group(1) != region:
        return Finding(KMS, Status.CRITICAL, f"{purpose}: the key is in {m.group(1)}, not {region}", evidence=ev,
                       **explain("session_kms_key_other_region", key=key, key_region=m.group(1), region=region))
    broken = _path(ctx, "kms", KMS, purpose, ev)
    if broken is not None:
        return broken
    action = "kms:DescribeKey"
    answer = json_call(ctx, "kms", "DescribeKey", {"KeyId": key})
    ev["call"] = _call_evidence(answer, action)
    not_provable = "kms:Decrypt not provable without a ciphertext made for a session"
    if answer.transport:
        return _unproven(KMS, "the key", action, answer.transport, ev)
    if answer.response is None:
        code = answer.code or str(answer.status)
        if is_denial(code, answer.status):
            return _denied(ctx, KMS, "kms", action, code, answer.full_message or answer.message, agent_needs=False,
                           purpose=f"the key's state (path proven; {not_provable})", actions=[action],
                           resources=[key], ev=ev)
        if code == "NotFoundException":
            return Finding(KMS, Status.CRITICAL, f"{purpose}: kms:DescribeKey says the key does not exist in "
                           f"{region} ({_line(answer.message, 160)})", evidence=ev,
                           **explain("session_kms_key_not_found", key=key, region=region))
        return _unproven(KMS, "the key", action, _line(f"{code}: {answer.message}"), ev)
    meta = (answer.response or {}).get("KeyMetadata")
    if not isinstance(meta, Mapping) or not isinstance(meta.get("KeyState"), str):
        return _unproven(KMS, "the key", action, "the answer is not a DescribeKey reply (no KeyMetadata)", ev)
    state, usage = meta.get("KeyState"), meta.get("KeyUsage")
    spec = meta.get("KeySpec") or meta.get("CustomerMasterKeySpec")
    arn = _line(meta.get("Arn") or key, 200)
    ev.update(key_arn=arn, key_state=_line(state, 40), key_usage=_line(usage or "", 40), key_spec=_line(spec or "", 40))
    why = None
    if state != "Enabled":
        why = f"its state is {_line(state, 40)} (Decrypt needs Enabled)"
    elif usage not in (None, "ENCRYPT_DECRYPT") or spec not in (None, "SYMMETRIC_DEFAULT"):
        why = f"it is {_line(spec, 40)}/{_line(usage, 40)}, not a symmetric encryption key"
    if why:
        return Finding(KMS, Status.CRITICAL, f"{purpose}: the key {arn} cannot decrypt: {why}", evidence=ev,
                       **explain("session_kms_key_unusable", key=arn, why=why))
    ev["not_proven"] = "kms:Decrypt (grant it to the role on this key; the key policy must allow it too)"
    return _proven(KMS, f"kms path proven to {ev['host']} ({', '.join(ev['answers'])}); key {arn} "
                   f"Enabled; {not_provable}: the role needs kms:Decrypt on it", ev)


# --- session.logs -------------------------------------------------------------------------------------

def _find_group(ctx: Context, name: str, ev: Dict[str, Any]) -> Tuple[Any, Optional[Mapping[str, Any]], bool]:
    """(the last answer, the group or None, whether the answers were readable), paging like the agent."""
    token: Optional[str] = None
    answer = None
    for page in range(MAX_LOG_GROUP_PAGES):
        params: Dict[str, Any] = {"logGroupNamePrefix": name, "limit": 50}
        if token:
            params["nextToken"] = token
        answer = json_call(ctx, "logs", "DescribeLogGroups", params)
        ev["pages"] = page + 1
        if answer.response is None:
            return answer, None, True
        groups = answer.response.get("logGroups")
        if not isinstance(groups, list):
            return answer, None, False
        for g in groups:
            if isinstance(g, Mapping) and g.get("logGroupName") == name:
                return answer, g, True
        token = answer.response.get("nextToken")
        if not isinstance(token, str) or not token:
            break
    return answer, None, True


def run_logs(ctx: Context, req: Requirements) -> Finding:
    name = str(req.log_group)
    region = str(ctx.facts.require("region"))
    purpose = f"session logging to CloudWatch Logs ({_line(name, 120)})"
    ev: Dict[str, Any] = {"log_group": _line(name, 200), "encryption_required": req.log_encrypted,
                          "streaming": req.log_streaming}
    broken = _path(ctx, "logs", LOGS, purpose, ev)
    if broken is not None:
        return broken
    action = "logs:DescribeLogGroups"
    answer, group, readable = _find_group(ctx, name, ev)
    ev["call"] = _call_evidence(answer, action)
    effect = ("the agent refuses every session (cloudWatchEncryptionEnabled)" if req.log_encrypted
              else "sessions start, but nothing is logged to CloudWatch")
    if answer.transport:
        return _unproven(LOGS, "the log group", action, answer.transport, ev)
    if not readable:
        return _unproven(LOGS, "the log group", action, "the answer is not a DescribeLogGroups reply "
                         "(no logGroups)", ev)
    if answer.response is None:
        code = answer.code or str(answer.status)
        if is_denial(code, answer.status):
            partition = ctx.facts.partition or partition_name(region)
            return _denied(ctx, LOGS, "logs", action, code, answer.full_message or answer.message, agent_needs=True,
                           purpose=purpose, effect=effect,
                           actions=["logs:DescribeLogGroups", "logs:DescribeLogStreams", "logs:CreateLogStream",
                                    "logs:PutLogEvents"],
                           resources=[f"arn:{partition}:logs:{region}:*:log-group:*"], ev=ev)
        return _unproven(LOGS, "the log group", action, _line(f"{code}: {answer.message}"), ev)
    if group is None:
        return Finding(LOGS, Status.CRITICAL, f"{purpose}: no log group {_line(name, 120)} in {region}: {effect}",
                       evidence=ev, **explain("session_log_group_missing", log_group=name, region=region,
                                              effect=effect, key=req.kms_key or "<kms-key-arn>"))
    key = group.get("kmsKeyId")
    ev["log_group_kms_key"] = _line(key, 200) if key else None
    if req.log_encrypted and not key:
        return Finding(LOGS, Status.CRITICAL, f"{purpose}: the group is not encrypted but the preferences require "
                       "it: the agent refuses every session", evidence=ev,
                       **explain("session_log_group_not_encrypted", log_group=name,
                                 key=req.kms_key or "<kms-key-arn>"))
    writes = "CreateLogStream/PutLogEvents (writes" + (", and streaming" if req.log_streaming else "") + ") not tried"
    return _proven(LOGS, f"logs path proven to {ev['host']}; log group {_line(name, 120)} exists"
                   f"{' (KMS-encrypted)' if key else ''}; {writes}", ev)


# --- session.s3 ---------------------------------------------------------------------------------------

def run_s3(ctx: Context, req: Requirements) -> Finding:
    from botocore import exceptions as bx
    from botocore.parsers import ResponseParserError

    from . import s3 as s3mod, s3errors

    bucket = str(req.bucket)
    region = str(ctx.facts.require("region"))
    purpose = f"session logging to s3://{_line(bucket, 80)}"
    ev: Dict[str, Any] = {"bucket": _line(bucket, 200), "encryption_required": req.bucket_encrypted}
    if ctx.ran("s3.dns") and ctx.data("s3.dns") is None:
        return Finding(S3, Status.CRITICAL, f"{purpose} needs S3; not checked: s3.dns failed", evidence=ev,
                       blocked_by="s3.dns", **explain("session_path_blocked", what=purpose, service="s3",
                                                       blocker="s3.dns"))
    dns = ctx.data("s3.dns") or {"host": service_hostname("s3", region, ctx.settings.fips), "answers": []}
    sub = _sub(ctx, {"ec2.api": _view(ctx), "s3.dns": dns})
    if req.bucket_encrypted:  # the agent's own call before every session
        op, action, agent_needs = "GetBucketEncryption", "s3:GetEncryptionConfiguration", True
    else:  # only to prove the bucket exists in this region (s3:ListBucket, a proof-only permission)
        op, action, agent_needs = "HeadBucket", "s3:ListBucket", False
    call = s3errors.S3Call(sub, op, action, f"arn:{partition_name(region)}:s3:::{bucket}", bucket)
    ev.update(operation=op, host=dns.get("host"))
    writes = "s3:PutObject (a write) not tried"
    try:
        client = s3mod._s3_client(sub)
        resp = (client.get_bucket_encryption if req.bucket_encrypted else client.head_bucket)(Bucket=bucket)
    except bx.ClientError as exc:
        resp = exc.response or {}
        err = resp.get("Error") or {}
        status = (resp.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        code, message = str(err.get("Code") or status), str(err.get("Message") or "")
        other = s3errors.bucket_region_from(resp)
        ev.update(http_status=status, error_code=_line(code, 80), message=_line(message), bucket_region=other)
        effect = "the agent refuses every session" if req.bucket_encrypted else "session logs are lost"
        if (other and other != region) or code in ("PermanentRedirect", "301") or status == 301:
            return Finding(S3, Status.CRITICAL, f"{purpose}: the bucket is in {other or 'another region'}, "
                           f"not {region}: {effect}", evidence=ev,
                           **explain("session_s3_bucket_other_region", bucket=bucket, region=region,
                                     bucket_region=other or "another region"))
        if code == "NoSuchBucket" or (op == "HeadBucket" and status == 404):
            return Finding(S3, Status.CRITICAL, f"{purpose}: no such bucket: {effect}", evidence=ev,
                           **explain("session_s3_bucket_missing", bucket=bucket, effect=effect))
        if code == "ServerSideEncryptionConfigurationNotFoundError":
            return Finding(S3, Status.CRITICAL, f"{purpose}: the bucket has no default encryption but the "
                           "preferences require it: the agent refuses every session", evidence=ev,
                           **explain("session_s3_bucket_not_encrypted", bucket=bucket))
        if is_denial(code if err.get("Code") else None, status):
            return _denied(ctx, S3, "s3", action, code, message, agent_needs=agent_needs,
                           purpose=purpose if agent_needs else "that the bucket exists in this region", effect=effect,
                           actions=["s3:GetEncryptionConfiguration", "s3:PutObject"],
                           resources=[f"arn:{partition_name(region)}:s3:::{bucket}",
                                      f"arn:{partition_name(region)}:s3:::{bucket}/*"], ev=ev)
        return _unproven(S3, "the bucket", op, _line(f"{status} {code}: {message}"), ev)
    except (bx.ConnectTimeoutError, bx.EndpointConnectionError, bx.ConnectionClosedError, bx.ReadTimeoutError,
            bx.SSLError, bx.HTTPClientError) as exc:
        summary, cause = s3errors.transport_cause(call, exc, ev)
        ev["error"] = _line(ev.get("error", ""))
        return Finding(S3, Status.CRITICAL, f"{purpose}: {summary}", evidence=ev, **cause)
    except (bx.BotoCoreError, ResponseParserError, ValueError, AttributeError, TypeError) as exc:
        return _unproven(S3, "the bucket", op, _line(f"{exc.__class__.__name__}: {exc}"), ev)
    ev["http_status"] = (resp.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    if not req.bucket_encrypted:
        return Finding(S3, Status.OK, f"s3://{_line(bucket, 80)} is in {region} (HeadBucket 200 through "
                       f"{dns.get('host')}); {writes}", evidence=ev)
    try:
        rules = resp["ServerSideEncryptionConfiguration"]["Rules"]
        sse = rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] if rules else None
    except (KeyError, IndexError, TypeError):
        return _unproven(S3, "the bucket's encryption", op, "the answer is not a GetBucketEncryption reply", ev)
    ev["sse_algorithm"] = _line(sse or "", 40)
    if sse not in _ENCRYPTED_SSE:
        return Finding(S3, Status.CRITICAL, f"{purpose}: default encryption is {_line(sse, 40)}, not aws:kms or "
                       "AES256: the agent refuses every session", evidence=ev,
                       **explain("session_s3_bucket_not_encrypted", bucket=bucket))
    return Finding(S3, Status.OK, f"s3://{_line(bucket, 80)} is in {region} and encrypted ({sse}; "
                   f"GetBucketEncryption through {dns.get('host')}); {writes}", evidence=ev)


# --- session.requirements -----------------------------------------------------------------------------

_RUNNERS: Dict[str, Callable[[Context, Requirements], Finding]] = {"kms": run_kms, "logs": run_logs, "s3": run_s3}


def _describe(req: Requirements) -> str:
    parts = []
    if req.kms_key:
        parts.append(f"KMS encryption (key {_line(req.kms_key, 80)})")
    if req.log_group:
        parts.append(f"CloudWatch Logs ({_line(req.log_group, 80)}"
                     f"{', encrypted' if req.log_encrypted else ''}{', streaming' if req.log_streaming else ''})")
    if req.bucket:
        parts.append(f"S3 logging (s3://{_line(req.bucket, 80)}{', encrypted' if req.bucket_encrypted else ''})")
    return "; ".join(parts)


def run(ctx: Context) -> Outcome:
    req = requirements(ctx.data(PREFERENCES))
    assumed = f" — preferences unreadable ({req.why}): assumed Session Manager defaults" if req.source == "assumed" \
        else ""
    ev = {"source": req.source, "why": req.why, "required": req.needed}
    data = {"source": req.source, "required": req.needed, "status": {}}
    if not req.needed:
        return outcome(Finding(CHECK_ID, Status.OK, "Session Manager preferences need nothing beyond ssmmessages "
                               f"(no KMS, CloudWatch Logs or S3 logging){assumed}", evidence=ev), data=data)
    head = Finding(CHECK_ID, Status.OK, f"Session Manager preferences ({req.source}) require {_describe(req)}"
                   f"{assumed}", evidence=ev)
    found = workers.map_all(lambda name: _RUNNERS[name](ctx, req), req.needed,
                            timeout_s=ctx.remaining() + 1.0)
    data["status"] = {name: f.status.name for name, f in zip(req.needed, found)}
    return Outcome((head, *found), data)


def checks(settings: Settings) -> List[Check]:
    # DNS + TCP/TLS to the endpoint, then up to a few API calls; kms, logs and s3 run side by side.
    wait = settings.dns_timeout_s + settings.connect_timeout_s + settings.tls_timeout_s + \
        settings.connect_timeout_s + 2 * settings.api_timeout_s + 2.0
    return [Check(CHECK_ID, run, needs=(PREFERENCES,), wants=("resolver", "ec2.api", "s3.dns"), timeout_s=wait)]
