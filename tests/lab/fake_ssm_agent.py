"""A stand-in for amazon-ssm-agent in the instance namespace: what the agent's ssm_agent check sees.

It is started with argv[0] ``/usr/bin/amazon-ssm-agent`` and names itself ``amazon-ssm-agen`` in
/proc/self/comm (the kernel's 15-character limit), so psutil reports ``amazon-ssm-agent``.
``--mode running`` holds one connection per service (ssm, ec2messages, ssmmessages) to the first
address that accepts TCP 443 among those the instance would resolve for the service name (given
by the lab, so no DNS timing is involved), with a TLS handshake as the real agent does, and
reconnects when dropped (backing off, bounded). ``--mode not_connected`` runs and connects nowhere,
like an agent started before the endpoints existed. ``<status-dir>/ssm-agent.json`` says what it
holds; ``"ready": true`` once every service had its first try. ``--user NAME`` drops to that user
once set up (as an agent whose unit says ``User=``); the status dir is then written through a
descriptor opened before, so the user needs no way into the lab's state dir. Its environment
(proxy variables) is what the lab starts it with.

Only the standard library: argv[0] is not the interpreter, so the venv is not on sys.path.

    python -m tests.lab.fake_ssm_agent --status-dir DIR --mode running --ca DIR/ca.pem [--user nobody] \\
        --target ssm=ssm.us-east-1.amazonaws.com=10.0.1.101,10.0.2.101 ...
"""
from __future__ import annotations

import argparse
import encodings.idna  # noqa: F401 - loaded now: after --user drops root the stdlib may not be readable
import json
import os
import pwd
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

CONNECT_TIMEOUT_S = 0.5  # every address is inside this machine: an answer takes microseconds
TLS_TIMEOUT_S = 3.0
BACKOFF_S = (1.0, 2.0, 5.0, 10.0)


class Agent:
    def __init__(self, status_dir: Path, ca: Optional[str], targets: List[Tuple[str, str, List[str]]]) -> None:
        self.dir_fd = os.open(str(status_dir), os.O_RDONLY | os.O_DIRECTORY)
        self.context = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
        self.targets = targets
        self.connected: Dict[str, Optional[str]] = {name: None for name, _, _ in targets}
        self.first_try_done: Dict[str, bool] = {name: False for name, _, _ in targets}
        self.lock = threading.Lock()

    def write_status(self) -> None:
        with self.lock:
            status = {"ready": all(self.first_try_done.values()), "connected": dict(self.connected)}
            fd = os.open("ssm-agent.tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=self.dir_fd)
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps(status))
            os.replace("ssm-agent.tmp", "ssm-agent.json", src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)

    def connect(self, host: str, ips: List[str]) -> Optional[Tuple[str, socket.socket]]:
        for ip in ips:
            try:
                sock = socket.create_connection((ip, 443), timeout=CONNECT_TIMEOUT_S)
            except OSError:
                continue
            sock.settimeout(TLS_TIMEOUT_S)
            try:
                sock = self.context.wrap_socket(sock, server_hostname=host)
            except (OSError, ssl.SSLError):
                # As the real agent: a certificate it does not trust (TLS inspection, a broken CA
                # bundle) or a stalled handshake ends the connection; it holds nothing there.
                sock.close()
                continue
            return ip, sock
        return None

    def hold(self, name: str, host: str, ips: List[str]) -> None:
        failures = 0
        while True:
            held = self.connect(host, ips)
            with self.lock:
                self.first_try_done[name] = True
                self.connected[name] = held[0] if held else None
            self.write_status()
            if held:
                failures = 0
                sock = held[1]
                sock.settimeout(None)
                try:
                    while sock.recv(4096):  # idle until the server drops us
                        pass
                except OSError:
                    pass
                finally:
                    sock.close()
                with self.lock:
                    self.connected[name] = None
                self.write_status()
                # The real agent keeps its channels alive with heartbeats; a dropped one is
                # re-opened at once, so it is never seen "not connected" between two attempts.
                continue
            time.sleep(BACKOFF_S[min(failures, len(BACKOFF_S) - 1)])  # reconnect pacing, not sync
            failures += 1

    def run(self) -> None:
        threads = [threading.Thread(target=self.hold, args=t, daemon=True, name=t[0]) for t in self.targets]
        for t in threads:
            t.start()
        self.write_status()
        for t in threads:
            t.join()


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="amazon-ssm-agent stand-in")
    parser.add_argument("--status-dir", type=Path, required=True)
    parser.add_argument("--user", help="run as this user once set up (default: stay root)")
    parser.add_argument("--mode", choices=("running", "not_connected"), default="running")
    parser.add_argument("--ca")
    parser.add_argument("--target", action="append", default=[], help="service=hostname=ip,ip")
    args = parser.parse_args(argv)
    try:
        Path("/proc/self/comm").write_text("amazon-ssm-agen")
    except OSError:
        pass
    targets = []
    for spec in args.target:
        name, host, ips = spec.split("=", 2)
        targets.append((name, host, [ip for ip in ips.split(",") if ip]))
    agent = Agent(args.status_dir, args.ca, targets if args.mode == "running" else [])
    if args.user and args.user != "root":
        entry = pwd.getpwnam(args.user)
        os.setgroups([])
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
    if args.mode == "not_connected":
        agent.write_status()
        threading.Event().wait()  # run, hold nothing
    agent.run()


if __name__ == "__main__":
    main()
