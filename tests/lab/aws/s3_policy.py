"""The S3 behaviour that moto cannot express: region redirects and access denials.

Evaluated in the order S3 does it:

1. **Wrong region.** A bucket-addressed request that reaches another region's endpoint gets
   ``301 PermanentRedirect`` (XML with ``Endpoint`` and ``Bucket``; header ``x-amz-bucket-region``;
   a HEAD gets the status and header only). One that reaches the right endpoint but is signed for
   another region gets ``400 AuthorizationHeaderMalformed`` with ``Region``. moto serves every bucket
   from every region, so it does neither. The endpoint's region comes from the Host name (the lab's
   DNS names); when the Host is a bare address (tests on loopback) the signing region stands in.
2. **The clock and the token** (authentication precedes authorization): a request time more than 15
   minutes from AWS's clock gets ``403 RequestTimeTooSkewed`` with ``RequestTime`` (as sent),
   ``ServerTime`` and ``MaxAllowedSkewMilliseconds`` 900000 (aws/aws-sdk-php#612); the instance role's
   expired token ``400 ExpiredToken`` ``The provided token has expired.`` (S3 error codes;
   ibi-group/datatools-ui#10).
3. **The gateway endpoint's policy** (``s3.policy`` deny, or ``s3.policy_allows`` false, with the
   endpoint and its route in place, i.e. the request travelled through it): ``403 AccessDenied … with
   an explicit deny in a VPC endpoint policy`` for every caller. An explicit deny wins over a missing
   allow, so this comes first. ``s3.policy`` no_allow: ``… because no VPC endpoint policy allows the
   <action> action``, after the identity policy's missing allow (step 4).
4. **The instance role without the S3 action** (``instance.profile.s3_permission`` false, or an
   ``s3:`` pattern in ``instance.profile.denied_actions``): requests signed with the role's credentials
   get ``403 AccessDenied … because no identity-based policy allows the <action> action``. Other
   callers (the lab's own tooling) are not that role.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

from .authz import S3_SKEW_S, Authorizer, request_time
from .protocol import Reply, Request, s3_error
from .world import World

_REGIONAL_HOST = re.compile(r"^(?:(?P<bucket>.+)\.)?s3[.-](?P<region>[a-z]{2}(?:-[a-z]+)+-\d)\.amazonaws\.com$")
_GLOBAL_HOST = re.compile(r"^(?:(?P<bucket>.+)\.)?s3\.amazonaws\.com$")

# Finds a bucket's region, or None when there is no such bucket (moto then answers NoSuchBucket).
BucketRegionLookup = Callable[[str], Optional[str]]


@dataclass(frozen=True)
class S3Target:
    bucket: Optional[str]
    key: Optional[str]
    endpoint_region: Optional[str]   # the region of the name the request was sent to
    virtual_hosted: bool


def parse_s3_request(request: Request) -> Optional[S3Target]:
    """The S3 view of a request, or None when it is not an S3 request."""
    host = request.host
    scope = request.signing
    match = _REGIONAL_HOST.match(host) or _GLOBAL_HOST.match(host)
    if match is None and (scope is None or scope.service != "s3"):
        return None
    bucket = match.group("bucket") if match else None
    region = (match.groupdict().get("region") or "us-east-1") if match else None
    if region is None and scope is not None:
        region = scope.region
    path = request.path.lstrip("/")
    if bucket:
        key = path or None
        virtual = True
    else:
        bucket_part, _, key_part = path.partition("/")
        bucket, key, virtual = bucket_part or None, key_part or None, False
    return S3Target(bucket=bucket, key=key, endpoint_region=region, virtual_hosted=virtual)


class S3Policy:
    """Decides, before moto sees an S3 request, whether AWS would have answered otherwise."""

    def __init__(self, world: World, authorizer: Authorizer, bucket_region: BucketRegionLookup) -> None:
        self._world = world
        self._authz = authorizer
        self._bucket_region = bucket_region

    def intercept(self, request: Request) -> Optional[Reply]:
        target = parse_s3_request(request)
        if target is None:
            return None
        head = request.method == "HEAD"
        redirect = self._wrong_region(request, target, head)
        if redirect is not None:
            return redirect

        sent = request_time(request)
        now = self._authz.now()
        if sent is not None and abs(sent - now) > S3_SKEW_S:
            stamp = request.header("X-Amz-Date") or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(sent))
            server_time = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
            return s3_error("RequestTimeTooSkewed", "The difference between the request time and the current time "
                            "is too large.", 403, head, extra={
                                "RequestTime": stamp, "ServerTime": server_time,
                                "MaxAllowedSkewMilliseconds": str(S3_SKEW_S * 1000)})
        if self._authz.token_expired(request):
            return s3_error("ExpiredToken", "The provided token has expired.", 400, head)

        action, resource = s3_action(request, target)
        caller = self._authz.caller_arn(request)
        s3 = self._world.s3
        # A gateway endpoint only carries traffic to its own region's S3, and only with its route.
        through_endpoint = s3.gateway_endpoint and s3.route and target.endpoint_region == self._world.region
        if through_endpoint and s3.policy == "deny":
            return s3_error("AccessDenied", _denied(caller, action, resource, "with an explicit deny in a VPC "
                                                   "endpoint policy"), 403, head)
        if self._authz.identity_denies(request, action):
            return s3_error("AccessDenied", _denied(caller, action, resource, "because no identity-based policy "
                                                   f"allows the {action} action"), 403, head)
        if through_endpoint and s3.policy == "no_allow":
            return s3_error("AccessDenied", _denied(caller, action, resource, "because no VPC endpoint policy "
                                                   f"allows the {action} action"), 403, head)
        return None

    def _wrong_region(self, request: Request, target: S3Target, head: bool) -> Optional[Reply]:
        if not target.bucket or request.method == "PUT" and target.key is None:
            return None  # ListBuckets, or CreateBucket (which picks its own region)
        bucket_region = self._bucket_region(target.bucket)
        if bucket_region is None or target.endpoint_region is None:
            return None
        region_header = [("x-amz-bucket-region", bucket_region)]
        if target.endpoint_region != bucket_region:
            endpoint = f"s3.{bucket_region}.amazonaws.com"
            if target.virtual_hosted:
                endpoint = f"{target.bucket}.{endpoint}"
            return s3_error(
                "PermanentRedirect",
                "The bucket you are attempting to access must be addressed using the specified endpoint. "
                "Please send all future requests to this endpoint.",
                301, head, extra={"Endpoint": endpoint, "Bucket": target.bucket}, headers=region_header)
        scope = request.signing
        if scope is not None and scope.region != bucket_region:
            return s3_error(
                "AuthorizationHeaderMalformed",
                f"The authorization header is malformed; the region '{scope.region}' is wrong; "
                f"expecting '{bucket_region}'",
                400, head, extra={"Region": bucket_region}, headers=region_header)
        return None


def s3_action(request: Request, target: S3Target) -> Tuple[str, Optional[str]]:
    """The IAM action and resource ARN a request needs (the ones the lab's agent uses, and a sane
    guess for the rest)."""
    method, query = request.method, request.query
    if not target.bucket:
        return "s3:ListAllMyBuckets", None
    bucket_arn = f"arn:aws:s3:::{target.bucket}"
    if target.key is None:
        if "location" in query:
            return "s3:GetBucketLocation", bucket_arn
        if "versions" in query:
            return "s3:ListBucketVersions", bucket_arn
        if "policy" in query:
            return {"GET": "s3:GetBucketPolicy", "PUT": "s3:PutBucketPolicy"}.get(method, "s3:DeleteBucketPolicy"), bucket_arn
        actions = {"GET": "s3:ListBucket", "HEAD": "s3:ListBucket", "PUT": "s3:CreateBucket",
                   "DELETE": "s3:DeleteBucket", "POST": "s3:DeleteObject"}
        return actions.get(method, "s3:ListBucket"), bucket_arn
    object_arn = f"{bucket_arn}/{target.key}"
    if "tagging" in query:
        return ("s3:GetObjectTagging" if method == "GET" else "s3:PutObjectTagging"), object_arn
    if "acl" in query:
        return ("s3:GetObjectAcl" if method == "GET" else "s3:PutObjectAcl"), object_arn
    actions = {"GET": "s3:GetObject", "HEAD": "s3:GetObject", "PUT": "s3:PutObject", "POST": "s3:PutObject",
               "DELETE": "s3:DeleteObject"}
    return actions.get(method, "s3:GetObject"), object_arn


def _denied(caller: str, action: str, resource: Optional[str], reason: str) -> str:
    """S3's AccessDenied wording for same-account requests (it names the principal and the cause)."""
    on = f' on resource: "{resource}"' if resource else ""
    return f"User: {caller} is not authorized to perform: {action}{on} {reason}"
