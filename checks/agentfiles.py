"""The SSM agent's own evidence, read safely as root: bounded, never following a symlink an
unprivileged user could plant, never trusting a file such a user could change.

Everything here is a pure reader (no findings): ``checks/ssmagent.py`` turns it into findings.
Facts from github:aws/amazon-ssm-agent (read, not copied):

* ``amazon-ssm-agent -version`` prints ``SSM Agent version: <v>`` (core/agent_parser.go);
* at start the agent logs ``amazon-ssm-agent - v<v>`` (core/app/agent.go), seelog format
  ``%Date(2006-01-02 15:04:05.0000) %LEVEL %Msg`` (agent/log/logger/defaultconfig.go);
* hibernation: ``Entering SSM Agent hibernate - <error>`` (agent/agent.go); hibernate.log:
  ``Agent is in hibernate mode…``, ``Backing off health check to every %v seconds for %v seconds.``,
  ``Health ping failed with error - %v`` (agent/hibernation/hibernation.go).
"""
from __future__ import annotations

import json
import os
import pwd
import re
import select
import signal
import stat
import subprocess
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .redact import redact
from .redact import redact_proxy as _redact_proxy

MAX_TAIL_BYTES = 1024 * 1024  # the bound: a log tail never costs more than 1 MiB
MAX_LINE_CHARS = 300  # a value quoted in evidence
MAX_LOG_LINE_CHARS = 600  # an AccessDenied line names the role, action, resource and policy type
MAX_CONFIG_BYTES = 256 * 1024  # amazon-ssm-agent.json is ~2 KiB
MAX_ENVIRON_BYTES = 256 * 1024
MAX_VERSION_OUTPUT = 4096
VERSION_TIMEOUT_S = 2.0

VERSION_RE = re.compile(r"SSM Agent version:\s*(\d+(?:\.\d+){3})\b")
START_RE = re.compile(r"amazon-ssm-agent - v(\d+(?:\.\d+){3})\b")
_TS_RE = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d{1,9})?)")  # seelog's, with its fraction


class Unsafe(Exception):
    """A path we will not read or run as root; ``str()`` says why in one line."""


# --- paths a root process may trust ----------------------------------------------------------------

def _trusted_dir_chain(directory: str) -> str:
    """Every directory from / to ``directory`` (symlinks resolved: /snap/x/current is one) is
    root's and not writable by group/other, so nobody else can swap what lies below."""
    real = os.path.realpath(directory)
    parts = [p for p in real.split("/") if p]
    path = "/"
    for part in [""] + parts:
        path = os.path.join(path, part) if part else "/"
        st = os.lstat(path)
        writable = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX  # /tmp's sticky bit
        if st.st_uid != 0 or writable:  # (a sticky dir: others cannot replace root's file in it)
            raise Unsafe(f"{path} is owned by uid {st.st_uid} or writable by group/other")
    return real


def open_trusted_executable(path: str) -> int:
    """An O_PATH descriptor of ``path`` when it is a regular root-owned file that only root can
    change, in a directory chain only root can change; raises Unsafe/OSError otherwise."""
    # Opened through the resolved chain just checked (root's all the way), so that no symlink on the
    # way can be swapped between the check and the open.
    real_dir = _trusted_dir_chain(os.path.dirname(path))
    fd = os.open(os.path.join(real_dir, os.path.basename(path)), os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if stat.S_ISLNK(st.st_mode):
            raise Unsafe(f"{path} is a symlink")
        if not stat.S_ISREG(st.st_mode):
            raise Unsafe(f"{path} is not a regular file")
        if st.st_uid != 0:
            raise Unsafe(f"{path} is owned by uid {st.st_uid}, not root")
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise Unsafe(f"{path} is writable by group/other (mode {stat.S_IMODE(st.st_mode):o})")
        if not st.st_mode & stat.S_IXUSR:
            raise Unsafe(f"{path} is not executable")
    except BaseException:
        os.close(fd)
        raise
    return fd


# --- version ---------------------------------------------------------------------------------------

def version_tuple(text: str) -> Tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


def parse_version(output: str) -> Optional[str]:
    m = VERSION_RE.search(output)
    return m.group(1) if m else None


@dataclass(frozen=True)
class VersionProbe:
    version: Optional[str]
    binary: Optional[str]
    problems: Tuple[str, ...]  # one line per binary we could not use


_version_cache: Dict[Tuple[str, int, int, int, int], str] = {}  # (path, dev, ino, size, mtime) -> version


def run_version(binaries: Sequence[str], timeout_s: float = VERSION_TIMEOUT_S) -> VersionProbe:
    """``<binary> -version`` for the first trusted binary: empty environment, bounded output and
    time. The answer is cached per file identity (the daemon must not fork it every cycle)."""
    problems: List[str] = []
    for path in binaries:
        try:
            fd = open_trusted_executable(path)
        except FileNotFoundError:
            continue
        except (Unsafe, OSError) as exc:
            problems.append(f"{path}: refused: {_one_line(exc)}")
            continue
        try:
            st = os.fstat(fd)
            key = (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            if key in _version_cache:
                return VersionProbe(_version_cache[key], path, tuple(problems))
            output, problem = _run_bounded(fd, timeout_s)
        finally:
            os.close(fd)
        version = parse_version(output)
        if version:
            _version_cache.clear()
            _version_cache[key] = version
            return VersionProbe(version, path, tuple(problems))
        problems.append(f"{path}: {problem or 'no version in its output: ' + _show(output)}")
    return VersionProbe(None, None, tuple(problems))


def _run_bounded(fd: int, timeout_s: float) -> Tuple[str, Optional[str]]:
    """Executes the file behind ``fd`` (what we checked is what runs) with ``-version``."""
    try:
        proc = subprocess.Popen(["amazon-ssm-agent", "-version"], executable=f"/proc/self/fd/{fd}",
                                pass_fds=(fd,), env={}, cwd="/", stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as exc:
        return "", f"cannot run: {_one_line(exc)}"
    out = b""
    deadline = time.monotonic() + timeout_s
    problem = None
    try:
        assert proc.stdout is not None
        while len(out) <= MAX_VERSION_OUTPUT:
            left = deadline - time.monotonic()
            if left <= 0:
                problem = f"no answer within {timeout_s:g} s"
                break
            ready, _, _ = select.select([proc.stdout], [], [], left)
            if not ready:
                continue
            chunk = os.read(proc.stdout.fileno(), 1024)
            if not chunk:
                break
            out += chunk
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: nothing it started outlives us
        except OSError:
            pass
        proc.wait(timeout=1.0)
        if proc.stdout:
            proc.stdout.close()
    return out[:MAX_VERSION_OUTPUT].decode("utf-8", "replace"), problem


# --- the process -----------------------------------------------------------------------------------

def process_uid(pid: int) -> Tuple[int, int]:
    """(real, effective) uid from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status", "rb") as fh:
        for raw in fh.read(64 * 1024).splitlines():
            if raw.startswith(b"Uid:"):
                ids = raw.split()[1:3]
                return int(ids[0]), int(ids[1])
    raise ValueError(f"no Uid line in /proc/{pid}/status")


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


PROXY_NAMES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy")
def redact_proxy(value: str) -> str:
    """``http://user:pass@proxy:3128`` → ``http://***@proxy:3128`` (also without a scheme)."""
    return _redact_proxy(value)[:MAX_LINE_CHARS]


def process_proxy_env(pid: int) -> Dict[str, str]:
    """Proxy variables of /proc/<pid>/environ (the environment the agent was started with), redacted."""
    with open(f"/proc/{pid}/environ", "rb") as fh:
        raw = fh.read(MAX_ENVIRON_BYTES)
    return _proxy_vars(entry.decode("utf-8", "replace") for entry in raw.split(b"\0"))


def _proxy_vars(entries: Any) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for entry in entries:
        name, sep, value = entry.partition("=")
        if sep and name in PROXY_NAMES:
            out[name] = value if name.lower() == "no_proxy" else redact_proxy(value)
    return out


_ENV_LINE = re.compile(r"^\s*Environment\s*=\s*(.*)$")


def dropin_proxy_env(dirs: Sequence[str]) -> Tuple[Dict[str, str], List[str], List[str]]:
    """Environment= proxy settings of ``<dir>/*.conf`` (systemd drop-ins, in lexical order, a later
    file wins). Returns (vars, files read, problems)."""
    found: Dict[str, str] = {}
    files: List[str] = []
    problems: List[str] = []
    for directory in dirs:
        try:
            names = sorted(n for n in os.listdir(directory) if n.endswith(".conf"))[:64]
        except FileNotFoundError:
            continue
        except OSError as exc:
            problems.append(f"{directory}: {_one_line(exc)}")
            continue
        for name in names:
            path = os.path.join(directory, name)
            text, problem = read_small(path, 64 * 1024)
            if problem:
                problems.append(problem)
                continue
            files.append(path)
            for line in text.splitlines():
                m = _ENV_LINE.match(line)
                if m:
                    found.update(_proxy_vars(_unit_words(m.group(1))))
    return found, files, problems


def _unit_words(text: str) -> List[str]:
    """systemd's Environment= syntax: space-separated assignments, each optionally double-quoted."""
    return [a or b for a, b in re.findall(r'"([^"]*)"|(\S+)', text)]


def no_proxy_covers(no_proxy: str, host: str) -> bool:
    """Go's http.ProxyFromEnvironment rule (golang.org/x/net/http/httpproxy): "*", an exact host or
    IP, a CIDR holding the IP, or a domain suffix (".example.com" or "example.com")."""
    import ipaddress
    host = host.lower().rstrip(".")
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        entry = entry.split(":", 1)[0] if entry.count(":") == 1 else entry  # host:port
        try:
            if ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False):
                return True
            continue
        except ValueError:
            pass
        bare = entry.lstrip("*").lstrip(".")
        if host == bare or host.endswith("." + bare):
            return True
    return False


# --- small files ---------------------------------------------------------------

def _open_regular(path: str) -> Tuple[int, os.stat_result]:
    """O_NOFOLLOW (a planted symlink is refused, not followed), O_NONBLOCK (a FIFO cannot block)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise Unsafe("not a regular file")
    return fd, st


def read_small(path: str, limit: int) -> Tuple[str, Optional[str]]:
    """(text, problem): a whole small file; a problem is one line naming the path."""
    try:
        fd, st = _open_regular(path)
    except FileNotFoundError:
        return "", f"{path}: does not exist"
    except OSError as exc:
        why = "is a symlink (not followed)" if exc.errno == 40 else _one_line(exc)
        return "", f"{path}: {why}"
    except Unsafe as exc:
        return "", f"{path}: {exc}"
    try:
        if st.st_size > limit:
            return "", f"{path}: {st.st_size} bytes is more than {limit}"
        raw = os.read(fd, limit + 1)
    finally:
        os.close(fd)
    if len(raw) > limit:
        return "", f"{path}: more than {limit} bytes"
    if b"\0" in raw:
        return "", f"{path}: binary data (a NUL byte)"
    return raw.decode("utf-8", "replace"), None


# --- disk and the agent's own config ---------------------------------------------------------------

def disk_usage(path: str) -> Dict[str, Any]:
    st = os.statvfs(path)
    return {"path": path, "free_bytes": st.f_bavail * st.f_frsize, "size_bytes": st.f_blocks * st.f_frsize,
            "free_inodes": st.f_favail, "inodes": st.f_files}


AGENT_JSON_OVERRIDES = (("Agent", "Region"), ("Ssm", "Endpoint"), ("Mgs", "Region"), ("Mgs", "Endpoint"),
                        ("Mds", "Endpoint"), ("S3", "Endpoint"), ("S3", "Region"), ("Kms", "Endpoint"))


def agent_json_overrides(path: str) -> Tuple[Optional[Dict[str, str]], Optional[str]]:
    """(non-empty overrides like {"Ssm.Endpoint": "..."}, problem). None overrides: file absent."""
    text, problem = read_small(path, MAX_CONFIG_BYTES)
    if problem:
        return (None, None) if problem.endswith("does not exist") else ({}, problem)
    try:
        doc = json.loads(text)
    except ValueError as exc:
        return {}, f"{path}: not valid JSON ({_one_line(exc)})"
    except RecursionError:
        return {}, f"{path}: JSON nested too deeply"
    if not isinstance(doc, dict):
        return {}, f"{path}: not a JSON object"
    found: Dict[str, str] = {}
    for section, key in AGENT_JSON_OVERRIDES:
        value = doc.get(section, {}).get(key) if isinstance(doc.get(section), dict) else None
        if isinstance(value, str) and value.strip():
            found[f"{section}.{key}"] = value.strip()[:MAX_LINE_CHARS]
        elif value not in (None, ""):
            return found, f"{path}: {section}.{key} is {type(value).__name__}, not a string"
    return found, None


def _one_line(exc: object) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split())[:MAX_LINE_CHARS]


def _show(text: str, limit: int = MAX_LINE_CHARS) -> str:
    # A log line may quote a signed URL or a proxy URL with a password: neither leaves us.
    text = " ".join(redact(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."

