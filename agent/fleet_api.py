"""Reading the fleet through ``ssm:GetInventory``: every (profile, region) partition at once.

One partition is one account (its credentials) in one region. Each is read with two queries — the
instances that publish the type (all their entries: Status Equal every status; the Exists operator
needs aggregators) and the managed instances (AWS:InstanceInformation, not terminated) — pages
handed to the sink as they arrive. Pages within one query follow each other (NextToken), so the
concurrency is across queries and partitions, bounded by ``concurrency``.

Throttling: SSM answers ``ThrottlingException`` ("Rate exceeded") past an account's request rate.
Each partition (one account and region: one rate limit) shares one ``AdaptiveRate``: unpaced until
the first throttled answer, then just under the rate the service was admitting (what a token bucket
admits once its burst is spent), probing upward on success — botocore's "adaptive" mode does
something alike, but its sleeps know neither the deadline nor that both queries share one limit.
A throttled page is sent again at its next slot with the NextToken kept, so nothing is read twice
and nothing is skipped; past the deadline the throttling error itself is what the user reads.
"""
from __future__ import annotations

import collections
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from .fleet_coverage import INSTANCE_INFORMATION, MAX_PAGES, FleetError, error_code
from .fleet_model import STATUSES, Sink, instance_report

MAX_PAGE = 50                # GetInventory MaxResults: 1-50
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0
BACKOFF_CAP_S = 8.0
THROTTLED = frozenset({"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"})


@dataclass(frozen=True)
class Partition:
    profile: Optional[str]
    region: str

    @property
    def label(self) -> str:
        return f"{self.profile}/{self.region}" if self.profile else self.region


@dataclass
class ApiStats:
    """What the reading took, per partition and query: pages, throttled answers, done or not."""
    pages: Dict[Tuple[str, str], int] = field(default_factory=dict)      # (partition, query) -> pages
    done: Set[Tuple[str, str]] = field(default_factory=set)
    throttled: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def page(self, where: Tuple[str, str]) -> None:
        with self.lock:
            self.pages[where] = self.pages.get(where, 0) + 1

    def not_fetched(self, partitions: Sequence[Partition]) -> str:
        missing = []
        for p in partitions:
            for query in ("findings", "managed"):
                if (p.label, query) not in self.done:
                    n = self.pages.get((p.label, query), 0)
                    missing.append(f"{p.label} {query}" + (f" after page {n}" if n else ""))
        return ", ".join(missing[:12]) + (f" and {len(missing) - 12} more" if len(missing) > 12 else "")

    @property
    def total_pages(self) -> int:
        return sum(self.pages.values())


class DeadlineReached(FleetError):
    """The deadline came before a call could start: the caller names what was not read."""


class AdaptiveRate:
    """A per-partition send rate that follows what the service admits (thread-safe).

    A token-bucket service admits exactly its rate once the burst is spent, so the admitted rate over
    the last seconds *is* the limit: on a throttled answer the pace drops to just under it; each
    success then probes upward by 1 % (so a raised quota is found again)."""

    MIN_RATE = 0.5      # calls per second, the floor
    WINDOW_S = 3.0      # how far back the admitted rate is measured
    MIN_WINDOW_S = 1.0  # never measure over less (a burst would look like the rate)
    MARGIN = 0.9        # pace at this share of the measured rate
    PROBE = 1.01        # per success, once paced

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rate: Optional[float] = None       # None: not paced yet
        self._next_at = 0.0
        self._admitted: "collections.deque[float]" = collections.deque(maxlen=512)

    def wait_time(self) -> float:
        """Reserve the next send slot; returns how long to wait for it."""
        with self._lock:
            now = time.monotonic()
            if self.rate is None:
                return 0.0
            slot = max(now, self._next_at)
            self._next_at = slot + 1.0 / self.rate
            return slot - now

    def succeeded(self) -> None:
        with self._lock:
            self._admitted.append(time.monotonic())
            if self.rate is not None:
                self.rate *= self.PROBE

    def throttled(self) -> None:
        with self._lock:
            now = time.monotonic()
            recent = [t for t in self._admitted if t >= now - self.WINDOW_S]
            window = max(self.MIN_WINDOW_S, now - recent[0]) if recent else self.WINDOW_S
            measured = len(recent) / window
            limit = measured if self.rate is None else min(self.rate, measured)
            self.rate = max(self.MIN_RATE, limit * self.MARGIN)
            self._next_at = max(self._next_at, now + 1.0 / self.rate)  # the slot just lost


def make_client(region: Optional[str], profile: Optional[str], endpoint_url: Optional[str],
                ca_bundle: Optional[str], deadline_s: float, pool: int = 4) -> Any:
    """An ssm client for an operator's credentials: the usual chain (env, profile, SSO, ...),
    timeouts no longer than the deadline."""
    import botocore.session
    from botocore.config import Config

    session = botocore.session.Session(profile=profile)
    region = region or session.get_config_variable("region")
    if not region:
        raise FleetError("no region: pass --region/--regions, or set AWS_REGION or the profile's region")
    # botocore's own retries would sleep on throttling without knowing the pace or the deadline: one
    # attempt per call unless the operator set AWS_MAX_ATTEMPTS / max_attempts; _call retries.
    attempts = session.get_config_variable("max_attempts") or 1
    config = Config(retries={"mode": "standard", "total_max_attempts": int(attempts)},
                    connect_timeout=min(CONNECT_TIMEOUT_S, deadline_s), read_timeout=min(READ_TIMEOUT_S, deadline_s),
                    max_pool_connections=pool, user_agent_extra="vpce-doctor-fleet")
    client = session.create_client("ssm", region_name=region, endpoint_url=endpoint_url,
                                   verify=ca_bundle or None, config=config)
    _entities_as_json(client)
    return client


def _entities_as_json(client: Any) -> None:
    """Let botocore hand GetInventory's ``Entities`` over as the JSON it decoded, unwalked.

    botocore's JSON parser walks the output shape value by value: for 10,000 instances of ~20 entries
    that walk was nine tenths of the CPU of a fleet read. The shape becomes a *document* (a JSON value
    taken as is, which every botocore parser since 1.20 supports) for this client's operation model
    only; ``_query`` checks every value's type itself, as it did before."""
    from botocore.model import ShapeResolver

    operation = client.meta.service_model.operation_model("GetInventory")
    resolver = ShapeResolver({
        "VpceDoctorGetInventoryResult": {"type": "structure", "members": {
            "Entities": {"shape": "VpceDoctorEntities"}, "NextToken": {"shape": "VpceDoctorNextToken"}}},
        "VpceDoctorEntities": {"type": "structure", "members": {}, "document": True},
        "VpceDoctorNextToken": {"type": "string"}})
    # output_shape is a botocore CachedProperty (a non-data descriptor): the instance's value wins.
    operation.__dict__["output_shape"] = resolver.get_shape_by_name("VpceDoctorGetInventoryResult")


def default_region(profile: Optional[str]) -> Optional[str]:
    import botocore.session

    return botocore.session.Session(profile=profile).get_config_variable("region")


TRANSIENT_CODES = frozenset({"InternalServerError", "InternalFailure", "ServiceUnavailable", "RequestTimeout",
                             "RequestTimeoutException"})
TRANSIENT_TRIES = 3


def transient(exc: BaseException) -> bool:
    """A failure worth another try: a timeout, a dropped connection, a 5xx (a partition's wrapper
    counts as what it wraps)."""
    from botocore import exceptions as bx

    exc = getattr(exc, "exc", exc)
    if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectionClosedError, bx.ReadTimeoutError,
                        bx.ConnectTimeoutError)):
        return True
    status = ((getattr(exc, "response", None) or {}).get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0
    return error_code(exc) in TRANSIENT_CODES or int(status) >= 500


def _call(client: Any, request: Dict[str, Any], deadline_at: float, stats: ApiStats,
          rate: AdaptiveRate) -> Dict[str, Any]:
    """One GetInventory page at the partition's adaptive pace. A throttled answer sets the pace and
    the page is sent again at its next slot; a transient failure is retried twice with backoff;
    both only while the deadline allows."""
    last: Optional[Exception] = None
    throttles = retries = 0
    while True:
        wait = rate.wait_time()
        if time.monotonic() + wait >= deadline_at:
            if last is not None:
                raise last  # the throttling itself is what the user needs to read
            raise DeadlineReached("the deadline passed before this page could be asked for")
        if wait > 0:
            time.sleep(wait)  # pacing to the service's rate limit, not waiting for a test
        try:
            reply = client.get_inventory(**request)
        except (AttributeError, TypeError, KeyError, ValueError):  # botocore could not parse the answer
            raise FleetError("the answer does not parse as a GetInventory reply; is the endpoint an SSM "
                             "endpoint?") from None
        except Exception as exc:  # noqa: BLE001 - throttling and transient errors are retried
            if error_code(exc) in THROTTLED:
                last = exc
                throttles += 1
                rate.throttled()
                with stats.lock:
                    stats.throttled += 1
                # Paced, the next slot is the wait; a page throttled again and again also backs off.
                backoff = 0.0 if throttles < 3 else min(BACKOFF_CAP_S, 0.25 * 2 ** (throttles - 3)) * random.random()
            elif transient(exc) and retries < TRANSIENT_TRIES - 1:
                retries += 1
                backoff = 0.5 * 2 ** retries * (0.5 + random.random() / 2)
            else:
                raise
            if time.monotonic() + backoff >= deadline_at:
                raise
            if backoff:
                time.sleep(backoff)  # backing off from the service, not waiting for a test
            continue
        rate.succeeded()
        if not isinstance(reply, dict) or "Entities" not in reply:
            # botocore turns an unparsable 200 (a captive portal, a proxy's page) into {}: read as an
            # empty page it would be an all-clear.
            raise FleetError("the answer is not a GetInventory reply (no Entities list); is the endpoint an "
                             "SSM endpoint?")
        entities = reply["Entities"]
        if not isinstance(entities, list) or not all(
                isinstance(e, dict) and isinstance(e.get("Data") or {}, dict)
                and all(isinstance(v, dict) for v in (e.get("Data") or {}).values()) for e in entities):
            raise FleetError("the answer does not parse as a GetInventory reply (Entities is not a list of "
                             "entities with Data items); is the endpoint an SSM endpoint?")
        return reply


def _query(client: Any, partition: Partition, query: str, request: Dict[str, Any], type_name: str,
           sink: Sink, stats: ApiStats, deadline_at: float, keep_evidence: bool, rate: AdaptiveRate) -> None:
    seen: Set[str] = set()
    where = (partition.label, query)
    for _ in range(MAX_PAGES):
        reply = _call(client, request, deadline_at, stats, rate)
        stats.page(where)
        for entity in reply["Entities"]:
            if not isinstance(entity, dict) or not entity.get("Id"):
                continue
            instance_id = str(entity["Id"])[:64]
            item = (entity.get("Data") or {}).get(type_name) or {}
            if query == "managed":
                content = item.get("Content") or [{}]
                first = content[0] if isinstance(content, list) and content and isinstance(content[0], dict) else {}
                sink.add_managed("", partition.region, instance_id, str(first.get("InstanceStatus") or "?")[:40])
            elif item:
                sink.add(instance_report(instance_id, item, region=partition.region, source="api",
                                         keep_evidence=keep_evidence, lazy=True))
        token = reply.get("NextToken")
        if not token:
            with stats.lock:
                stats.done.add(where)
            return
        if token in seen:
            raise FleetError(f"{partition.label}: GetInventory kept paging (a NextToken repeated); retry")
        seen.add(token)
        request = dict(request, NextToken=token)
    raise FleetError(f"{partition.label}: GetInventory kept paging ({MAX_PAGES} pages)")


def read_api(partitions: Sequence[Partition], sink: Sink, stats: ApiStats, *, type_name: str, page_size: int,
             endpoint_url: Optional[str], ca_bundle: Optional[str], deadline_at: float, concurrency: int,
             keep_evidence: bool = False) -> None:
    """Read every partition into ``sink``; raises the first failure (FleetError or botocore's)."""
    budget = max(0.1, deadline_at - time.monotonic())
    clients = {p: make_client(p.region, p.profile, endpoint_url, ca_bundle, budget, pool=2) for p in partitions}
    rates = {p: AdaptiveRate() for p in partitions}  # one rate limit per account and region
    published = [{"Key": f"{type_name}.Status", "Values": list(STATUSES), "Type": "Equal"}]
    managed = [{"Key": f"{INSTANCE_INFORMATION}.InstanceStatus", "Values": ["Terminated"], "Type": "NotEqual"}]
    # Every partition's findings first, then the coverage queries: with fewer threads than queries,
    # each partition still starts at once (its two queries share one rate limit anyway).
    jobs: List[Tuple[Partition, str, Dict[str, Any], str]] = []
    for p in partitions:
        jobs.append((p, "findings", {"Filters": published, "ResultAttributes": [{"TypeName": type_name}],
                                     "MaxResults": page_size}, type_name))
    for p in partitions:
        jobs.append((p, "managed", {"Filters": managed, "ResultAttributes": [{"TypeName": INSTANCE_INFORMATION}],
                                    "MaxResults": page_size}, INSTANCE_INFORMATION))
    errors: List[BaseException] = []

    def run(job: Tuple[Partition, str, Dict[str, Any], str]) -> None:
        p, query, request, shown = job
        if errors:
            return
        try:
            _query(clients[p], p, query, request, shown, sink, stats, deadline_at, keep_evidence, rates[p])
        except BaseException as exc:  # noqa: BLE001 - the first failure is the caller's one line
            errors.append(_Located(p, exc))

    # Daemon threads, not a ThreadPoolExecutor (whose workers are joined at exit): a socket stalled
    # past the deadline must not keep the process alive.
    queue = list(reversed(jobs))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not queue:
                    return
                job = queue.pop()
            run(job)

    threads = [threading.Thread(target=worker, name=f"vpce-doctor-fleet-{i}", daemon=True)
               for i in range(max(1, min(concurrency, len(jobs))))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        first = errors[0]
        raise first.exc if isinstance(first, _Located) and len(partitions) == 1 else first


class _Located(Exception):
    """A partition's failure, named with the partition when several are read."""

    def __init__(self, partition: Partition, exc: BaseException) -> None:
        super().__init__(f"{partition.label}: {exc}")
        self.partition = partition
        self.exc = exc
