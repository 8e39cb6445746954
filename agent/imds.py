"""Instance facts from IMDSv2, done the way cloud-init's EC2 datasource does it.

* ``PUT /latest/api/token`` with ``X-aws-ec2-metadata-token-ttl-seconds: 21600`` (the maximum).
  403 → the endpoint is disabled (never retried); no answer in time → unreachable or the PUT
  response hop limit is too low (default 1: a container one hop further never sees the answer);
  refused/reset → unreachable (retried once, connection errors are often transient).
* GETs carry ``X-aws-ec2-metadata-token``; a 401 means the token expired: clear it, fetch a new
  one, retry once. Independent paths are fetched concurrently; the whole gather is bounded by
  ``budget_s`` (short connect/read timeouts instead of the SDKs' multi-second retries).
* Every accepted value is validated (a region is a region name, a CIDR a CIDR, ...): a proxy or a
  captive portal that answers HTML must not become a "fact".
* The token is a credential: it never appears in logs, exceptions or evidence.

Facts set in the config (``facts:``) win per field; when every fact the checks need is set, or
``imds.enabled`` is false, IMDS is not contacted at all.
"""
from __future__ import annotations

import http.client
import json
import logging
import re
import socket
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple
from urllib.parse import urlsplit

from .checks import hostnames, workers
from .checks.causes import explain
from .checks.model import Facts, Finding, Status
from .checks.redact import redact
from .config import (ImdsSettings, Invalid, hostname, instance_id, ipv4, ipv4_cidr, mac_address,
                     partition_name, profile_arn, region_name, sg_id, show, subnet_id, vpc_id)
from . import imds6

log = logging.getLogger(__name__)

TOKEN_PATH = "/latest/api/token"
META_PATH = "/latest/meta-data/"
TOKEN_TTL_S = 21600  # the IMDSv2 maximum (AWS-FACTS.md)
MAX_BODY_BYTES = 16 * 1024  # the longest real answer (iam/info) is a few hundred bytes
_MAX_TOKEN_CHARS = 1024  # real tokens are ~56 base64 characters

# Facts the checks need; when all are set in the config, IMDS is not contacted. partition/domain
# are derived from the region, vpc_cidrs from vpc_cidr; mac and security_group_ids only help.
NEEDED: Tuple[str, ...] = ("region", "instance_id", "vpc_id", "subnet_id", "vpc_cidr", "subnet_cidr",
                           "local_ipv4", "public_ipv4", "instance_profile_arn")
_FACT_FIELDS = ("region", "partition", "domain", "instance_id", "mac", "vpc_id", "subnet_id", "vpc_cidr",
                "vpc_cidrs", "subnet_cidr", "local_ipv4", "public_ipv4", "instance_profile_arn",
                "security_group_ids", "ipv6s", "vpc_ipv6_cidrs", "subnet_ipv6_cidrs", "availability_zone", "account_id")
# The role's credentials as the SSM agent gets them (iam/security-credentials/<role>): asked with
# the facts, kept only as a summary (Code, Expiration, ...); the keys themselves never leave here.
CREDENTIALS_PATH = "iam/security-credentials/"
_CREDENTIAL_FIELDS = ("Code", "Message", "Type", "LastUpdated", "Expiration")
_MAX_MESSAGE_CHARS = 300
_LIST_FIELDS = ("vpc_cidrs", "security_group_ids", "ipv6s", "vpc_ipv6_cidrs", "subnet_ipv6_cidrs")

# Facts no running instance can change: its identity and the primary network interface (which
# cannot be detached), its primary private IPv4, its subnet and the VPC's primary CIDR (neither can
# be modified). Everything else (secondary CIDRs, security groups, public IPv4, instance profile) is
# asked every time.
STATIC_FACTS = frozenset({"region", "partition", "domain", "instance_id", "mac", "vpc_id", "subnet_id",
                          "vpc_cidr", "subnet_cidr", "local_ipv4", "availability_zone"})
_remember_static = False
_memo: Dict[str, Dict[str, Any]] = {}  # IMDS endpoint -> static fact -> validated value


def remember_static_facts(enabled: bool = True) -> None:
    """The daemon turns this on: a cycle then sends 6 IMDS requests instead of 15. Off (the
    default) every gather asks for everything; turning it off forgets what was remembered."""
    global _remember_static
    _remember_static = enabled
    if not enabled:
        _memo.clear()


# States by severity: the worst failure names the overall state.
_SEVERITY = {"disabled": 4, "timeout": 3, "unreachable": 2, "error": 1}


# --- answer parsers (each raises config.Invalid on content that IMDS would never return) -----------
def _lines(parse: Callable[[Any], str]) -> Callable[[str], Tuple[str, ...]]:
    def parse_lines(text: str) -> Tuple[str, ...]:
        items = tuple(line.strip() for line in text.splitlines() if line.strip())
        if not items:
            raise Invalid("the answer is empty", "one value per line")
        return tuple(parse(item) for item in items)

    return parse_lines


def _iam_info(text: str) -> str:
    """``iam/info`` is JSON with ``InstanceProfileArn`` (and Code, LastUpdated, InstanceProfileId)."""
    try:
        doc = json.loads(text)
    except ValueError:
        raise Invalid(f"{show(text)} is not JSON", "a JSON document with InstanceProfileArn") from None
    if not isinstance(doc, dict) or "InstanceProfileArn" not in doc:
        raise Invalid(f"{show(text)} has no InstanceProfileArn", "a JSON document with InstanceProfileArn")
    return profile_arn(doc["InstanceProfileArn"])


# An AZ name: us-east-1b, and Local/Wavelength Zones such as us-east-1-bos-1a.
_AZ_NAME = re.compile(r"^[a-z]{2}(?:-[a-z0-9]+)+$")
# The account in an instance profile ARN: arn:<partition>:iam::<account>:instance-profile/<name>.
_ARN_ACCOUNT = re.compile(r"^arn:[a-z-]+:iam::([0-9]{12}):instance-profile/")


def _availability_zone(text: str) -> str:
    value = text.strip()
    if len(value) > 64 or not _AZ_NAME.match(value):
        raise Invalid(f"{show(text)} is not an availability zone", "a zone name like us-east-1b")
    return value


@dataclass(frozen=True)
class _Path:
    fact: str
    path: str  # under /latest/meta-data/; "{mac}" is filled in
    parse: Callable[[str], Any]
    optional: bool = False  # 404 is an answer ("none"), not a failure


_PLAIN = (
    _Path("region", "placement/region", region_name),
    _Path("partition", "services/partition", partition_name, optional=True),  # derived from region if absent
    _Path("domain", "services/domain", hostname, optional=True),
    _Path("instance_id", "instance-id", instance_id),
    _Path("local_ipv4", "local-ipv4", ipv4, optional=True),  # 404 on an IPv6-only ENI (imds6)
    _Path("public_ipv4", "public-ipv4", ipv4, optional=True),  # 404: no public IPv4 (expected)
    _Path("instance_profile_arn", "iam/info", _iam_info, optional=True),  # 404: no instance profile
    _Path("availability_zone", "placement/availability-zone", _availability_zone, optional=True),  # context only
)
_MAC = _Path("mac", "mac", mac_address)
_PER_MAC = (
    _Path("vpc_id", "network/interfaces/macs/{mac}/vpc-id", vpc_id),
    _Path("subnet_id", "network/interfaces/macs/{mac}/subnet-id", subnet_id),
    _Path("vpc_cidr", "network/interfaces/macs/{mac}/vpc-ipv4-cidr-block", ipv4_cidr),  # the primary
    _Path("vpc_cidrs", "network/interfaces/macs/{mac}/vpc-ipv4-cidr-blocks", _lines(ipv4_cidr), optional=True),
    _Path("subnet_cidr", "network/interfaces/macs/{mac}/subnet-ipv4-cidr-block", ipv4_cidr, optional=True),  # imds6
    _Path("ipv6s", "network/interfaces/macs/{mac}/ipv6s", _lines(imds6.ipv6_address), optional=True),
    _Path("subnet_ipv6_cidrs", "network/interfaces/macs/{mac}/subnet-ipv6-cidr-blocks", _lines(imds6.ipv6_cidr),
          optional=True),
    _Path("vpc_ipv6_cidrs", "network/interfaces/macs/{mac}/vpc-ipv6-cidr-blocks", _lines(imds6.ipv6_cidr),
          optional=True),
    _Path("security_group_ids", "network/interfaces/macs/{mac}/security-group-ids", _lines(sg_id),
          optional=True),
)


class _Failure(Exception):
    """IMDS did not give a usable answer. The message never holds the token (see _Client.redact)."""

    def __init__(self, state: str, cause_code: str, message: str) -> None:
        super().__init__(message)
        self.state, self.cause_code, self.message = state, cause_code, message


class _DeadlineSocket(socket.socket):
    """A socket whose every receive waits at most the read timeout and never past the deadline:
    an IMDS (or a squatter) that trickles its status line, headers or body a byte at a time would
    otherwise reset the per-read timeout forever."""

    read_s: float
    deadline: float

    @classmethod
    def taking(cls, sock: socket.socket, read_s: float, deadline: float) -> "_DeadlineSocket":
        own = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        own.read_s, own.deadline = read_s, deadline
        return own

    def _bound_wait(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("the IMDS time budget is spent")
        self.settimeout(min(self.read_s, left))

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:  # http.client reads here
        self._bound_wait()
        return super().recv_into(buffer, nbytes, flags)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self._bound_wait()
        return super().recv(bufsize, flags)


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, (socket.timeout, TimeoutError))  # the same class from Python 3.10 on


def _brief(exc: BaseException) -> str:
    """The innermost useful error text (e.g. "[Errno 111] Connection refused"), one line."""
    text = str(exc)
    for marker in ("Errno", "Connection refused", "reset", "Name or service"):
        pos = text.find(marker)
        if pos >= 0:
            text = text[max(0, pos - 1):]
            break
    return " ".join(text.split())[:160].rstrip("')\"")


class _Client:
    """One IMDSv2 conversation: token handling, bounded requests, redaction."""

    def __init__(self, settings: ImdsSettings, deadline: float) -> None:
        self._base = self.base = settings.endpoint.rstrip("/")
        url = urlsplit(self._base)  # validated by config.imds_endpoint: http://host[:port]
        self._host, self._port = str(url.hostname), url.port or 80
        self._connect_s = settings.connect_timeout_s
        self._read_s = settings.timeout_s
        self._deadline = deadline
        self._lock = threading.Lock()
        self._token: Optional[str] = None
        self._seen_tokens: List[str] = []
        self.token_requests = 0

    # -- plumbing
    def redact(self, text: str) -> str:
        for token in self._seen_tokens:
            text = text.replace(token, "<redacted>")
        return redact(text)

    def _timeouts(self) -> Tuple[float, float]:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0.01:
            raise socket.timeout("the IMDS time budget is spent")
        return min(self._connect_s, remaining), min(self._read_s, remaining)

    def _send(self, method: str, path: str, headers: Mapping[str, str]) -> Tuple[int, bytes]:
        """One request on its own connection; returns (status, body ≤ MAX_BODY_BYTES+1).

        Plain ``http.client``: IMDS is link-local plain HTTP, so no proxy, .netrc or redirect
        handling may apply, and it costs a quarter of the CPU of a ``requests`` call (15 of them
        every daemon cycle). A fresh connection each time: what we prove is that IMDS answers now.
        Raises OSError (``socket.timeout`` for timeouts) or _Failure for an answer that is not HTTP.
        """
        start = time.monotonic()
        connect_s, read_s = self._timeouts()
        conn = http.client.HTTPConnection(self._host, self._port, timeout=connect_s)
        try:
            conn.connect()
            conn.sock = _DeadlineSocket.taking(conn.sock, read_s, self._deadline)
            conn.request(method, path, headers=dict(headers))  # a PUT without body sends Content-Length: 0
            resp = conn.getresponse()
            body = b""
            while len(body) <= MAX_BODY_BYTES:
                chunk = resp.read1(4096)
                if not chunk:
                    break
                body += chunk
        except http.client.HTTPException as exc:
            if isinstance(exc, OSError):  # RemoteDisconnected: closed without an answer
                raise
            raise _Failure("error", "imds_bad_answer", self.redact(
                f"{self._base} {method} {path}: the answer is not HTTP ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:80]})")) from None
        finally:
            conn.close()
        log.debug("IMDS %s %s -> %s (%d bytes) in %.0f ms", method, path, resp.status, len(body),
                  (time.monotonic() - start) * 1000)
        return resp.status, body

    # -- the token
    def token(self) -> str:
        with self._lock:  # one PUT at a time; concurrent GETs after a 401 share the new token
            if self._token is None:
                self._token = self._fetch_token()
            return self._token

    def invalidate(self, token: str) -> None:
        with self._lock:
            if self._token == token:
                self._token = None

    def _fetch_token(self) -> str:
        where = f"{self._base} PUT {TOKEN_PATH}"
        for attempt in (1, 2):
            self.token_requests += 1
            try:
                status, body = self._send("PUT", TOKEN_PATH,
                                          {"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_S)})
            except OSError as exc:
                if _is_timeout(exc):  # a timeout is not retried: the budget matters more than a 2nd try
                    raise _Failure("timeout", "imds_hop_limit",
                                   f"{where}: no answer within {self._read_s:g} s") from None
                if attempt == 2:
                    raise _Failure("unreachable", "imds_unreachable", self.redact(f"{where}: {_brief(exc)}")) \
                        from None
                continue
            if status == 200:
                return self._check_token(body, where)
            if status == 403:  # IMDS disabled (http-endpoint disabled): retrying cannot help
                raise _Failure("disabled", "imds_disabled", f"{where}: 403 Forbidden")
            if status in (429, 500, 502, 503, 504) and attempt == 1:
                continue
            if status in (429, 500, 502, 503, 504):
                raise _Failure("unreachable", "imds_unreachable", f"{where}: HTTP {status}")
            raise _Failure("error", "imds_bad_answer", f"{where}: HTTP {status} (not an IMDSv2 answer)")
        raise AssertionError("unreachable")  # pragma: no cover

    def _check_token(self, body: bytes, where: str) -> str:
        text = body.decode("ascii", "replace").strip()
        if 0 < len(text) <= _MAX_TOKEN_CHARS and text.isascii() and text.isprintable() and " " not in text:
            self._seen_tokens.append(text)
            return text
        raise _Failure("error", "imds_bad_answer",
                       f"{where}: the answer ({len(body)} bytes) is not an IMDSv2 token")

    # -- metadata
    def get(self, path: str) -> Optional[str]:
        """The text at meta-data ``path``; None on 404. Raises _Failure."""
        where = f"{self._base} GET {META_PATH}{path}"
        retried_401 = retried_5xx = retried_conn = False
        while True:
            token = self.token()
            try:
                status, body = self._send("GET", META_PATH + path, {"X-aws-ec2-metadata-token": token})
            except OSError as exc:
                if _is_timeout(exc):
                    raise _Failure("unreachable", "imds_unreachable",
                                   f"{where}: no answer within {self._read_s:g} s") from None
                if not retried_conn:  # refused/reset: often transient, one more try is cheap
                    retried_conn = True
                    continue
                raise _Failure("unreachable", "imds_unreachable", self.redact(f"{where}: {_brief(exc)}")) from None
            if status == 200:
                if len(body) > MAX_BODY_BYTES:
                    raise _Failure("error", "imds_bad_answer", f"{where}: the answer is longer than "
                                   f"{MAX_BODY_BYTES} bytes")
                try:
                    return body.decode("utf-8")
                except UnicodeDecodeError:
                    raise _Failure("error", "imds_bad_answer", f"{where}: the answer is not text") from None
            if status == 404:
                return None
            if status == 401 and not retried_401:  # the token expired: a new one, once
                log.debug("IMDS GET %s -> 401: fetching a new token", path)
                self.invalidate(token)
                retried_401 = True
                continue
            if status == 403:
                raise _Failure("disabled", "imds_disabled", f"{where}: 403 Forbidden")
            if status in (429, 500, 502, 503, 504) and not retried_5xx:
                retried_5xx = True
                continue
            if status in (429, 500, 502, 503, 504):
                raise _Failure("unreachable", "imds_unreachable", f"{where}: HTTP {status}")
            raise _Failure("error", "imds_bad_answer", f"{where}: HTTP {status}")

    def fact(self, spec: _Path, mac: Optional[str] = None) -> Any:
        """The validated value of one path (None when an optional path is absent)."""
        path = spec.path.format(mac=mac)
        text = self.get(path)
        if text is not None:
            text = self.redact(text)  # a real value never holds the token; a misbehaving proxy might echo it
        if text is None:
            if spec.optional:
                return None
            raise _Failure("error", "imds_bad_answer", f"{self._base} GET {META_PATH}{path}: 404 Not Found")
        try:
            return spec.parse(text.strip())
        except Invalid as exc:
            raise _Failure("error", "imds_bad_answer",
                           self.redact(f"{META_PATH}{path}: {exc.what}; expected {exc.expected}")) from None


# --- gathering -----------------------------------------------------------------------------------------
class _Results:
    """Thread-safe collection of values and failures from the fetch threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: Dict[str, Any] = {}
        self.failures: List[_Failure] = []
        self.pending: Dict[str, str] = {}  # fact -> path, until answered

    def run(self, client: _Client, spec: _Path, mac: Optional[str] = None) -> None:
        try:
            value = client.fact(spec, mac)
            with self.lock:
                self.values[spec.fact] = value
        except _Failure as failure:
            with self.lock:
                self.failures.append(failure)
        except Exception as exc:  # noqa: BLE001 - a bug must not hide the other facts
            with self.lock:
                self.failures.append(_Failure("error", "imds_bad_answer",
                                              client.redact(f"{spec.path}: {exc.__class__.__name__}: {exc}")))
        finally:
            with self.lock:
                self.pending.pop(spec.fact, None)


def _fetch_all(client: _Client, wanted: Tuple[str, ...], mac_override: Optional[str], deadline: float,
               results: _Results) -> None:
    """Fetch the wanted facts concurrently; the per-MAC paths start as soon as the MAC is known."""
    per_mac = [s for s in _PER_MAC if s.fact in wanted]

    def left() -> float:
        return max(0.0, deadline - time.monotonic())

    def mac_then_network() -> None:
        results.run(client, _MAC)
        mac = results.values.get("mac")
        if mac is None:  # the MAC failed: the per-MAC facts cannot be asked for
            with results.lock:
                for spec in per_mac:
                    results.pending.pop(spec.fact, None)
            return
        futures.wait([workers.run(results.run, client, spec, mac) for spec in per_mac], timeout=left())

    specs = [s for s in _PLAIN if s.fact in wanted]
    with results.lock:
        results.pending.update({s.fact: s.path for s in specs + per_mac})
        if mac_override is None and "mac" in wanted:
            results.pending["mac"] = _MAC.path
    started = [workers.run(results.run, client, spec) for spec in specs]
    if mac_override is not None:
        started += [workers.run(results.run, client, spec, mac_override) for spec in per_mac]
    elif per_mac or "mac" in wanted:
        started.append(workers.run(mac_then_network))
    futures.wait(started, timeout=left())


def role_credentials(client: "_Client") -> Dict[str, Any]:
    """A summary of the instance role's credentials from IMDS: ``state`` is ok | no_role | error,
    plus ``role``, ``code``, ``message``, ``expiration``, ``last_updated``, ``type`` as IMDS said.
    Never the keys or the token; failures here are the credentials' state, not IMDS's."""
    try:
        listing = client.get(CREDENTIALS_PATH)
        if listing is None:
            return {"state": "no_role"}
        roles = [line.strip() for line in client.redact(listing).splitlines() if line.strip()]
        if not roles or not all(_ROLE_NAME.match(r) for r in roles):
            return {"state": "error", "message": f"{META_PATH}{CREDENTIALS_PATH}: {show(listing)} is not a role name"}
        role = roles[0]
        text = client.get(CREDENTIALS_PATH + role)
        if text is None:
            return {"state": "error", "role": role, "message": f"{META_PATH}{CREDENTIALS_PATH}{role}: 404 Not Found"}
    except _Failure as failure:
        return {"state": "error", "message": client.redact(failure.message)}
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        return {"state": "error", "role": role,
                "message": f"{META_PATH}{CREDENTIALS_PATH}{role}: the answer ({len(text)} bytes) is not a JSON object"}
    summary: Dict[str, Any] = {"state": "ok", "role": role}
    for name in _CREDENTIAL_FIELDS:
        value = doc.get(name)
        if isinstance(value, str):
            summary[name.lower() if name != "LastUpdated" else "last_updated"] = \
                client.redact(value)[:_MAX_MESSAGE_CHARS]
    summary["has_keys"] = all(isinstance(doc.get(k), str) and doc.get(k) for k in
                              ("AccessKeyId", "SecretAccessKey", "Token"))
    return summary


def _override_value(name: str, value: Any) -> Any:
    if name not in _FACT_FIELDS:
        raise ValueError(f"unknown fact override {name!r}")
    return tuple(value) if name in _LIST_FIELDS and value is not None else value


def gather_facts(imds: ImdsSettings, overrides: Mapping[str, Any], budget_s: float = 2.5) -> Facts:
    """The instance facts: config overrides first, IMDSv2 for the rest, within ``budget_s``."""
    values: Dict[str, Any] = {k: _override_value(k, v) for k, v in overrides.items()}
    sources: Dict[str, str] = {k: "config" for k in values}
    if "vpc_cidrs" in values and "vpc_cidr" not in values and values["vpc_cidrs"]:
        values["vpc_cidr"], sources["vpc_cidr"] = values["vpc_cidrs"][0], "config"
    state, cause, error = "skipped", None, None
    if not imds.enabled:
        error = "imds.enabled is false in the config"
    elif all(name in values for name in NEEDED):
        error = "every fact the checks need is set in the config"
    else:
        state, cause, error = _from_imds(imds, values, sources, budget_s)
        error = error or values.get("imds_ipv4_error")  # ok over IPv6 only: why IPv4 did not answer
    _derive(values, sources)
    # An optional list IMDS answered 404 for (no security-group-ids, say) is empty, never None.
    facts = {k: v for k, v in values.items() if k in _FACT_FIELDS and not (k in _LIST_FIELDS and v is None)}
    return Facts(**facts, imds_state=state, imds_cause_code=cause, imds_error=error, sources=sources,
                 credentials=values.get("credentials") or {}, imds_endpoint=values.get("imds_endpoint"))


def _from_imds(imds: ImdsSettings, values: Dict[str, Any], sources: Dict[str, str],
               budget_s: float) -> Tuple[str, Optional[str], Optional[str]]:
    """Fill ``values`` from IMDS for every field not set already; returns (state, cause, error)."""
    deadline = time.monotonic() + budget_s
    client = _Client(imds, deadline)
    wanted = tuple(f for f in _FACT_FIELDS if f not in values)
    try:
        client.token()
    except _Failure as failure:
        message = client.redact(failure.message)
        log.info("IMDS: %s (%s)", failure.state, message)
        client6, error6 = _ipv6_client(imds, failure.state, deadline)  # IPv4 unreachable: IPv6-only subnet?
        if client6 is None:
            return imds6.both_failed(failure.state, failure.cause_code, message, error6)
        client = client6
        values["imds_ipv4_error"] = message
    values["imds_endpoint"] = client.base
    imds6.announce(client.base)  # the AWS clients fetch the role's credentials where IMDS answered
    # Facts that cannot change while the instance runs are asked once per process when remembering
    # is on (the daemon); the token PUT above, which is what proves IMDS works, happens every time.
    memo = _memo.setdefault(imds.endpoint, {}) if _remember_static else {}
    reused = {f: memo[f] for f in wanted if f in memo}
    results = _Results()
    credentials = workers.run(role_credentials, client)
    _fetch_all(client, tuple(f for f in wanted if f not in reused), values.get("mac") or reused.get("mac"),
               deadline, results)
    try:
        values["credentials"] = credentials.result(timeout=max(0.0, deadline - time.monotonic()))
    except futures.TimeoutError:
        values["credentials"] = {"state": "error", "message": f"{imds.endpoint}: no answer for "
                                 f"{META_PATH}{CREDENTIALS_PATH} within the {budget_s:g} s budget"}
    with results.lock:
        got = dict(results.values)
        failures = list(results.failures)
        late = sorted({p.replace("{mac}", "<mac>") for p in results.pending.values()})
    if _remember_static:
        memo.update({f: v for f, v in got.items() if f in STATIC_FACTS})
    got.update(reused)
    for fact, value in got.items():
        if fact not in values:
            values[fact], sources[fact] = value, "imds"
    failures += [_Failure("error", "imds_bad_answer", m) for m in imds6.missing_ipv4_failures(values, client.base)]
    for fact in imds6.IPV4_ONLY_FACTS:  # a 404 is no value: "missing", as before
        if values.get(fact) is None and sources.get(fact) == "imds":
            values.pop(fact), sources.pop(fact)
    if late:  # still running at the deadline (each request is bounded, so only by a hair)
        failures.append(_Failure("unreachable", "imds_unreachable",
                                 f"{imds.endpoint}: no answer within the {budget_s:g} s budget for "
                                 + ", ".join(late)))
    if not failures:
        return "ok", None, None
    worst = max(failures, key=lambda f: _SEVERITY[f.state])
    messages = [f.message for f in failures]
    text = client.redact("; ".join(messages[:3]) + (f" (+{len(messages) - 3} more)" if len(messages) > 3 else ""))
    log.info("IMDS: %s (%s)", worst.state, text)
    return worst.state, worst.cause_code, text


def _ipv6_client(imds: ImdsSettings, state: str, deadline: float) -> "Tuple[Optional[_Client], Optional[str]]":
    """(a client for IMDS's IPv6 endpoint, None) when it answers a token PUT within the budget;
    (None, why not) when it was tried and failed; (None, None) when not tried (imds6)."""
    endpoint = imds6.fallback_endpoint(imds.endpoint, state)
    if endpoint is None:
        return None, None
    client = _Client(ImdsSettings(enabled=True, endpoint=endpoint, timeout_s=imds.timeout_s,
                                  connect_timeout_s=imds.connect_timeout_s), deadline)
    try:
        client.token()
    except (_Failure, OSError) as failure:
        message = client.redact(str(getattr(failure, "message", failure)))
        log.info("IMDS over IPv6: %s", message)
        return None, message
    return client, None


def _derive(values: Dict[str, Any], sources: Dict[str, str]) -> None:
    """Fill what follows from other facts: the primary CIDR first in vpc_cidrs; partition and
    domain from the region (botocore's endpoint data) when IMDS lacks them."""
    primary, cidrs = values.get("vpc_cidr"), values.get("vpc_cidrs")
    if primary and cidrs:
        values["vpc_cidrs"] = (primary,) + tuple(c for c in cidrs if c != primary)
    elif primary:
        values["vpc_cidrs"], sources["vpc_cidrs"] = (primary,), "derived"
    # vpc_cidrs from IMDS without the primary: IMDS's order is not "primary first", so the primary
    # (the resolver's CIDR) stays unknown rather than guessed.
    # The account, for the fleet view: the instance profile ARN names it (no extra request).
    account = _ARN_ACCOUNT.match(str(values.get("instance_profile_arn") or ""))
    if account and values.get("account_id") is None:
        values["account_id"], sources["account_id"] = account.group(1), sources.get("instance_profile_arn", "derived")
    region = values.get("region")
    if region and values.get("partition") is None:
        values["partition"], sources["partition"] = hostnames.partition_name(region), "derived"
    if region and values.get("domain") is None:
        values["domain"], sources["domain"] = hostnames.dns_suffix(region), "derived"


# IAM role names: 1-64 of [\w+=,.@-].
_ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")


# --- the finding -----------------------------------------------------------------------------------
def _by_source(facts: Facts) -> Dict[str, List[str]]:
    out: Dict[str, List[str]] = {}
    for name, source in sorted(facts.sources.items()):
        out.setdefault(source, []).append(name)
    return out


def imds_finding(facts: Facts, duration_s: float) -> Finding:
    """The ``imds`` finding: how the facts were obtained. IMDS trouble is CRITICAL because the SSM
    agent itself gets its credentials from IMDS."""
    missing = [name for name in NEEDED if name not in facts.sources]
    evidence: Dict[str, Any] = {"state": facts.imds_state, "sources": _by_source(facts), "missing": missing,
                                "duration_ms": round(duration_s * 1000, 1)}
    state = facts.imds_state
    if state == "ok" and facts.imds_endpoint == imds6.IPV6_ENDPOINT and facts.imds_error:
        evidence.update(endpoint=facts.imds_endpoint, ipv4_error=facts.imds_error)
        agent = imds6.ssm_agent_env()  # the SSM agent needs IMDS too: is it told to use IPv6?
        evidence["ssm_agent_imds_env"] = agent
        if imds6.agent_told(agent):
            return Finding("imds", Status.OK, f"IMDSv2 answered only over IPv6 ({facts.imds_endpoint}), as the SSM "
                           f"agent (pid {agent['pid']}) is configured: {facts.instance_id}, {facts.region}, "
                           f"{facts.vpc_id}", evidence=evidence, duration_s=duration_s)
        return Finding("imds", Status.WARNING, f"IMDSv2 answered only over IPv6 ({facts.imds_endpoint}): "
                       f"{facts.instance_id}, {facts.region}, {facts.vpc_id}", evidence=evidence, duration_s=duration_s,
                       **explain("imds_ipv6_only", error=facts.imds_error, agent_note=imds6.ssm_agent_note()))
    if state == "ok":
        summary = (f"IMDSv2 answered: {facts.instance_id}, {facts.region}, {facts.vpc_id}, "
                   f"{facts.local_ipv4 or ', '.join(facts.ipv6s)}")  # IPv6-only: no IPv4 address
        if "config" in evidence["sources"]:
            summary += f" ({len(evidence['sources']['config'])} facts from the config)"
        return Finding("imds", Status.OK, summary, evidence=evidence, duration_s=duration_s)
    if state == "skipped":  # by choice: OK; checks needing an unset fact report missing_fact themselves
        evidence["reason"] = facts.imds_error
        unset = f"; not set: {', '.join(missing)}" if missing else ""
        return Finding("imds", Status.OK, f"IMDS not used: facts from the config ({facts.imds_error}{unset})",
                       evidence=evidence, duration_s=duration_s)
    evidence["error"] = facts.imds_error
    code = facts.imds_cause_code or {"disabled": "imds_disabled", "timeout": "imds_hop_limit",
                                     "unreachable": "imds_unreachable"}.get(state, "imds_bad_answer")
    summary = {
        "imds_disabled": "IMDS is disabled: the IMDSv2 token request got 403 Forbidden",
        "imds_hop_limit": "IMDS did not answer the IMDSv2 token request in time",
        "imds_unreachable": "IMDS is unreachable",
        "imds_ipv6_disabled": "IMDS is unreachable over IPv4 (no route: an IPv6-only subnet) and over IPv6",
        "imds_bad_answer": "IMDS gave an invalid answer",
    }.get(code, "IMDS failed") + f" ({facts.imds_error})"
    return Finding("imds", Status.CRITICAL, summary,
                   **explain(code, instance_id=facts.instance_id, error=facts.imds_error),
                   evidence=evidence, duration_s=duration_s)
