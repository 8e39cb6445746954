"""A real IMDSv2 server for tests: threaded HTTP on loopback (a free port), one behaviour per mode.

Modes:
  ok            every path answers (no public IPv4: 404, as on a private instance)
  disabled      403 to everything (http-endpoint disabled)
  token_403     403 to the token PUT only (GETs would answer: a client must not fall back to IMDSv1)
  hop_limit     the token PUT is never answered; the socket is held until the client gives up
  token_expiry  the first token is answered with 401 on every GET; later tokens work
  garbage       HTML for placement/region, "not-a-cidr" for vpc-ipv4-cidr-block
  echo_token    placement/region answers garbage that contains the token (redaction test)
  too_long      placement/region answers 100 KiB
  no_profile    iam/info 404 (no instance profile)
  public_ip     public-ipv4 answers 203.0.113.25
  no_services   services/partition and services/domain 404 (older IMDS)
  barrier       the 8 non-network GETs must arrive together (proves they are concurrent)
  server_error  500 to every GET

Every request is recorded (method, path, whether a token header came and whether it was valid),
so tests can assert that GETs carried the token and that a 403 was not retried.
"""
from __future__ import annotations

import json
import os
import secrets
import select
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional

MAC = "0e:1a:2b:3c:4d:5e"
DEFAULT_DATA: Dict[str, str] = {
    "placement/region": "us-east-1",
    "services/partition": "aws",
    "services/domain": "amazonaws.com",
    "instance-id": "i-0123456789abcdef0",
    "mac": MAC,
    "local-ipv4": "10.0.1.10",
    "iam/info": json.dumps({"Code": "Success", "LastUpdated": "2024-05-01T10:00:00Z",
                            "InstanceProfileArn": "arn:aws:iam::123456789012:instance-profile/SSMInstanceProfile",
                            "InstanceProfileId": "AIPAEXAMPLEEXAMPLE123"}),
    f"network/interfaces/macs/{MAC}/vpc-id": "vpc-0a1b2c3d4e5f60718",
    f"network/interfaces/macs/{MAC}/subnet-id": "subnet-0a1b2c3d4e5f60718",
    f"network/interfaces/macs/{MAC}/vpc-ipv4-cidr-block": "10.0.0.0/16",
    # IMDS lists the blocks in association order; the test puts the primary second on purpose
    f"network/interfaces/macs/{MAC}/vpc-ipv4-cidr-blocks": "100.64.0.0/16\n10.0.0.0/16",
    f"network/interfaces/macs/{MAC}/subnet-ipv4-cidr-block": "10.0.1.0/24",
    f"network/interfaces/macs/{MAC}/security-group-ids": "sg-0123456789abcdef0\nsg-0fedcba9876543210",
}
_BARRIER_PATHS = ("placement/region", "services/partition", "services/domain", "instance-id", "mac",
                  "local-ipv4", "public-ipv4", "iam/info")
_HTML = "<!DOCTYPE html><html><head><title>Login</title></head><body>Captive portal</body></html>"


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    token_sent: bool
    token_valid: bool
    ttl_header: Optional[str]


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet test output
        pass

    def _reply(self, status: int, body: str = "") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self) -> None:  # noqa: N802 - http.server API
        imds = self.server.imds
        imds.record(Seen("PUT", self.path, False, False, self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")))
        if self.path != "/latest/api/token":
            return self._reply(404)
        if imds.mode in ("disabled", "token_403"):
            return self._reply(403)
        if imds.mode == "hop_limit":
            return self._hold()
        ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
        if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
            return self._reply(400)
        self._reply(200, imds.new_token())

    def _hold(self) -> None:
        """Never answer (a PUT answer lost to the hop limit): wait until the client closes the
        connection or the server stops; the 30 s cap only guards against a broken test."""
        self.close_connection = True
        select.select([self.connection, self.server.imds.wake_r], [], [], 30)

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        imds = self.server.imds
        token = self.headers.get("X-aws-ec2-metadata-token")
        valid = imds.token_valid(token)
        imds.record(Seen("GET", self.path, token is not None, valid, None))
        if imds.mode == "disabled":
            return self._reply(403)
        if not valid:  # tokens required (http-tokens required, IMDSv2 only)
            return self._reply(401)
        prefix = "/latest/meta-data/"
        if not self.path.startswith(prefix):
            return self._reply(404)
        path = self.path[len(prefix):]
        if imds.mode == "server_error":
            return self._reply(500)
        if imds.mode == "barrier" and path in _BARRIER_PATHS:
            try:
                imds.barrier.wait()
            except threading.BrokenBarrierError:
                return self._reply(500, "requests did not arrive concurrently")
        body = imds.answer(path, token or "")
        if body is None:
            return self._reply(404)
        self._reply(200, body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the client opens ~14 connections at once; the default backlog is 5
    imds: "ImdsServer"


class _Server6(_Server):
    address_family = socket.AF_INET6


class ImdsServer:
    """``with ImdsServer("ok") as srv: gather_facts(ImdsSettings(endpoint=srv.endpoint), {})``"""

    def __init__(self, mode: str = "ok", data: Optional[Dict[str, str]] = None, host: str = "127.0.0.1") -> None:
        self.mode = mode
        self.data = dict(DEFAULT_DATA if data is None else data)
        if mode == "public_ip":
            self.data["public-ipv4"] = "203.0.113.25"
        if mode == "no_profile":
            self.data.pop("iam/info", None)
        if mode == "no_services":
            self.data.pop("services/partition", None)
            self.data.pop("services/domain", None)
        self.host = host
        self.seen: List[Seen] = []
        self.tokens: List[str] = []
        self.barrier = threading.Barrier(len(_BARRIER_PATHS), timeout=2)
        self.wake_r, self._wake_w = os.pipe()
        self._lock = threading.Lock()
        server_cls = _Server6 if ":" in host else _Server
        self._server = server_cls((host, 0), _Handler)
        self._server.imds = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def endpoint(self) -> str:
        port = self._server.server_address[1]
        return f"http://[{self.host}]:{port}" if ":" in self.host else f"http://{self.host}:{port}"

    def __enter__(self) -> "ImdsServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        os.write(self._wake_w, b"x")  # releases held connections (hop_limit)
        self.barrier.abort()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        os.close(self._wake_w)
        os.close(self.wake_r)

    # -- state used by the handler
    def record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def new_token(self) -> str:
        with self._lock:
            token = secrets.token_urlsafe(42)  # the shape of a real token: ~56 base64url characters
            self.tokens.append(token)
            return token

    def token_valid(self, token: Optional[str]) -> bool:
        with self._lock:
            if token is None or token not in self.tokens:
                return False
            # token_expiry: the first token has expired by the time it is used
            return not (self.mode == "token_expiry" and token == self.tokens[0])

    def answer(self, path: str, token: str) -> Optional[str]:
        if self.mode == "garbage" and path == "placement/region":
            return _HTML
        if self.mode == "garbage" and path.endswith("/vpc-ipv4-cidr-block"):
            return "not-a-cidr"
        if self.mode == "echo_token" and path == "placement/region":
            return f"token={token}"
        if self.mode == "too_long" and path == "placement/region":
            return "us-east-1" + "x" * (100 * 1024)
        return self.data.get(path)

    # -- what the tests look at
    def puts(self) -> List[Seen]:
        with self._lock:
            return [s for s in self.seen if s.method == "PUT"]

    def gets(self) -> List[Seen]:
        with self._lock:
            return [s for s in self.seen if s.method == "GET"]


def closed_port() -> int:
    """A loopback port with nothing listening (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
