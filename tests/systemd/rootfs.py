"""A Debian bookworm root file system for booting systemd in systemd-nspawn, built once and cached.

``ensure_rootfs()`` returns the path of a ready tree under ``/var/cache/vpce-doctor-test/`` and
builds it with debootstrap when it is missing (a few minutes, network to the Debian mirror; the
tests themselves never touch the network). The tree is built in a temporary folder and renamed into
place only when complete, under a file lock, so an interrupted or concurrent build is never reused.
The cache key covers everything that shapes the tree: a changed package list builds a new tree.

The tree is never modified by the tests: they boot it with ``--volatile=overlay`` (changes live in
memory) and bind-mount the agent, the unit and the config.

    python -m tests.systemd.rootfs            # build (or find) the tree and print its path
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

CACHE_ROOT = Path(os.environ.get("VPCE_TEST_CACHE", "/var/cache/vpce-doctor-test"))
SUITE = "bookworm"
MIRROR = os.environ.get("VPCE_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# systemd as PID 1 (procps: /bin/kill for ExecReload=), and the agent's runtime dependencies from
# Debian (python3 is 3.11 there).
PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "procps", "python3", "python3-dnspython", "python3-yaml",
    "python3-requests", "python3-psutil", "python3-boto3",
)
# Units that only make noise in a headless container: a getty on a console nobody reads restarts
# forever; apt's timers would try the (absent) network.
MASKED_UNITS = (
    "console-getty.service", "getty@.service", "container-getty@.service", "apt-daily.timer",
    "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer", "systemd-networkd-wait-online.service",
)
BUILDER_VERSION = "1"  # bump when the steps below change
BUILD_TIMEOUT_S = 1800.0
STAMP = ".vpce-doctor-rootfs-complete"


class RootfsUnavailable(RuntimeError):
    """The tree cannot be built here (a tool is missing); the message says what to install."""


def cache_key() -> str:
    text = "\n".join([BUILDER_VERSION, SUITE, MIRROR, *PACKAGES, *MASKED_UNITS])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def rootfs_path() -> Path:
    return CACHE_ROOT / f"rootfs-{SUITE}-{cache_key()}"


def cached_rootfs() -> Optional[Path]:
    path = rootfs_path()
    return path if (path / STAMP).is_file() else None


def ensure_rootfs(log: Optional[Path] = None) -> Path:
    """The cached tree, built first when absent. ``log`` receives debootstrap's output."""
    found = cached_rootfs()
    if found:
        return found
    if shutil.which("debootstrap") is None:
        raise RootfsUnavailable("debootstrap is not installed (apt-get install debootstrap systemd-container)")
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    with open(CACHE_ROOT / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent build finishes first; then we reuse it
        found = cached_rootfs()
        if found:
            return found
        return _build(rootfs_path(), log or CACHE_ROOT / f"build-{cache_key()}.log")


def _build(target: Path, log: Path) -> Path:
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    _remove_stale(target.parent)
    start = time.monotonic()
    cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(tmp), MIRROR]
    with open(log, "w") as out:
        try:
            subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=True,
                           timeout=BUILD_TIMEOUT_S)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeError(f"debootstrap of {SUITE} from {MIRROR} failed ({exc}); see {log}") from None
    _configure(tmp)
    (tmp / STAMP).write_text(f"built in {time.monotonic() - start:.0f} s by {sys.argv[0]}\n")
    os.rename(tmp, target)  # atomic: a tree without the stamp is never seen under the final name
    for old in target.parent.glob(f"rootfs-{SUITE}-*"):  # trees (and logs) of older package lists
        if old != target:
            shutil.rmtree(old, ignore_errors=True)
    for old_log in target.parent.glob("build-*.log"):
        if old_log != log:
            old_log.unlink()
    return target


def _configure(root: Path) -> None:
    system = root / "etc/systemd/system"
    for unit in MASKED_UNITS:
        link = system / unit
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to("/dev/null")
    (root / "etc/hostname").write_text("vpce-nspawn\n")
    # nspawn provides /etc/machine-id when it is empty; an empty file keeps every boot pristine.
    (root / "etc/machine-id").write_text("")
    # The agent's runtime packages come from Debian; trim the apt caches debootstrap left behind.
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)


def _remove_stale(parent: Path) -> None:
    """Half-built trees of dead builds (we hold the lock, so no live build owns one)."""
    for entry in parent.glob(".rootfs-*.tmp-*"):
        shutil.rmtree(entry, ignore_errors=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    del argv
    try:
        print(ensure_rootfs())
    except (RootfsUnavailable, RuntimeError) as exc:
        print(f"rootfs: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
