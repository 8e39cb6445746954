"""Signed AWS JSON 1.1 calls without a service model (``awsclient.JsonCaller``), their answers,
and the one-line, credential-free text every AWS answer is reduced to before it is shown.

Used for the calls that prove AWS accepts this instance: ssm (``checks.ssmapi``; the agent's own
``ListInstanceAssociations`` is not in botocore's public model), kms and logs (``checks.session``).
Not loading those models saves ~0.1–0.15 s of CPU each per process.
"""
from __future__ import annotations

import calendar
import json
import time
from concurrent import futures
from email.utils import parsedate_tz
from typing import Any, Dict, Mapping, Optional

from . import workers
from .model import Context
from .redact import redact

# X-Amz-Target prefixes (the services' JSON 1.1 protocol).
TARGETS = {"ssm": "AmazonSSM", "kms": "TrentService", "logs": "Logs_20140328"}
MAX_ANSWER_BYTES = 256 * 1024  # a ListInstanceAssociations page of 1 or a DescribeKey is ~1 KB
MESSAGE_MAX = 300

def bounded(text: Any, limit: int = MESSAGE_MAX) -> str:
    """One line, at most ``limit`` characters, nothing that looks like a signature, a token or a key
    (a proxy's error page may echo our request headers)."""
    line = redact(" ".join(str(text)[:8192].split()))
    return line if len(line) <= limit else line[:limit - 1] + "…"


def date_sample(headers: Mapping[str, str], received: float) -> Optional[Dict[str, Any]]:
    """AWS's clock from an answer's ``Date`` header: ``skew_s`` = local - AWS (1 s resolution)."""
    raw = headers.get("date")
    parsed = parsedate_tz(raw) if isinstance(raw, str) and len(raw) < 64 else None
    if not parsed:
        return {"date": bounded(raw, 64), "parsed": False} if raw else None
    try:
        server = float(calendar.timegm(parsed[:9]) - (parsed[9] or 0))
    except (OverflowError, ValueError, TypeError):
        return {"date": bounded(raw, 64), "parsed": False}
    return {"date": raw, "parsed": True, "skew_s": round(received - server, 1)}


class JsonAnswer:
    """One call's result: the JSON object of a 200, or the error code/message/status, or a transport
    failure (``transport``). A body that is not a JSON object is code ``BadAnswer``."""

    def __init__(self) -> None:
        self.response: Optional[Mapping[str, Any]] = None
        self.code: Optional[str] = None
        self.message = ""  # bounded for display
        self.full_message = ""  # up to 4 KB, to classify (the policy clause comes last)
        self.status: Optional[int] = None
        self.transport: Optional[str] = None
        self.clock: Optional[Dict[str, Any]] = None
        self.endpoint_url: Optional[str] = None


def json_call(ctx: Context, service: str, operation: str, payload: Mapping[str, Any]) -> JsonAnswer:
    """One signed call, in a worker bounded by the check's budget (botocore's name resolution is not
    bounded by any timeout of ours)."""
    from . import awsclient

    answer = JsonAnswer()

    def work() -> None:
        from botocore import exceptions as bx

        try:
            caller = awsclient.json_caller(ctx, service)
            answer.endpoint_url = caller.endpoint_url
            status, headers, body = caller.send(f"{TARGETS[service]}.{operation}", payload, MAX_ANSWER_BYTES)
        except (bx.BotoCoreError, ValueError, OSError) as exc:
            answer.transport = bounded(f"{exc.__class__.__name__}: {exc}")
            return
        answer.clock = date_sample(headers, time.time())
        answer.status = status
        try:
            doc = json.loads(body.decode("utf-8")) if body and len(body) <= MAX_ANSWER_BYTES else None
        except (UnicodeDecodeError, ValueError):
            doc = None
        if not isinstance(doc, dict):
            answer.code = "BadAnswer"
            answer.message = (f"HTTP {status}, not a JSON object" + (f" (longer than {MAX_ANSWER_BYTES} bytes)"
                              if len(body) > MAX_ANSWER_BYTES else f": {bounded(repr(body[:80]), 120)}"))
            return
        if status == 200:
            answer.response = doc
            return
        code = str(doc.get("__type") or headers.get("x-amzn-errortype") or "").split("#")[-1].split(":")[0]
        answer.code = bounded(code, 80) or None
        answer.full_message = bounded(doc.get("message") or doc.get("Message") or "", 4096)
        answer.message = bounded(answer.full_message, 600)

    job = workers.run(work)
    futures.wait([job], timeout=max(0.1, ctx.remaining() - 0.1))
    if not job.done():
        answer.transport = f"no answer within {ctx.settings.api_timeout_s:g} s (name resolution or the endpoint hangs)"
    elif job.exception() is not None:
        raise job.exception()  # type: ignore[misc] # our bug: the runner reports it
    return answer
