"""The shipped units pass ``systemd-analyze verify`` and ``systemd-analyze security --offline``.

Both run on the unit files exactly as shipped, under ``--root`` of a scratch tree that holds them,
the host's own unit directory (for sysinit.target and friends) and stand-ins for the executables
they name (``verify`` only checks that those exist and are executable). ``verify`` exits 0 even
when it prints warnings, so the test asserts it prints nothing at all. No PID 1 systemd needed;
systemd-analyze comes with the ``systemd`` package (Debian/Ubuntu and Amazon Linux alike).
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT_DIR = REPO / "systemd"
SERVICES = ("vpce-doctor.service", "vpce-doctor-check.service", "vpce-doctor-inventory.service")
TIMERS = ("vpce-doctor-check.timer", "vpce-doctor-inventory.timer")
MAX_EXPOSURE = 1.5  # the bound for `systemd-analyze security --offline=true`
ANALYZE = shutil.which("systemd-analyze")
HOST_UNITS = next((p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
                   if (p / "sysinit.target").exists()), None)

pytestmark = pytest.mark.skipif(ANALYZE is None or HOST_UNITS is None,
                                reason="systemd-analyze is not installed (apt-get install systemd; "
                                       "dnf install systemd)")


def unit_lines(name: str) -> List[Tuple[str, str, str]]:
    """(section, key, value) in file order; systemd allows a key more than once."""
    section, out = "", []
    for raw in (UNIT_DIR / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif "=" in line:
            key, value = line.split("=", 1)
            out.append((section, key.strip(), value.strip()))
    return out


def settings(name: str, section: str = "Service") -> Dict[str, str]:
    """The last value of each key (what systemd uses for single-valued keys)."""
    return {k: v for s, k, v in unit_lines(name) if s == section}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file system root with the shipped units, the host's units and the executables they name."""
    assert HOST_UNITS is not None  # the module is skipped otherwise
    root = tmp_path_factory.mktemp("unitroot")
    shutil.copytree(HOST_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    for name in SERVICES + TIMERS:
        shutil.copy(UNIT_DIR / name, root / "usr/lib/systemd/system" / name)
    (root / "usr/bin").mkdir(parents=True)
    (root / "bin").symlink_to("usr/bin")  # merged /usr, as on Amazon Linux 2023 and Debian 12
    for name in SERVICES:
        for _, key, value in unit_lines(name):
            if key.startswith("Exec"):
                exe = value.lstrip("-@:+!").split()[0]
                stub = root / exe.lstrip("/")
                stub.parent.mkdir(parents=True, exist_ok=True)
                stub.write_text("#!/bin/sh\nexit 0\n")
                stub.chmod(0o755)
    return root


def analyze(*args: str) -> subprocess.CompletedProcess:
    assert ANALYZE is not None
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, timeout=60)


def test_verify_is_clean(root: Path) -> None:
    # --man=no: the man pages named in Documentation= need not be installed where the tests run.
    result = analyze("verify", f"--root={root}", "--man=no", *SERVICES, *TIMERS)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), \
        f"systemd-analyze verify:\n{result.stdout}{result.stderr}"


def test_verify_would_notice_a_problem(root: Path) -> None:
    # The check above means something: the same call does complain about a flawed unit.
    bad = root / "usr/lib/systemd/system/vpce-doctor-bad.service"
    bad.write_text((UNIT_DIR / "vpce-doctor.service").read_text()
                   .replace("ProtectSystem=strict", "ProtectSystem=strict\nProtectSytem=yes")
                   .replace("/usr/bin/vpce-doctor daemon", "/usr/bin/vpce-doctor-missing daemon"))
    try:
        result = analyze("verify", f"--root={root}", "--man=no", bad.name)
    finally:
        bad.unlink()
    output = result.stdout + result.stderr
    assert "Unknown key 'ProtectSytem'" in output and "vpce-doctor-missing" in output, output


@pytest.mark.parametrize("unit", SERVICES)
def test_security_exposure_is_at_most_1_5(root: Path, unit: str) -> None:
    result = analyze("security", "--offline=true", f"--root={root}", "--no-pager", unit)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, f"no exposure level in:\n{result.stdout}{result.stderr}"
    exposure = float(match.group(1))
    failing = [line for line in result.stdout.splitlines() if line.startswith("✗")]
    assert exposure <= MAX_EXPOSURE, f"{unit}: exposure {exposure} > {MAX_EXPOSURE}:\n" + "\n".join(failing)


def test_the_daemon_unit_has_the_systemd_contract() -> None:
    s = settings("vpce-doctor.service")
    assert s["Type"] == "notify" and s["NotifyAccess"] == "main"
    assert s["ExecStart"] == "/usr/bin/vpce-doctor daemon"
    assert s["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert s["Restart"] == "on-failure" and s["WatchdogSec"]
    assert "Documentation" in settings("vpce-doctor.service", "Unit")
    check = settings("vpce-doctor-check.service")
    assert check["Type"] == "oneshot" and check["ExecStart"] == "/usr/bin/vpce-doctor daemon --once"


def test_check_service_keeps_the_daemons_sandbox() -> None:
    # Written out twice (units cannot include each other): the sandboxes must not drift apart.
    sandbox = {k: v for k, v in settings("vpce-doctor.service").items()
               if k not in ("Type", "NotifyAccess", "ExecStart", "ExecReload", "WatchdogSec", "Restart",
                            "RestartSec", "TimeoutStartSec", "TimeoutStopSec")}
    check = settings("vpce-doctor-check.service")
    assert {k: check.get(k) for k in sandbox} == sandbox


def test_copy_step_runs_the_helper_with_a_start_timeout() -> None:
    # A oneshot without TimeoutStartSec= waits forever for a hung run, and the timer with it.
    s = settings("vpce-doctor-inventory.service")
    assert s["Type"] == "oneshot" and s["User"] == "root"
    assert s["ExecStart"] == "/usr/bin/vpce-doctor-copy-inventory /var/lib/vpce-doctor/ssm /var/lib/amazon/ssm"
    timeout = re.fullmatch(r"(\d+)s", s.get("TimeoutStartSec", ""))
    assert timeout and 0 < int(timeout.group(1)) <= 60, s.get("TimeoutStartSec")
    assert s["CapabilityBoundingSet"] == "CAP_DAC_READ_SEARCH" and s["ReadWritePaths"] == "/var/lib/amazon/ssm"
