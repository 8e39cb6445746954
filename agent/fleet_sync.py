"""Reading the fleet from a Resource Data Sync (``SyncToDestination``, ``SyncFormat=JsonSerDe``) in
S3, or from a local copy of it (``aws s3 sync s3://BUCKET/PREFIX DIR``): any number of accounts and
regions in one run, one GET per instance, no GetInventory throttling.

The layout, as AWS documents it and as the readers AWS publishes parse it
-----------------------------------------------------------------------
* Keys: ``<prefix>/<TypeName>/accountid=<account>/region=<region>/resourcetype=ManagedInstanceInventory/
  <instance-id>.json`` — one prefix per inventory type, custom types included under their own name
  (``Custom:VpceDoctor/``), Hive-style partitions, one object per instance and type.
  Sources: AWS Systems Manager User Guide, "Walkthrough: Using resource data sync to aggregate
  inventory data" (sysman-inventory-resource-data-sync.html: the bucket policy grants
  ``s3:PutObject`` on ``arn:aws:s3:::BUCKET/PREFIX/*/accountid=<account>/*``; the Athena tables are
  ``PARTITIONED BY (AccountId string, Region string, ResourceType string)`` with ``LOCATION
  's3://BUCKET/PREFIX/AWS:Application/'``); the AWS blog "Understanding AWS Systems Manager Inventory
  Metadata" (one prefix per inventory plug-in, ``Custom:<InventoryName>`` among them); keys such as
  ``AWS:Application/accountid=123456789012/region=ca-central-1/resourcetype=ManagedInstanceInventory/
  i-001188b4e152aecaf.json`` in aws-samples/aws-secure-environment-accelerator's log-archive docs, and
  the same pattern parsed by AWS's sample patch dashboard (aws-samples, cache Lambda
  ``_extract_account_region_from_key``).
* Objects: JSON for Hive's ``org.openx.data.jsonserde.JsonSerDe``, which reads ONE JSON OBJECT PER
  LINE: one line per inventory entry (the ``Content`` maps), each carrying the entry's attributes under
  the names the instance published (``CheckId``, ``Status``, …; case kept; the SerDe matches columns
  case-insensitively, Glue lower-cases column names) plus ``resourceId`` (the instance), ``captureTime``
  and ``schemaVersion``. Sources: the user guide's and the AWS License Manager blog's tables for a
  custom type (``Custom:SQLServer``: columns ``name, edition, version, resourceid, capturetime,
  schemaversion``); AWS's sample dashboard reads ``resourceId`` (this case) from every line of
  AWS:ComplianceItem/AWS:Tag objects (NDJSON) and one object per line elsewhere. Account, region and
  resource type are NOT in the lines: they are the key's partitions. The trailing newline is not
  documented: both are read. The sync's keys and partitions (``resourceId``, ``captureTime``,
  ``schemaVersion``; ``accountid``, ``region``, ``resourcetype``) are names an attribute must not take
  in any case: a case-insensitive reader (Hive's JsonSerDe, Glue, fleet_model's row_from_entry) would
  read the sync's value for it. This reader drops exactly those three keys, in the sync's spelling, so
  an entry's own ``ResourceId`` (say, an older publisher's) is not overwritten by the instance id.
* ``AWS:InstanceInformation/…/<instance-id>.json``: one line, ``InstanceId``, ``InstanceStatus``
  (``Active``, ``ConnectionLost``, ``Stopped``, ``Terminated``, …), ``AgentVersion``, ``ComputerName``,
  ``IpAddress``, ``PlatformName``/``Type``/``Version``, ``ResourceType`` (user guide's
  AWS_InstanceInformation table; AWS's sample dashboard keeps only ``InstanceStatus == "Active"``).
* Terminated instances: no AWS document says that the sync deletes their objects (DeleteResourceDataSync
  "doesn't delete data"; AWS's sample dashboard filters on ``InstanceStatus`` instead), so an instance's
  object may outlive it. Its InstanceInformation is what says Terminated, which is why it is read.

What this reader does
---------------------
1. Lists ``<prefix>/<type>/`` (ListObjectsV2 pages; s3:ListBucket) and GETs every instance object
   (s3:GetObject) on a pool of ``concurrency`` threads sharing one botocore client (adaptive retries,
   ``max_pool_connections=concurrency``); each object becomes one ``InstanceReport`` for the sink the
   moment it is parsed. Raw bodies are not kept; ``keep_evidence=False`` drops Evidence.
2. Lists ``<prefix>/AWS:InstanceInformation/`` and calls ``sink.add_managed`` for every instance. The
   object is read (one small GET) only for instances with no object of the type — those the view
   may call silent, where Terminated must not count: the GETs are bounded by the silent instances, not
   the fleet. An instance that publishes gets status "?" (unread: it is not silent whatever it is).
3. Bad input is a ``Problem`` and the run goes on: ``not_json``, ``truncated`` (the parse fails at the
   end: the text is a cut-off JSON value), ``not_inventory`` (JSON, but no CheckId/Status entries of
   this type, another instance's entries, an empty object, a key outside the layout), ``too_large``
   (decided from the listed Size without a GET; a body longer than listed is cut at the limit),
   ``unreadable`` (access denied on that object, gone since the listing, …); and ``no_coverage`` once
   when there is no AWS:InstanceInformation object at all (silent instances cannot be told).
4. A whole-run failure raises ``FleetError`` in one line naming the bucket/prefix and the IAM action:
   bad URL, no credentials, bucket missing, listing denied (s3:ListBucket), every read denied
   (s3:GetObject), nothing of the type under the prefix (nothing read is never an all-clear), the
   deadline (naming what was not read).
"""
from __future__ import annotations

import errno
import os
import stat
import re
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Set, Tuple

from .checks.redact import redact
from .fleet_coverage import INSTANCE_INFORMATION, MAX_PAGES, FleetError, error_code
from .fleet_model import Problem, Sink, instance_report
from .fleet_sync_objects import LAYOUT, SyncKey, capture_time, instance_status, parse_key, parse_object

DEFAULT_TYPE_NAME = "Custom:VpceDoctor"
# An item holds at most 200 KB of content (PutInventory quota); the sync adds resourceId, captureTime
# and schemaVersion to each of up to 10,000 entries (~100 bytes each). 4 MiB leaves room for both.
DEFAULT_MAX_OBJECT_BYTES = 4 * 1024 * 1024
DEFAULT_DEADLINE_S = 300.0
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0
DEFAULT_MAX_ATTEMPTS = 5
DENIED_ABORT = 16  # this many GetObject denials before any success: the policy lacks s3:GetObject
CHUNK = 256 * 1024
ACCESS_DENIED = frozenset({"AccessDenied", "AllAccessDisabled", "AccessDeniedException", "403"})
BAD_CREDENTIALS = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
                             "TokenRefreshRequired"})
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


# --- where the sync is ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SyncLocation:
    """``s3://bucket/prefix`` or a local directory that holds the same layout."""
    bucket: Optional[str]
    prefix: str                 # without leading/trailing "/" ("" for the bucket's root)
    directory: Optional[Path] = None

    def type_prefix(self, type_name: str) -> str:
        return f"{self.prefix}/{type_name}/" if self.prefix else f"{type_name}/"

    def where(self, key: str) -> str:
        if self.directory is not None:
            return str(self.directory / key)
        return f"s3://{self.bucket}/{key}"


def parse_location(url: str) -> SyncLocation:
    text = (url or "").strip()
    if text.lower().startswith("s3://"):
        bucket, _, prefix = text[5:].partition("/")
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise FleetError(f"--from-sync {text[:200]!r}: {bucket[:80]!r} is not an S3 bucket name; give "
                             "s3://BUCKET[/PREFIX] (the sync's S3Destination BucketName and Prefix)")
        return SyncLocation(bucket, prefix.strip("/"))
    path = Path(text).expanduser() if text else None
    if path is None or not path.is_dir():
        raise FleetError(f"--from-sync {text[:200]!r} is neither s3://BUCKET[/PREFIX] nor a directory holding a "
                         "copy of the sync (aws s3 sync s3://BUCKET/PREFIX DIR)")
    return SyncLocation(None, "", path)


# --- what a run read -----------------------------------------------------------------------------

@dataclass
class SyncStats:
    source: str
    type_name: str
    listed: int = 0             # objects of the type listed
    read: int = 0               # of those, read into a report
    refused: int = 0            # named as problems
    bytes_read: int = 0
    list_pages: int = 0
    managed_listed: int = 0     # AWS:InstanceInformation objects listed
    managed_read: int = 0       # of those, GET (instances with no object of the type)
    accounts: Set[str] = field(default_factory=set)
    regions: Set[str] = field(default_factory=set)
    problems: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __str__(self) -> str:
        text = (f"{self.listed:,} {self.type_name} objects listed, {self.read:,} read"
                + (f", {self.refused:,} refused" if self.refused else "")
                + f"; {self.managed_listed:,} {INSTANCE_INFORMATION} objects listed, {self.managed_read:,} read; "
                f"{len(self.accounts)} account{'s' if len(self.accounts) != 1 else ''}, "
                f"{len(self.regions)} region{'s' if len(self.regions) != 1 else ''} in {self.seconds:.1f} s")
        return text


# --- the stores ------------------------------------------------------------------------------------

class _Unreadable(Exception):
    """One object could not be read; the message is the one-line why."""


class _Denied(_Unreadable):
    pass


class _S3Store:
    def __init__(self, client: Any, location: SyncLocation, deadline_at: float) -> None:
        self.client = client
        self.location = location
        self.deadline_at = deadline_at

    def list(self, prefix: str, stats: SyncStats) -> Iterator[Tuple[str, int]]:
        """(key relative to ``prefix``, size) for every object, page by page."""
        request: Dict[str, Any] = {"Bucket": self.location.bucket, "Prefix": prefix}
        seen: Set[str] = set()
        for _ in range(MAX_PAGES):
            if time.monotonic() >= self.deadline_at:
                raise _Deadline(f"the listing of {self.location.where(prefix)} after page {stats.list_pages}")
            try:
                reply = self.client.list_objects_v2(**request)
            except Exception as exc:  # noqa: BLE001 - a failed listing fails the run, in one line
                raise FleetError(_listing_error(exc, self.location, prefix)) from None
            with stats.lock:
                stats.list_pages += 1
            for entry in reply.get("Contents") or ():
                key = str(entry.get("Key") or "")
                if key.startswith(prefix):
                    yield key[len(prefix):], int(entry.get("Size") or 0)
            token = reply.get("NextContinuationToken")
            if not reply.get("IsTruncated") or not token:
                return
            if token in seen:
                raise FleetError(f"listing {self.location.where(prefix)} kept paging (a continuation token "
                                 "repeated); retry")
            seen.add(token)
            request["ContinuationToken"] = token
        raise FleetError(f"listing {self.location.where(prefix)} kept paging ({MAX_PAGES} pages)")

    def read(self, key: str, limit: int) -> bytes:
        """At most ``limit + 1`` bytes of the object (one more says it is longer than allowed)."""
        try:
            reply = self.client.get_object(Bucket=self.location.bucket, Key=key)
        except Exception as exc:  # noqa: BLE001 - one object's failure is a problem, not the run's
            code, message = error_code(exc), _error_message(exc)
            if code in ACCESS_DENIED:
                raise _Denied(f"access denied ({code}): the IAM action s3:GetObject is missing for this object "
                              f"(SSE-KMS also needs kms:Decrypt). AWS said: {message}") from None
            if code == "NoSuchKey":
                raise _Unreadable("gone between the listing and the read (NoSuchKey): the sync replaced or "
                                  "deleted it") from None
            raise _Unreadable(f"GetObject failed: {code or exc.__class__.__name__}: {message}") from None
        body = reply["Body"]
        try:
            return _read_capped(body.read, limit)
        except Exception as exc:  # noqa: BLE001 - a transfer cut short (IncompleteRead, timeout, reset)
            raise _Unreadable(f"the transfer failed: {exc.__class__.__name__}: {_error_message(exc)}") from None
        finally:
            body.close()


class _LocalStore:
    def __init__(self, location: SyncLocation, deadline_at: float) -> None:
        assert location.directory is not None
        self.root = location.directory
        self.location = location
        self.deadline_at = deadline_at

    def list(self, prefix: str, stats: SyncStats) -> Iterator[Tuple[str, int]]:
        top = self.root / prefix
        if not top.is_dir():
            return
        with stats.lock:
            stats.list_pages += 1
        for folder, dirs, files in os.walk(top):
            dirs.sort()
            if time.monotonic() >= self.deadline_at:
                raise _Deadline(f"the listing of {top}")
            rel = Path(folder).relative_to(top).as_posix()
            for name in sorted(files):
                try:
                    size = os.stat(os.path.join(folder, name)).st_size
                except OSError:
                    size = 0  # the read names it
                yield (name if rel == "." else f"{rel}/{name}"), size

    def read(self, key: str, limit: int) -> bytes:
        # A copy of a sync holds plain files: a symbolic link (to /etc/shadow, say) is not followed,
        # nor is anything but a regular file read (a FIFO would block the reader).
        try:
            fd = os.open(self.root / key, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        except OSError as exc:
            why = "a symbolic link, not followed" if exc.errno == errno.ELOOP else (exc.strerror or str(exc))
            raise _Unreadable(f"cannot read it: {why}") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise _Unreadable("cannot read it: not a regular file")
            with os.fdopen(fd, "rb") as fh:
                fd = -1
                return _read_capped(fh.read, limit)
        except OSError as exc:
            raise _Unreadable(f"cannot read it: {exc.strerror or exc}") from None
        finally:
            if fd >= 0:
                os.close(fd)


def _read_capped(read: Any, limit: int) -> bytes:
    chunks: List[bytes] = []
    total = 0
    while total <= limit:
        chunk = read(min(CHUNK, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


class _Deadline(Exception):
    """The deadline passed while doing what the message names."""


# --- the run ---------------------------------------------------------------------------------------

class _Run:
    def __init__(self, store: Any, location: SyncLocation, sink: Sink, stats: SyncStats, type_name: str,
                 max_object_bytes: int, keep_evidence: bool, deadline_at: float) -> None:
        self.store, self.location, self.sink, self.stats = store, location, sink, stats
        self.type_name, self.limit, self.keep_evidence = type_name, max_object_bytes, keep_evidence
        self.deadline_at = deadline_at
        self.published: Set[str] = set()     # instances with an object of the type (usable or not)
        self.fatal: Optional[BaseException] = None
        self.late = 0                        # objects skipped because the deadline passed
        self.denied = 0

    def problem(self, kind: str, where: str, detail: str) -> None:
        with self.stats.lock:
            self.stats.problems[kind] += 1
        self.sink.problem(Problem(kind, where, redact(detail)))

    def pool(self, concurrency: int, jobs: Iterator[Tuple[Any, ...]], work: Any) -> None:
        """Run ``work(*job)`` for every job on ``concurrency`` threads, at most 4 × as many queued."""
        slots = threading.BoundedSemaphore(max(1, concurrency) * 4)
        executor = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="vpce-doctor-sync")

        def done(_: "Future[None]") -> None:
            slots.release()

        try:
            for job in jobs:
                if self.fatal is not None:
                    break
                slots.acquire()
                executor.submit(self._guarded, work, job).add_done_callback(done)
        except BaseException:
            executor.shutdown(wait=False, cancel_futures=True)
            raise
        executor.shutdown(wait=True)
        if self.fatal is not None:
            raise self.fatal

    def _guarded(self, work: Any, job: Tuple[Any, ...]) -> None:
        if self.fatal is not None:
            return
        if time.monotonic() >= self.deadline_at:
            with self.stats.lock:
                self.late += 1
            return
        try:
            work(*job)
        except BaseException as exc:  # noqa: BLE001 - the first fatal error ends the run
            if self.fatal is None:
                self.fatal = exc

    # The instance objects of the type.
    def jobs(self) -> Iterator[Tuple[str, SyncKey, int]]:
        prefix = self.location.type_prefix(self.type_name)
        for relative, size in self.store.list(prefix, self.stats):
            key = prefix + relative
            if relative.endswith("/") and size == 0:
                continue  # a "folder" placeholder object
            with self.stats.lock:
                self.stats.listed += 1
            parsed = parse_key(relative)
            if parsed is None:
                self._refuse("not_inventory", key, f"not in the sync layout ({self.type_name}/{LAYOUT})")
                continue
            with self.stats.lock:
                self.published.add(parsed.instance_id)
                self.stats.accounts.add(parsed.account_id)
                self.stats.regions.add(parsed.region)
            if size > self.limit:
                self._refuse("too_large", key, f"{size:,} bytes listed, more than --max-object-bytes "
                                               f"{self.limit:,}: not downloaded")
                continue
            yield key, parsed, size

    def read_one(self, key: str, parsed: SyncKey, size: int) -> None:
        where = self.location.where(key)
        try:
            body = self.store.read(key, self.limit)
        except _Denied as exc:
            with self.stats.lock:
                self.denied += 1
                abort = self.denied >= DENIED_ABORT and self.stats.read == 0
            if abort:
                prefix = self.location.type_prefix(self.type_name)
                raise FleetError(f"access denied reading the objects under {self.location.where(prefix)}: the IAM "
                                 f"action s3:GetObject is missing (arn:aws:s3:::{self.location.bucket}/{prefix}*) or a "
                                 f"bucket/KMS key policy denies it. {exc}") from None
            self._refuse("unreadable", key, str(exc))
            return
        except _Unreadable as exc:
            self._refuse("unreadable", key, str(exc))
            return
        with self.stats.lock:
            self.stats.bytes_read += len(body)
        if len(body) > self.limit:
            self._refuse("too_large", key, f"longer than the {self.limit:,} bytes allowed (listed as {size:,}): "
                                           "read no further")
            return
        entries, bad = parse_object(body, parsed.instance_id, self.type_name)
        del body  # no raw bodies kept
        if bad is not None:
            self._refuse(bad[0], key, bad[1])
            return
        item = {"CaptureTime": capture_time(entries), "Content": entries}
        report = instance_report(parsed.instance_id, item, account_id=parsed.account_id, region=parsed.region,
                                 source=where, keep_evidence=self.keep_evidence, lazy=True)
        with self.stats.lock:
            self.stats.read += 1
        self.sink.add(report)

    def _refuse(self, kind: str, key: str, detail: str) -> None:
        with self.stats.lock:
            self.stats.refused += 1
        self.problem(kind, self.location.where(key), detail)

    # The managed instances.
    def managed_jobs(self) -> Iterator[Tuple[str, SyncKey]]:
        prefix = self.location.type_prefix(INSTANCE_INFORMATION)
        for relative, _size in self.store.list(prefix, self.stats):
            parsed = parse_key(relative)
            if parsed is None:
                continue  # not an instance's object; coverage is a side view, not the findings
            with self.stats.lock:
                self.stats.managed_listed += 1
            if parsed.instance_id in self.published:
                self.sink.add_managed(parsed.account_id, parsed.region, parsed.instance_id, "?")
                continue
            yield prefix + relative, parsed

    def read_managed(self, key: str, parsed: SyncKey) -> None:
        status = None
        try:
            status = instance_status(self.store.read(key, 64 * 1024))
        except _Unreadable as exc:
            self.problem("unreadable", self.location.where(key), str(exc))
        else:
            if status is None:
                self.problem("not_inventory", self.location.where(key), f"no InstanceStatus: not an "
                                                                         f"{INSTANCE_INFORMATION} object")
        with self.stats.lock:
            self.stats.managed_read += 1
        # An unreadable status is not "Terminated": the instance counts as silent (never an all-clear).
        self.sink.add_managed(parsed.account_id, parsed.region, parsed.instance_id, status or "?")


def read_sync(url: str, sink: Sink, *, type_name: str = DEFAULT_TYPE_NAME, profile: Optional[str] = None,
              region: Optional[str] = None, endpoint_url: Optional[str] = None, ca_bundle: Optional[str] = None,
              concurrency: int = 32, max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES,
              deadline_at: Optional[float] = None, keep_evidence: bool = False) -> SyncStats:
    """Read the sync at ``url`` (s3://BUCKET[/PREFIX] or a directory) into ``sink``; see the module doc."""
    started = time.monotonic()
    deadline_at = started + DEFAULT_DEADLINE_S if deadline_at is None else deadline_at
    location = parse_location(url)
    source = location.where(location.prefix) if location.directory is None else str(location.directory)
    stats = SyncStats(source=source, type_name=type_name)
    if location.directory is not None:
        store: Any = _LocalStore(location, deadline_at)
        concurrency = min(concurrency, 4)  # parsing holds the GIL; threads only overlap file I/O
    else:
        budget = max(0.1, deadline_at - time.monotonic())
        store = _S3Store(make_client(profile, region, endpoint_url, ca_bundle, concurrency, budget), location,
                         deadline_at)
    run = _Run(store, location, sink, stats, type_name, max(0, int(max_object_bytes)), keep_evidence, deadline_at)
    type_prefix = location.where(location.type_prefix(type_name))
    try:
        run.pool(concurrency, run.jobs(), run.read_one)
        if stats.listed == 0:
            raise FleetError(f"no {type_name} objects under {type_prefix} (nothing was read, so this is not an "
                             f"all-clear): is the URL the sync's bucket and prefix (s3://BUCKET/PREFIX, the level "
                             f"that holds the type folders), is --type-name right, and has the sync run since the "
                             f"instances published?")
        if run.late:
            raise _Deadline(f"{run.late:,} of the {stats.listed:,} {type_name} objects under {type_prefix}")
        run.pool(concurrency, run.managed_jobs(), run.read_managed)
        if stats.managed_listed == 0:
            info = location.where(location.type_prefix(INSTANCE_INFORMATION))
            run.problem("no_coverage", info, "no AWS:InstanceInformation objects: which managed instances publish "
                                             "nothing (silent) cannot be told; copy or sync that prefix too")
        if run.late:
            raise _Deadline(f"the status of {run.late:,} managed instances "
                            f"({location.where(location.type_prefix(INSTANCE_INFORMATION))})")
    except _Deadline as exc:
        raise FleetError(f"the deadline passed after {time.monotonic() - started:.1f} s with {stats.read:,} of "
                         f"{stats.listed:,} {type_name} objects read; not read: {exc}, and what follows it. Nothing "
                         f"is listed, so this is not an all-clear: retry, raise --deadline or the concurrency") from None
    finally:
        stats.seconds = time.monotonic() - started
    return stats


# --- the S3 client ---------------------------------------------------------------------------------

def make_client(profile: Optional[str], region: Optional[str], endpoint_url: Optional[str],
                ca_bundle: Optional[str], concurrency: int, budget_s: float) -> Any:
    """One S3 client for the whole run: the usual credential chain, adaptive retries (S3's 503
    SlowDown is retried with a client-side rate limit), a pool as large as the concurrency."""
    import botocore.session
    from botocore import exceptions as bx
    from botocore.config import Config

    try:
        session = botocore.session.Session(profile=profile)
        attempts = session.get_config_variable("max_attempts") or DEFAULT_MAX_ATTEMPTS
        # S3 redirects to the bucket's region by itself; a region is needed only to sign the first call.
        where = region or session.get_config_variable("region") or "us-east-1"
        config = Config(retries={"mode": "adaptive", "total_max_attempts": int(attempts)},
                        max_pool_connections=max(1, concurrency), connect_timeout=min(CONNECT_TIMEOUT_S, budget_s),
                        read_timeout=min(READ_TIMEOUT_S, budget_s), user_agent_extra="vpce-doctor-fleet-sync")
        return session.create_client("s3", region_name=where, endpoint_url=endpoint_url, verify=ca_bundle or None,
                                     config=config)
    except bx.ProfileNotFound as exc:
        raise FleetError(f"{exc}: pass an existing --profile (aws configure list-profiles)") from None


def _error_message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    message = ""
    if isinstance(response, Mapping):
        message = str((response.get("Error") or {}).get("Message") or "")
    return " ".join((message or str(exc)).split())[:300]


def _listing_error(exc: BaseException, location: SyncLocation, prefix: str) -> str:
    from botocore import exceptions as bx

    where = location.where(prefix)
    arn = f"arn:aws:s3:::{location.bucket}"
    code, message = error_code(exc), _error_message(exc)
    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        return (f"no AWS credentials to list {where} ({exc}): set AWS_PROFILE/--profile, or AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY")
    if code == "NoSuchBucket":
        return (f"s3://{location.bucket}: the bucket does not exist (NoSuchBucket): give the sync's S3Destination "
                "BucketName (aws ssm list-resource-data-sync)")
    if code in ACCESS_DENIED:
        return (f"access denied listing {where} ({code}): the IAM action s3:ListBucket on {arn} (prefix "
                f"{prefix!r}) is missing for these credentials, or a bucket policy denies it; reading the objects "
                f"also needs s3:GetObject on {arn}/{location.prefix + '/' if location.prefix else ''}*. AWS said: "
                f"{message}")
    if code in BAD_CREDENTIALS:
        return f"the credentials were refused listing {where} ({code}): {message}; check the profile or refresh it"
    if isinstance(exc, bx.SSLError):
        return f"TLS to the S3 endpoint failed listing {where}: {exc} (--ca-bundle or AWS_CA_BUNDLE for a private CA)"
    if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError)):
        return f"cannot reach the S3 endpoint listing {where}: {exc}"
    return f"listing {where} failed: {code or exc.__class__.__name__}: {message}"
