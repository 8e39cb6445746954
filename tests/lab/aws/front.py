"""The TLS front: AWS's service names on the lab's addresses, in front of moto.

One threaded HTTPS server per listen address (every ENI IP and "public" AWS address of the lab), all
with the lab certificate. Each request is first offered to the interceptors (SSM inventory, S3
knobs); the first reply wins. Otherwise it is forwarded to moto unchanged (method, target, headers
including Host, body): moto routes by Host and by the service in the SigV4 credential scope, and the
signature stays valid because nothing it covers is touched. The reply streams back with a correct
Content-Length, so HTTP/1.1 keep-alive works.
"""
from __future__ import annotations

import http.client
import logging
import socket
import ssl
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, List, Optional, Sequence, Tuple

from .protocol import Reply, Request

log = logging.getLogger("vpce_lab.aws.front")

Interceptor = Callable[[Request], Optional[Reply]]
Address = Tuple[str, int]

HANDSHAKE_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 30.0
UPSTREAM_TIMEOUT_S = 60.0
MAX_BODY_BYTES = 64 * 1024 * 1024
# Connection-level headers (RFC 9110 §7.6.1) belong to one hop; Expect is answered by this hop.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailer", "transfer-encoding", "upgrade", "expect"})
NO_BODY_STATUSES = frozenset({204, 304})


class Front:
    """Starts and stops the HTTPS listeners; forwards what no interceptor answers to ``upstream``."""

    def __init__(self, addresses: Sequence[Address], cert: str, key: str, upstream: Address,
                 interceptors: Sequence[Interceptor] = (), clock_offset_s: float = 0.0) -> None:
        self._addresses = list(addresses)
        self.clock_offset_s = clock_offset_s  # AWS's clock = this host's + offset (every reply's Date)
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._context.load_cert_chain(cert, key)
        self.upstream = upstream
        self.interceptors = list(interceptors)
        self._servers: List[_TLSServer] = []
        self._threads: List[threading.Thread] = []

    def start(self) -> List[Address]:
        """Bind every address (all or none) and serve; returns the bound addresses (port 0 resolved)."""
        for host, port in self._addresses:
            server_class = _TLSServer6 if ":" in host else _TLSServer
            try:
                self._servers.append(server_class((host, port), self))
            except OSError as exc:
                self.stop()
                raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from exc
        for server in self._servers:
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                      name=f"front-{server.server_address[0]}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return [server.server_address[:2] for server in self._servers]

    def stop(self) -> None:
        """Stop all listeners at once (each shutdown waits for its poll loop, so do them in parallel)."""
        # Only servers whose loop runs can be shut down (shutdown() of a never-started one waits forever).
        stoppers = [threading.Thread(target=s.shutdown, daemon=True) for s, _ in zip(self._servers, self._threads)]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join(timeout=2)
        for server in self._servers:
            server.server_close()
        self._servers.clear()
        self._threads.clear()

    def wrap(self, sock: socket.socket) -> ssl.SSLSocket:
        return self._context.wrap_socket(sock, server_side=True)

    def answer(self, request: Request) -> Reply:
        for interceptor in self.interceptors:
            reply = interceptor(request)
            if reply is not None:
                return reply
        return self.forward(request)

    def forward(self, request: Request) -> Reply:
        conn = http.client.HTTPConnection(*self.upstream, timeout=UPSTREAM_TIMEOUT_S)
        try:
            conn.putrequest(request.method, request.target, skip_host=True, skip_accept_encoding=True)
            for name, value in request.headers:
                if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                    conn.putheader(name, value)
            if request.body or request.method in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(len(request.body)))
            conn.endheaders(request.body or None)
            response = conn.getresponse()
            body = response.read()
            headers = [(k, v) for k, v in response.getheaders()
                       if k.lower() not in HOP_BY_HOP and k.lower() != "server"]
            return Reply(response.status, headers, body)
        except (OSError, http.client.HTTPException) as exc:
            log.error("moto did not answer %s %s: %s", request.method, request.target, exc)
            return Reply(502, [("Content-Type", "text/plain")], f"lab AWS backend unavailable: {exc}\n".encode())
        finally:
            conn.close()


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: Address, front: Front) -> None:
        self.front = front
        super().__init__(address, _Handler)

    def finish_request(self, request: socket.socket, client_address: Address) -> None:  # type: ignore[override]
        # The TLS handshake runs here, in the connection's own thread, so one slow or broken client
        # never stalls the accept loop.
        request.settimeout(HANDSHAKE_TIMEOUT_S)
        # Replies go out in one buffered write; without NODELAY, Nagle and delayed ACKs would still
        # stall each small request/response pair by ~40 ms.
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            tls = self.front.wrap(request)
        except (ssl.SSLError, OSError) as exc:
            log.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        try:
            tls.settimeout(IDLE_TIMEOUT_S)
            _Handler(tls, client_address, self)
        except (OSError, ssl.SSLError) as exc:
            log.debug("connection from %s ended: %s", client_address, exc)
        finally:
            tls.close()


class _TLSServer6(_TLSServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 64 * 1024  # status line, headers and body leave in one flush (see _send)
    server: _TLSServer

    def _serve(self) -> None:
        try:
            body = self._read_body()
        except ValueError:  # a Content-Length or chunk size that is not a number
            self.send_error(400, "malformed request body framing")
            return
        if body is None:
            return
        local_ip = self.connection.getsockname()[0]
        request = Request(self.command, self.path, tuple(self.headers.items()), body, local_ip=local_ip)
        try:
            reply = self.server.front.answer(request)
        except Exception:  # a bug in an interceptor must not kill the connection silently
            log.exception("interceptor failed on %s %s", self.command, self.path)
            reply = Reply(500, [("Content-Type", "text/plain")], b"lab AWS layer error\n")
        self._send(reply)

    def handle_expect_100(self) -> bool:
        accepted = super().handle_expect_100()
        self.wfile.flush()  # the client waits for this interim reply before it sends the body
        return accepted

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _serve

    def _read_body(self) -> Optional[bytes]:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.send_error(413)
            return None
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> Optional[bytes]:
        chunks = []
        total = 0
        while True:
            size = int(self.rfile.readline(1024).split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                self.send_error(413)
                return None
            chunks.append(self.rfile.read(size))
            self.rfile.readline(16)  # the CRLF after each chunk

    def _send(self, reply: Reply) -> None:
        head = self.command == "HEAD"
        self.send_response_only(reply.status)
        names = {name.lower() for name, _ in reply.headers}
        # Every answer carries AWS's clock (moto's own Date is this host's): clients compare against it.
        self.send_header("Date", formatdate(time.time() + self.server.front.clock_offset_s, usegmt=True))
        for name, value in reply.headers:
            if name.lower() == "content-length" and not head or name.lower() == "date":
                continue  # Content-Length is recomputed below from the body actually sent
            self.send_header(name, value)
        if reply.status not in NO_BODY_STATUSES and not (head and "content-length" in names):
            self.send_header("Content-Length", str(0 if head else len(reply.body)))
        self.end_headers()
        if not head and reply.status not in NO_BODY_STATUSES:
            self.wfile.write(reply.body)
        self.wfile.flush()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib's signature)
        log.debug("%s %s", self.address_string(), format % args)
