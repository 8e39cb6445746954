"""One way to put an exception into words: class name, where (host, port or URL), and the
operating system's words for the errno — never a Python repr.

botocore wraps urllib3, which wraps the socket error, and their ``str()`` carries object reprs:
``Connect timeout on endpoint URL: "https://s3…" (<botocore.awsrequest.AWSHTTPSConnection object at
0x7f…>, 'Connection to s3… timed out. (connect timeout=2)')``. People need "ConnectTimeoutError:
no TCP connection to https://s3.us-east-1.amazonaws.com/ within 2 s".
"""
from __future__ import annotations

import errno
import os
import re
import ssl as ssl_module
from typing import Any, List, Optional

_REPR = re.compile(r"<[A-Za-z_][\w.]*(?:\([^<>]*\))? (?:object )?at 0x[0-9a-fA-F]+>")
_ERRNO = re.compile(r"\[Errno (-?\d+)\] ?([^'\"\]\)]*)")
_SSL = re.compile(r"\[SSL: ([A-Z_]+)\] ([^'\"()\]]+)")
_TIMEOUT = re.compile(r"(?:connect|read) timeout=([0-9.]+)")


def without_reprs(text: str) -> str:
    """``text`` with object reprs (``<… object at 0x…>``) removed and the punctuation they leave tidied."""
    if " at 0x" not in text:
        return text
    text = _REPR.sub("", text)
    text = re.sub(r"\(\s*,\s*", "(", text)
    text = re.sub(r"\(\s*\)", "", text)
    return " ".join(text.split())


def _chain(exc: BaseException) -> List[Any]:
    """``exc``, what it wraps (botocore's ``kwargs["error"]``) and its causes: at most 8."""
    out: List[Any] = []
    todo: List[Any] = [exc]
    while todo and len(out) < 8:
        cur = todo.pop(0)
        if cur is None or any(cur is seen for seen in out):
            continue
        out.append(cur)
        if isinstance(cur, BaseException):
            kwargs = getattr(cur, "kwargs", None)
            todo += [kwargs.get("error") if isinstance(kwargs, dict) else None, cur.__cause__, cur.__context__]
    return out


def errno_words(exc: BaseException) -> Optional[str]:
    """"Connection refused (errno ECONNREFUSED)" from anywhere in the exception's chain or text."""
    chain = _chain(exc)
    for cur in chain:
        # ssl.SSLError's errno is the library's own code (1 = a verification failure), not an OS errno
        code = getattr(cur, "errno", None) if isinstance(cur, BaseException) and not isinstance(cur, ssl_module.SSLError) else None
        if isinstance(code, int) and code > 0:
            return f"{os.strerror(code)} (errno {errno.errorcode.get(code, code)})"
    for cur in chain:
        text = str(cur)
        found = _ERRNO.search(text)
        if found:
            code = int(found.group(1))
            words = found.group(2).strip() or os.strerror(abs(code))
            return f"{words} (errno {errno.errorcode.get(abs(code), code)})"
        ssl = _SSL.search(text)
        if ssl:
            return f"{ssl.group(1)}: {ssl.group(2).strip()}"
    return None


def exception_text(exc: BaseException) -> str:
    """``ClassName: what happened`` in one line, for any exception (botocore's above all)."""
    name = exc.__class__.__name__
    kwargs: Any = getattr(exc, "kwargs", None)
    url = kwargs.get("endpoint_url") if isinstance(kwargs, dict) else None
    words = errno_words(exc)
    if name in ("ConnectTimeoutError", "ReadTimeoutError"):
        limit = next((m for m in (_TIMEOUT.search(str(c)) for c in _chain(exc)) if m), None)
        within = f"within {float(limit.group(1)):g} s" if limit else "within the timeout"
        what = "no TCP connection to" if name == "ConnectTimeoutError" else "no answer from"
        return f"{name}: {what} {url or 'the endpoint'} {within}"
    if url and name in ("EndpointConnectionError", "ConnectionClosedError", "SSLError", "ProxyConnectionError",
                        "HTTPClientError"):
        return f"{name}: {url}" + (f": {words}" if words else "")
    text = without_reprs(" ".join(str(exc).split()))
    if words and words.split(" (", 1)[0] not in text:
        text = f"{text} ({words})" if text else words
    return f"{name}: {text}" if text else name
