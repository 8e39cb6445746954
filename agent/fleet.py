"""``vpce-doctor fleet``: which instances of the account are broken, from SSM inventory.

Run by an operator anywhere with credentials (not on the instances). The daemon publishes one
``Custom:VpceDoctor`` entry per finding (CheckId, Status, Summary, Cause, CauseCode, Fix, Evidence,
CheckedAt, AgentVersion; see publishers/inventory.py); this reads them back across instances with
``GetInventory`` and prints the findings that are not OK, then how many instances each cause hits.

Filtering happens twice. GetInventory filters cut what the service sends (≤ 5 filters, ≤ 40 values
each), but each filter matches an instance when *any* of its entries matches, independently of the
other filters — an instance with an OK dns.ssm and a CRITICAL s3.route passes both "Status=CRITICAL"
and "CheckId BeginWith dns.ssm". So the service filters only pre-select (a superset), and every
entry is filtered here again, all conditions on the same entry. Status is pushed as Equal to the
wanted values rather than NotEqual OK: how NotEqual treats an item with several entries is not
documented, Equal-any is.

Exit code: 0 no listed instance is broken, 1 the worst listed finding is WARNING (or UNKNOWN: the
agent could not tell), 2 at least one is CRITICAL, 3 the query itself failed (one line on stderr).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
import threading
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, replace
from typing import Any, Dict, Iterable, List, NoReturn, Optional, Sequence, Set, Tuple
from urllib.parse import urlsplit

from .checks.redact import redact
from .checks.textsafe import escape_controls
from .fleet_coverage import (INSTANCE_INFORMATION, MAX_PAGES, FleetError, Progress, capture_epoch, coverage_text,
                             entities, instance_status)

DEFAULT_TYPE_NAME = "Custom:VpceDoctor"
DEFAULT_STALE_AFTER_S = 25 * 3600.0
STATUSES = ("OK", "WARNING", "CRITICAL", "UNKNOWN")
NOT_OK = ("WARNING", "CRITICAL", "UNKNOWN")
MAX_PAGE = 50                # GetInventory MaxResults: 1-50
MAX_FILTER_VALUES = 40       # InventoryFilter Values: 1-40 (more: filter here only)
DEFAULT_MAX_ATTEMPTS = 5     # standard retry mode, total attempts (AWS_MAX_ATTEMPTS / profile override)
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0
# The whole query (every page of the three GetInventory queries, retries included). 50 instances a
# page at well under a second each: 10,000 managed instances take ~400 calls, so 300 s leaves room;
# a stalled endpoint or proxy is named after at most this long instead of hanging a script.
DEFAULT_DEADLINE_S = 300.0
MAX_DEADLINE_S = 3600.0
TYPE_NAME_PATTERN = re.compile(r"^(AWS|Custom):.{1,}$")
EXIT_OK, EXIT_WARNING, EXIT_CRITICAL, EXIT_ERROR = 0, 1, 2, 3
SCHEMA_VERSION = 1
ACCESS_DENIED = frozenset({"AccessDeniedException", "AccessDenied", "UnauthorizedOperation",
                           "UnauthorizedException"})
BAD_CREDENTIALS = frozenset({"UnrecognizedClientException", "InvalidClientTokenId", "ExpiredTokenException",
                             "ExpiredToken", "InvalidSignatureException", "SignatureDoesNotMatch"})
THROTTLED = frozenset({"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"})

HELP = "list the instances whose checks are not OK, from SSM inventory (run anywhere with credentials)"
DESCRIPTION = """\
Read the findings that vpce-doctor daemons publish to SSM inventory (custom type Custom:VpceDoctor)
across every managed instance with ssm:GetInventory, and print the findings that are not OK
(instance, check, status, cause, checked at), then the number of instances per cause code.

Filters are comma-separated and may repeat; --check takes ids or id prefixes as `check --only` does
(dns selects dns.ssm, dns.ec2messages, ...). They are sent to the service as GetInventory filters
and applied again here to each finding, so all conditions hold for the same finding.

Exit code: 0 no listed instance is broken; 1 the worst listed finding is WARNING or UNKNOWN;
2 at least one listed finding is CRITICAL; 3 the query failed (one line on stderr: credentials,
region, access denied -> the IAM action needed is ssm:GetInventory, throttled after retries).
Throttling is retried with botocore's standard retry mode (5 attempts; AWS_MAX_ATTEMPTS overrides)."""


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 3 (our own trouble), as in cli.py: 2 would read as CRITICAL."""

    def error(self, message: str) -> "NoReturn":  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


# --- the query ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Query:
    type_name: str = DEFAULT_TYPE_NAME
    statuses: Tuple[str, ...] = NOT_OK
    checks: Tuple[str, ...] = ()    # ids or prefixes ("dns" selects dns.ssm); empty: all
    causes: Tuple[str, ...] = ()    # cause codes; empty: all
    page_size: int = MAX_PAGE
    # A daemon re-stores an unchanged diagnosis once a day (its ContentHash covers the UTC date):
    # older than a day plus a cycle means the instance stopped publishing.
    stale_after_s: float = DEFAULT_STALE_AFTER_S

    def service_filters(self) -> List[Dict[str, Any]]:
        """GetInventory filters that pre-select instances (a superset of what ``matches`` keeps)."""
        t = self.type_name
        filters = [{"Key": f"{t}.Status", "Values": list(self.statuses), "Type": "Equal"}]
        if self.checks and len(self.checks) <= MAX_FILTER_VALUES:
            filters.append({"Key": f"{t}.CheckId", "Values": list(self.checks), "Type": "BeginWith"})
        if self.causes and len(self.causes) <= MAX_FILTER_VALUES:
            filters.append({"Key": f"{t}.CauseCode", "Values": list(self.causes), "Type": "Equal"})
        return filters

    def matches(self, row: "Row") -> bool:
        return (row.status in self.statuses
                and (not self.checks or any(row.check_id == c or row.check_id.startswith(c + ".")
                                            for c in self.checks))
                and (not self.causes or row.cause_code in self.causes))


@dataclass(frozen=True)
class Row:
    instance_id: str
    check_id: str
    status: str
    cause_code: str
    cause: str
    fix: str
    summary: str
    checked_at: str
    agent_version: str
    evidence: Any

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FleetResult:
    query: Query
    rows: Tuple[Row, ...]
    records_read: int   # instances the service returned (after its filters)
    pages: int
    # Coverage: managed instances (AWS:InstanceInformation, not terminated) and those of them that
    # publish the type. "0 publishing" is never an all-clear; the silent ones are a symptom themselves
    # (no path to SSM, no daemon, no inventory publisher). None: not asked.
    managed: Optional[Dict[str, str]] = None  # instance id -> InstanceStatus
    publishing: Optional[Set[str]] = None
    stale: Tuple[Tuple[str, str], ...] = ()  # (instance id, its last CaptureTime): published, then stopped

    @property
    def silent(self) -> List[Tuple[str, str]]:
        if self.managed is None or self.publishing is None:
            return []
        return sorted((iid, status) for iid, status in self.managed.items() if iid not in self.publishing)

    @property
    def instances(self) -> List[str]:
        return sorted({r.instance_id for r in self.rows})

    @property
    def status(self) -> str:
        """The worst listed status (CRITICAL > WARNING > UNKNOWN > OK)."""
        return max((r.status for r in self.rows), key=_rank, default="OK")

    @property
    def exit_code(self) -> int:
        worst = max((_exit_for(r.status) for r in self.rows), default=EXIT_OK)
        return max(worst, EXIT_WARNING) if self.silent or self.stale else worst

    def by_cause(self) -> List[Dict[str, Any]]:
        """Instances (and findings) per cause code, most instances first."""
        instances: Dict[str, Set[str]] = defaultdict(set)
        findings: Counter = Counter()
        for row in self.rows:
            code = row.cause_code or "-"
            instances[code].add(row.instance_id)
            findings[code] += 1
        return [{"cause_code": code, "instances": len(ids), "findings": findings[code]}
                for code, ids in sorted(instances.items(), key=lambda kv: (-len(kv[1]), kv[0]))]

    def by_status(self) -> Dict[str, int]:
        """Instances by their worst listed status."""
        worst: Dict[str, str] = {}
        for row in self.rows:
            current = worst.get(row.instance_id)
            if current is None or _rank(row.status) > _rank(current):
                worst[row.instance_id] = row.status
        return dict(Counter(worst.values()))

    def to_dict(self) -> Dict[str, Any]:
        q = self.query
        return {
            "schema_version": SCHEMA_VERSION,
            "type_name": q.type_name,
            "status": self.status,
            "exit_code": self.exit_code,
            "filters": {"status": list(q.statuses), "check": list(q.checks), "cause": list(q.causes)},
            "service_filters": q.service_filters(),
            "pages": self.pages,
            "records_read": self.records_read,
            "coverage": None if self.managed is None else {
                "managed": len(self.managed), "publishing": len(self.publishing or ()),
                "stale_after_s": self.query.stale_after_s,
                "stale": [{"instance_id": i, "capture_time": t} for i, t in self.stale],
                "silent": [{"instance_id": i, "instance_status": s} for i, s in self.silent]},
            "instance_count": len(self.instances),
            "instances": self.instances,
            "by_status": self.by_status(),
            "by_cause": self.by_cause(),
            "rows": [r.to_dict() for r in self.rows],
        }


def _rank(status: str) -> int:
    return ("OK", "UNKNOWN", "WARNING", "CRITICAL").index(status) if status in STATUSES else 0


def _exit_for(status: str) -> int:
    if status == "CRITICAL":
        return EXIT_CRITICAL
    if status in ("WARNING", "UNKNOWN"):  # UNKNOWN: the agent could not tell; 3 is reserved for us
        return EXIT_WARNING
    return EXIT_OK


def fetch(client: Any, query: Query, progress: Optional[Progress] = None) -> FleetResult:
    """Page through GetInventory (NextToken) and keep the entries the query matches; ``progress``
    follows the pages (for the deadline's message)."""
    progress = progress or Progress(query.type_name)
    progress.start("findings")
    request: Dict[str, Any] = {"Filters": query.service_filters(),
                               "ResultAttributes": [{"TypeName": query.type_name}],
                               "MaxResults": query.page_size}
    rows: List[Row] = []
    seen_tokens: Set[str] = set()
    records = pages = 0
    while True:
        try:
            reply = client.get_inventory(**request)
        except (AttributeError, TypeError, KeyError, ValueError) as exc:  # botocore could not parse the answer
            raise FleetError(f"page {pages + 1}: the answer does not parse as a GetInventory reply "
                             f"({type(exc).__name__}); is the endpoint an SSM endpoint?") from None
        pages += 1
        progress.page()
        # botocore's parser rejects wrongly shaped JSON (above), but turns an unparsable 200 (a
        # captive portal, a proxy's page) into {}: read as an empty page, it would be an all-clear.
        if "Entities" not in reply:
            raise FleetError(f"page {pages}: the answer is not a GetInventory reply (no Entities list); "
                             "is the endpoint an SSM endpoint?")
        for entity in reply["Entities"]:
            records += 1
            rows.extend(r for r in _rows(entity, query.type_name) if query.matches(r))
        token = reply.get("NextToken")
        if not token:
            break
        if token in seen_tokens or pages >= MAX_PAGES:
            raise FleetError(f"GetInventory kept paging ({pages} pages, a NextToken repeated or never ended); "
                             "retry, or narrow the query with --check/--cause")
        seen_tokens.add(token)
        request["NextToken"] = token
    rows.sort(key=lambda r: (r.instance_id, r.check_id))
    result = FleetResult(query, tuple(rows), records, pages)
    # Every status value (Equal; the Exists operator works only with aggregators): who publishes at all.
    progress.start("publishing")
    items = entities(client, [{"Key": f"{query.type_name}.Status", "Values": list(STATUSES), "Type": "Equal"}],
                     query.type_name, query.page_size, progress)
    publishing = set(items)
    if not publishing:
        raise FleetError(f"no instance publishes {query.type_name} in this region (0 inventory records with a "
                         f"Status): nothing was checked, so this is not an all-clear. Is --type-name right (the "
                         f"daemon's publish.inventory.type_name)? Do the instances run the daemon with the inventory "
                         f"publisher, or the custom inventory association? Silent instances may also have lost "
                         f"their path to SSM.")
    progress.start("managed")
    managed = entities(client, [{"Key": f"{INSTANCE_INFORMATION}.InstanceStatus", "Values": ["Terminated"],
                                  "Type": "NotEqual"}], INSTANCE_INFORMATION, query.page_size, progress)
    cutoff = time.time() - query.stale_after_s
    stale = tuple(sorted((iid, str(item.get("CaptureTime") or "?")[:40]) for iid, item in items.items()
                         if capture_epoch(item.get("CaptureTime")) < cutoff))
    return replace(result, managed={iid: instance_status(item) for iid, item in managed.items()},
                   publishing=publishing, stale=stale)


def _rows(entity: Dict[str, Any], type_name: str) -> Iterable[Row]:
    item = (entity.get("Data") or {}).get(type_name) or {}
    capture_time = str(item.get("CaptureTime") or "")
    instance_id = str(entity.get("Id") or "")
    for entry in item.get("Content") or []:
        if isinstance(entry, dict):
            yield _row(instance_id, entry, capture_time)


def _row(instance_id: str, entry: Dict[str, Any], capture_time: str) -> Row:
    def get(key: str) -> str:  # an older agent, or another publisher, may lack an attribute
        return escape_controls(str(entry.get(key) or ""))  # one line each, whatever an instance published

    return Row(instance_id=instance_id, check_id=get("CheckId"), status=get("Status").upper(),
               cause_code=get("CauseCode"), cause=get("Cause"), fix=get("Fix"), summary=get("Summary"),
               checked_at=get("CheckedAt") or capture_time, agent_version=get("AgentVersion"),
               evidence=_evidence(entry.get("Evidence")))


def _evidence(raw: Any) -> Any:
    """The Evidence attribute is compact JSON; show it as data, or as the text it is."""
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return raw


# --- AWS ---------------------------------------------------------------------------------------------

def make_client(region: Optional[str], profile: Optional[str], endpoint_url: Optional[str],
                ca_bundle: Optional[str], deadline_s: float = DEFAULT_DEADLINE_S) -> Any:
    """An ssm client for an operator's credentials: the usual chain (env, profile, SSO, ...), botocore's
    standard retry mode (throttling backs off with jitter) and timeouts no longer than the deadline."""
    import botocore.session
    from botocore.config import Config

    session = botocore.session.Session(profile=profile)
    region = region or session.get_config_variable("region")
    if not region:
        raise FleetError("no region: pass --region, or set AWS_REGION or the profile's region")
    attempts = session.get_config_variable("max_attempts") or DEFAULT_MAX_ATTEMPTS
    config = Config(retries={"mode": "standard", "total_max_attempts": int(attempts)},
                    connect_timeout=min(CONNECT_TIMEOUT_S, deadline_s), read_timeout=min(READ_TIMEOUT_S, deadline_s),
                    user_agent_extra="vpce-doctor-fleet")
    return session.create_client("ssm", region_name=region, endpoint_url=endpoint_url,
                                 verify=ca_bundle or None, config=config)


MAX_ERROR_CHARS = 500  # an answer quoted in an error is cut: one readable line, whatever came back


def describe_error(exc: Exception, endpoint: Optional[str]) -> str:
    """One line for any failure of the query, naming what to do."""
    text = " ".join(_describe_error(exc, endpoint).split())
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS - 1] + "…"


def _describe_error(exc: Exception, endpoint: Optional[str]) -> str:
    from botocore import exceptions as bx

    where = endpoint or "the ssm endpoint"
    if isinstance(exc, FleetError):
        return str(exc)
    if isinstance(exc, bx.ClientError):
        error = exc.response.get("Error", {}) if isinstance(exc.response, dict) else {}
        code, message = error.get("Code") or "Unknown", " ".join(str(error.get("Message") or exc).split())
        if code in ACCESS_DENIED:
            return (f"access denied ({code}): the IAM action ssm:GetInventory is missing for these credentials; "
                    f"allow it (Resource \"*\") in their policy. AWS said: {message}")
        if code in BAD_CREDENTIALS:
            return f"the credentials were refused ({code}): {message}; check the profile or refresh the session"
        if code in THROTTLED:
            metadata: Any = exc.response.get("ResponseMetadata") or {}
            attempts = int(metadata.get("RetryAttempts") or 0) + 1
            return (f"GetInventory is throttled ({code}) after {attempts} attempts: {message}; retry later or "
                    "raise AWS_MAX_ATTEMPTS")
        return f"GetInventory failed: {code}: {message}"
    if isinstance(exc, bx.ProfileNotFound):
        return f"{exc}: pass an existing --profile (aws configure list-profiles)"
    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        return f"no AWS credentials ({exc}): set AWS_PROFILE/--profile, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    if isinstance(exc, bx.NoRegionError):
        return "no region: pass --region, or set AWS_REGION or the profile's region"
    if isinstance(exc, (bx.ConnectTimeoutError, bx.ReadTimeoutError)):
        return f"timeout talking to {where}: {exc}"
    if isinstance(exc, bx.SSLError):
        return f"TLS to {where} failed: {exc} (--ca-bundle or AWS_CA_BUNDLE for a private CA)"
    if isinstance(exc, bx.EndpointConnectionError):
        return f"cannot reach {where}: {exc}"
    if isinstance(exc, bx.BotoCoreError):
        return f"{exc.__class__.__name__}: {exc}"
    return f"internal error: {exc.__class__.__name__}: {exc}"


# --- output ------------------------------------------------------------------------------------------

def render_json(result: FleetResult) -> str:
    return json.dumps(result.to_dict(), indent=2, sort_keys=False, default=str)


def render_table(result: FleetResult, verbose: bool = False, width: int = 110) -> str:
    q = result.query
    if not result.rows:
        return (f"No instance has a {'/'.join(q.statuses)} finding in {q.type_name}"
                f"{_filter_text(q)} ({result.records_read} inventory records read, {result.pages} "
                f"GetInventory page{'s' if result.pages != 1 else ''}).\n{coverage_text(result)}").rstrip()
    headers = ("INSTANCE", "CHECK", "STATUS", "CAUSE", "CHECKED AT")
    cells = [(r.instance_id, r.check_id, r.status, r.cause_code or "-", r.checked_at or "-") for r in result.rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    widths[1] = min(widths[1], 40)
    widths[3] = min(widths[3], 34)
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
    lines = [fmt.format(*headers)]
    for row, cell in zip(result.rows, cells):
        lines.append(fmt.format(*cell).rstrip())
        if verbose:
            for label, text in (("cause:", row.cause), ("fix:", row.fix)):
                if text:
                    lines.extend(textwrap.wrap(text, width=width, initial_indent=f"    {label:<7}",
                                               subsequent_indent=" " * 11, break_on_hyphens=False,
                                               break_long_words=False))
    causes = result.by_cause()
    code_width = max(len("CAUSE CODE"), *(len(c["cause_code"]) for c in causes))
    lines += ["", "By cause", f"  {'CAUSE CODE':<{code_width}}  INSTANCES  FINDINGS"]
    lines += [f"  {c['cause_code']:<{code_width}}  {c['instances']:>9}  {c['findings']:>8}" for c in causes]
    by_status = result.by_status()
    worst = ", ".join(f"{by_status[s]} {s}" for s in ("CRITICAL", "WARNING", "UNKNOWN", "OK") if s in by_status)
    lines += ["", f"{len(result.instances)} instance{'s' if len(result.instances) != 1 else ''} listed ({worst}), "
                  f"{len(result.rows)} finding{'s' if len(result.rows) != 1 else ''}{_filter_text(q)}; "
                  f"{result.records_read} inventory records read in {result.pages} GetInventory "
                  f"page{'s' if result.pages != 1 else ''}. Exit {result.exit_code}."]
    coverage = coverage_text(result)
    return "\n".join(lines[:-1] + ([coverage] if coverage else []) + lines[-1:])


def _filter_text(q: Query) -> str:
    parts = [f"{name} {','.join(values)}" for name, values in (("check", q.checks), ("cause", q.causes)) if values]
    return f" matching {'; '.join(parts)}" if parts else ""


# --- the command -------------------------------------------------------------------------------------

def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="table for people (default), json for machines")
    p.add_argument("--status", action="append", type=id_list, metavar="LIST",
                   help="statuses to list, comma-separated: OK, WARNING, CRITICAL, UNKNOWN "
                        "(default: WARNING,CRITICAL,UNKNOWN, i.e. not OK)")
    p.add_argument("--check", action="append", type=id_list, metavar="IDS",
                   help="finding ids or id prefixes, comma-separated (dns, dns.ssm, reach.ssm, s3)")
    p.add_argument("--cause", action="append", type=id_list, metavar="CODES",
                   help="cause codes, comma-separated (e.g. private_dns_disabled)")
    p.add_argument("--region", help="the region whose inventory to read (default: AWS_REGION / the profile's)")
    p.add_argument("--profile", help="AWS profile to use (default: AWS_PROFILE / the default chain)")
    p.add_argument("--endpoint-url", metavar="URL",
                   help="ssm endpoint URL (a private endpoint's DNS name, or a test endpoint)")
    p.add_argument("--ca-bundle", metavar="FILE", help="CA bundle to verify the endpoint (default: AWS_CA_BUNDLE)")
    p.add_argument("--type-name", default=DEFAULT_TYPE_NAME,
                   help=f"the custom inventory type the daemons publish (default {DEFAULT_TYPE_NAME})")
    p.add_argument("--max-results", type=int, default=MAX_PAGE, metavar="N",
                   help=f"GetInventory page size, 1-{MAX_PAGE} (default {MAX_PAGE})")
    p.add_argument("--stale-after", default="25h", metavar="DURATION",
                   help="an instance whose report is older than this (e.g. 25h, 90m, 2d) is listed as stale "
                        "(default 25h: the daemon re-stores an unchanged diagnosis once a day)")
    p.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE_S, metavar="S",
                   help=f"give up after S seconds for the whole query, retries included (default "
                        f"{DEFAULT_DEADLINE_S:g}); then one line names what was not fetched, exit 3")
    p.add_argument("-v", "--verbose", action="count", default=0, help="show each finding's cause and fix in the table")


def add_parser(subparsers: Any) -> None:
    """Register ``fleet`` on the CLI's subparsers (``vpce-doctor fleet``)."""
    parser = subparsers.add_parser("fleet", help=HELP, description=DESCRIPTION,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(parser)


def id_list(text: str) -> str:
    """An argparse ``type`` for a comma-separated list (``check --only``, ``fleet --check``): ",,,"
    names nothing, and reading it as "no filter" would run or list everything: a usage error."""
    if not any(part.strip() for part in text.split(",")):
        raise argparse.ArgumentTypeError(f"{text[:40]!r} names nothing; expected comma-separated values "
                                         "like dns,reach.ssm")
    return text


def _split(values: Optional[Sequence[str]]) -> Tuple[str, ...]:
    out: List[str] = []
    for value in values or ():
        out += [v.strip() for v in value.split(",") if v.strip()]
    return tuple(dict.fromkeys(out))  # keep order, drop repeats


def query_from(args: argparse.Namespace) -> Query:
    statuses = tuple(s.upper() for s in _split(args.status)) or NOT_OK
    endpoint = getattr(args, "endpoint_url", None)
    if endpoint is not None:
        try:
            parts = urlsplit(endpoint)
            usable = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:  # e.g. an unclosed [IPv6 bracket
            usable = False
        if not usable:
            raise FleetError(f"--endpoint-url: {endpoint[:100]!r} is not an http(s) URL; "
                             "expected e.g. https://ssm.us-east-1.amazonaws.com")
    bad = [s for s in statuses if s not in STATUSES]
    if bad:
        raise FleetError(f"--status: unknown status {', '.join(bad)}; expected some of {', '.join(STATUSES)}")
    if not 1 <= args.max_results <= MAX_PAGE:
        raise FleetError(f"--max-results: {args.max_results} is out of range; expected 1-{MAX_PAGE}")
    if len(args.type_name) > 100 or not TYPE_NAME_PATTERN.match(args.type_name):
        raise FleetError(f"--type-name: {args.type_name!r} is not an inventory type name "
                         "(Custom:Name or AWS:Name, at most 100 characters)")
    stale = re.match(r"^([0-9]+(?:\.[0-9]+)?)([smhd])$", str(getattr(args, "stale_after", "25h")).strip())
    if not stale or float(stale.group(1)) <= 0:
        raise FleetError(f"--stale-after: {str(args.stale_after)[:40]!r} is not a duration; expected e.g. 25h, 90m, 2d")
    stale_after_s = float(stale.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[stale.group(2)]
    deadline = getattr(args, "deadline", DEFAULT_DEADLINE_S)
    if not 0 < deadline <= MAX_DEADLINE_S:  # NaN fails this too
        raise FleetError(f"--deadline: {deadline:g} is out of range; expected 0 < S <= {MAX_DEADLINE_S:g}")
    return Query(type_name=args.type_name, statuses=statuses, checks=_split(args.check),
                 causes=_split(args.cause), page_size=args.max_results, stale_after_s=stale_after_s)


def fetch_within(args: argparse.Namespace, query: Query, endpoint: Optional[str]) -> FleetResult:
    """make_client + fetch in a worker thread, waited for at most ``--deadline`` seconds: the
    credential chain, a proxy or an endpoint that accepts and never answers cannot hang us."""
    deadline = float(getattr(args, "deadline", DEFAULT_DEADLINE_S))
    progress = Progress(query.type_name)
    outcome: Dict[str, Any] = {}

    def work() -> None:
        try:
            client = make_client(args.region, args.profile, endpoint, args.ca_bundle, deadline)
            outcome["result"] = fetch(client, query, progress)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's one-line report
            outcome["error"] = exc

    # A daemon thread: left behind in a stalled socket, it does not keep the process alive.
    worker = threading.Thread(target=work, name="vpce-doctor-fleet", daemon=True)
    worker.start()
    worker.join(deadline)
    if worker.is_alive():
        raise FleetError(f"the deadline passed (--deadline {deadline:g} s) before GetInventory finished; not "
                         f"fetched: {progress.not_fetched()}. Nothing is listed, so this is not an all-clear: "
                         f"retry, raise --deadline, or narrow the query with --check/--cause")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def run(args: argparse.Namespace) -> int:
    """Run ``vpce-doctor fleet``; returns the exit code (3 with one line on stderr on failure)."""
    endpoint = getattr(args, "endpoint_url", None)
    try:
        query = query_from(args)
        result = fetch_within(args, query, endpoint)
    except KeyboardInterrupt:
        print("vpce-doctor fleet: interrupted", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - every failure is one line and exit 3
        print(redact(f"vpce-doctor fleet: error: {describe_error(exc, endpoint)}"), file=sys.stderr)
        return EXIT_ERROR
    if args.format == "json":
        print(redact(render_json(result)))
    else:
        print(redact(render_table(result, verbose=args.verbose > 0)))
    return result.exit_code


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``vpce-doctor fleet`` on its own (tests, ``python -m vpce_doctor.fleet``)."""
    parser = _Parser(prog="vpce-doctor fleet", description=DESCRIPTION,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
