"""The Resource Data Sync's S3 layout, written as the sync writes it — for tests and benchmarks of
``vpce-doctor fleet --from-sync`` (and the Athena DDL) — plus bad objects to plant, and a plain
``moto_server`` on 127.0.0.1 to hold it.

The layout (sources in agent/fleet_sync.py's docstring: the SSM user guide's resource data sync
walkthrough, AWS blog posts and AWS's own sample readers):

    <prefix>/<TypeName>/accountid=<account>/region=<region>/resourcetype=ManagedInstanceInventory/<instance-id>.json

one object per instance and type, JSON lines for the JsonSerDe: one line per inventory entry, the
entry's attributes as published plus ``resourceId``, ``captureTime`` and ``schemaVersion``. Every
instance also has an ``AWS:InstanceInformation`` object (one line, ``InstanceStatus`` among others).

Use (local directory; the Athena tests import this)::

    from tests.lab.aws.resource_data_sync import write_layout, instance_information
    write_layout(Path("/tmp/sync"), [("123456789012", "us-east-1", "i-0123456789abcdef0",
                                      {"Custom:VpceDoctor": item})])

``item`` is an InventoryResultItem-shaped dict: ``{"CaptureTime": "2026-…Z", "SchemaVersion": "1.0",
"Content": [{…}, …]}`` (``InventoryItem.api()`` from agent/publishers/inventory.py fits). For S3,
``dest`` is ``S3Dest(client, bucket, prefix)``.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Deque, Dict, Iterable, Mapping, Optional, Tuple, Union
from urllib.parse import unquote

from .loopback import terminate

INSTANCE_INFORMATION = "AWS:InstanceInformation"
RESOURCE_TYPE = "ManagedInstanceInventory"
CAPTURE_TIME = "2026-05-28T20:26:40Z"
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class S3Dest:
    """A bucket (and prefix) reached with ``client`` (a boto3 S3 client; give it
    ``max_pool_connections`` ≥ the writer's concurrency)."""
    client: Any
    bucket: str
    prefix: str = ""


Dest = Union[S3Dest, Path]
Instance = Tuple[str, str, str, Mapping[str, Mapping[str, Any]]]  # account, region, instance id, {TypeName: item}


def sync_key(type_name: str, account_id: str, region: str, instance_id: str, prefix: str = "") -> str:
    """The object's key (relative to the bucket; ``prefix`` is the sync's Prefix)."""
    key = f"{type_name}/accountid={account_id}/region={region}/resourcetype={RESOURCE_TYPE}/{instance_id}.json"
    return f"{prefix.strip('/')}/{key}" if prefix.strip("/") else key


def object_body(instance_id: str, item: Mapping[str, Any]) -> bytes:
    """The sync's object for one item: one JSON line per entry, with resourceId, captureTime and
    schemaVersion added; lines joined by newlines (no trailing one)."""
    extra = {"resourceId": instance_id, "captureTime": item.get("CaptureTime") or CAPTURE_TIME,
             "schemaVersion": item.get("SchemaVersion") or "1.0"}
    lines = [json.dumps(dict(entry, **extra), separators=(",", ":"), ensure_ascii=False)
             for entry in item.get("Content") or ()]
    return "\n".join(lines).encode("utf-8")


def instance_information(instance_id: str, status: str = "Active", capture_time: str = CAPTURE_TIME,
                         agent_version: str = "3.3.1345.0") -> Dict[str, Any]:
    """The AWS:InstanceInformation item the service keeps for a managed instance."""
    return {"CaptureTime": capture_time, "SchemaVersion": "1.0", "Content": [{
        "AgentType": "amazon-ssm-agent", "AgentVersion": agent_version, "ComputerName": f"ip-{instance_id[2:10]}",
        "InstanceId": instance_id, "InstanceStatus": status, "IpAddress": "10.0.1.10",
        "PlatformName": "Amazon Linux", "PlatformType": "Linux", "PlatformVersion": "2023",
        "ResourceType": "EC2Instance"}]}


@dataclass
class Written:
    objects: int = 0
    bytes: int = 0
    types: Counter = field(default_factory=Counter)


def write_layout(dest: Dest, instances: Iterable[Instance], concurrency: int = 32) -> Written:
    """Write every instance's items in the sync layout under ``dest`` (S3Dest or a directory Path).
    Each instance gets an AWS:InstanceInformation object (Active) unless its items carry one; an
    instance with no other item is a managed instance that publishes nothing (silent)."""
    written = Written()
    lock = threading.Lock()

    def objects() -> Iterable[Tuple[str, bytes, str]]:
        for account_id, region, instance_id, items in instances:
            all_items = dict(items)
            all_items.setdefault(INSTANCE_INFORMATION, instance_information(instance_id))
            for type_name, item in all_items.items():
                yield sync_key(type_name, account_id, region, instance_id), object_body(instance_id, item), type_name

    def put(job: Tuple[str, bytes, str]) -> None:
        key, body, type_name = job
        put_object(dest, key, body)
        with lock:
            written.objects += 1
            written.bytes += len(body)
            written.types[type_name] += 1

    if isinstance(dest, Path):
        for job in objects():
            put(job)
        return written
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="sync-writer") as pool:
        # Bounded in flight: a generator of 10,000+ bodies is consumed as the PUTs complete.
        pending: Deque[Any] = deque()
        for job in objects():
            pending.append(pool.submit(put, job))
            if len(pending) >= concurrency * 4:
                pending.popleft().result()
        while pending:
            pending.popleft().result()
    return written


def put_object(dest: Dest, key: str, body: bytes) -> str:
    """One object at ``key`` (relative to the sync's prefix); returns where it went."""
    if isinstance(dest, Path):
        path = dest / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        return str(path)
    full = f"{dest.prefix.strip('/')}/{key}" if dest.prefix.strip("/") else key
    dest.client.put_object(Bucket=dest.bucket, Key=full, Body=body, ContentType="application/json")
    return f"s3://{dest.bucket}/{full}"


# --- bad objects ------------------------------------------------------------------------------------

def plant(dest: Dest, type_name: str, account_id: str, region: str, instance_id: str, body: bytes) -> str:
    """Put ``body`` where the sync would put this instance's object of ``type_name``."""
    return put_object(dest, sync_key(type_name, account_id, region, instance_id), body)


NOT_JSON = b"<html><body>503 Service Unavailable</body></html>\n"


def truncated(body: bytes, keep: float = 0.6) -> bytes:
    """``body`` cut inside its last line (as a copy interrupted mid-write leaves it)."""
    cut = max(1, int(len(body) * keep))
    last_newline = body.rfind(b"\n", 0, cut)
    if cut - last_newline < 3:  # make sure the cut falls inside a line, not on its boundary
        cut += 3
    return body[:cut]


def not_inventory(instance_id: str) -> bytes:
    """Valid JSON lines of another type (AWS:Application-shaped)."""
    return (json.dumps({"Name": "amazon-ssm-agent", "Version": "3.3.1345.0", "resourceId": instance_id,
                        "captureTime": CAPTURE_TIME, "schemaVersion": "1.1"}) + "\n").encode()


def sparse_file(path: Path, size: int) -> Path:
    """A file of ``size`` bytes that occupies (almost) no disk and no memory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.truncate(size)
    return path


# --- a plain moto server on loopback -----------------------------------------------------------------

_RUNNING = re.compile(r"Running on (http://127\.0\.0\.1:\d+)")
_REQUEST = re.compile(r'"(GET|PUT|POST|HEAD|DELETE) (\S+) HTTP/[\d.]+" (\d{3})')


def _die_with_parent() -> None:
    """In the child: SIGTERM when its parent dies (a killed test run leaves no server). Linux ties this
    to the starting *thread*: start the server from a thread that outlives it (the main one)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class MotoServer:
    """``python -m moto.server -H 127.0.0.1 -p 0`` (``VPCE_LAB_PYTHON`` picks the interpreter that has
    moto). Its request log is drained on a thread (a full pipe would stall the server) and counted:
    ``requests(method, path_fragment)`` says how often a path was asked for — e.g. that an object was
    never downloaded."""

    def __init__(self, python: Optional[str] = None) -> None:
        self.python = python or os.environ.get("VPCE_LAB_PYTHON") or sys.executable
        self.url = ""
        self.proc: Optional[subprocess.Popen] = None
        self._log: Deque[str] = deque(maxlen=200)
        self._requests: Counter = Counter()
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._drain: Optional[threading.Thread] = None

    def start(self, timeout_s: float = 60.0) -> "MotoServer":
        self.proc = subprocess.Popen([self.python, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1"), preexec_fn=_die_with_parent)
        self._drain = threading.Thread(target=self._read_log, name="moto-log", daemon=True)
        self._drain.start()
        if not self._ready.wait(timeout_s) or not self.url:
            self.stop()
            raise RuntimeError(f"moto_server did not start within {timeout_s:g} s: " + " | ".join(self._log))
        return self

    def _read_log(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            match = _REQUEST.search(line)
            if match:
                with self._lock:  # werkzeug logs paths decoded, botocore sends them encoded: compare decoded
                    self._requests[(match.group(1), unquote(match.group(2)))] += 1
                continue
            self._log.append(line.rstrip()[:300])
            running = _RUNNING.search(line)
            if running and not self.url:
                self.url = running.group(1)
                self._ready.set()
        self._ready.set()  # exited: start() stops waiting

    def requests(self, method: str, fragment: str) -> int:
        fragment = unquote(fragment)
        with self._lock:
            return sum(n for (m, path), n in self._requests.items() if m == method and fragment in path)

    def stop(self) -> None:
        if self.proc is None:
            return
        terminate(self.proc)
        if self._drain is not None:
            self._drain.join(timeout=STOP_TIMEOUT_S)
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    def reset(self) -> None:
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(self.url + "/moto-api/reset", method="POST", data=b""),
                               timeout=10).read()

    def client(self, max_pool_connections: int = 32, **config: Any) -> Any:
        """A boto3 S3 client for this server (static test keys; set the env hermetic yourself)."""
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="lab",
                            config=Config(max_pool_connections=max_pool_connections, **config))

    def __enter__(self) -> "MotoServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def moto_get_rate(server: MotoServer, objects: int = 2000, concurrency: int = 32, size: int = 1500) -> Dict[str, Any]:
    """moto's own GetObject rate (the reference for the reader's figures): ``objects`` objects of
    ``size`` bytes, read back by ``concurrency`` threads, with nothing but the GET."""
    client = server.client(max_pool_connections=concurrency)
    bucket = "moto-rate"
    client.create_bucket(Bucket=bucket)
    body = b"x" * size
    keys = [f"k/{i:06d}.json" for i in range(objects)]
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=bucket, Key=k, Body=body), keys))
        start = time.monotonic()
        list(pool.map(lambda k: client.get_object(Bucket=bucket, Key=k)["Body"].read(), keys))
        wall = time.monotonic() - start
    return {"objects": objects, "concurrency": concurrency, "wall_s": round(wall, 3),
            "gets_per_s": round(objects / wall, 1)}


__all__ = ["S3Dest", "MotoServer", "write_layout", "put_object", "plant", "sync_key", "object_body",
           "instance_information", "truncated", "not_inventory", "NOT_JSON", "sparse_file", "moto_get_rate",
           "INSTANCE_INFORMATION", "Written"]
