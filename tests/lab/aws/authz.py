"""What AWS checks before a service runs a call: the signature's time, the token, then the policies.

For every signed non-S3 request, in AWS's order (authentication precedes authorization; S3 does the
same with its own errors in s3_policy.py):

1. **Clock** (scenario ``aws_clock_offset_s``: AWS's clock = this host's + offset). The request time
   (``X-Amz-Date``, else ``Date``) may differ from AWS's clock by at most 5 minutes for the JSON
   services (ssm, ec2messages, ssmmessages, kms, logs …): ``400 InvalidSignatureException`` ``Signature
   expired: <t> is now earlier than <now-5m> (<now> - 5 min.)`` or ``Signature not yet current: <t> is
   still later than <now+5m> (<now> + 5 min.)`` (wording and status as SSM/Kinesis answer:
   github.com/remind101/logspout-kinesis/issues/21, github.com/s12v/awsbeats/issues/48). EC2 allows 15
   minutes, then ``400 RequestExpired`` ``Request has expired.`` (docs.aws.amazon.com AWSEC2 APIReference
   CommonErrors; aws/aws-sdk-java#1443); other query services (STS) 15 minutes, then ``403
   SignatureDoesNotMatch`` with the same sentence and ``15 min.`` (aws/aws-cli#6676).
2. **Token** (``instance.profile.credentials_expired``): the instance role's key is refused with
   ``400 ExpiredTokenException`` ``The security token included in the request is expired`` (JSON
   services), ``403 ExpiredToken`` with that sentence (query: cfn-sphere/cfn-sphere#55), EC2 ``400
   RequestExpired`` ``Request has expired.`` (guardian/ssm-scala#60); S3 in s3_policy.py.
3. **Policies**: an explicit deny in the VPC endpoint policy of the endpoint the request came through
   (the ENI address it arrived on) wins; then the identity policy (``instance.profile.denied_actions``,
   only for the instance role's key); then an endpoint policy that allows nothing (``no_allow``).
   ``400 AccessDeniedException`` ``User: <arn> is not authorized to perform: <action> on resource:
   <arn> because no identity-based policy allows the <action> action`` (shared/AWS-FACTS.md), EC2
   ``403 UnauthorizedOperation``, other query services ``403 AccessDenied``.

Only header parsing and a few string operations per request: the front stays fast.
"""
from __future__ import annotations

import calendar
import json
import re
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple
from urllib.parse import parse_qs

from .protocol import Reply, Request, json_error, query_error
from .dynamodb_gateway import policy_by_ip as dynamodb_policy_by_ip
from .seed import ACCOUNT_ID, InstanceIdentity
from .world import World

JSON_SKEW_S = 5 * 60
QUERY_SKEW_S = 15 * 60
S3_SKEW_S = 15 * 60
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
# The IAM prefix differs from the signing name for a few services.
IAM_PREFIX = {"monitoring": "cloudwatch", "email": "ses"}
# REST-JSON services the agent uses: path prefix -> operation.
_REST_OPERATIONS = {"ssmmessages": (("/v1/control-channel/", "CreateControlChannel"),
                                    ("/v1/data-channel/", "CreateDataChannel"))}


@dataclass(frozen=True)
class Call:
    """One signed request as IAM sees it."""

    service: str            # the SigV4 signing name: ssm, ec2, monitoring …
    protocol: str           # json | rest-json | query | ec2
    action: Optional[str]   # ssm:GetDocument; None when the operation is not known
    content_type: str = "application/x-amz-json-1.1"

    def resource(self, request: Request, region: str) -> str:
        """The ARN the service authorizes against, or "*" (parsed only for a denial: bodies can be big)."""
        if self.protocol != "json" or self.action is None:
            return "*"
        return _json_resource(self.service, self.action.split(":", 1)[1], request.body, region)


def clock(offset_s: float) -> Callable[[], float]:
    return lambda: time.time() + offset_s


def request_time(request: Request) -> Optional[float]:
    """The signed request time (epoch seconds), None when it has none or it does not parse. Presigned
    URLs (time in the query) are bounded by their own expiry instead, which the lab does not model."""
    stamp = request.header("X-Amz-Date")
    try:
        if stamp:
            return float(calendar.timegm(time.strptime(stamp, _AMZ_DATE)))
        date = request.header("Date")
        return parsedate_to_datetime(date).timestamp() if date else None
    except (ValueError, TypeError, OverflowError):
        return None


def amz_date(epoch: float) -> str:
    return time.strftime(_AMZ_DATE, time.gmtime(epoch))


def skew_message(sent: float, now: float, window_s: int) -> Optional[str]:
    """AWS's sentence for a request time outside ``now ± window``, else None."""
    minutes = window_s // 60
    if sent < now - window_s:
        return (f"Signature expired: {amz_date(sent)} is now earlier than {amz_date(now - window_s)} "
                f"({amz_date(now)} - {minutes} min.)")
    if sent > now + window_s:
        return (f"Signature not yet current: {amz_date(sent)} is still later than {amz_date(now + window_s)} "
                f"({amz_date(now)} + {minutes} min.)")
    return None


def action_matches(action: str, patterns: Sequence[str]) -> bool:
    """IAM action matching: case-insensitive, ``*`` and ``?`` wildcards."""
    return any(_pattern(p).match(action) for p in patterns)


_PATTERNS: Dict[str, "re.Pattern[str]"] = {}


def _pattern(text: str) -> "re.Pattern[str]":
    found = _PATTERNS.get(text)
    if found is None:
        regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)
        found = _PATTERNS[text] = re.compile(f"^{regex}$", re.IGNORECASE)
    return found


def denial(caller: str, action: str, resource: Optional[str], reason: str) -> str:
    on = f" on resource: {resource}" if resource else ""
    return f"User: {caller} is not authorized to perform: {action}{on} {reason}"


class Authorizer:
    """The interceptor: answers a refusal as the service would, or None to let the call through."""

    def __init__(self, world: World, identity: InstanceIdentity,
                 extra_endpoint_ips: Optional[Mapping[str, str]] = None) -> None:
        self._world = world
        self._identity = identity
        # ip -> endpoint policy: the ENIs of world.json, plus addresses a loopback test declares an
        # endpoint's (``--endpoint-listen ssm=127.0.0.2:0``).
        self._policy_by_ip = {eni.ip: ep.policy for ep in world.interface_endpoints for eni in ep.enis}
        for ip, service in (extra_endpoint_ips or {}).items():
            found = [ep.policy for ep in world.interface_endpoints if ep.service == service]
            self._policy_by_ip[ip] = found[0] if found else "allow"
        self._policy_by_ip.update(dynamodb_policy_by_ip(world.dynamodb))  # arrived through its gateway endpoint
        self.now = clock(world.aws_clock_offset_s)
        profile = world.profile
        self.denied_actions: Tuple[str, ...] = profile.denied_actions + (() if profile.s3_permission else ("s3:*",))

    # --- shared with the S3 policy ------------------------------------------------------------------

    def is_instance_role(self, request: Request) -> bool:
        scope = request.signing
        return bool(scope and self._identity.access_key_id and scope.access_key_id == self._identity.access_key_id)

    def caller_arn(self, request: Request) -> str:
        if self.is_instance_role(request) and self._identity.principal_arn:
            return self._identity.principal_arn
        return f"arn:aws:iam::{ACCOUNT_ID}:user/moto"  # what moto's STS calls any other key

    def token_expired(self, request: Request) -> bool:
        return self._world.profile.credentials_expired and self.is_instance_role(request)

    def identity_denies(self, request: Request, action: str) -> bool:
        return self.is_instance_role(request) and action_matches(action, self.denied_actions)

    def endpoint_policy(self, request: Request) -> str:
        """allow | deny | no_allow for the interface endpoint the request arrived through."""
        return self._policy_by_ip.get(request.local_ip or "", "allow")

    # --- the interceptor --------------------------------------------------------------------------

    def intercept(self, request: Request) -> Optional[Reply]:
        scope = request.signing
        if scope is None or scope.service == "s3":
            return None  # unsigned (moto decides) or S3 (s3_policy.py)
        call = classify(request, scope.service)
        sent = request_time(request)
        if sent is not None:
            window = JSON_SKEW_S if call.protocol in ("json", "rest-json") else QUERY_SKEW_S
            message = skew_message(sent, self.now(), window)
            if message is not None:
                if call.protocol == "ec2":
                    return query_error("RequestExpired", "Request has expired.", 400, ec2=True)
                if call.protocol == "query":
                    return query_error("SignatureDoesNotMatch", message, 403)
                return _json(call, "InvalidSignatureException", message, 400)
        if self.token_expired(request):
            text = "The security token included in the request is expired"
            if call.protocol == "ec2":
                return query_error("RequestExpired", "Request has expired.", 400, ec2=True)
            if call.protocol == "query":
                return query_error("ExpiredToken", text, 403)
            return _json(call, "ExpiredTokenException", text, 400)
        if call.action is None:
            return None
        policy = self.endpoint_policy(request)
        if policy == "deny":
            reason = "with an explicit deny in a VPC endpoint policy"
        elif self.identity_denies(request, call.action):
            reason = f"because no identity-based policy allows the {call.action} action"
        elif policy == "no_allow":
            reason = f"because no VPC endpoint policy allows the {call.action} action"
        else:
            return None
        caller = self.caller_arn(request)
        resource = call.resource(request, self._world.region)
        if call.protocol == "ec2":
            return query_error("UnauthorizedOperation", "You are not authorized to perform this operation. " +
                               denial(caller, call.action, None, reason), 403, ec2=True)
        if call.protocol == "query":
            return query_error("AccessDenied", denial(caller, call.action, resource, reason), 403)
        return _json(call, "AccessDeniedException", denial(caller, call.action, resource, reason),
                     403 if call.protocol == "rest-json" else 400)


def _json(call: Call, code: str, message: str, status: int) -> Reply:
    # DynamoDB's errors name Coral's namespace: {"__type": "com.amazon.coral.service#AccessDeniedException"}
    reply = json_error(("com.amazon.coral.service#" if call.service == "dynamodb" else "") + code, message, status)
    if call.protocol == "rest-json":
        reply.headers = [(k, "application/json" if k == "Content-Type" else v) for k, v in reply.headers]
        reply.headers.append(("x-amzn-ErrorType", code))
    else:
        reply.headers = [(k, call.content_type if k == "Content-Type" else v) for k, v in reply.headers]
    return reply


def classify(request: Request, service: str) -> Call:
    """Protocol, IAM action and resource of a signed request (the calls the lab's clients make, and a
    sane ``*`` for the rest)."""
    prefix = IAM_PREFIX.get(service, service)
    target = request.header("X-Amz-Target")
    if target:
        operation = target.rsplit(".", 1)[-1]
        content_type = request.header("Content-Type") or "application/x-amz-json-1.1"
        return Call(service, "json", f"{prefix}:{operation}", content_type.split(";")[0].strip())
    form = _form(request)
    if "Action" in form:
        return Call(service, "ec2" if service == "ec2" else "query", f"{prefix}:{form['Action'][0]}")
    for path_prefix, operation in _REST_OPERATIONS.get(service, ()):
        if request.path.startswith(path_prefix):
            return Call(service, "rest-json", f"{prefix}:{operation}")
    return Call(service, "rest-json", None)


def _form(request: Request) -> Dict[str, list]:
    found = request.query
    if "Action" not in found and "x-www-form-urlencoded" in (request.header("Content-Type") or ""):
        found = parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)
    return found


def _json_resource(service: str, operation: str, body: bytes, region: str) -> str:
    """The resource ARN as the service names it in a denial (ssm: the instance or the document)."""
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        return "*"
    if not isinstance(payload, dict):
        return "*"
    if service == "ssm":
        if isinstance(payload.get("InstanceId"), str):
            return f"arn:aws:ec2:{region}:{ACCOUNT_ID}:instance/{payload['InstanceId']}"
        name = payload.get("Name")
        if isinstance(name, str) and operation in ("GetDocument", "DescribeDocument"):
            return name if name.startswith("arn:") else f"arn:aws:ssm:{region}:{ACCOUNT_ID}:document/{name}"
    if service == "dynamodb":  # DescribeTable names the table; ListTables "*" (AccessDeniedException texts)
        table = payload.get("TableName")
        return f"arn:aws:dynamodb:{region}:{ACCOUNT_ID}:table/{table}" if isinstance(table, str) else "*"
    if service == "logs":
        group = payload.get("logGroupName")
        return f"arn:aws:logs:{region}:{ACCOUNT_ID}:log-group:{group if isinstance(group, str) else ''}:log-stream:"
    if service == "kms":
        key = payload.get("KeyId")
        if isinstance(key, str):
            if key.startswith("arn:"):
                return key
            if not key.startswith("alias/"):
                return f"arn:aws:kms:{region}:{ACCOUNT_ID}:key/{key}"
    return "*"
