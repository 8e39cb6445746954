"""HTTP request/reply values shared by the front and its interceptors, and AWS's error shapes."""
from __future__ import annotations

import base64
import json
import os
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

Headers = List[Tuple[str, str]]

# "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/s3/aws4_request, SignedHeaders=…, Signature=…"
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request")


@dataclass(frozen=True)
class SigningScope:
    """What a SigV4 signature says about the caller: key, region and service it signed for."""

    access_key_id: str
    region: str
    service: str


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # the raw request-target: path and query, exactly as received
    headers: Tuple[Tuple[str, str], ...]
    body: bytes
    local_ip: Optional[str] = None  # the front address the connection arrived on (which ENI, which "public" IP)

    def header(self, name: str) -> Optional[str]:
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> Dict[str, List[str]]:
        return parse_qs(urlsplit(self.target).query, keep_blank_values=True)

    @property
    def host(self) -> str:
        """The Host header without its port, lower case."""
        host = (self.header("Host") or "").strip().lower()
        if host.startswith("["):  # [IPv6]:port
            return host.split("]", 1)[0] + "]"
        return host.rsplit(":", 1)[0] if host.count(":") == 1 else host

    @property
    def signing(self) -> Optional[SigningScope]:
        source = self.header("Authorization") or ""
        if "Credential=" not in source:
            credential = self.query.get("X-Amz-Credential", [""])[0]  # presigned URL
            source = "Credential=" + credential
        match = _CREDENTIAL.search(source)
        if not match:
            return None
        return SigningScope(access_key_id=match.group(1), region=match.group(3), service=match.group(4))


@dataclass
class Reply:
    status: int
    headers: Headers = field(default_factory=list)
    body: bytes = b""


def json_reply(payload: Dict[str, Any]) -> Reply:
    """A 200 in the AWS JSON 1.1 protocol (SSM)."""
    return Reply(200, [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-RequestId", str(uuid.uuid4()))],
                 json.dumps(payload).encode())


def json_error(code: str, message: str, status: int = 400, **members: Any) -> Reply:
    """An AWS JSON 1.1 error: ``{"__type": code, "message": …}`` plus the error shape's own members."""
    body: Dict[str, Any] = {"__type": code, "message": message}
    body.update({k: v for k, v in members.items() if v is not None})
    return Reply(status, [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-RequestId", str(uuid.uuid4()))],
                 json.dumps(body).encode())


def query_error(code: str, message: str, status: int, ec2: bool = False) -> Reply:
    """An AWS query-protocol error: EC2's ``<Response><Errors>`` shape, or the ``<ErrorResponse>`` of
    the other query services (STS, CloudWatch)."""
    request_id = str(uuid.uuid4())
    if ec2:
        xml = ('<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>' + escape(code) +
               "</Code><Message>" + escape(message) + "</Message></Error></Errors><RequestID>" + request_id +
               "</RequestID></Response>")
    else:
        xml = ('<ErrorResponse><Error><Type>Sender</Type><Code>' +
               escape(code) + "</Code><Message>" + escape(message) + "</Message></Error><RequestId>" + request_id +
               "</RequestId></ErrorResponse>")
    return Reply(status, [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)], xml.encode())


def s3_error(
    code: str,
    message: str,
    status: int,
    head: bool,
    extra: Optional[Dict[str, str]] = None,
    headers: Optional[Headers] = None,
) -> Reply:
    """S3's REST-XML error. A HEAD answer carries no body (S3 sends none), only status and headers."""
    request_id = uuid.uuid4().hex[:16].upper()
    host_id = base64.b64encode(os.urandom(48)).decode()
    reply_headers: Headers = [("x-amz-request-id", request_id), ("x-amz-id-2", host_id),
                              ("Content-Type", "application/xml")]
    reply_headers.extend(headers or [])
    if head:
        return Reply(status, reply_headers, b"")
    fields = [("Code", code), ("Message", message)] + list((extra or {}).items())
    fields += [("RequestId", request_id), ("HostId", host_id)]
    xml = '<?xml version="1.0" encoding="UTF-8"?>\n<Error>' + "".join(
        f"<{name}>{escape(value)}</{name}>" for name, value in fields) + "</Error>"
    return Reply(status, reply_headers, xml.encode())
