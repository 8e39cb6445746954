"""The internet, as far as the lab needs it: google.com at 203.0.113.10, HTTPS with the lab cert.

It runs in the VPC namespace; whether the instance can reach it is the router's decision (only with
``internet: igw|nat``).

    python -m tests.lab.internet --listen 203.0.113.10 --cert server.pem --key server.key
"""
from __future__ import annotations

import argparse
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, List, Optional

from .world import GOOGLE_IP


class _Handler(BaseHTTPRequestHandler):
    server_version = "gws"
    sys_version = ""

    def log_message(self, fmt: str, *args: Any) -> None:
        print(f"{self.client_address[0]} {self.command} {self.path}", flush=True)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = b"<html><body>the lab's internet (google.com stand-in)</body></html>\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET


class _TlsServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # socketserver's 5 drops SYNs of a burst of concurrent clients

    def __init__(self, address: tuple, context: ssl.SSLContext) -> None:
        super().__init__(address, _Handler)
        self.context = context

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The handshake happens in the request's own thread, so one silent client blocks nobody.
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        self.RequestHandlerClass(tls, client_address, self)


def serve_tls(ips: List[str], port: int, cert: str, key: str) -> List[threading.Thread]:
    """One HTTPS server per address (bound before returning), each in a daemon thread."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    threads = []
    for ip in ips:
        server = _TlsServer((ip, port), context)
        threads.append(threading.Thread(target=server.serve_forever, daemon=True, name=f"tls-{ip}"))
        threads[-1].start()
    return threads


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="the lab's google.com stand-in")
    parser.add_argument("--listen", default=GOOGLE_IP)
    parser.add_argument("--port", type=int, default=443)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args(argv)
    threads = serve_tls([args.listen], args.port, args.cert, args.key)
    print(f"internet stand-in on {args.listen}:{args.port}", flush=True)
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
