"""The root copy step: the daemon's custom inventory files from its outbox into the SSM agent's folder.

``vpce-doctor-copy-inventory [SOURCE [DESTINATION]]`` (defaults ``/var/lib/vpce-doctor/ssm`` and
``/var/lib/amazon/ssm``) is what ``vpce-doctor-inventory.service`` runs as root. The source is the
outbox of the unprivileged daemon, so everything below it is hostile: its owner can swap any entry
for a symlink, a FIFO, a huge file or a strange name at any moment. Hence (systemd/README.md):

* every path component is opened relative to its parent's descriptor (``openat``) with
  ``O_NOFOLLOW``: a symlink is refused wherever it appears, not only as the last component. Above the
  outbox, a root-owned symlink in a directory only root can write is followed (systemd's
  ``/var/lib/vpce-doctor`` → ``private/vpce-doctor`` for a ``DynamicUser=``), nothing else;
* only ``<root>/i-<hex>/inventory/custom/<name>.json`` with plain names; a file must be regular
  (``lstat`` before the open, ``fstat`` after it; the open is ``O_NONBLOCK``, so neither a FIFO
  swapped in between nor a lease its owner holds can stall it), have one link, belong to the
  outbox's owner (no hard link to someone else's file), hold at most 1 MiB (read at most 1 MiB + 1
  byte: a file that grows meanwhile is refused too) and be a custom inventory document (JSON): the
  agent fails its whole gather on a bad one;
* at most 2 files per run and 64 directory entries looked at; at most 16 lines of output, then
  one that says why the run stopped early and how many lines it held back. Names are escaped
  (``\\n``, ``\\xNN``) and cut, so a name cannot start a line of its own;
* the destination is walked the same way and written atomically: temp file, fsync, rename, fsync of
  the directory; mode 0600 (the SSM agent reads it as root; nobody else needs a diagnosis of the
  network). A file whose content is already there is left alone.

Exit status: 0 when the run did its job, refusals of the outbox's content included (they are the
outbox owner's doing, reported as warnings); 1 for trouble of our own (the destination cannot be
written, an unexpected I/O error); 2 for a bad command line. Standard library only: this runs as root.
"""
from __future__ import annotations

import errno
import json
import os
import re
import stat
import sys
from collections import deque
from typing import Deque, List, Optional, Sequence, TextIO, Tuple, Union

SOURCE_ROOT = "/var/lib/vpce-doctor/ssm"
DEST_ROOT = "/var/lib/amazon/ssm"
MAX_FILE_BYTES = 1024 * 1024  # the old limit; the daemon's files are far smaller (200 KB per item)
MAX_FILES = 2  # the daemon writes two (findings, verdicts); the agent's gather fails above 20
MAX_ENTRIES = 64  # directory entries looked at per run, in all directories together
MAX_LINES = 16  # lines per run, plus one that counts the suppressed ones
MAX_NAME_SHOWN = 80  # bytes of a name shown in a message
MAX_SYMLINK_HOPS = 8
FILE_MODE = 0o600
DIR_MODE = 0o700

INSTANCE_ID = re.compile(r"i-[0-9a-f]{8,17}")
FILE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,94}\.json")
INVENTORY_PATH = ("inventory", "custom")
TEMP_SUFFIX = ".vpce-doctor-tmp"  # never ends in .json: the agent reads every *.json in the folder

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | _CLOEXEC
_SYSLOG = {"info": 6, "warning": 4, "error": 3}


class Refused(Exception):
    """The outbox holds something we do not copy (a warning; the run goes on)."""


class Trouble(Exception):
    """Our own problem (an error; exit status 1)."""


def escape(name: Union[str, bytes], limit: int = MAX_NAME_SHOWN) -> str:
    """A name as one quoted, printable-ASCII token: control bytes, quotes, backslashes and non-ASCII
    as escapes (``\\n``, ``\\x1b``), at most ``limit`` bytes of the name, then ``...``."""
    raw = os.fsencode(name) if isinstance(name, str) else name
    cut = raw[:limit]
    out = []
    for byte in cut:
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\x{byte:02x}")
    return '"' + "".join(out) + ('..."' if len(raw) > limit else '"')


class Output:
    """One line per event, at most ``MAX_LINES``, with a journal priority when stdout is the journal."""

    def __init__(self, stream: Optional[TextIO] = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        # systemd sets JOURNAL_STREAM when the unit's output goes to the journal (the default):
        # journald then reads a leading <N> as the line's priority.
        self.journal = bool(os.environ.get("JOURNAL_STREAM"))
        self.lines = 0
        self.suppressed = 0
        self.errors = 0
        self.stopped: Optional[str] = None

    def emit(self, level: str, text: str) -> None:
        if level == "error":
            self.errors += 1
        if self.lines >= MAX_LINES:
            self.suppressed += 1
            return
        self._write(level, text)
        self.lines += 1

    def _write(self, level: str, text: str) -> None:
        # Callers escape every name; this is the backstop that keeps an event on one line.
        line = text.replace("\r", "\\r").replace("\n", "\\n")
        prefix = f"<{_SYSLOG[level]}>" if self.journal else ""
        self.stream.write(f"{prefix}{line}\n")

    def stop(self, text: str) -> None:
        """Why the run stopped early: always shown, on the last line (the first reason wins)."""
        if self.stopped is None:
            self.stopped = text

    def close(self) -> None:
        notes = [self.stopped] if self.stopped else []
        if self.suppressed:
            notes.append(f"{self.suppressed} more message(s) not shown (at most {MAX_LINES} per run)")
        if notes:
            self._write("warning", "; ".join(notes))
        self.stream.flush()


def _is_safe_parent(fd: int) -> bool:
    """A directory only root can change: a symlink in it was put there by root."""
    st = os.fstat(fd)
    return st.st_uid == 0 and not st.st_mode & 0o022


def open_root(path: str) -> int:
    """Open the directory ``path`` (absolute) component by component. A symlink is followed only
    while every directory so far is root's and not writable by others, and only if root owns the
    link; anywhere else a symlink raises Refused. Returns the directory's descriptor."""
    if not path.startswith("/"):
        raise Trouble(f"{escape(path)} is not an absolute path")
    fd = os.open("/", _DIR_FLAGS)
    stack: List[int] = []  # the parents of fd, for ".." in a root-owned link
    safe = _is_safe_parent(fd)
    parts: Deque[str] = deque(p for p in path.split("/") if p)
    hops = 0
    try:
        while parts:
            name = parts.popleft()
            if name == ".":
                continue
            if name == "..":
                if not safe:
                    raise Refused(f"{escape(path)}: '..' below a directory others can change")
                if stack:
                    os.close(fd)
                    fd = stack.pop()
                continue
            try:
                child = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                    raise
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISLNK(st.st_mode):
                    raise Refused(f"{escape(path)}: {escape(name)} is not a directory") from None
                if not (safe and st.st_uid == 0) or hops >= MAX_SYMLINK_HOPS:
                    raise Refused(f"{escape(path)}: {escape(name)} is a symlink") from None
                hops += 1
                target = os.readlink(name, dir_fd=fd)
                parts.extendleft(reversed([p for p in target.split("/") if p]))
                if target.startswith("/"):
                    stack.append(fd)  # closed in the finally below
                    fd = os.open("/", _DIR_FLAGS)
                continue
            stack.append(fd)
            fd = child
            safe = safe and _is_safe_parent(fd)
        return fd
    except BaseException:
        os.close(fd)
        raise
    finally:
        for parent in stack:
            os.close(parent)


def open_subdir(parent: int, name: str, create: bool = False) -> int:
    """``parent``/``name`` as a directory, never through a symlink (Refused); created (0700) if asked."""
    try:
        return os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent)
    except FileNotFoundError:
        if not create:
            raise
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):
            raise Refused("a symlink" if _is_symlink(parent, name) else "not a directory") from None
        raise
    try:
        os.mkdir(name, DIR_MODE, dir_fd=parent)
    except FileExistsError:
        pass  # created meanwhile; the open below still refuses a symlink
    return open_subdir(parent, name)


def _is_symlink(parent: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
    except OSError:
        return False


def list_entries(fd: int, budget: List[int]) -> Tuple[List[str], bool]:
    """Up to ``budget[0]`` names of the directory ``fd`` (sorted), and whether some were left unread."""
    names: List[str] = []
    more = False
    with os.scandir(fd) as entries:
        for entry in entries:
            if budget[0] <= 0:
                more = True
                break
            budget[0] -= 1
            names.append(entry.name)
    return sorted(names), more


def read_limited(fd: int, limit: int = MAX_FILE_BYTES) -> Optional[bytes]:
    """At most ``limit`` bytes of ``fd``; None if it holds more (whatever its size said before)."""
    chunks: List[bytes] = []
    left = limit + 1
    while left > 0:
        chunk = os.read(fd, min(left, 256 * 1024))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    data = b"".join(chunks)
    return None if len(data) > limit else data


def read_source(parent: int, name: str, owner: int) -> bytes:
    """The content of the outbox file ``name``, or Refused with the reason."""
    try:
        before = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except OSError as exc:
        raise Refused(f"cannot stat ({_reason(exc)})") from None
    if not stat.S_ISREG(before.st_mode):
        raise Refused("a symlink" if stat.S_ISLNK(before.st_mode) else "not a regular file")
    try:
        # Whatever fails here is the owner's doing (a symlink, socket or nothing swapped in; a lease
        # it holds: EWOULDBLOCK, thanks to O_NONBLOCK, instead of waiting 45 s for the lease break).
        fd = os.open(name, _FILE_FLAGS, dir_fd=parent)
    except OSError as exc:
        raise Refused(f"cannot open ({_reason(exc)})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
            raise Refused("changed while opened (not the regular file it was)")
        if st.st_uid != owner:
            raise Refused(f"owned by uid {st.st_uid}, not by the outbox's owner (uid {owner})")
        if st.st_nlink != 1:
            raise Refused(f"has {st.st_nlink} hard links")
        if st.st_size > MAX_FILE_BYTES:
            raise Refused(f"{st.st_size} bytes, more than {MAX_FILE_BYTES}")
        try:
            data = read_limited(fd)
        except OSError as exc:
            raise Refused(f"cannot read ({_reason(exc)})") from None
        if data is None:
            raise Refused(f"grew past {MAX_FILE_BYTES} bytes while read")
    finally:
        os.close(fd)
    check_document(data)
    return data


def check_document(data: bytes) -> None:
    """Refused unless ``data`` is a custom inventory document the SSM agent can gather."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = exc.__class__.__name__ if isinstance(exc, RecursionError) else str(exc).splitlines()[0][:80]
        raise Refused(f"not valid JSON ({reason})") from None
    if not (isinstance(doc, dict) and isinstance(doc.get("TypeName"), str)
            and doc["TypeName"].startswith("Custom:") and "SchemaVersion" in doc and "Content" in doc):
        raise Refused('not a custom inventory document ({"SchemaVersion", "TypeName": "Custom:...", "Content"})')


def _read_existing(parent: int, name: str) -> Optional[bytes]:
    """What the destination holds under ``name`` (None if nothing comparable)."""
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=parent)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return read_limited(fd)
    finally:
        os.close(fd)


def write_atomic(parent: int, name: str, data: bytes) -> None:
    """Replace ``parent``/``name`` with ``data``: temp file, fsync, rename, fsync of the directory."""
    temp = f".{name}{TEMP_SUFFIX}"
    try:
        os.unlink(temp, dir_fd=parent)  # left by a run that was killed; the folder is root's
    except FileNotFoundError:
        pass
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC, FILE_MODE,
                 dir_fd=parent)
    try:
        try:
            os.fchmod(fd, FILE_MODE)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, name, src_dir_fd=parent, dst_dir_fd=parent)
    except BaseException:
        try:
            os.unlink(temp, dir_fd=parent)
        except OSError:
            pass
        raise
    os.fsync(parent)


class Copier:
    def __init__(self, source: str, dest: str, out: Output) -> None:
        self.source = source
        self.dest = dest
        self.out = out
        self.budget = [MAX_ENTRIES]
        self.files = 0
        self.capped = False

    def run(self) -> None:
        try:
            src = open_root(self.source)
        except FileNotFoundError:
            return  # no outbox yet: nothing to copy
        except Refused as exc:
            self.out.emit("warning", f"skipped the outbox: {exc}")
            return
        try:
            owner = os.fstat(src).st_uid
            names, more = list_entries(src, self.budget)
            for iid in names:
                if self.capped:
                    break
                if not INSTANCE_ID.fullmatch(iid):
                    self.out.emit("warning", f"skipped {escape(iid)}: not an instance id (i-<8 to 17 hex digits>)")
                    continue
                self.instance(src, iid, owner)
            if more:
                self.out.stop(f"stopped after {MAX_ENTRIES} entries of the outbox: the rest not looked at")
        finally:
            os.close(src)

    def instance(self, src: int, iid: str, owner: int) -> None:
        fds: List[int] = []
        try:
            fd = src
            parts: List[str] = []
            for part in (iid,) + INVENTORY_PATH:
                parts.append(part)
                try:
                    fd = open_subdir(fd, part)
                except FileNotFoundError:
                    return
                except (Refused, OSError) as exc:
                    self.out.emit("warning", f"skipped {escape('/'.join(parts))}: {_reason(exc)}")
                    return
                fds.append(fd)
            rel = "/".join(parts)
            if os.fstat(fd).st_uid != owner:
                self.out.emit("warning", f"skipped {escape(rel)}: not owned by the outbox's owner")
                return
            names, more = list_entries(fd, self.budget)
            dest_fd: Optional[int] = None
            try:
                for name in names:
                    path = f"{rel}/{name}"
                    if not FILE_NAME.fullmatch(name):
                        self.out.emit("warning", f"skipped {escape(path)}: unexpected name (plain <name>.json)")
                        continue
                    if self.files >= MAX_FILES:
                        self.capped = True
                        self.out.stop(f"stopped at {escape(path)}: more than {MAX_FILES} files in the outbox, "
                                      "the rest not copied")
                        return
                    self.files += 1
                    try:
                        data = read_source(fd, name, owner)
                    except Refused as exc:
                        self.out.emit("warning", f"skipped {escape(path)}: {exc}")
                        continue
                    if dest_fd is None:
                        dest_fd = self.dest_dir(iid)
                    if _read_existing(dest_fd, name) == data:
                        continue  # already there: no rewrite, no line
                    write_atomic(dest_fd, name, data)
                    self.out.emit("info", f"copied {escape(path)} ({len(data)} bytes) into {escape(self.dest)}")
                if more:
                    self.capped = True
                    self.out.stop(f"stopped after {MAX_ENTRIES} entries of the outbox: the rest of "
                                  f"{escape(rel)} not looked at")
            finally:
                if dest_fd is not None:
                    os.close(dest_fd)
        finally:
            for opened in fds:
                os.close(opened)

    def dest_dir(self, iid: str) -> int:
        """The destination's ``<iid>/inventory/custom``, created as needed, never through a symlink."""
        try:
            fd = open_root(self.dest)
        except (OSError, Refused) as exc:
            raise Trouble(f"cannot open {escape(self.dest)}: {_reason(exc)}") from None
        rel = self.dest
        try:
            for part in (iid,) + INVENTORY_PATH:
                rel = f"{rel}/{part}"
                try:
                    child = open_subdir(fd, part, create=True)
                except (OSError, Refused) as exc:
                    raise Trouble(f"cannot open {escape(rel)}: {_reason(exc)}") from None
                os.close(fd)
                fd = child
            return fd
        except BaseException:
            os.close(fd)
            raise


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or exc.__class__.__name__
    return str(exc)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) > 2 or any(a.startswith("-") for a in args):
        sys.stderr.write("usage: vpce-doctor-copy-inventory [SOURCE [DESTINATION]]\n"
                         f"  copies SOURCE/i-*/inventory/custom/*.json (default {SOURCE_ROOT}) "
                         f"into DESTINATION (default {DEST_ROOT})\n")
        return 2
    source = args[0] if args else SOURCE_ROOT
    dest = args[1] if len(args) > 1 else DEST_ROOT
    out = Output()
    try:
        Copier(source, dest, out).run()
    except Trouble as exc:
        out.emit("error", f"error: {exc}")
    except OSError as exc:
        where = f" ({escape(exc.filename)})" if isinstance(exc.filename, (str, bytes)) else ""
        out.emit("error", f"error: {_reason(exc)}{where}")
    finally:
        out.close()
    return 1 if out.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
