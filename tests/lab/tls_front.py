"""A TLS-inspecting firewall in front of some endpoint ENIs (scenario ``tls_inspection``, tlspath.py).

It owns TCP 443 on those addresses, completes the handshake with a leaf for the service names signed
by its own CA ("Corp TLS Inspection CA"), and — as such an appliance does — opens its own TLS
connection to the service, verified against the lab's CA, and relays what it decrypts both ways. The
lab reaches the service at its public address (the AWS layer still serves that), so endpoint
policies do not apply to relayed requests. A client that trusts the corporate CA works through it;
one that does not fails its handshake facing an issuer that is not Amazon's.

    python -m tests.lab.tls_front --cert inspect.pem --key inspect.key --ca ca.pem \\
        --intercept 10.0.1.101=ssm.us-east-1.amazonaws.com=198.51.100.64 [--intercept ...]
"""
from __future__ import annotations

import argparse
import socket
import ssl
import threading
from typing import Dict, List, Optional, Tuple

PORT = 443
HANDSHAKE_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 60.0
CHUNK = 64 * 1024


class Front:
    def __init__(self, targets: Dict[str, Tuple[str, str]], cert: str, key: str, ca: str, port: int = PORT) -> None:
        self.targets = targets  # listen ip -> (service hostname, upstream ip)
        self.port = port
        self.server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server_ctx.load_cert_chain(cert, key)
        self.upstream_ctx = ssl.create_default_context(cafile=ca)
        self.listeners: List[socket.socket] = []

    def start(self) -> None:
        for ip in self.targets:  # bind all before serving any: a half-started front is an error
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((ip, self.port))
            sock.listen(128)
            self.listeners.append(sock)
        for sock in self.listeners:
            threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        ip = listener.getsockname()[0]
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn, ip), daemon=True).start()

    def _one(self, conn: socket.socket, ip: str) -> None:
        host, upstream_ip = self.targets[ip]
        conn.settimeout(HANDSHAKE_TIMEOUT_S)
        try:
            client = self.server_ctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):  # the client refused our certificate: the usual case
            conn.close()
            return
        try:
            raw = socket.create_connection((upstream_ip, PORT), timeout=HANDSHAKE_TIMEOUT_S)
            upstream = self.upstream_ctx.wrap_socket(raw, server_hostname=host)
        except (ssl.SSLError, OSError) as exc:
            print(f"{ip}: upstream {host} at {upstream_ip}: {exc}", flush=True)
            client.close()
            return
        for sock in (client, upstream):
            sock.settimeout(IDLE_TIMEOUT_S)
        back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
        back.start()
        _pump(client, upstream)
        back.join(IDLE_TIMEOUT_S)
        for sock in (client, upstream):
            sock.close()


def _pump(src: ssl.SSLSocket, dst: ssl.SSLSocket) -> None:
    """Copies until EOF or an error on either side; then makes the other side's reader stop too."""
    try:
        while True:
            data = src.recv(CHUNK)
            if not data:
                break
            dst.sendall(data)
    except (OSError, ssl.SSLError):
        pass
    try:
        dst.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _target(text: str) -> Tuple[str, Tuple[str, str]]:
    try:
        ip, host, upstream = text.split("=")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected IP=HOSTNAME=UPSTREAM_IP, got {text!r}") from None
    return ip, (host, upstream)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="the lab's TLS-inspecting firewall")
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--ca", required=True, help="what the front trusts upstream (the lab CA)")
    parser.add_argument("--intercept", type=_target, action="append", required=True,
                        help="IP=HOSTNAME=UPSTREAM_IP: answer on IP:443 for HOSTNAME, relay to UPSTREAM_IP:443")
    parser.add_argument("--port", type=int, default=PORT)
    args = parser.parse_args(argv)
    front = Front(dict(args.intercept), args.cert, args.key, args.ca, args.port)
    front.start()
    print(f"TLS-inspection front on {', '.join(front.targets)}:{args.port}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
