"""A loopback SSM for fleets: GetInventory / ListInventoryEntries / PutInventory for many accounts and
regions, at SSM's throttle, for `vpce-doctor fleet` at 10,000+ instances (issue 13).

    python -m tests.lab.aws.ssm_fleet_standin --listen 127.0.0.1:0 --seed fleet.jsonl \
        --rate 40 --burst 40 --account AKIAFLEET1=111111111111 --account AKIAFLEET2=222222222222:SECRET

prints one line ``READY <host:port> ca=<CA file>`` once it serves HTTPS (HTTP/1.1 keep-alive, a thread
per connection: the lab's TLS front, front.py), then runs until SIGTERM/SIGINT and prints one
``STATS {json}`` line as it stops. ``GET /stats`` answers the same JSON at any time (unsigned: a
lab-only path that no AWS client sends). ``FleetStandin`` below is that process from a test.

Each request goes to one ``InventoryService`` (inventory.py: validation and pagination as SSM's) per
partition: the account from the SigV4 access key id, the region from the credential scope. What SSM
answers before the operation runs, in AWS's order (authentication, then the rate):

* no SigV4 Authorization → ``400 MissingAuthenticationTokenException`` "Missing Authentication Token"
  (the name and text AWS uses; SSM's status for it was not found — API Gateway and STS answer 403:
  smarty-archives/go-aws-auth#48, amzn/selling-partner-api-docs#3081);
* an access key no account has → ``400 UnrecognizedClientException`` "The security token included in
  the request is invalid." (SSM's answer: coveooss/spring-boot-parameter-store-integration#3, "Service:
  AWSSimpleSystemsManagement; Status Code: 400");
* a signature that does not verify with the key's secret (botocore's own SigV4 computation over the
  signed headers as received) → ``400 InvalidSignatureException`` "The request signature we calculated
  does not match the signature you provided. Check your AWS Secret Access Key and signing method.
  Consult the service documentation for details." (SSM: CrowdStrike/falcon-scripts#126; 400:
  teralytics/prometheus-ecs-discovery#7). The 5-minute clock window is authz.py's, not modelled here;
* an X-Amz-Target that is not one of the three → ``400 UnknownOperationException`` (the JSON protocol's
  name for it; the exact message was not found, so it is empty here);
* over the rate → ``400 ThrottlingException`` "Rate exceeded" (SSM: aws/amazon-ssm-agent#15,
  "ThrottlingException: Rate exceeded status code: 400"; aws/aws-sdk-js-v3#4350). The rate is a token
  bucket per (account, region, operation) — SSM's quotas are per account, region and API — refilled at
  ``--rate`` per second up to ``--burst``; ``--rate 0`` does not throttle.

Seed file: JSON lines ``{"account_id", "region", "instance_id", "ip", "items": {TypeName:
InventoryResultItem}, "terminated": bool}``; an instance without items is managed but silent, a
terminated one shows ``InstanceStatus: Terminated`` in AWS:InstanceInformation (which SSM derives from
the managed-instance record, so a seed's own AWS:InstanceInformation item is not stored). Items are
stored through PutInventory's own validation.
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from .inventory import (INSTANCE_INFORMATION, OPERATIONS, InventoryError, InventoryService, ManagedInstance,
                        StoredItem)
from .protocol import Reply, Request, SigningScope, json_error, json_reply
from .loopback import ready_line

REPO = Path(__file__).resolve().parents[3]
DEFAULT_SECRET = "lab"
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 10.0
NO_UPSTREAM = ("127.0.0.1", 9)  # every request is answered here; the front never forwards

MISSING_TOKEN = ("MissingAuthenticationTokenException", "Missing Authentication Token")
UNRECOGNIZED = ("UnrecognizedClientException", "The security token included in the request is invalid.")
BAD_SIGNATURE = ("InvalidSignatureException",
                 "The request signature we calculated does not match the signature you provided. Check your "
                 "AWS Secret Access Key and signing method. Consult the service documentation for details.")
THROTTLED = ("ThrottlingException", "Rate exceeded")
_SIGNED = re.compile(r"SignedHeaders=([^,\s]+),\s*Signature=([0-9a-fA-F]+)")

Partition = Tuple[str, str]  # (account id, region)
MAX_ENCODED = 100_000  # stored Contents whose JSON is kept (a GetInventory page is mostly that)


class SeededInventory(InventoryService):
    """An InventoryService that can take, for another instance, items it already validated: a seed of
    10,000 instances repeats a few hundred distinct contents, each validated once."""

    def stored(self, instance_id: str) -> Dict[str, StoredItem]:
        with self._lock:
            return dict(self._items.get(instance_id, {}))

    def store_validated(self, instance_id: str, items: Dict[str, StoredItem]) -> None:
        with self._lock:
            self._items.setdefault(instance_id, {}).update(items)
            self._custom_types = self._custom_types | {t for t in items if t.startswith("Custom:")}
            self._query_cache.clear()


@dataclass(frozen=True)
class Account:
    access_key_id: str
    account_id: str
    secret: str = DEFAULT_SECRET

    @classmethod
    def parse(cls, text: str) -> "Account":
        """``AKID=ACCOUNTID`` or ``AKID=ACCOUNTID:SECRET``."""
        key, sep, rest = text.partition("=")
        account, _, secret = rest.partition(":")
        if not sep or not key or not re.fullmatch(r"\d{12}", account):
            raise ValueError(f"--account {text!r}: expected AKID=ACCOUNTID[:SECRET] with a 12-digit account id")
        return cls(key, account, secret or DEFAULT_SECRET)


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; starts full. Not thread-safe (the caller locks)."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        self.rate, self.burst, self._clock = rate, max(1.0, burst), clock
        self._tokens, self._at = self.burst, clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class Stats:
    """Requests and throttled answers, in total and per partition and operation."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = self.throttled = self.errors = 0
        self._by: Dict[str, Dict[str, int]] = {}

    def count(self, partition: Optional[Partition], operation: str, outcome: str) -> None:
        with self._lock:
            self.requests += 1
            self.throttled += outcome == "throttled"
            self.errors += outcome == "error"
            where = "/".join(partition) if partition else "-"
            row = self._by.setdefault(f"{where}/{operation}", {"requests": 0, "throttled": 0, "errors": 0})
            row["requests"] += 1
            row["throttled"] += outcome == "throttled"
            row["errors"] += outcome == "error"

    def to_dict(self) -> Dict[str, Any]:
        with self._lock:
            return {"requests": self.requests, "throttled": self.throttled, "errors": self.errors,
                    "partitions": {k: dict(v) for k, v in sorted(self._by.items())}}


class FleetSsm:
    """The stand-in's state and request handling (no sockets: ``intercept`` is the front's interceptor)."""

    def __init__(self, accounts: Sequence[Account], rate: float = 0.0, burst: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, verify_signatures: bool = True) -> None:
        self.accounts = {a.access_key_id: a for a in accounts}
        self.rate, self.burst, self._clock = rate, burst, clock
        self.verify_signatures = verify_signatures
        self.stats = Stats()
        self._lock = threading.Lock()
        self._services: Dict[Partition, SeededInventory] = {}
        self._encoded: Dict[int, Tuple[Any, int, str]] = {}  # id(first entry) -> (it, entries, Content JSON)
        self._buckets: Dict[Tuple[str, str, str], TokenBucket] = {}

    def service(self, account_id: str, region: str) -> SeededInventory:
        with self._lock:
            found = self._services.get((account_id, region))
            if found is None:  # a region nothing was seeded in: empty, as SSM's is
                found = self._services[(account_id, region)] = SeededInventory(account_id)
            return found

    def load_seed(self, records: Iterable[Dict[str, Any]]) -> int:
        """Register each instance and store its items via PutInventory, one record at a time (a seed
        of 10,000 is ~200 MB of JSON: never all in memory). A content seen before is stored as
        validated then."""
        validated: Dict[bytes, Dict[str, StoredItem]] = {}
        count = 0
        for r in records:
            count += 1
            service = self.service(str(r["account_id"]), str(r["region"]))
            service.register([ManagedInstance(r["instance_id"], r.get("ip"),
                                              "Terminated" if r.get("terminated") else "Active")])
            items = [_put_item(item) for name, item in (r.get("items") or {}).items() if name != INSTANCE_INFORMATION]
            if not items:
                continue
            key = hashlib.sha256(json.dumps(items, sort_keys=True).encode()).digest()
            if key in validated:
                service.store_validated(r["instance_id"], validated[key])
                continue
            service.handle("PutInventory", {"InstanceId": r["instance_id"], "Items": items})
            validated[key] = service.stored(r["instance_id"])
        return count

    def _allowed(self, partition: Partition, operation: str) -> bool:
        if self.rate <= 0:
            return True
        with self._lock:
            key = (partition[0], partition[1], operation)
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, self._clock)
            return bucket.take()

    def intercept(self, request: Request) -> Reply:
        if request.method == "GET" and request.path == "/stats":
            return Reply(200, [("Content-Type", "application/json")], json.dumps(self.stats.to_dict()).encode())
        prefix, _, operation = (request.header("X-Amz-Target") or "").partition(".")
        operation = operation or "-"
        scope = request.signing
        if scope is None or "Signature=" not in (request.header("Authorization") or ""):
            self.stats.count(None, operation, "error")
            return json_error(*MISSING_TOKEN, status=400)
        account = self.accounts.get(scope.access_key_id)
        if account is None:
            self.stats.count(None, operation, "error")
            return json_error(*UNRECOGNIZED, status=400)
        partition = (account.account_id, scope.region)
        if self.verify_signatures and not signature_matches(request, scope, account.secret):
            self.stats.count(partition, operation, "error")
            return json_error(*BAD_SIGNATURE, status=400)
        if request.method != "POST" or prefix != "AmazonSSM" or operation not in OPERATIONS:
            self.stats.count(partition, operation, "error")
            return json_error("UnknownOperationException", "")
        if not self._allowed(partition, operation):
            self.stats.count(partition, operation, "throttled")
            return json_error(*THROTTLED, status=400)
        try:
            payload = json.loads(request.body or b"{}")
        except ValueError:
            self.stats.count(partition, operation, "error")
            return json_error("SerializationException", "The request body is not valid JSON.")
        try:
            reply = self._json_reply(self.service(*partition).handle(operation, payload))
        except InventoryError as exc:
            self.stats.count(partition, operation, "error")
            return json_error(exc.code, exc.message, **exc.members)
        self.stats.count(partition, operation, "ok")
        return reply

    def _json_reply(self, payload: Dict[str, Any]) -> Reply:
        """json_reply, with each stored Content encoded once: a GetInventory page is ~1 MB of JSON, and
        the service hands out the same entry objects until its data changes."""
        entities = payload.get("Entities")
        if not isinstance(entities, list):
            return json_reply(payload)
        rest = json.dumps({k: v for k, v in payload.items() if k != "Entities"})
        body = ('{"Entities": [' + ", ".join(self._entity_json(e) for e in entities) + "]"
                + (", " + rest[1:] if rest != "{}" else "}"))
        reply = json_reply({})
        reply.body = body.encode()
        return reply

    def _entity_json(self, entity: Dict[str, Any]) -> str:
        items = []
        for type_name, item in (entity.get("Data") or {}).items():
            head = json.dumps({k: v for k, v in item.items() if k != "Content"})
            items.append(json.dumps(type_name) + ": " + head[:-1] + (", " if head != "{}" else "")
                         + '"Content": ' + self._content_json(item.get("Content") or []) + "}")
        return '{"Id": ' + json.dumps(entity["Id"]) + ', "Data": {' + ", ".join(items) + "}}"

    def _content_json(self, content: List[Dict[str, str]]) -> str:
        if not content:
            return "[]"
        first = content[0]  # a stored item's entries are its own objects: the first one names the item
        hit = self._encoded.get(id(first))
        if hit is None or hit[0] is not first or hit[1] != len(content):
            if len(self._encoded) > MAX_ENCODED:
                self._encoded.clear()
            hit = self._encoded[id(first)] = (first, len(content), json.dumps(content))
        return hit[2]


def signature_matches(request: Request, scope: SigningScope, secret: str) -> bool:
    """Recompute the SigV4 signature with botocore's signer over the headers the client signed."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    found = _SIGNED.search(request.header("Authorization") or "")
    stamp = request.header("X-Amz-Date")
    if not found or not stamp:
        return False
    signed = set(found.group(1).lower().split(";"))
    headers = {k: v for k, v in request.headers if k.lower() in signed}
    aws_request = AWSRequest(method=request.method, url="https://" + (request.header("Host") or "") + request.target,
                             headers=headers, data=request.body)
    aws_request.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(scope.access_key_id, secret), scope.service, scope.region)
    expected = signer.signature(signer.string_to_sign(aws_request, signer.canonical_request(aws_request)), aws_request)
    return hmac.compare_digest(expected, found.group(2).lower())


def _put_item(item: Dict[str, Any]) -> Dict[str, Any]:
    """An InventoryResultItem as the PutInventory InventoryItem it was stored from."""
    return {k: item[k] for k in ("TypeName", "SchemaVersion", "CaptureTime", "ContentHash", "Content") if k in item}


def read_seed(path: Path) -> Iterable[Dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError as exc:
                    raise ValueError(f"{path}:{number}: not JSON: {exc}") from None


# --- the process ---------------------------------------------------------------------------------------

def main(argv: Optional[Sequence[str]] = None) -> int:
    from .front import Front
    from .layer import parse_address

    args = _parser().parse_args(argv)
    try:
        accounts = [Account.parse(a) for a in args.account]
        ssm = FleetSsm(accounts, rate=args.rate, burst=args.burst, verify_signatures=not args.no_verify_signature)
        for seed in args.seed:
            ssm.load_seed(read_seed(seed))
        cert, key, ca, own_dir = args.cert, args.key, None, None
        if not cert or not key:  # a CA of its own, removed on exit
            own_dir = tempfile.mkdtemp(prefix="ssm-fleet-standin-")
            cert, key, ca = _self_signed(Path(own_dir))
        front = Front([parse_address(args.listen)], cert, key, upstream=NO_UPSTREAM, interceptors=[ssm.intercept])
        host, port = front.start()[0]
    except (OSError, ValueError, KeyError, InventoryError) as exc:
        print(f"ssm-fleet-standin: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print(f"READY {host}:{port}" + (f" ca={ca}" if ca else ""), flush=True)
    try:
        stop.wait()
    finally:
        front.stop()
        print("STATS " + json.dumps(ssm.stats.to_dict()), flush=True)
        if own_dir:
            shutil.rmtree(own_dir, ignore_errors=True)
    return 0


def _self_signed(where: Path) -> Tuple[str, str, str]:
    import trustme

    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    paths = [where / "server.pem", where / "server.key", where / "ca.pem"]
    for index, pem in enumerate(server.cert_chain_pems):
        pem.write_to_path(str(paths[0]), append=index > 0)
    server.private_key_pem.write_to_path(str(paths[1]))
    ca.cert_pem.write_to_path(str(paths[2]))
    return str(paths[0]), str(paths[1]), str(paths[2])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.lab.aws.ssm_fleet_standin",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT")
    parser.add_argument("--seed", type=Path, action="append", default=[], help="JSON lines of instances (repeatable)")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="requests/s per account, region and operation (0: no limit)")
    parser.add_argument("--burst", type=float, default=1.0, help="token bucket size")
    parser.add_argument("--account", action="append", default=[], metavar="AKID=ACCOUNTID[:SECRET]",
                        help=f"an access key and its account (secret default {DEFAULT_SECRET!r}); repeatable")
    parser.add_argument("--cert", help="server certificate chain (default: a new trustme CA, its file on READY)")
    parser.add_argument("--key", help="server key")
    parser.add_argument("--no-verify-signature", action="store_true", help="accept any signature of a known key")
    return parser


class StandinError(RuntimeError):
    """The stand-in did not come up; the message ends with its stderr."""


class FleetStandin:
    """One stand-in subprocess for a test or the bench: start, ``wait_ready``, ``client``, ``stats``, ``stop``
    (which returns the final STATS). Its certificate comes from a trustme CA in ``tmp``."""

    def __init__(self, tmp: Path, seed: Optional[Path], accounts: Sequence[Account], rate: float = 0.0,
                 burst: float = 1.0, extra_args: Sequence[str] = ()) -> None:
        cert, key, ca = _self_signed(Path(tmp))
        self.ca, self.accounts = Path(ca), list(accounts)
        args = ["--listen", "127.0.0.1:0", "--rate", str(rate), "--burst", str(burst), "--cert", cert, "--key", key]
        args += [a for acc in accounts for a in ("--account", f"{acc.access_key_id}={acc.account_id}:{acc.secret}")]
        if seed is not None:
            args += ["--seed", str(seed)]
        python = os.environ.get("VPCE_LAB_PYTHON") or sys.executable
        self.proc = subprocess.Popen([python, "-m", "tests.lab.aws.ssm_fleet_standin", *args, *extra_args], cwd=REPO,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.url = ""
        self.final_stats: Optional[Dict[str, Any]] = None
        self.stderr = ""

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        line = ready_line(self.proc, timeout_s, lambda text: text.startswith("READY "), self._fail)
        self.url = "https://" + line.split()[1]

    def _fail(self, why: str) -> None:
        self.stop()
        raise StandinError(f"SSM fleet stand-in: {why}; stderr:\n{self.stderr[-3000:]}")

    def client(self, account: Account, region: str, secret: Optional[str] = None, **config: Any) -> Any:
        """An ssm client signing with ``account``'s key (``secret`` overrides its secret), no retries."""
        import boto3
        from botocore.config import Config

        config.setdefault("retries", {"total_max_attempts": 1, "mode": "standard"})
        return boto3.client("ssm", endpoint_url=self.url, region_name=region, verify=str(self.ca),
                            aws_access_key_id=account.access_key_id,
                            aws_secret_access_key=account.secret if secret is None else secret,
                            config=Config(**config))

    def stats(self) -> Dict[str, Any]:
        context = ssl.create_default_context(cafile=str(self.ca))
        with urllib.request.urlopen(self.url + "/stats", context=context, timeout=10) as answer:
            return dict(json.loads(answer.read()))

    def stop(self) -> Optional[Dict[str, Any]]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                out, self.stderr = self.proc.communicate(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                out, self.stderr = self.proc.communicate()
            for line in (out or "").splitlines():
                if line.startswith("STATS "):
                    self.final_stats = json.loads(line[6:])
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None and not stream.closed:
                stream.close()
        return self.final_stats


if __name__ == "__main__":
    sys.exit(main())
