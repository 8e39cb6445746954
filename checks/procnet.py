"""The process table and a process's established TCP connections, read straight from the kernel.

Used by the ``ssm_agent`` check every cycle, so it must stay cheap on a busy host:

* processes: ``/proc/<pid>/comm`` and ``/proc/<pid>/cmdline`` (what psutil reads, without building
  a Process object per pid);
* connections: the socket inodes in ``/proc/<pid>/fd`` matched against the **established** TCP
  sockets from the kernel's sock_diag netlink interface (what ``ss`` uses). The kernel applies the
  state filter, so thousands of TIME_WAIT or listening sockets cost nothing, whereas
  ``/proc/net/tcp`` (psutil's source) formats and we would parse every one of them. Where netlink
  is not allowed (a unit with ``RestrictAddressFamilies=`` without AF_NETLINK, a seccomp filter)
  psutil's /proc/net parser is the fallback.

Reading another process's ``/proc/<pid>/fd`` needs root (or CAP_SYS_PTRACE): without it the
connections are "not visible", never "none".
"""
from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Set, Tuple

COMM_LEN = 15  # the kernel cuts /proc/<pid>/comm to 15 characters

# linux/netlink.h, linux/sock_diag.h, linux/inet_diag.h
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
TCP_ESTABLISHED = 1
_NLMSG = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_REQ = struct.Struct("=BBBBI48x")  # inet_diag_req_v2: family, protocol, ext, pad, states, sockid (zero)
_MSG = struct.Struct("=BBBB2sH16s16sIQIIIII")  # inet_diag_msg: family, state, timer, retrans, sport,
#                                               dport (big endian), src, dst, if, cookie, expires,
#                                               rqueue, wqueue, uid, inode
_MAX_DUMP_BYTES = 64 * 1024 * 1024  # a runaway answer must not run forever


@dataclass(frozen=True)
class Proc:
    pid: int
    name: str  # psutil's rule: comm, extended from argv[0] when comm was cut
    argv: Tuple[str, ...]


def processes() -> Iterator[Proc]:
    """Every process we can see; processes that exit meanwhile are skipped."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm", "rb") as fh:
                comm = fh.read().rstrip(b"\n").decode("utf-8", "replace")
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                raw = fh.read()
        except OSError:  # gone, or hidden (hidepid)
            continue
        argv = tuple(a.decode("utf-8", "replace") for a in raw.split(b"\0") if a) if raw else ()
        name = comm
        if len(comm) >= COMM_LEN and argv:
            extended = os.path.basename(argv[0])
            if extended.startswith(comm):
                name = extended
        yield Proc(int(entry), name, argv)


def net_namespace(pid: "int | str") -> Optional[str]:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:  # gone, or not ours to read
        return None


def socket_inodes(pid: int) -> Set[int]:
    """The inodes of the sockets ``pid`` holds. Raises PermissionError when we may not look,
    ProcessLookupError when the process is gone."""
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except PermissionError:
        raise
    except FileNotFoundError:
        raise ProcessLookupError(errno.ESRCH, f"process {pid} is gone") from None
    inodes: Set[int] = set()
    for fd in fds:
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def established_tcp() -> Dict[int, Tuple[str, int]]:
    """inode -> (remote address, remote port) of every ESTABLISHED TCP socket in our network
    namespace, IPv4 and IPv6, from sock_diag. Raises OSError when netlink is not available."""
    found: Dict[int, Tuple[str, int]] = {}
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(2.0)  # the kernel answers at once; never hang a check on it
        for seq, family in enumerate((socket.AF_INET, socket.AF_INET6), start=1):
            body = _REQ.pack(family, socket.IPPROTO_TCP, 0, 0, 1 << TCP_ESTABLISHED)
            nl.send(_NLMSG.pack(_NLMSG.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
                    + body)
            _read_dump(nl, seq, found)
    return found


def _read_dump(nl: socket.socket, seq: int, found: Dict[int, Tuple[str, int]]) -> None:
    received = 0
    while received < _MAX_DUMP_BYTES:
        data = nl.recv(256 * 1024)
        if not data:
            raise OSError(errno.EPROTO, "sock_diag: the kernel ended the dump without NLMSG_DONE")
        received += len(data)
        offset = 0
        while offset + _NLMSG.size <= len(data):
            length, kind, _flags, msg_seq, _pid = _NLMSG.unpack_from(data, offset)
            if length < _NLMSG.size:
                raise OSError(errno.EPROTO, "sock_diag: a netlink message shorter than its header")
            payload = offset + _NLMSG.size
            offset += (length + 3) & ~3  # NLMSG_ALIGN
            if msg_seq != seq:
                continue
            if kind == NLMSG_DONE:
                return
            if kind == NLMSG_ERROR:
                code = -struct.unpack_from("=i", data, payload)[0]
                raise OSError(code, f"sock_diag: {os.strerror(code)}")
            if kind == SOCK_DIAG_BY_FAMILY and length >= _NLMSG.size + _MSG.size:
                family, state, _t, _r, _sport, dport, _src, dst, _if, _ck, _exp, _rq, _wq, _uid, inode = \
                    _MSG.unpack_from(data, payload)
                if state != TCP_ESTABLISHED:
                    continue
                if family == socket.AF_INET:
                    address = str(ipaddress.IPv4Address(dst[:4]))
                else:
                    address = str(ipaddress.IPv6Address(dst))
                found[inode] = (address, socket.ntohs(dport))
    raise OSError(errno.EMSGSIZE, f"sock_diag: the dump exceeded {_MAX_DUMP_BYTES} bytes")


class Connections:
    """Established TCP remotes per pid; one sock_diag dump serves every pid asked about."""

    def __init__(self) -> None:
        self._established: Optional[Dict[int, Tuple[str, int]]] = None
        self.source = "sock_diag"  # or "/proc/net (psutil)" once netlink turned out unavailable

    def remotes(self, pid: int) -> List[Tuple[str, int]]:
        """(address, port) of every ESTABLISHED TCP connection of ``pid``, sorted. Raises
        PermissionError when its sockets are not visible to us, ProcessLookupError when it is gone."""
        inodes = socket_inodes(pid)
        if self._established is None and self.source == "sock_diag":
            try:
                self._established = established_tcp()
            except OSError:  # netlink not allowed here (RestrictAddressFamilies, seccomp)
                self.source = "/proc/net (psutil)"
        if self._established is None:
            return psutil_remotes(pid)
        return sorted(self._established[i] for i in inodes if i in self._established)


def psutil_remotes(pid: int) -> List[Tuple[str, int]]:
    """The same as ``Connections.remotes`` through psutil (parses all of /proc/net/tcp{,6})."""
    import psutil

    try:
        proc = psutil.Process(pid)
        method = getattr(proc, "net_connections", None) or proc.connections  # psutil >= 6 renamed it
        conns = method(kind="tcp")
    except psutil.AccessDenied:
        raise PermissionError(errno.EACCES, f"the sockets of process {pid} are not visible") from None
    except psutil.NoSuchProcess:
        raise ProcessLookupError(errno.ESRCH, f"process {pid} is gone") from None
    return sorted((c.raddr[0], c.raddr[1]) for c in conns if c.raddr and c.status == psutil.CONN_ESTABLISHED)
