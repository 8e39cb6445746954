"""Atomic file replacement: readers (and a crash at any instant) see the old file or the new one,
never a mix or a truncated one.

``write_atomic(path, data)``: a temp file in the same directory (rename is only atomic within one
file system), write, fsync, chmod, rename over the target, fsync the directory (so the rename
itself survives a power cut). A process killed mid-write leaves at most its one temp file; the
next process to write the same target removes temps whose writer is dead (``clean_stale_temps``).
Temp names start with "." and never end in ".json": the SSM agent's custom inventory gatherer
reads every ``*.json`` in its folder, and a half-written temp must not count as one.
"""
from __future__ import annotations

import os
import secrets
import threading
import time
from typing import Set, Union

TEMP_MARK = ".tmp-"
STALE_AFTER_S = 3600.0  # a temp this old is stale even if its pid is alive again (pid reuse)

_cleaned: Set[str] = set()
_cleaned_lock = threading.Lock()


def _temp_prefix(path: str) -> str:
    return f".{os.path.basename(path)}{TEMP_MARK}"


def _writer_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def clean_stale_temps(path: str) -> int:
    """Remove temp files of ``path`` left by writers that died; returns how many were removed."""
    directory = os.path.dirname(os.path.abspath(path))
    prefix = _temp_prefix(path)
    removed = 0
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    now = time.time()
    for name in names:
        if not name.startswith(prefix):
            continue
        pid_text = name[len(prefix):].split("-", 1)[0]
        full = os.path.join(directory, name)
        try:
            old = now - os.lstat(full).st_mtime > STALE_AFTER_S
            if old or not pid_text.isdigit() or not _writer_alive(int(pid_text)):
                os.unlink(full)
                removed += 1
        except OSError:
            continue  # gone already (another cleaner) or not ours to remove
    return removed


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str, data: Union[bytes, str], mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically (see the module doc). Raises OSError."""
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    with _cleaned_lock:
        first = path not in _cleaned
        _cleaned.add(path)
    if first:  # once per target and process: leftovers of a killed predecessor
        clean_stale_temps(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    temp = os.path.join(directory, f"{_temp_prefix(path)}{os.getpid()}-{secrets.token_hex(4)}")
    # O_EXCL: never follow or reuse someone else's file; 0o600 until the content is complete.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        try:
            view = memoryview(payload)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    _fsync_dir(directory)
