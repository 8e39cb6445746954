"""Real network parts for the resolver and endpoint tests: a private network namespace, dnsmasq,
TLS listeners with a trustme CA, nftables drops.

Safety: everything lives in a namespace named ``vdt-<tag>-<pid>`` that has only a loopback device
(the test addresses are /32s on it) and is never connected to the host's namespace. Checks run in
the test's thread after ``setns`` into that namespace (threads they start inherit it), so every
packet they send stays inside it.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import select
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

import pytest

from vpce_doctor.checks.model import Check, Context, Facts, Outcome, Settings

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def require_netns_tools() -> None:
    """Skip (not fail) where namespaces cannot be made: not root, or tools missing."""
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    for tool in ("ip", "nft", "dnsmasq"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool}")


def _run(cmd: Sequence[str], stdin: Optional[str] = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), input=stdin, capture_output=True, text=True, timeout=15, check=True)


class Netns:
    """A namespace with loopback only; ``addresses`` are added to lo as /32s."""

    def __init__(self, tag: str) -> None:
        self.name = f"vdt-{tag}-{os.getpid()}"

    def create(self, addresses: Sequence[str]) -> "Netns":
        if os.path.exists(f"/run/netns/{self.name}"):  # our own leftover (same tag and pid)
            _run(["ip", "netns", "del", self.name])
        _run(["ip", "netns", "add", self.name])
        _run(["ip", "-n", self.name, "link", "set", "lo", "up"])
        for addr in addresses:
            _run(["ip", "-n", self.name, "addr", "add", f"{addr}/32", "dev", "lo"])
        return self

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=15)

    def exec(self, *cmd: str, stdin: Optional[str] = None) -> subprocess.CompletedProcess:
        return _run(["ip", "netns", "exec", self.name, *cmd], stdin=stdin)

    def nft(self, ruleset: str) -> None:
        self.exec("nft", "-f", "-", stdin=ruleset)

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Move the calling thread into the namespace, and always back."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            if _libc.setns(target, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into " + self.name)
            # Never let a probe run in the host namespace by mistake.
            assert os.stat("/proc/thread-self/ns/net").st_ino == os.fstat(target).st_ino
            try:
                yield
            finally:
                if _libc.setns(home, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns back to the host namespace")
        finally:
            os.close(target)
            os.close(home)


@contextlib.contextmanager
def nft_table(ns: Netns, rules: Sequence[str], name: str = "vdt_t") -> Iterator[None]:
    """A temporary nftables input-hook table in ``ns`` (drops there look like a security group)."""
    body = "\n".join(f"  {r}" for r in rules)
    ns.nft(f"table inet {name} {{\n chain input {{\n  type filter hook input priority 0; policy accept;\n"
           f"{body}\n }}\n}}\n")
    try:
        yield
    finally:
        ns.nft(f"delete table inet {name}\n")


class Dnsmasq:
    """dnsmasq inside ``ns``, no upstream, answering only from the records given. It daemonizes
    after binding its sockets, so it answers as soon as ``start`` returns."""

    def __init__(self, ns: Netns, listen: Sequence[str], records: Sequence[str], workdir: str, tag: str) -> None:
        self.ns, self.listen, self.records = ns, list(listen), list(records)
        self.pid_file = os.path.join(workdir, f"dnsmasq-{tag}.pid")
        self.pid: Optional[int] = None

    def start(self) -> "Dnsmasq":
        args = ["dnsmasq", "--conf-file=/dev/null", f"--pid-file={self.pid_file}", "--bind-interfaces",
                "--port=53", "--no-resolv", "--no-hosts", "--no-poll", "--user=root", "--group=root",
                "--local-ttl=60"]
        args += [f"--listen-address={a}" for a in self.listen] + self.records
        self.ns.exec(*args)
        with open(self.pid_file) as fh:
            self.pid = int(fh.read().strip())
        return self

    def stop(self) -> None:
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        try:
            fd = os.pidfd_open(pid) if hasattr(os, "pidfd_open") else None
        except OSError:
            return  # already gone
        try:
            os.kill(pid, signal.SIGTERM)
            if fd is not None:
                select.select([fd], [], [], 5.0)  # readable when the process has exited
        except ProcessLookupError:
            pass
        finally:
            if fd is not None:
                os.close(fd)


class TlsListener:
    """TCP 443 on ``ip`` inside ``ns`` serving ``cert`` (a trustme LeafCert); each connection gets
    a full handshake in its own thread, then is closed."""

    def __init__(self, ns: Netns, ip: str, cert: Any, port: int = 443) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(self.ctx)
        with ns.entered():
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ip, port))
        self.sock.listen(16)
        self.thread = threading.Thread(target=self._serve, daemon=True, name=f"tls-{ip}")
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._handshake, args=(conn,), daemon=True).start()

    def _handshake(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            with self.ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)  # until the client closes
        except (OSError, ssl.SSLError):
            pass

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5)


def run_check(check: Check, facts: Facts, settings: Settings, data: Mapping[str, Any]) -> Outcome:
    """Run one check the way the runner does: a Context with only the data it needs."""
    ctx = Context(facts, settings, dict(data), deadline=time.monotonic() + 30, check_timeout_s=check.timeout_s)
    return check.run(ctx)


def by_id(checks: List[Check]) -> Dict[str, Check]:
    return {c.id: c for c in checks}


LAB_FACTS = Facts(region="us-east-1", partition="aws", domain="amazonaws.com", vpc_id="vpc-0lab",
                  subnet_id="subnet-0a", vpc_cidr="10.0.0.0/16", vpc_cidrs=("10.0.0.0/16",),
                  subnet_cidr="10.0.1.0/24", local_ipv4="10.0.1.10", instance_id="i-0lab")
