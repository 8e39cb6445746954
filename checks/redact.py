"""The one redaction every string passes before it leaves the process.

Outputs (table, JSON, Nagios), logs, evidence, inventory, notes, /report and error lines all go
through :func:`redact` (strings) or :func:`redact_value` (nested evidence). What it removes:

* user:password in URLs, with a scheme (``http://u:p@proxy``) or without one (``u:p@proxy:3128``,
  which botocore, urllib3 and curl accept as a proxy);
* SigV4 material: ``X-Amz-Security-Token``, ``X-Amz-Signature``/``Signature=``, the
  ``Credential=`` scope (it starts with the access key id), ``X-Amz-Credential``;
* credential values by name, in JSON, ``key=value`` and header form: ``AccessKeyId``,
  ``SecretAccessKey``, ``SessionToken``, ``Token``, ``aws_*_key*``/``aws_session_token``, the
  IMDSv2 token header, ``password``;
* bare access key ids (``AKIA``/``ASIA`` + 16) and random-looking base64 runs of 40+ characters
  (a secret key is 40, a session token hundreds); long paths, ARNs and hex digests are kept
  (they lack the mix of upper case, lower case and digits, or contain ``/``-separated words).

It is deliberately conservative about ordinary words: ``token: 403`` in a sentence is kept; only
the key names above, spelled as AWS spells them, mark a value as secret.

The same pass escapes terminal controls (checks/textsafe.py: ESC, CR, C1, bidi overrides) so that
nothing an answer carries reaches a terminal raw; newline and tab stay (multi-line text such as a
traceback, or a whole rendering, passes here too). One-line fields escape those as well (Report).
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Mapping

from .textsafe import escape_controls

MASK = "<redacted>"

# scheme://anything-up-to-the-last-@-before-the-host@  (the password may contain '@' or ':')
_URL_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#\"'<>]*@")
# user:password@host without a scheme; the user part stops at separators so "HTTPS_PROXY=" survives.
_BARE_USERINFO = re.compile(r"(?<![\w.+:/-])([^\s/@:=,;\"'<>()\[\]{}]+):[^\s/\"'<>]*@(?=[A-Za-z0-9\[])")
_SIGV4 = re.compile(
    r"((?:X-Amz-Security-Token|X-Amz-Signature|X-Amz-Credential|x-aws-ec2-metadata-token|Signature|Credential)"
    r"[\"']?\s*[=:]\s*[\"']?)[^\s,\"'&;)}\]]+", re.I)
_NAMED = re.compile(
    r"((?:AccessKeyId|SecretAccessKey|SecretKey|SessionToken|SecurityToken|aws_access_key_id|aws_secret_access_key"
    r"|aws_session_token|aws_security_token|password|passwd)[\"']?\s*[=:]\s*[\"']?)[^\s,\"'&;)}\]]+", re.I)
# "Token" alone is a common word: only as a quoted key or Token=… (AWS's casing).
_TOKEN_KEY = re.compile(r"([\"']Token[\"']\s*:\s*[\"']?|\bToken=)[^\s,\"'&;)}\]]+")
_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AROA|AIDA)[A-Z0-9]{16}\b")
_BASE64_RUN = re.compile(r"[A-Za-z0-9/+=]{40,}")
# Gates: each substitution runs only where its gate finds a candidate (most strings have none).
# (every secret key name above ends in one of these words)
_NAMED_GATE = re.compile(r"(?:signature|credential|token|key|keyid|key_id|password|passwd)[\"']?\s*[=:]", re.I)
_RUN_GATE = re.compile(r"[A-Za-z0-9/+=]{40}|(?:AKIA|ASIA|AROA|AIDA)[A-Z0-9]{16}")


# Only these names: a session token's base64 may end in "=" padding, so "name=" alone proves nothing.
_SYNC_PARTITION = re.compile(r"accountid=[0-9]{12}|region=[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}|resourcetype=[A-Za-z]+")


def _random_looking(match: "re.Match[str]") -> str:
    run = match.group(0)
    if "/" in run.strip("/") and any(len(part) < 6 for part in run.split("/")):
        return run  # a path of words ("/aws/ssm/SessionManager/…"), not a key
    if "/" in run and any(_SYNC_PARTITION.fullmatch(part) for part in run.split("/")):
        return run  # a Resource Data Sync key (…/accountid=…/region=…/resourcetype=…), not a key
    upper = any(c.isupper() for c in run)
    lower = any(c.islower() for c in run)
    digit = any(c.isdigit() for c in run)
    return MASK if upper and lower and digit else run


@lru_cache(maxsize=8192)  # a daemon's reports repeat most strings cycle after cycle
def _redact_cached(text: str) -> str:
    if "@" in text:
        text = _URL_USERINFO.sub(r"\1***@", text)
        text = _BARE_USERINFO.sub("***@", text)
    if _NAMED_GATE.search(text):
        text = _SIGV4.sub(lambda m: m.group(1) + MASK, text)
        text = _NAMED.sub(lambda m: m.group(1) + MASK, text)
        text = _TOKEN_KEY.sub(lambda m: m.group(1) + MASK, text)
    if _RUN_GATE.search(text):
        text = _KEY_ID.sub(MASK, text)
        text = _BASE64_RUN.sub(_random_looking, text)
    return escape_controls(text, multiline=True)


def redact(text: str) -> str:
    """``text`` without secrets (see the module docstring). Idempotent; never raises."""
    if not text:
        return text
    if len(text) > 4096:
        return _redact_cached.__wrapped__(text)  # not worth a cache slot
    out = _redact_cached(text)
    return text if out == text else out  # the caller's own object when nothing changed


_PROXY_USERINFO = re.compile(r"^((?:[A-Za-z][A-Za-z0-9+.-]*://)?)[^/\s]*@")  # greedy: to the last @ (p@ss)


def redact_proxy(value: str) -> str:
    """A proxy setting's value: any userinfo goes, a user name alone included
    (``http://user:pass@proxy:3128`` and ``user:pass@proxy:3128`` → ``…***@proxy:3128``)."""
    return redact(_PROXY_USERINFO.sub(lambda m: m.group(1) + "***@", value.strip()))


_SECRET_KEYS = frozenset(k.lower() for k in (
    "AccessKeyId", "SecretAccessKey", "SecretKey", "SessionToken", "SecurityToken", "Token", "password",
    "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "x-amz-security-token",
    "x-aws-ec2-metadata-token", "authorization"))


def redact_value(value: Any, _depth: int = 0) -> Any:
    """:func:`redact` applied to every string in nested mappings and sequences (keys included);
    the value of a secret-named key is masked whole. Returns the same object when nothing changed,
    so a clean report costs no copies."""
    if isinstance(value, str):
        return redact(value)
    if _depth > 32:
        return value
    if isinstance(value, (dict, Mapping)):
        out = {}
        changed = False
        for k, v in value.items():
            nk = redact(k) if isinstance(k, str) else k
            if isinstance(k, str) and k.lower() in _SECRET_KEYS and isinstance(v, str) and v:
                nv: Any = MASK
            else:
                nv = redact_value(v, _depth + 1)
            changed = changed or nk is not k or nv is not v
            out[nk] = nv
        return out if changed else value
    if isinstance(value, (list, tuple)):
        items = [redact_value(v, _depth + 1) for v in value]
        if all(a is b for a, b in zip(items, value)):
            return value
        return type(value)(items) if isinstance(value, tuple) else items
    return value
