"""The SSM agent's logs: a bounded tail of each file and the causes its lines name.

Tails are read safely as root (no symlink followed, no FIFO blocked on, at most ``MAX_TAIL_BYTES``)
and tolerate binary junk and rotation during the read (said, not hidden). Classification uses the
agent's own strings (github:aws/amazon-ssm-agent, see ``checks/agentfiles.py``) and the AWS SDK / Go
errors it logs verbatim; only the agent's current run (lines after its last start line) counts.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .agentfiles import (MAX_LOG_LINE_CHARS, MAX_TAIL_BYTES, START_RE, Unsafe, _one_line, _open_regular, _show,
                         _TS_RE)


@dataclass(frozen=True)
class Tail:
    path: str
    text: str = ""  # whole lines; a log is searched as one string (per-line regexes cost ~0.3 s/MiB)
    size: int = 0
    truncated: bool = False  # the file is longer than what was read
    rotated: bool = False  # replaced or shrunk while we read it
    binary_bytes: int = 0  # NULs and invalid UTF-8 dropped
    problem: Optional[str] = None  # why it was not read (None: read)
    exists: bool = True

    @property
    def lines(self) -> Tuple[str, ...]:
        return tuple(self.text.splitlines())


def read_tail(path: str, max_bytes: int = MAX_TAIL_BYTES) -> Tail:
    """The last ``max_bytes`` of a log, whole lines only."""
    try:
        fd, st = _open_regular(path)
    except FileNotFoundError:
        return Tail(path, problem="does not exist", exists=False)
    except PermissionError:
        return Tail(path, problem="not readable (permission denied)")
    except OSError as exc:
        return Tail(path, problem="is a symlink (not followed)" if exc.errno == 40 else _one_line(exc))
    except Unsafe as exc:
        return Tail(path, problem=str(exc))
    try:
        start = max(0, st.st_size - max_bytes)
        chunks: List[bytes] = []
        got = 0
        while got < max_bytes:
            chunk = os.pread(fd, min(256 * 1024, max_bytes - got), start + got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        after = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        return Tail(path, problem=f"read failed: {_one_line(exc)}")
    os.close(fd)
    try:
        now = os.lstat(path)
        replaced = (now.st_ino, now.st_dev) != (st.st_ino, st.st_dev)
    except OSError:
        replaced = True
    rotated = replaced or after.st_size < st.st_size
    raw = b"".join(chunks)
    if start > 0:  # the first line was cut: drop it
        raw = raw[raw.find(b"\n") + 1:] if b"\n" in raw else b""
    nuls = raw.count(b"\0")
    text = raw.replace(b"\0", b"").decode("utf-8", "replace")
    bad = text.count("\ufffd")
    return Tail(path, text=text, size=st.st_size, truncated=start > 0, rotated=rotated,
                binary_bytes=nuls + bad)


# --- classifying the log ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Pattern:
    kind: str
    regex: "re.Pattern[str]"


# The agent's own strings (see the module docstring) and the Go / AWS SDK errors it logs verbatim.
PATTERNS: Tuple[Pattern, ...] = (
    Pattern("access_denied", re.compile(r"AccessDeniedException|is not authorized to perform")),
    Pattern("expired_token", re.compile(r"ExpiredTokenException|security token included in the request is expired")),
    Pattern("clock", re.compile(r"InvalidSignatureException|Signature expired|Signature not yet current")),
    Pattern("no_credentials", re.compile(r"NoCredentialProviders|AssumeRoleUnauthorizedAccess|no valid credentials "
                                         r"could be retrieved|failed to retrieve instance profile role credentials")),
    Pattern("no_space", re.compile(r"no space left on device")),
    Pattern("proxy", re.compile(r"proxyconnect")),
    Pattern("tls", re.compile(r"x509: ")),
    Pattern("network", re.compile(r"dial tcp [^ ]*: (?:i/o timeout|connect: connection refused|lookup [^ ]+ .*no such host)"
                                  r"|Client\.Timeout exceeded")),
    Pattern("hibernate", re.compile(r"Entering SSM Agent hibernate|Agent is in hibernate mode|Backing off health check "
                                    r"to every \d+ seconds")),
)
# Literal needles that every PATTERNS match contains: str.find over the whole tail, then the regex
# on the few lines found (a 1 MiB tail costs milliseconds, not a regex per line).
NEEDLES = ("AccessDenied", "not authorized", "ExpiredToken", "security token", "InvalidSignature", "Signature ",
           "NoCredentialProviders", "AssumeRoleUnauthorized", "valid credentials", "role credentials",
           "space left on device", "proxyconnect", "x509: ", "dial tcp", "Client.Timeout", "hibernate",
           "Backing off", "amazon-ssm-agent - v")
_ANY = re.compile("|".join(f"(?P<{p.kind}>{p.regex.pattern})" for p in PATTERNS) + r"|(?P<start>" + START_RE.pattern + ")")
POLICY_CLAUSES = (  # the policy-type clause AWS puts in the AccessDenied message (AWS-FACTS.md)
    ("vpc_endpoint_policy", re.compile(r"VPC endpoint policy")),
    ("identity_policy", re.compile(r"identity-based policy")),
    ("scp", re.compile(r"service control policy")),
    ("permissions_boundary", re.compile(r"permissions boundary")),
)


def _candidate_lines(text: str) -> List[Tuple[int, str]]:
    """(offset, line) of every line holding a needle, in file order, each once."""
    starts = set()
    for needle in NEEDLES:
        at = text.find(needle)
        while at != -1:
            start = text.rfind("\n", 0, at) + 1
            starts.add(start)
            end = text.find("\n", at)
            at = text.find(needle, end) if end != -1 else -1
    out = []
    for start in sorted(starts):
        end = text.find("\n", start)
        out.append((start, text[start:end if end != -1 else len(text)]))
    return out


def _timestamp(text: str, offset: int, line: str) -> str:
    """The line's seelog timestamp; an untimed line (a wrapped message) takes the one above it."""
    for _ in range(20):
        m = _TS_RE.match(line)
        if m or offset == 0:
            return m.group(1) if m else ""
        start = text.rfind("\n", 0, offset - 1) + 1
        line, offset = text[start:offset - 1], start
    return ""


@dataclass
class LogReading:
    """What the tails say about the agent's current run."""

    files: List[Dict[str, Any]] = field(default_factory=list)
    version: Optional[str] = None  # from the last start line
    last_start: Optional[str] = None  # its timestamp
    hits: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # kind -> {count, last, at}
    hibernating: bool = False
    unreadable: List[str] = field(default_factory=list)

    def policy_type(self) -> Optional[str]:
        return self.hits.get("access_denied", {}).get("policy")


def classify(tails: Sequence[Tail]) -> LogReading:
    """Lines since the agent's last start (the current run; all lines when no start is visible),
    classified by ``PATTERNS``. Hibernating: a hibernation line after the last start."""
    reading = LogReading()
    events: List[Tuple[str, int, int, str, str]] = []  # (timestamp, file#, line#, kind, line)
    for n, tail in enumerate(tails):
        info: Dict[str, Any] = {"path": tail.path, "read": tail.problem is None}
        if tail.problem is None:
            info.update(bytes=tail.size, truncated=tail.truncated, rotated=tail.rotated, binary_bytes=tail.binary_bytes)
        else:
            info["problem"] = tail.problem
            if tail.exists:
                reading.unreadable.append(f"{tail.path}: {tail.problem}")
        reading.files.append(info)
        for offset, line in _candidate_lines(tail.text):
            m = _ANY.search(line)
            if m and m.lastgroup:
                events.append((_timestamp(tail.text, offset, line), n, offset, m.lastgroup, line))
    events.sort(key=lambda e: (e[0], e[1] if e[0] else 0, e[2]))
    starts = [e for e in events if e[3] == "start"]
    if starts:
        reading.last_start = starts[-1][0] or None
        found = START_RE.search(starts[-1][4])
        reading.version = found.group(1) if found else None
        cut = events.index(starts[-1])
        events = events[cut + 1:]
    seen = set()
    for ts, _, _, kind, line in events:
        if kind == "start" or (ts and (ts, kind) in seen):  # errors.log repeats amazon-ssm-agent.log's errors
            continue
        seen.add((ts, kind))
        hit = reading.hits.setdefault(kind, {"count": 0})
        hit.update(count=hit["count"] + 1, last=_show(line, MAX_LOG_LINE_CHARS), at=ts or None)
        if kind == "access_denied":  # from the whole line: the clause is at its end
            hit["policy"] = next((name for name, rx in POLICY_CLAUSES if rx.search(line)), None)
    reading.hibernating = "hibernate" in reading.hits
    return reading
