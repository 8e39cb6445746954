"""vpce_doctor.atomic: a reader (or the next process after a SIGKILL) sees the old file or the new one,
never a partial one, and killed writers' temp files do not accumulate."""
from __future__ import annotations

import hashlib
import json
import os
import random
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

from vpce_doctor import atomic

KILLS = 30
LINE_TIMEOUT_S = 20.0

# The writer: continues the sequence found in the file and rewrites it as fast as it can with 4 MB
# of padding built by memcpy, so nearly all its time is spent inside write_atomic (a few ms per
# write with fsync); prints each completed sequence number.
WRITER = r"""
import hashlib, json, sys
from vpce_doctor.atomic import write_atomic
path, rounds = sys.argv[1], int(sys.argv[2])
try:
    with open(path) as fh:
        seq = json.load(fh)["seq"]
except FileNotFoundError:
    seq = 0
pad = b"0123456789abcdef" * (4_000_000 // 16)
print("start", flush=True)
for _ in range(rounds):
    seq += 1
    sha = hashlib.sha256(pad + str(seq).encode()).hexdigest().encode()
    write_atomic(path, b'{"seq":%d,"sha":"%s","pad":"' % (seq, sha) + pad + b'"}')
    print(seq, flush=True)
"""


def temps(path: Path) -> List[str]:
    return [n for n in os.listdir(path.parent) if n.startswith(f".{path.name}{atomic.TEMP_MARK}")]


def complete(path: Path) -> Dict[str, Any]:
    doc = json.loads(path.read_text())  # raises on a partial file
    digest = hashlib.sha256(doc["pad"].encode() + str(doc["seq"]).encode()).hexdigest()
    assert digest == doc["sha"], "content from two writes mixed"
    return doc


def read_lines(proc: "subprocess.Popen[str]", count: int) -> List[str]:
    assert proc.stdout is not None
    lines: List[str] = []
    deadline = time.monotonic() + LINE_TIMEOUT_S
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while len(lines) < count:
            remaining = deadline - time.monotonic()
            assert remaining > 0 and sel.select(timeout=remaining), "the writer went quiet"
            line = proc.stdout.readline()
            assert line, f"the writer exited: {proc.stderr.read() if proc.stderr else ''}"
            lines.append(line.strip())
    return lines


def writer(path: Path, rounds: int) -> "subprocess.Popen[str]":
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(rounds)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_sigkill_never_leaves_a_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "last-report.json"
    rng = random.Random(4)
    last_seen = 0
    caught_mid_write = 0
    procs: List["subprocess.Popen[str]"] = []
    try:
        for _ in range(KILLS):
            proc = writer(path, 10_000)
            procs.append(proc)
            lines = read_lines(proc, 1 + rng.randint(0, 3))  # "start", then 0-3 completed writes
            # The kill moment: a random point within the next write or two (not a synchronisation
            # wait: nothing is waited for, the writer keeps writing meanwhile).
            time.sleep(rng.uniform(0, 0.008))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            if lines[1:]:
                last_seen = int(lines[-1])
            if not path.exists():
                assert last_seen == 0
                continue
            doc = complete(path)
            assert doc["seq"] >= last_seen  # a completed write is never lost
            last_seen = doc["seq"]
            leftovers = temps(path)
            assert len(leftovers) <= 1, leftovers  # at most the one in flight; older ones were cleaned
            caught_mid_write += bool(leftovers)
        # The next writer removes what the last killed one left, and leaves nothing itself.
        proc = writer(path, 1)
        procs.append(proc)
        read_lines(proc, 2)
        assert proc.wait(timeout=10) == 0
        assert temps(path) == [] and complete(path)["seq"] == last_seen + 1
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    print(f"{caught_mid_write} of {KILLS} kills landed while a temp file was in flight")


def test_write_replaces_and_sets_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    atomic.write_atomic(str(path), "first")
    atomic.write_atomic(str(path), b"second", mode=0o600)
    assert path.read_bytes() == b"second" and path.stat().st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path) == ["r.json"]


def test_temp_names_are_hidden_and_never_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SSM agent gathers every *.json in its custom inventory folder: a temp must not be one."""
    seen: List[str] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        seen.append(os.path.basename(src))
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", spy)
    atomic.write_atomic(str(tmp_path / "VpceDoctor.json"), "{}")
    assert len(seen) == 1 and seen[0].startswith(".VpceDoctor.json.tmp-") and not seen[0].endswith(".json")


def test_failed_write_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "dir-in-the-way"
    target.mkdir()
    (target / "x").write_text("")  # a non-empty directory cannot be replaced by a file
    with pytest.raises(OSError):
        atomic.write_atomic(str(target), "data")
    assert sorted(os.listdir(tmp_path)) == ["dir-in-the-way"]


def test_stale_temps_of_dead_writers_are_removed_live_ones_kept(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    dead_pid = int(dead.stdout)
    prefix = f".{path.name}{atomic.TEMP_MARK}"
    (tmp_path / f"{prefix}{dead_pid}-aaaa").write_text("partial")
    (tmp_path / f"{prefix}{os.getppid()}-bbbb").write_text("someone else's, in flight")
    (tmp_path / f"{prefix}garbage").write_text("not ours to understand")
    (tmp_path / ".other.json.tmp-1-cccc").write_text("another target's")
    old = tmp_path / f"{prefix}{os.getppid()}-dddd"
    old.write_text("in flight for hours: its pid was reused")
    os.utime(old, (time.time() - 2 * atomic.STALE_AFTER_S,) * 2)

    assert atomic.clean_stale_temps(str(path)) == 3
    assert sorted(os.listdir(tmp_path)) == sorted([f"{prefix}{os.getppid()}-bbbb", ".other.json.tmp-1-cccc"])
