"""procnet against the real kernel: sock_diag dumps, /proc/<pid>/fd, /proc/<pid>/comm and cmdline.

Sockets are on loopback only; the child processes are ours and are stopped by each test.
"""
from __future__ import annotations

import errno
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
from typing import Iterator, Tuple

import pytest

from vpce_doctor.checks import procnet


@pytest.fixture
def connected() -> Iterator[Tuple[socket.socket, socket.socket, socket.socket]]:
    """(listener, client, server side) of one ESTABLISHED loopback connection."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    client = socket.create_connection(listener.getsockname(), timeout=5)
    server, _ = listener.accept()
    try:
        yield listener, client, server
    finally:
        for s in (client, server, listener):
            s.close()


def inode(sock: socket.socket) -> int:
    return os.fstat(sock.fileno()).st_ino


def test_sock_diag_lists_established_sockets_only(connected):
    listener, client, server = connected
    found = procnet.established_tcp()
    assert found[inode(client)] == listener.getsockname()  # remote = the listener's address
    assert found[inode(server)] == client.getsockname()
    assert inode(listener) not in found  # LISTEN is not ESTABLISHED


def test_a_closed_connection_is_not_listed(connected):
    _, client, server = connected
    gone = inode(client)
    client.close()  # FIN_WAIT/TIME_WAIT on our side: not established any more
    assert gone not in procnet.established_tcp()


def test_ipv6_connections_are_listed():
    try:
        listener = socket.socket(socket.AF_INET6)
        listener.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    with listener:
        listener.listen(1)
        with socket.create_connection(listener.getsockname()[:2], timeout=5) as client:
            conn, _ = listener.accept()
            with conn:
                assert procnet.established_tcp()[inode(client)] == ("::1", listener.getsockname()[1])


def test_connections_of_a_pid_agree_with_psutil(connected):
    listener, client, _ = connected
    conns = procnet.Connections()
    ours = conns.remotes(os.getpid())
    assert conns.source == "sock_diag"
    assert listener.getsockname() in ours
    assert ours == procnet.psutil_remotes(os.getpid())


def test_without_netlink_psutil_reads_proc_net(connected, monkeypatch):
    listener, _, _ = connected

    def refused() -> None:  # what RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 does to AF_NETLINK
        raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")

    monkeypatch.setattr(procnet, "established_tcp", refused)
    conns = procnet.Connections()
    assert listener.getsockname() in conns.remotes(os.getpid())
    assert conns.source == "/proc/net (psutil)"


def test_a_gone_process_is_named():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=10)
    with pytest.raises(ProcessLookupError):
        procnet.socket_inodes(child.pid)
    with pytest.raises(ProcessLookupError):
        procnet.Connections().remotes(child.pid)


def test_another_users_sockets_are_not_visible():
    """As an unprivileged user (root drops to nobody in a child), pid 1's sockets are hidden:
    PermissionError, which the ssm_agent check reports as "not visible", never as "none".
    procnet needs only the standard library: the child runs a world-readable copy with the
    system's python3, since the work tree and the venv may not be readable by nobody."""
    python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
    code = ("import procnet\n"
            "try:\n    procnet.Connections().remotes(1)\nexcept PermissionError:\n    print('hidden')\n")
    with tempfile.TemporaryDirectory(prefix="vdt-procnet-") as tmp:
        os.chmod(tmp, 0o755)
        shutil.copy(procnet.__file__, os.path.join(tmp, "procnet.py"))
        os.chmod(os.path.join(tmp, "procnet.py"), 0o644)
        argv = [python, "-c", code]
        if os.geteuid() == 0:
            if not shutil.which("setpriv"):
                pytest.skip("needs setpriv (util-linux) to drop to nobody")
            argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + argv
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=tmp)
    assert out.stdout.strip() == "hidden", out.stderr


CHILD = r"""
import sys
with open("/proc/self/comm", "w") as fh:
    fh.write(sys.argv[1])
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize("argv0,comm,name", [
    ("amazon-ssm-agent", "amazon-ssm-agent", "amazon-ssm-agent"),  # comm cut, argv[0] extends it (psutil's rule)
    ("/usr/bin/python3", "amazon-ssm-agent", "amazon-ssm-agen"),  # argv[0] does not start with comm
    ("vdt-short", "vdt-short", "vdt-short"),
])
def test_processes_name_like_psutil(argv0, comm, name):
    child = subprocess.Popen([argv0, "-c", CHILD, comm], executable=sys.executable, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE)
    try:
        ready, _, _ = select.select([child.stdout], [], [], 10)
        assert ready and child.stdout.readline().strip() == b"ready"
        mine = [p for p in procnet.processes() if p.pid == child.pid]
        assert len(mine) == 1 and mine[0].name == name and mine[0].argv[0] == argv0
        import psutil
        assert psutil.Process(child.pid).name() == name
    finally:
        child.stdin.close()
        child.wait(timeout=10)
        child.stdout.close()
