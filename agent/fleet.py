"""``vpce-doctor fleet``: which VPC resources are broken, for how many instances, across accounts and
regions — from SSM inventory (GetInventory) or a Resource Data Sync in S3.

Run by an operator anywhere with credentials (not on the instances). Every daemon publishes one
``Custom:VpceDoctor`` entry per finding, naming the resource its cause points at and the instance's
VPC, subnet, AZ, security groups and role (publishers/inventory.py). This reads them back
(fleet_api.py: GetInventory per profile × region, concurrently, throttling-aware; fleet_sync.py: the
sync's S3 layout), trims as it reads (fleet_collect.py), groups failures by resource
(fleet_correlate.py) and prints root causes first (fleet_render.py).

Exit code: the worst status seen — 0 nothing listed is broken, 1 WARNING/UNKNOWN or an instance that is
stale, silent or could not be read, 2 CRITICAL; 3 the query itself failed (one line on stderr).
"""
from __future__ import annotations

import argparse
import re
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, NoReturn, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from .checks.redact import redact
from .fleet_api import MAX_PAGE, THROTTLED, ApiStats, DeadlineReached, Partition, default_region, read_api, transient
from .fleet_collect import Collector, Selection
from .fleet_correlate import correlate
from .fleet_coverage import FleetError
from .fleet_model import NOT_OK, STATUSES, InstanceReport
from .fleet_render import (FleetResult, ROW_COLUMNS, csv_header, csv_rows, instance_lines, instance_table_header,
                           render_csv, render_json, render_table)

DEFAULT_TYPE_NAME = "Custom:VpceDoctor"
DEFAULT_STALE_AFTER = "25h"
# The whole run (every page of every partition, retries included). At SSM's GetInventory rate a
# partition of 10,000 instances is ~400 pages: 300 s leaves room; a stalled endpoint or proxy is
# named after at most this long instead of hanging a script.
DEFAULT_DEADLINE_S = 300.0
MAX_DEADLINE_S = 3600.0
DEFAULT_CONCURRENCY = 8
DEFAULT_MAX_OBJECT_MB = 16.0  # a sync object: one instance's item (≤ 200 KB in PutInventory) with JSON framing
TYPE_NAME_PATTERN = re.compile(r"^(AWS|Custom):.{1,}$")
REGION_PATTERN = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$")
EXIT_OK, EXIT_WARNING, EXIT_CRITICAL, EXIT_ERROR = 0, 1, 2, 3
ACCESS_DENIED = frozenset({"AccessDeniedException", "AccessDenied", "UnauthorizedOperation",
                           "UnauthorizedException"})
BAD_CREDENTIALS = frozenset({"UnrecognizedClientException", "InvalidClientTokenId", "ExpiredTokenException",
                             "ExpiredToken", "InvalidSignatureException", "SignatureDoesNotMatch"})

HELP = "which VPC resources break which instances, from SSM inventory or a Resource Data Sync (run anywhere)"
DESCRIPTION = """\
Read the findings that vpce-doctor daemons publish to SSM inventory (custom type Custom:VpceDoctor) —
with ssm:GetInventory for each --profile (account) and --regions, or from a Resource Data Sync's S3
layout (--from-sync s3://BUCKET/PREFIX, any number of accounts and regions) — and print:

  --by resource (default)  root causes first: each AWS resource that failing findings point at (an
                           endpoint's ENI, a VPC's DNS attributes, a route table, a security group, a
                           role …), its cause, how many instances it breaks (a sample of ids, their VPCs
                           and subnets) and the fix once; then the instances whose failures share no
                           resource; then stale and silent instances (not healthy: not known)
  --by instance            every failing finding, one line each, streamed as pages arrive
  --by cause               instances, findings and resources per cause code

--since 2h adds what broke and what recovered in that window (from each finding's StatusSince).
Filters (--status, --check, --cause) are comma-separated and may repeat; all hold for the same finding.

Exit code: 0 nothing listed is broken; 1 the worst is WARNING or UNKNOWN, or an instance is stale,
silent or could not be read; 2 at least one CRITICAL; 3 the query failed (one line on stderr:
credentials, region, access denied with the IAM action, throttled until the deadline, bad sync URL)."""


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 3 (our own trouble), as in cli.py: 2 would read as CRITICAL."""

    def error(self, message: str) -> "NoReturn":  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


# --- the query ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Query:
    selection: Selection
    type_name: str = DEFAULT_TYPE_NAME
    by: str = "resource"
    output: str = "table"
    stale_after_s: float = 25 * 3600.0
    page_size: int = MAX_PAGE
    deadline_s: float = DEFAULT_DEADLINE_S
    concurrency: int = DEFAULT_CONCURRENCY
    partitions: Tuple[Partition, ...] = ()
    from_sync: Optional[str] = None
    max_object_bytes: int = int(DEFAULT_MAX_OBJECT_MB * 1024 * 1024)

    @property
    def streams(self) -> bool:
        """--by instance prints each instance's rows as its page arrives (table and CSV)."""
        return self.by == "instance" and self.output in ("table", "csv")


def duration(text: str, option: str) -> float:
    match = re.match(r"^([0-9]+(?:\.[0-9]+)?)([smhd])$", str(text).strip())
    if not match or float(match.group(1)) <= 0:
        raise FleetError(f"{option}: {str(text)[:40]!r} is not a duration; expected e.g. 25h, 90m, 2d")
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def query_from(args: argparse.Namespace) -> Query:
    statuses = tuple(s.upper() for s in _split(args.status)) or NOT_OK
    bad = [s for s in statuses if s not in STATUSES]
    if bad:
        raise FleetError(f"--status: unknown status {', '.join(bad)}; expected some of {', '.join(STATUSES)}")
    endpoint = args.endpoint_url
    if endpoint is not None:
        try:
            parts = urlsplit(endpoint)
            usable = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:  # e.g. an unclosed [IPv6 bracket
            usable = False
        if not usable:
            raise FleetError(f"--endpoint-url: {endpoint[:100]!r} is not an http(s) URL; "
                             "expected e.g. https://ssm.us-east-1.amazonaws.com")
    if not 1 <= args.max_results <= MAX_PAGE:
        raise FleetError(f"--max-results: {args.max_results} is out of range; expected 1-{MAX_PAGE}")
    if len(args.type_name) > 100 or not TYPE_NAME_PATTERN.match(args.type_name):
        raise FleetError(f"--type-name: {args.type_name!r} is not an inventory type name "
                         "(Custom:Name or AWS:Name, at most 100 characters)")
    stale_after_s = duration(args.stale_after, "--stale-after")
    since_s = duration(args.since, "--since") if args.since else None
    if not 0 < args.deadline <= MAX_DEADLINE_S:  # NaN fails this too
        raise FleetError(f"--deadline: {args.deadline:g} is out of range; expected 0 < S <= {MAX_DEADLINE_S:g}")
    if not 1 <= args.concurrency <= 64:
        raise FleetError(f"--concurrency: {args.concurrency} is out of range; expected 1-64")
    if not 0 < args.max_object_mb <= 1024:
        raise FleetError(f"--max-object-mb: {args.max_object_mb:g} is out of range; expected 0 < MB <= 1024")
    regions = _split(args.regions) + ((args.region,) if args.region else ())
    for region in regions:
        if not REGION_PATTERN.match(region):
            raise FleetError(f"--regions: {region[:40]!r} is not a region name (e.g. us-east-1)")
    profiles: Tuple[Optional[str], ...] = _split(args.profile) or (None,)
    partitions: List[Partition] = []
    if not args.from_sync:
        for profile in profiles:
            for region in tuple(dict.fromkeys(regions)) or (default_region(profile),):
                if not region:
                    raise FleetError("no region: pass --region/--regions, or set AWS_REGION or the profile's region")
                partitions.append(Partition(profile, region))
    selection = Selection(statuses=statuses, checks=_split(args.check), causes=_split(args.cause), since_s=since_s,
                          keep_evidence=args.format == "json" and args.verbose > 0)
    return Query(selection=selection, type_name=args.type_name, by=args.by, output=args.format,
                 stale_after_s=stale_after_s, page_size=args.max_results, deadline_s=args.deadline,
                 concurrency=args.concurrency, partitions=tuple(partitions), from_sync=args.from_sync,
                 max_object_bytes=int(args.max_object_mb * 1024 * 1024))


# --- reading -----------------------------------------------------------------------------------------

def collect(args: argparse.Namespace, query: Query, out: Any = None) -> FleetResult:
    """Read everything the query needs within ``--deadline`` (a worker thread: the credential chain, a
    proxy or an endpoint that accepts and never answers cannot hang us), then correlate."""
    out = out or sys.stdout
    streamed = threading.Lock()
    header_done: List[bool] = []

    def stream(report: InstanceReport) -> None:
        rows = sorted((r for r in report.rows if query.selection.matches(r)), key=lambda r: r.check_id)
        if not rows:
            return
        with streamed:
            if not header_done:
                out.write(redact(csv_header(ROW_COLUMNS) if query.output == "csv" else instance_table_header() + "\n"))
                header_done.append(True)
            text = csv_rows(rows) if query.output == "csv" else "\n".join(instance_lines(rows, args.verbose > 0)) + "\n"
            out.write(redact(text))
            out.flush()

    collector = Collector(query.selection, on_report=stream if query.streams else None)
    sink: Any = collector
    if query.from_sync and _split(args.regions):  # (--region there is the bucket's, for the S3 client)
        sink = _RegionsOnly(collector, frozenset(_split(args.regions)))
    stats = ApiStats()
    deadline_at = time.monotonic() + query.deadline_s
    outcome: Dict[str, Any] = {}

    def work() -> None:
        try:
            if query.from_sync:
                from .fleet_sync import read_sync

                outcome["sync"] = read_sync(query.from_sync, sink, type_name=query.type_name,
                                            profile=(_split(args.profile) or (None,))[0], region=args.region,
                                            endpoint_url=args.endpoint_url, ca_bundle=args.ca_bundle,
                                            concurrency=query.concurrency * 4,
                                            max_object_bytes=query.max_object_bytes, deadline_at=deadline_at,
                                            keep_evidence=query.selection.keep_evidence)
            else:
                read_api(query.partitions, collector, stats, type_name=query.type_name, page_size=query.page_size,
                         endpoint_url=args.endpoint_url, ca_bundle=args.ca_bundle, deadline_at=deadline_at,
                         concurrency=query.concurrency, keep_evidence=query.selection.keep_evidence)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's one-line report
            outcome["error"] = exc

    # A daemon thread: left behind in a stalled socket, it does not keep the process alive.
    worker = threading.Thread(target=work, name="vpce-doctor-fleet", daemon=True)
    worker.start()
    worker.join(query.deadline_s + 0.25)  # the readers stop themselves at the deadline; this is the backstop
    error = outcome.get("error")
    timed_out = isinstance(getattr(error, "exc", error), DeadlineReached) or (
        isinstance(error, Exception) and transient(error) and time.monotonic() >= deadline_at - 1.0)
    if worker.is_alive() or timed_out:
        what = (f"the sync objects under {query.from_sync}" if query.from_sync
                else stats.not_fetched(query.partitions))
        throttled = (f" GetInventory was throttled (ThrottlingException) {stats.throttled:,} times: the account's "
                     f"request rate, backed off from." if stats.throttled else "")
        raise FleetError(f"the deadline passed (--deadline {query.deadline_s:g} s) before the fleet was read; not "
                         f"read: {what}.{throttled} Nothing is listed, so this is not an all-clear: retry, raise "
                         f"--deadline, or read a Resource Data Sync (--from-sync)")
    if "error" in outcome:
        raise outcome["error"]
    data = collector.finish()
    if not data.reports and not data.problem_counts:
        where = query.from_sync or ", ".join(p.label for p in query.partitions)
        raise FleetError(f"no instance publishes {query.type_name} in {where} (0 inventory records): nothing was "
                         f"checked, so this is not an all-clear. Is --type-name right (the daemon's "
                         f"publish.inventory.type_name)? Do the instances run the daemon with the inventory publisher, "
                         f"or the custom inventory association? Silent instances may also have lost their path to SSM.")
    return result_of(query, data, stats, outcome.get("sync"))


class _RegionsOnly:
    """A sync holds every region; --regions keeps the named ones (a Sink in front of the collector)."""

    def __init__(self, sink: Collector, regions: "frozenset[str]") -> None:
        self._sink, self._regions = sink, regions

    def add(self, report: InstanceReport) -> None:
        if report.region in self._regions:
            self._sink.add(report)

    def add_managed(self, account_id: str, region: str, instance_id: str, status: str) -> None:
        if region in self._regions:
            self._sink.add_managed(account_id, region, instance_id, status)

    def problem(self, problem: Any) -> None:
        self._sink.problem(problem)


def result_of(query: Query, data: Any, stats: ApiStats, sync_stats: Any = None) -> FleetResult:
    cutoff = data.now - query.stale_after_s
    stale = sorted((r for r in data.reports.values() if r.checked_epoch < cutoff), key=lambda r: r.instance_id)
    silent = sorted((iid, acct, region, status) for iid, (acct, region, status) in data.managed.items()
                    if iid not in data.reports and status != "Terminated")
    if query.from_sync:
        source = query.from_sync
        reads = f"{data.records:,} instance reports read from the sync" + (f" ({sync_stats})" if sync_stats else "")
    else:
        source = "GetInventory " + ", ".join(p.label for p in query.partitions)
        reads = (f"{data.records:,} inventory records read in {stats.total_pages:,} GetInventory pages"
                 + (f" ({stats.throttled:,} throttled answers retried)" if stats.throttled else ""))
    pages = stats.total_pages if not query.from_sync else None
    return FleetResult(pages=pages, type_name=query.type_name, selection=query.selection, data=data,
                       correlation=correlate(data, stale_ids={r.instance_id for r in stale}), stale_after_s=query.stale_after_s, source=source,
                       reads=reads, stale=stale, silent=silent, managed_known=bool(data.managed))


# --- errors ------------------------------------------------------------------------------------------

MAX_ERROR_CHARS = 500  # an answer quoted in an error is cut: one readable line, whatever came back


def describe_error(exc: BaseException, endpoint: Optional[str]) -> str:
    """One line for any failure of the query, naming what to do."""
    from .fleet_api import _Located

    prefix = ""
    if isinstance(exc, _Located):
        prefix, exc = f"{exc.partition.label}: ", exc.exc
    text = " ".join((prefix + _describe_error(exc, endpoint)).split())
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS - 1] + "…"


def _describe_error(exc: BaseException, endpoint: Optional[str]) -> str:
    from botocore import exceptions as bx

    where = endpoint or "the ssm endpoint"
    if isinstance(exc, FleetError):
        return str(exc)
    if isinstance(exc, bx.ClientError):
        error = exc.response.get("Error", {}) if isinstance(exc.response, dict) else {}
        code, message = error.get("Code") or "Unknown", " ".join(str(error.get("Message") or exc).split())
        operation = getattr(exc, "operation_name", "") or "GetInventory"
        if code in ACCESS_DENIED:
            action = "ssm:GetInventory" if operation == "GetInventory" else f"the action of {operation}"
            return (f"access denied ({code}): the IAM action {action} is missing for these credentials; "
                    f"allow it (Resource \"*\") in their policy. AWS said: {message}")
        if code in BAD_CREDENTIALS:
            return f"the credentials were refused ({code}): {message}; check the profile or refresh the session"
        if code in THROTTLED:
            metadata: Any = exc.response.get("ResponseMetadata") or {}
            attempts = int(metadata.get("RetryAttempts") or 0) + 1
            return (f"{operation} is throttled ({code}) after {attempts} attempts and backing off until the deadline: "
                    f"{message}; retry later, raise --deadline, lower --concurrency, or read a Resource Data Sync "
                    "(--from-sync)")
        return f"{operation} failed: {code}: {message}"
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


# --- the command -------------------------------------------------------------------------------------

def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--by", choices=("resource", "instance", "cause"), default="resource",
                   help="group by the broken AWS resource (default), list every finding per instance, or count causes")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table",
                   help="table for people (default), json (a stable schema, schema_version 2) or csv for machines")
    p.add_argument("--status", action="append", type=id_list, metavar="LIST",
                   help="statuses to list, comma-separated: OK, WARNING, CRITICAL, UNKNOWN "
                        "(default: WARNING,CRITICAL,UNKNOWN, i.e. not OK)")
    p.add_argument("--check", action="append", type=id_list, metavar="IDS",
                   help="finding ids or id prefixes, comma-separated (dns, dns.ssm, reach.ssm, s3)")
    p.add_argument("--cause", action="append", type=id_list, metavar="CODES",
                   help="cause codes, comma-separated (e.g. private_dns_disabled)")
    p.add_argument("--since", metavar="DURATION",
                   help="also show what broke and what recovered in this window (e.g. 2h, 30m, 1d)")
    p.add_argument("--stale-after", default=DEFAULT_STALE_AFTER, metavar="DURATION",
                   help="an instance whose last check is older than this (e.g. 25h, 90m, 2d) is listed as stale, "
                        "not healthy (default 25h: the daemon re-stores an unchanged diagnosis once a day)")
    p.add_argument("--region", help="one region to read (default: AWS_REGION / the profile's)")
    p.add_argument("--regions", action="append", type=id_list, metavar="LIST",
                   help="several regions, comma-separated, read concurrently (with --region: all of them); "
                        "with --from-sync: only these regions of the sync")
    p.add_argument("--profile", action="append", type=id_list, metavar="LIST",
                   help="AWS profile(s), comma-separated: one per account to read (default: AWS_PROFILE / the "
                        "default chain)")
    p.add_argument("--from-sync", metavar="URL",
                   help="read a Resource Data Sync instead of the API: s3://BUCKET/PREFIX (any number of accounts "
                        "and regions; needs s3:ListBucket and s3:GetObject), or a local copy of it (a directory)")
    p.add_argument("--endpoint-url", metavar="URL",
                   help="ssm (or, with --from-sync, s3) endpoint URL: a private endpoint's DNS name, or a test endpoint")
    p.add_argument("--ca-bundle", metavar="FILE", help="CA bundle to verify the endpoint (default: AWS_CA_BUNDLE)")
    p.add_argument("--type-name", default=DEFAULT_TYPE_NAME,
                   help=f"the custom inventory type the daemons publish (default {DEFAULT_TYPE_NAME})")
    p.add_argument("--max-results", type=int, default=MAX_PAGE, metavar="N",
                   help=f"GetInventory page size, 1-{MAX_PAGE} (default {MAX_PAGE})")
    p.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, metavar="N",
                   help=f"GetInventory queries in flight at once, across profiles and regions (default "
                        f"{DEFAULT_CONCURRENCY}; four times as many S3 reads with --from-sync)")
    p.add_argument("--max-object-mb", type=float, default=DEFAULT_MAX_OBJECT_MB, metavar="MB",
                   help=f"with --from-sync: a larger object is named and skipped, never downloaded (default "
                        f"{DEFAULT_MAX_OBJECT_MB:g})")
    p.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE_S, metavar="S",
                   help=f"give up after S seconds for the whole read, retries and throttling included (default "
                        f"{DEFAULT_DEADLINE_S:g}); then one line names what was not read, exit 3")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="tables show each cause and fix and list every instance; json includes the evidence")


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


def run(args: argparse.Namespace) -> int:
    """Run ``vpce-doctor fleet``; returns the exit code (3 with one line on stderr on failure)."""
    endpoint = getattr(args, "endpoint_url", None)
    try:
        query = query_from(args)
        result = collect(args, query)
    except KeyboardInterrupt:
        print("vpce-doctor fleet: interrupted", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - every failure is one line and exit 3
        print(redact(f"vpce-doctor fleet: error: {describe_error(exc, endpoint)}"), file=sys.stderr)
        return EXIT_ERROR
    if query.output == "json":
        print(render_json(result))  # redacted value by value
    elif query.output == "csv":
        if not query.streams:
            sys.stdout.write(redact(render_csv(result, query.by)))
    else:
        print(redact(render_table(result, query.by, verbose=args.verbose > 0, rows_streamed=query.streams)))
    return result.exit_code


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``vpce-doctor fleet`` on its own (tests, ``python -m vpce_doctor.fleet``)."""
    parser = _Parser(prog="vpce-doctor fleet", description=DESCRIPTION,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
