"""A DNS forwarder that holds every query for a fixed time: the resolver_latency_ms knob.

Runs in the VPC namespace on the resolver's addresses (UDP and TCP 53) and passes each query,
after the delay, to dnsmasq on the namespace's loopback. Each query waits on its own timer, so
the delay is per query (as a slow resolver), not a queue.

    python -m tests.lab.dns_delay --listen 10.0.0.2 --listen 169.254.169.253 --upstream 127.0.0.1 --delay-ms 300
"""
from __future__ import annotations

import argparse
import socket
import socketserver
import struct
import threading
import time
from typing import List, Optional

UPSTREAM_TIMEOUT_S = 5.0


def ask_upstream(upstream: str, query: bytes) -> Optional[bytes]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(UPSTREAM_TIMEOUT_S)
        try:
            sock.sendto(query, (upstream, 53))
            return sock.recv(65535)
        except OSError:
            return None  # the client times out, as with a resolver that lost the query


def serve_udp(listen: str, upstream: str, delay_s: float) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((listen, 53))

    def answer(query: bytes, client: tuple) -> None:
        reply = ask_upstream(upstream, query)
        if reply is not None:
            sock.sendto(reply, client)

    while True:
        query, client = sock.recvfrom(65535)
        threading.Timer(delay_s, answer, (query, client)).start()


def _recv_exact(conn: socket.socket, size: int) -> Optional[bytes]:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


class _TcpHandler(socketserver.BaseRequestHandler):
    upstream = "127.0.0.1"
    delay_s = 0.0

    def handle(self) -> None:
        while True:
            head = _recv_exact(self.request, 2)
            query = _recv_exact(self.request, struct.unpack("!H", head)[0]) if head else None
            if query is None:
                return
            time.sleep(self.delay_s)  # the knob itself, not synchronisation
            reply = ask_upstream(self.upstream, query)
            if reply is None:
                return
            self.request.sendall(struct.pack("!H", len(reply)) + reply)


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # socketserver's 5 drops SYNs of a burst of concurrent clients


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", action="append", required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--delay-ms", type=int, required=True)
    args = parser.parse_args(argv)
    delay_s = args.delay_ms / 1000
    handler = type("Handler", (_TcpHandler,), {"upstream": args.upstream, "delay_s": delay_s})
    threads = []
    for ip in args.listen:
        tcp = _TcpServer((ip, 53), handler)
        threads.append(threading.Thread(target=tcp.serve_forever, daemon=True))
        threads.append(threading.Thread(target=serve_udp, args=(ip, args.upstream, delay_s), daemon=True))
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
