"""Starting, watching and ending the lab's processes, and reaching into its namespaces.

Every process is started through ``ip netns exec`` with its pid (and start time, against pid reuse)
recorded under ``<state>/pids/``; teardown kills those and everything ``ip netns pids`` still sees.
Readiness is always polled with a deadline (connect until it succeeds, a DNS query until answered,
a file until it says READY), never a fixed sleep.
"""
from __future__ import annotations

import ctypes
import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]
CLONE_NEWNET = 0x40000000
POLL_S = 0.01


class LabError(Exception):
    """A lab operation failed; ``str()`` is one line for the user."""


# --- sockets inside a namespace, without spawning a process -----------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def netns_socket(netns: str, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket that lives in ``netns``. setns(CLONE_NEWNET) only moves the calling thread, so a
    short-lived thread enters the namespace and makes the socket; a socket keeps its namespace."""
    result: Dict[str, object] = {}

    def enter_and_create() -> None:
        try:
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
        except OSError as exc:
            result["error"] = LabError(f"network namespace {netns} does not exist ({exc.strerror})")
            return
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                result["error"] = LabError(f"setns({netns}) failed: {os.strerror(err)}")
                return
            result["socket"] = socket.socket(family, kind)
        finally:
            os.close(fd)

    worker = threading.Thread(target=enter_and_create, name=f"setns-{netns}")
    worker.start()
    worker.join()
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result["socket"]  # type: ignore[return-value]


def tcp_connect(netns: str, ip: str, port: int, timeout: float) -> socket.socket:
    """A connected TCP socket from ``netns`` (raises OSError / socket.timeout)."""
    sock = netns_socket(netns)
    sock.settimeout(timeout)
    try:
        sock.connect((ip, port))
    except BaseException:
        sock.close()
        raise
    return sock


# --- processes ----------------------------------------------------------------------------------

class Launcher:
    """Starts lab processes in a namespace, logging to ``<state>/logs/<label>.log``."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.pid_dir = state_dir / "pids"
        self.log_dir = state_dir / "logs"
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.started: Dict[str, subprocess.Popen] = {}

    def log_path(self, label: str) -> Path:
        return self.log_dir / f"{label}.log"

    def start(self, label: str, netns: str, argv: Sequence[str], argv0: Optional[str] = None,
              env: Optional[Dict[str, str]] = None) -> subprocess.Popen:
        """``env``: the whole environment (default: ours)."""
        cmd = ["ip", "netns", "exec", netns]
        if argv0:  # bash's exec -a sets argv[0], e.g. so psutil sees "amazon-ssm-agent"
            cmd += ["bash", "-c", 'exec -a "$0" "$@"', argv0]
            # Python finds its stdlib from argv[0]; with a foreign one it must be told (stdlib only).
            env = dict(os.environ if env is None else env, PYTHONHOME=sys.base_prefix)
        cmd += list(argv)
        with open(self.log_path(label), "ab") as log:
            proc = subprocess.Popen(cmd, cwd=str(REPO_ROOT), env=env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        # `ip netns exec` (and bash's exec) replace themselves: the pid is the server's own.
        (self.pid_dir / f"{label}.pid").write_text(f"{proc.pid} {_start_time(proc.pid) or 0}\n")
        self.started[label] = proc
        return proc

    def log_tail(self, label: str, lines: int = 3) -> str:
        try:
            text = self.log_path(label).read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def check_alive(self, label: str) -> None:
        proc = self.started[label]
        if proc.poll() is not None:
            raise LabError(f"{label} exited with status {proc.returncode}: {self.log_tail(label) or 'no output'} "
                           f"(log: {self.log_path(label)})")


def wait_until(what: str, ready: Callable[[], bool], timeout_s: float,
               alive: Optional[Callable[[], None]] = None) -> None:
    """Polls ``ready`` until true; ``alive`` raises if the process we wait for died."""
    deadline = time.monotonic() + timeout_s
    while True:
        if ready():
            return
        if alive is not None:
            alive()
        if time.monotonic() > deadline:
            raise LabError(f"{what} not ready after {timeout_s:.0f} s")
        time.sleep(POLL_S)


def tcp_ready(netns: str, ip: str, port: int) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            tcp_connect(netns, ip, port, timeout=0.5).close()
            return True
        except OSError:
            return False
    return probe


def dns_ready(netns: str, ip: str, port: int = 53, timeout: float = 0.5) -> Callable[[], bool]:
    import dns.exception
    import dns.message
    import dns.query

    def probe() -> bool:
        sock = netns_socket(netns, kind=socket.SOCK_DGRAM)
        sock.setblocking(False)  # dnspython's timeout only applies to non-blocking sockets
        try:
            dns.query.udp(dns.message.make_query("lab-readiness.invalid", "A"), ip, port=port,
                          timeout=timeout, sock=sock)
            return True
        except (OSError, dns.exception.DNSException):
            return False
        finally:
            sock.close()
    return probe


def file_says(path: Path, word: str) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            return any(line.strip() == word for line in path.read_text(errors="replace").splitlines())
        except OSError:
            return False
    return probe


# --- ending processes ---------------------------------------------------------------------------

def _start_time(pid: int) -> Optional[int]:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22, after "pid (comm)"


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[1].split()[0] == "Z":
        _reap(pid)
        return False
    return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def recorded_pids(pid_dir: Path) -> List[int]:
    """Pids from the pid files that still name the same process (same start time)."""
    pids = []
    for path in sorted(pid_dir.glob("*.pid")) if pid_dir.is_dir() else []:
        try:
            pid_text, started = path.read_text().split()
            pid = int(pid_text)
        except (OSError, ValueError):
            continue
        if _start_time(pid) == int(started) and pid != os.getpid():
            pids.append(pid)
    return pids


def netns_pids(netns: str) -> List[int]:
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split() if p.isdigit() and int(p) != os.getpid()]


def terminate(pids: Iterable[int], grace_s: float = 1.0) -> None:
    """SIGTERM, wait up to ``grace_s`` (polling), then SIGKILL what is left."""
    pending = set(pids)
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 2.0)):
        for pid in list(pending):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pending.discard(pid)
            except OSError as exc:
                if exc.errno != errno.ESRCH:
                    print(f"vpce-lab: cannot signal {pid}: {exc}", file=sys.stderr)
        deadline = time.monotonic() + wait_s
        while pending and time.monotonic() < deadline:
            pending = {p for p in pending if _running(p)}
            if pending:
                time.sleep(POLL_S)
        if not pending:
            return
    if pending:
        print(f"vpce-lab: processes {sorted(pending)} did not exit", file=sys.stderr)
