"""The root copy step (vpce-doctor-inventory.service) against what the outbox's owner can plant.

Each test runs the unit's real command: ExecStart parsed from the shipped unit file (continuation
lines, ``%%`` and ``$$`` as systemd reads them), with only the two paths it names, the outbox
``/var/lib/vpce-doctor/ssm`` and the SSM agent's ``/var/lib/amazon/ssm``, pointed at a scratch root,
and ``/usr/bin/vpce-doctor-copy-inventory`` run as the RPM's launcher does (this interpreter,
``-s``). It runs as root like the unit, under the unit's ``UMask=`` and, where ``setpriv`` exists,
with the unit's capability bounding set (``CAP_DAC_READ_SEARCH`` only) and no new privileges.

The scratch root has the layout systemd gives a ``DynamicUser=`` with ``StateDirectory=``:
``lib/vpce-doctor`` is a root-owned symlink to ``lib/private/vpce-doctor``, which belongs to the
unprivileged user (here ``nobody``, 65534) like the outbox in it; every attack is prepared by a
child that dropped to that user (setgroups/setgid/setuid), as a compromised daemon would. A
root-only tree (``secret/``, 0700, a 0600 ``stolen.json``) stands for what must never be copied.

Each attack test fails on the old ``/bin/sh`` command. To see it, run this file against that unit:
``git show <old>:systemd/vpce-doctor-inventory.service > /tmp/old.service`` and
``VPCE_DOCTOR_COPY_UNIT=/tmp/old.service pytest tests/systemd/test_copy_step.py``.
Needs root (file owners, the user switch); skipped otherwise.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import pytest

from vpce_doctor import inventory_copy

REPO = Path(__file__).resolve().parents[2]
UNIT = Path(os.environ.get("VPCE_DOCTOR_COPY_UNIT") or REPO / "systemd" / "vpce-doctor-inventory.service")
SOURCE = "/var/lib/vpce-doctor/ssm"
DEST = "/var/lib/amazon/ssm"
HELPER = "/usr/bin/vpce-doctor-copy-inventory"
LAUNCHER = "import sys; from vpce_doctor.inventory_copy import main; sys.exit(main())"  # = the RPM's script
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # what systemd gives a service
NOBODY = 65534
IID = "i-0123456789abcdef0"
RUN_TIMEOUT_S = 10.0
MAX_OUTPUT_LINES = inventory_copy.MAX_LINES + 1  # the helper's bound: 16 lines and one summary
SECRET = "root-only-secret-7f3a"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: an outbox owned by nobody, "
                                                           "attacks made as nobody, the copy as root")


# --- the unit's command ---------------------------------------------------------------------------
def unit_settings(path: Path) -> Dict[str, str]:
    """[Service] keys as systemd reads them: a trailing backslash joins lines (with a space)."""
    text = re.sub(r"\\\n", " ", path.read_text())
    section, out = "", {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif "=" in line and section == "Service":
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def unit_command(source: Path, dest: Path) -> List[str]:
    """The unit's ExecStart, its two paths replaced by the scratch ones."""
    value = unit_settings(UNIT)["ExecStart"].lstrip("-@:+!")
    argv = [word.replace("$$", "$") for word in shlex.split(value.replace("%%", "%"))]
    argv = [word.replace(SOURCE, str(source)).replace(DEST, str(dest)) for word in argv]
    if argv[0] == HELPER:
        argv[:1] = [sys.executable, "-s", "-c", LAUNCHER]
    if shutil.which("setpriv"):
        # CapabilityBoundingSet=CAP_DAC_READ_SEARCH, NoNewPrivileges=yes: root with that one capability.
        argv = ["setpriv", "--bounding-set=-all,+dac_read_search", "--inh-caps=-all", "--no-new-privs", "--"] + argv
    return argv


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def lines(self) -> List[str]:
        return self.stdout.splitlines()


def run_copy(scratch: "Scratch", timeout: float = RUN_TIMEOUT_S, env: Optional[Dict[str, str]] = None) -> Run:
    """Run the unit's command once; a run that outlives ``timeout`` is killed (its whole process
    group: the old command's dd would stay blocked) and fails the test as a hang."""
    umask = int(unit_settings(UNIT).get("UMask", "0022"), 8)
    started = time.monotonic()
    proc = subprocess.Popen(unit_command(scratch.source, scratch.dest), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                            env={"PATH": SYSTEMD_PATH, "LANG": "C.UTF-8", **(env or {})},
                            cwd="/", umask=umask, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
        pytest.fail(f"the copy step hung: still running after {timeout:g} s (killed)")
    return Run(proc.returncode, out, err, time.monotonic() - started)


# --- the scratch root and the attacker ------------------------------------------------------------------------
@dataclass
class Scratch:
    base: Path
    state: Path  # lib/private/vpce-doctor: the unprivileged user's
    outbox: Path  # the real outbox directory
    source: Path  # what the unit names: through the root-owned symlink lib/vpce-doctor
    dest: Path
    secret: Path  # a root-only tree shaped like an outbox

    @property
    def custom(self) -> Path:
        return self.outbox / IID / "inventory" / "custom"

    @property
    def dest_custom(self) -> Path:
        return self.dest / IID / "inventory" / "custom"

    def dest_files(self) -> List[Path]:
        return sorted(p for p in self.dest.rglob("*") if not p.is_dir())


def document(type_name: str = "Custom:VpceDoctor", **content: str) -> bytes:
    return json.dumps({"SchemaVersion": "1.0", "TypeName": type_name,
                       "Content": [content or {"CheckId": "resolver", "Status": "OK"}]}).encode()


@pytest.fixture
def scratch() -> Iterator[Scratch]:
    # Under /run: a root-owned directory others cannot write, as /var/lib is (/tmp is world-writable,
    # and the helper rightly follows no symlink below such a directory).
    base = Path(tempfile.mkdtemp(prefix="vpce-cpy-", dir="/run"))
    try:
        base.chmod(0o755)
        private = base / "lib" / "private"
        private.mkdir(parents=True)
        (base / "lib").chmod(0o755)
        private.chmod(0o711)  # systemd makes it 0700; 0711 lets the test's nobody reach its own directory
        state = private / "vpce-doctor"
        outbox = state / "ssm"
        for d in (state, outbox):
            d.mkdir()
            os.chown(d, NOBODY, NOBODY)
            d.chmod(0o700)
        (base / "lib" / "vpce-doctor").symlink_to("private/vpce-doctor")
        dest = base / "amazon" / "ssm"
        dest.mkdir(parents=True)
        dest.chmod(0o755)
        secret = base / "secret"
        (secret / IID / "inventory" / "custom").mkdir(parents=True)
        for d in [secret, *secret.rglob("*")]:
            d.chmod(0o700)
        stolen = secret / IID / "inventory" / "custom" / "stolen.json"
        stolen.write_bytes(document("Custom:Stolen", Secret=SECRET))
        stolen.chmod(0o600)
        yield Scratch(base, state, outbox, base / "lib" / "vpce-doctor" / "ssm", dest, secret)
    finally:
        shutil.rmtree(base)


def start_as_nobody(action: Callable[[], None]) -> int:
    """Fork a child that becomes nobody (no groups, no capabilities) and runs ``action``; its pid."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.umask(0o022)
            action()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def as_nobody(action: Callable[[], None]) -> None:
    _, status = os.waitpid(start_as_nobody(action), 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the unprivileged preparation failed (traceback above)"


def stop(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def write_as_daemon(path: Path, data: bytes) -> None:
    """What the daemon does (vpce_doctor.atomic): a temp file renamed over the target."""
    tmp = path.parent / f".{path.name}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, path)


def assert_nothing_secret(scratch: Scratch, run: Run) -> None:
    copied = [p for p in scratch.dest_files() if SECRET.encode() in p.read_bytes()]
    assert not copied, f"the root-only file was copied: {copied}\n{run.stdout}"
    assert SECRET not in run.stdout + run.stderr


# --- the tests -----------------------------------------------------------------------------------------
def test_unit_command_is_the_helper_with_both_paths() -> None:
    argv = unit_settings(UNIT)["ExecStart"].split()
    assert argv == [HELPER, SOURCE, DEST], argv
    assert (inventory_copy.SOURCE_ROOT, inventory_copy.DEST_ROOT) == (SOURCE, DEST)


def test_happy_path_copies_atomically_and_only_when_changed(scratch: Scratch) -> None:
    findings, verdicts = document(), document("Custom:VpceDoctorVerdict", Verdict="session_manager")

    def publish() -> None:
        scratch.custom.mkdir(parents=True)
        write_as_daemon(scratch.custom / "VpceDoctor.json", findings)
        write_as_daemon(scratch.custom / "VpceDoctorVerdict.json", verdicts)

    as_nobody(publish)
    first = run_copy(scratch)
    assert first.returncode == 0, first
    assert [line.split()[0] for line in first.lines] == ["copied", "copied"], first.stdout
    target = scratch.dest_custom / "VpceDoctor.json"
    assert target.read_bytes() == findings
    assert (scratch.dest_custom / "VpceDoctorVerdict.json").read_bytes() == verdicts
    st = target.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600)  # root's, like the SSM agent's folder
    assert sorted(p.name for p in scratch.dest_custom.iterdir()) == ["VpceDoctor.json", "VpceDoctorVerdict.json"]

    again = run_copy(scratch)  # nothing changed: nothing rewritten, nothing said
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")
    assert target.stat().st_ino == st.st_ino

    changed = document(CheckId="resolver", Status="CRITICAL")
    as_nobody(lambda: write_as_daemon(scratch.custom / "VpceDoctor.json", changed))
    third = run_copy(scratch)
    assert third.returncode == 0 and len(third.lines) == 1 and third.lines[0].startswith("copied"), third
    assert target.read_bytes() == changed and target.stat().st_ino != st.st_ino  # renamed over, not rewritten
    print(f"\ncopy step: {first.seconds:.3f} s with 2 copies, {again.seconds:.3f} s with none")


@pytest.mark.parametrize("level", ["outbox", "instance", "inventory", "custom"])
def test_a_directory_symlink_is_not_followed(scratch: Scratch, level: str) -> None:
    def plant() -> None:
        if level == "outbox":  # the outbox itself (its parent is the unprivileged user's)
            os.rename(scratch.outbox, scratch.state / "ssm.real")
            os.symlink(scratch.secret, scratch.outbox)
            return
        parts = {"instance": [IID], "inventory": [IID, "inventory"],
                 "custom": [IID, "inventory", "custom"]}[level]
        link = scratch.outbox.joinpath(*parts)
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(scratch.secret.joinpath(*parts), link)

    as_nobody(plant)
    result = run_copy(scratch)
    assert_nothing_secret(scratch, result)
    assert result.returncode == 0, result
    assert len(result.lines) == 1 and "a symlink" in result.lines[0], result.stdout


def test_a_file_of_another_owner_is_refused(scratch: Scratch) -> None:
    # What a hard link to root's file would give where fs.protected_hardlinks=0.
    as_nobody(lambda: scratch.custom.mkdir(parents=True))
    planted = scratch.custom / "stolen.json"
    os.link(scratch.secret / IID / "inventory" / "custom" / "stolen.json", planted)
    result = run_copy(scratch)
    assert_nothing_secret(scratch, result)
    assert result.returncode == 0 and "owned by uid 0" in result.stdout, result


def test_a_fifo_is_named_and_skipped(scratch: Scratch) -> None:
    def plant() -> None:
        scratch.custom.mkdir(parents=True)
        os.mkfifo(scratch.custom / "Fifo.json")
        write_as_daemon(scratch.custom / "VpceDoctor.json", document())

    as_nobody(plant)
    result = run_copy(scratch, timeout=5)
    assert result.returncode == 0, result
    assert [p.name for p in scratch.dest_files()] == ["VpceDoctor.json"]
    assert any(line.startswith("skipped") and "Fifo.json" in line and "not a regular file" in line
               for line in result.lines), result.stdout


def test_a_fifo_swapped_in_never_blocks_the_copy(scratch: Scratch) -> None:
    """The name flips between a regular file and a FIFO as fast as the attacker can rename: every
    run must end promptly (the old command's dd blocked forever on a FIFO swapped in after its -f)."""
    runs, per_run_s = 30, 5.0
    stage = scratch.outbox / IID / "stage"  # same file system; the copy step never looks here
    target = scratch.custom / "VpceDoctor.json"
    regular = document()

    def prepare() -> None:
        scratch.custom.mkdir(parents=True)
        stage.mkdir()

    as_nobody(prepare)

    def swap_forever() -> None:
        while True:
            os.mkfifo(stage / "f")
            os.rename(stage / "f", target)
            (stage / "r").write_bytes(regular)
            os.rename(stage / "r", target)

    swapper = start_as_nobody(swap_forever)
    try:
        took = [run_copy(scratch, timeout=per_run_s) for _ in range(runs)]
    finally:
        stop(swapper)
    assert all(r.returncode == 0 for r in took), [r.stdout for r in took if r.returncode]
    for path in scratch.dest_files():  # whatever got through is the regular file's content, whole
        assert path.is_file() and not path.is_symlink() and path.read_bytes() == regular, path
    print(f"\n{runs} runs against a FIFO swapper: slowest {max(r.seconds for r in took):.3f} s")


def test_a_leased_file_does_not_stall_the_copy(scratch: Scratch) -> None:
    """The owner of a file can hold a write lease on it: a plain open() by root then waits for the
    lease break (fs.lease-break-time, 45 s by default); O_NONBLOCK makes it fail at once."""
    target = scratch.custom / "VpceDoctor.json"
    ready_r, ready_w = os.pipe()
    hold_r, hold_w = os.pipe()

    def hold_lease() -> None:
        os.close(hold_w)  # the parent's ends: closing its copies is what ends the waits
        os.close(ready_r)
        signal.signal(signal.SIGIO, signal.SIG_IGN)  # the lease-break notice would end the holder
        scratch.custom.mkdir(parents=True)
        write_as_daemon(target, document())
        fd = os.open(target, os.O_RDONLY)
        try:
            fcntl.fcntl(fd, getattr(fcntl, "F_SETLEASE", 1024), fcntl.F_WRLCK)
        except OSError as exc:  # fs.leases-enable=0, or a file system without leases
            os.write(ready_w, f"0{exc}".encode())
            return
        os.write(ready_w, b"1")
        os.read(hold_r, 1)  # until the test is done (or its end closes the pipe)

    holder = start_as_nobody(hold_lease)
    os.close(ready_w)  # the child's copies only: its end (or death) ends the reads below
    os.close(hold_r)
    try:
        ready = os.read(ready_r, 200)
        if ready.startswith(b"0"):
            pytest.skip(f"no file leases here: {ready[1:].decode(errors='replace')}")
        assert ready == b"1", "the lease holder died (traceback above)"
        result = run_copy(scratch, timeout=5)
    finally:
        os.close(hold_w)
        os.close(ready_r)
        os.waitpid(holder, 0)
    assert result.returncode == 0 and scratch.dest_files() == [], result
    assert len(result.lines) == 1 and "cannot open" in result.lines[0], result.stdout
    print(f"\na leased file: skipped in {result.seconds:.3f} s")


def test_an_oversized_file_is_refused_not_truncated(scratch: Scratch) -> None:
    big = document(Padding="x" * (2 * 1024 * 1024))  # 2 MiB of valid JSON

    def plant() -> None:
        scratch.custom.mkdir(parents=True)
        write_as_daemon(scratch.custom / "Big.json", big)

    as_nobody(plant)
    result = run_copy(scratch)
    assert result.returncode == 0, result
    assert scratch.dest_files() == [], "a part of the 2 MiB file reached the agent's folder"
    assert len(result.lines) == 1 and f"more than {inventory_copy.MAX_FILE_BYTES}" in result.lines[0], result.stdout


def test_invalid_json_never_reaches_the_agents_folder(scratch: Scratch) -> None:
    def plant() -> None:
        scratch.custom.mkdir(parents=True)
        write_as_daemon(scratch.custom / "Broken.json", b'{"SchemaVersion": "1.0", "TypeName": "Cus')
        write_as_daemon(scratch.custom / "Deep.json", b"[" * 200000 + b"]" * 200000)

    as_nobody(plant)
    result = run_copy(scratch)
    assert result.returncode == 0 and scratch.dest_files() == [], result
    assert sum("not valid JSON" in line for line in result.lines) == 2, result.stdout


def test_50000_files_give_a_bounded_output(scratch: Scratch) -> None:
    count = 50000

    def plant() -> None:
        scratch.custom.mkdir(parents=True)
        for i in range(count // 2):  # empty: inodes only, fine on a tmpfs /run
            os.close(os.open(scratch.custom / f"f{i:05d}.json", os.O_CREAT | os.O_WRONLY, 0o644))
            os.close(os.open(scratch.custom / f"bad name {i:05d}.json", os.O_CREAT | os.O_WRONLY, 0o644))

    as_nobody(plant)
    result = run_copy(scratch)
    assert result.returncode == 0, result.stderr
    assert len(result.lines) <= MAX_OUTPUT_LINES, f"{len(result.lines)} lines:\n" + "\n".join(result.lines[:40])
    assert result.lines[-1].startswith("stopped "), result.lines[-1]  # the cap is always said, last
    assert len(scratch.dest_files()) <= inventory_copy.MAX_FILES
    print(f"\n{count} files in the outbox: {len(result.lines)} lines of output, {result.seconds:.2f} s")


def test_a_newline_in_a_name_cannot_forge_a_journal_line(scratch: Scratch) -> None:
    forged = "x\n<3>vpce-doctor-inventory: FORGED root error\n.json"

    def plant() -> None:
        scratch.custom.mkdir(parents=True)
        (scratch.custom / forged).write_bytes(document())
        (scratch.outbox / f"{IID}\n<2>FORGED too").mkdir()

    as_nobody(plant)
    # With stdout on the journal, each line starts with its own <priority>: nothing else may.
    result = run_copy(scratch, env={"JOURNAL_STREAM": "0:0"})
    assert result.returncode == 0, result
    own_line = re.compile(r"<[3-6]>(copied|skipped|stopped|error|\d+ more) ")
    assert len(result.lines) == 2 and all(own_line.match(line) for line in result.lines), result.stdout
    assert sum("FORGED" in line for line in result.lines) == 2
    assert "\\n<3>vpce-doctor-inventory: FORGED" in result.stdout and "\\n<2>FORGED" in result.stdout
    assert scratch.dest_files() == []


def test_missing_destination_is_real_trouble(scratch: Scratch) -> None:
    def publish() -> None:
        scratch.custom.mkdir(parents=True)
        write_as_daemon(scratch.custom / "VpceDoctor.json", document())

    as_nobody(publish)
    shutil.rmtree(scratch.dest)
    result = run_copy(scratch)
    assert result.returncode == 1 and len(result.lines) == 1 and result.lines[0].startswith("error:"), result


# --- the helper's pieces ---------------------------------------------------------------------------------
def test_escape_keeps_a_name_on_one_printable_line() -> None:
    shown = inventory_copy.escape("a\nb\r\x1b[31m\"\\é" + "z" * 200)
    assert shown.isascii() and shown.isprintable() and len(shown) <= inventory_copy.MAX_NAME_SHOWN * 4 + 5
    assert shown.startswith('"a\\nb\\r\\x1b[31m\\"\\\\\\xc3\\xa9zz') and shown.endswith('..."')
    assert inventory_copy.escape(os.fsdecode(b"bad\xff")) == '"bad\\xff"'


def test_read_limited_refuses_what_grew_past_the_limit(tmp_path: Path) -> None:
    # st_size said "small" before the read: what counts is what the read returns.
    path = tmp_path / "grown.json"
    path.write_bytes(b"x" * 11)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert inventory_copy.read_limited(fd, limit=10) is None
        os.lseek(fd, 0, os.SEEK_SET)
        assert inventory_copy.read_limited(fd, limit=11) == b"x" * 11
    finally:
        os.close(fd)


def test_bad_arguments_are_a_usage_error(capsys: pytest.CaptureFixture) -> None:
    assert inventory_copy.main(["--help"]) == 2
    assert inventory_copy.main(["a", "b", "c"]) == 2
    assert "usage: vpce-doctor-copy-inventory" in capsys.readouterr().err
