"""The Amazon Linux 2023 RPM: built with scripts/build-rpm.sh (rpmbuild + rpmlint), inspected,
installed into scratch roots (``rpm --root … --nodeps``), and the installed agent run with CPython
3.9 and AL2023's library versions: once with a config that needs no network, once in the lab on
the healthy and a broken scenario.

Outside CI a machine without rpmbuild (or root, or Python 3.9, or the lab's tools) skips these
tests with the reason; in CI (CI=true) that is a failure: the CI scripts install everything.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple

import pytest

from vpce_doctor import __version__

from . import (INSTANCE_FINDINGS, LOOPBACK_CONFIG, PINS_FILE, REPO, agent_env, find_python, installed_versions,
               isolated, make_venv, pins, require, run)

SPEC = REPO / "packaging" / "rpm" / "vpce-doctor.spec"
SITELIB = "usr/lib/python3.9/site-packages"  # AL2023's python3_sitelib (noarch: never lib64)
UNITS = sorted(p.name for p in (REPO / "systemd").iterdir() if p.suffix in (".service", ".timer"))
BUILD_TIMEOUT_S = 600.0
LAB_TIMEOUT_S = 600.0
LAB_NAME = "pkgrpm"
DISTRIBUTION_REQUIRES = {  # name -> lower bound: AL2023's own packages, nothing from PyPI
    "python3-dns": "2.1.0", "python3-pyyaml": "5.4.1",
    "python3-psutil": "5.8.0", "python3-boto3": "1.28.21", "python3-botocore": "1.31.21"}


class Built(NamedTuple):
    rpm: Path
    srpm: Path
    output: str  # build-rpm.sh's stdout: the rpmlint report and the build time
    seconds: float


def _rpm_tools() -> None:
    missing = [t for t in ("rpmbuild", "rpmlint", "rpm") if shutil.which(t) is None]
    require(not missing, f"{', '.join(missing)} not installed (apt-get install rpm rpmlint python3-packaging; "
                         "dnf install rpm-build rpmlint), or run scripts/build-rpm.sh as root once")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    _rpm_tools()
    out = tmp_path_factory.mktemp("rpm")
    env = dict(os.environ, BUILD_PYTHON=sys.executable)
    started = time.monotonic()
    proc = run(["bash", str(REPO / "scripts" / "build-rpm.sh"), str(out)], timeout=BUILD_TIMEOUT_S, env=env)
    seconds = time.monotonic() - started
    rpms = [p for p in out.glob("*.rpm") if not p.name.endswith(".src.rpm")]
    srpms = list(out.glob("*.src.rpm"))
    assert len(rpms) == 1 and len(srpms) == 1, sorted(p.name for p in out.iterdir())
    print(f"\nbuild-rpm.sh: {seconds:.1f} s\n{proc.stdout}")
    yield Built(rpms[0], srpms[0], proc.stdout, seconds)


def query(rpm_file: Path, *args: str) -> str:
    return run(["rpm", "-qp", *args, str(rpm_file)]).stdout


def test_rpmlint_reports_no_errors(built: Built) -> None:
    summary = re.search(r"(\d+) packages and (\d+) specfiles checked; (\d+) errors, (\d+) warnings", built.output)
    assert summary, built.output
    assert (summary.group(1), summary.group(2), summary.group(3)) == ("2", "1", "0"), built.output


def test_spec_matches_the_work_tree() -> None:
    spec = SPEC.read_text()
    version = re.search(r"^Version:\s*(\S+)", spec, re.M)
    assert version and version.group(1) == __version__
    units = re.search(r"^%global units (.+)$", spec, re.M)
    assert units and sorted(units.group(1).split()) == UNITS  # every unit in systemd/, scriptlets included
    for unit in UNITS:
        assert f"%{{_unitdir}}/{unit}\n" in spec


def test_rpm_is_noarch_for_python39_and_requires_only_distribution_packages(built: Built) -> None:
    assert query(built.rpm, "--qf", "%{NAME} %{VERSION} %{ARCH}") == f"vpce-doctor {__version__} noarch"
    requires = set(query(built.rpm, "--requires").splitlines())
    bounded = {r.split(" >= ")[0]: r.split(" >= ")[1] for r in requires if " >= " in r}
    assert bounded == DISTRIBUTION_REQUIRES
    assert {f"{pkg} >= {v}" for pkg, v in DISTRIBUTION_REQUIRES.items()} | {
        "python(abi) = 3.9", "/usr/bin/python3"} <= requires
    # Nothing else but rpm's own features, the scriptlets' shell and the package's config provide.
    others = requires - {f"{pkg} >= {v}" for pkg, v in DISTRIBUTION_REQUIRES.items()} - {
        "python(abi) = 3.9", "/usr/bin/python3", "/bin/sh", f"config(vpce-doctor) = {query(built.rpm, '--qf', '%{VERSION}-%{RELEASE}')}"}
    assert all(r.startswith("rpmlib(") for r in others), others
    # The pyproject lower bounds are AL2023's versions; the RPM asks for the same.
    assert {k.lower(): v for k, v in pins().items()} == {
        {"python3-dns": "dnspython", "python3-pyyaml": "pyyaml"}.get(p, p[len("python3-"):]): v
        for p, v in DISTRIBUTION_REQUIRES.items()}


def test_rpm_files_config_and_state_directory(built: Built) -> None:
    flags: Dict[str, str] = {}
    for line in query(built.rpm, "--qf", "[%{FILENAMES}\t%{FILEFLAGS:fflags}\t%{FILEMODES:perms}\n]").splitlines():
        name, flag, mode = line.split("\t")
        flags[name] = flag + " " + mode
    assert flags["/usr/bin/vpce-doctor"] == " -rwxr-xr-x"
    assert flags["/usr/bin/vpce-doctor-copy-inventory"] == " -rwxr-xr-x"  # vpce-doctor-inventory.service's
    assert flags["/etc/vpce-doctor/config.yaml"] == "cn -rw-r--r--"  # %config(noreplace), readable by the unit's user
    assert flags["/var/lib/vpce-doctor"].startswith("g d")  # %ghost dir: systemd's StateDirectory= makes it
    assert {n for n in flags if n.startswith("/usr/lib/systemd/system/")} == {
        f"/usr/lib/systemd/system/{u}" for u in UNITS}
    assert flags["/usr/share/doc/vpce-doctor/systemd.md"].startswith("d ")  # the units' Documentation=
    assert f"/{SITELIB}/vpce_doctor/cli.py" in flags and f"/{SITELIB}/vpce_doctor/checks/s3.py" in flags
    assert not [n for n in flags if "/lib64/" in n or "/python3.1" in n]

    scripts = query(built.rpm, "--scripts")
    for phase, action in (("postinstall", "preset"), ("preuninstall", "disable"), ("postuninstall", "restart")):
        body = scripts.split(f"{phase} scriptlet", 1)[1].split("scriptlet", 1)[0]
        assert action in body and all(u in body for u in UNITS), (phase, body)


def _sh_root(root: Path) -> None:
    """/bin/sh (the host's, with its libraries) in ``root``, so the scriptlets really run there."""
    sh = Path(os.path.realpath("/bin/sh"))
    (root / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(sh, root / "bin" / "sh")
    for lib in re.findall(r"(/\S+) \(0x", run(["ldd", str(sh)]).stdout):
        dest = root / lib.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lib, dest)


def install(rpm_file: Path, root: Path) -> subprocess.CompletedProcess:
    require(os.geteuid() == 0, "installing into a scratch root needs root (file owners)")
    _sh_root(root)
    run(["rpm", "--root", str(root), "--initdb"])
    proc = run(["rpm", "--root", str(root), "--nodeps", "-i", str(rpm_file)])
    assert "scriptlet failed" not in proc.stderr and "error:" not in proc.stderr, proc.stderr
    return proc


def verify(root: Path) -> str:
    """``rpm -V``: empty when every installed file is as packaged."""
    return run(["rpm", "--root", str(root), "-V", "--nodeps", "vpce-doctor"], check=False).stdout.strip()


@pytest.fixture(scope="module")
def root(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scratch-root")
    install(built.rpm, root)
    return root


@pytest.fixture(scope="module")
def python39_pins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CPython 3.9 with AL2023's library versions and nothing else: the agent comes from the RPM."""
    python = find_python((3, 9), (3, 9))
    require(python is not None, "no CPython 3.9 found (pyenv install 3.9.18, or set PYTHON39)")
    assert python is not None
    venv_python = make_venv(python, tmp_path_factory.mktemp("py39") / "venv", ["-r", str(PINS_FILE)])
    assert installed_versions(venv_python, list(pins())) == pins()
    return venv_python


def agent_argv(root: Path, python: Path) -> List[str]:
    """The installed /usr/bin/vpce-doctor, run by the pinned 3.9 with the root's site-packages
    (on AL2023 /usr/bin/python3 is that 3.9 and finds both by itself)."""
    return ["env", f"PYTHONPATH={root / SITELIB}", str(python), str(root / "usr/bin/vpce-doctor")]


def test_install_into_a_scratch_root(root: Path) -> None:
    assert verify(root) == ""
    assert (root / "etc/vpce-doctor/config.yaml").read_bytes() == (REPO / "config.example.yaml").read_bytes()
    for unit in UNITS:
        assert (root / "usr/lib/systemd/system" / unit).read_bytes() == (REPO / "systemd" / unit).read_bytes()
    launcher = (root / "usr/bin/vpce-doctor").read_text()
    assert launcher.startswith("#!/usr/bin/python3 -s\n") and "from vpce_doctor.cli import main" in launcher
    copier = (root / "usr/bin/vpce-doctor-copy-inventory").read_text()
    assert copier.startswith("#!/usr/bin/python3 -s\n") and "from vpce_doctor.inventory_copy import main" in copier
    assert (root / f"{SITELIB}/vpce_doctor-{__version__}.dist-info/INSTALLER").read_text().strip() == "rpm"
    assert not (root / "var/lib/vpce-doctor").exists()  # %ghost: systemd creates it


def test_installed_agent_runs_on_python39_with_the_al2023_pins(root: Path, python39_pins: Path,
                                                                tmp_path: Path) -> None:
    env = agent_env()
    where = run(["env", f"PYTHONPATH={root / SITELIB}", str(python39_pins), "-c",
                 "import sys, vpce_doctor; print(vpce_doctor.__file__); print('%d.%d' % sys.version_info[:2])"],
                env=env).stdout.split()
    assert where == [str(root / SITELIB / "vpce_doctor" / "__init__.py"), "3.9"]
    assert run(isolated(agent_argv(root, python39_pins) + ["--version"]), env=env).stdout.strip() == \
        f"vpce-doctor {__version__}"
    config = tmp_path / "config.yaml"
    config.write_text(LOOPBACK_CONFIG)
    out = run(isolated(agent_argv(root, python39_pins) + ["check", "--only", "instance", "--config", str(config),
                                                          "--format", "json"]), env=env, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert {f["id"]: f["status"] for f in json.loads(out.stdout)["findings"]} == {i: "OK" for i in INSTANCE_FINDINGS}


def _lab_ready() -> str:
    """Why the lab cannot run here ('' when it can)."""
    if os.geteuid() != 0:
        return "the lab needs root"
    from tests.lab import lab as labmod
    missing = [t for t in labmod.REQUIRED_TOOLS if shutil.which(t) is None and
               not any(Path(d, t).exists() for d in ("/usr/sbin", "/sbin"))]
    if missing:
        return f"the lab's tools are missing: {', '.join(missing)} (scripts/setup.sh installs them)"
    if subprocess.run([sys.executable, "-c", "import moto"], capture_output=True, timeout=60).returncode != 0:
        return f"moto is not installed for {sys.executable} (the lab's AWS layer)"
    return ""


@pytest.fixture
def lab_down() -> Iterator[None]:
    """Whatever happens, the lab this test brings up is torn down."""
    yield
    subprocess.run([sys.executable, "-m", "tests.lab", "down", "--name", LAB_NAME], cwd=REPO,
                   capture_output=True, timeout=120)


def test_installed_agent_in_the_lab_healthy_and_broken(root: Path, python39_pins: Path, lab_down: None) -> None:
    why = _lab_ready()
    require(not why, why)
    agent = " ".join(agent_argv(root, python39_pins))
    out = run([sys.executable, "-m", "tests.lab", "verify", "--name", LAB_NAME, "--agent", agent, "-v",
               "healthy", "endpoint-sg-no-443"], timeout=LAB_TIMEOUT_S, cwd=REPO, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"^PASS healthy \(exit 0", out.stdout, re.M), out.stdout
    assert re.search(r"^PASS endpoint-sg-no-443 \(exit 2", out.stdout, re.M), out.stdout
    # The shipped byte-code was valid for 3.9: nothing in the package was rewritten by the runs.
    assert verify(root) == ""


def test_erase_keeps_a_changed_config_and_removes_the_rest(built: Built, tmp_path: Path) -> None:
    root = tmp_path / "root"
    install(built.rpm, root)
    (root / "etc/vpce-doctor/config.yaml").write_text("timeouts:\n  deadline_s: 20\n")
    # What systemd's DynamicUser=/StateDirectory= leave behind: the state outlives the package.
    (root / "var/lib/private/vpce-doctor").mkdir(parents=True)
    (root / "var/lib/vpce-doctor").symlink_to("private/vpce-doctor")
    proc = run(["rpm", "--root", str(root), "--nodeps", "-e", "vpce-doctor"])
    assert "scriptlet failed" not in proc.stderr and "error:" not in proc.stderr, proc.stderr
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and not str(p.relative_to(root)).startswith(("bin/", "lib", "usr/lib/x86_64",
                                                                                "var/lib/rpm", "root/.rpmdb")))
    assert left == ["etc/vpce-doctor/config.yaml.rpmsave"]
    assert (root / "var/lib/private/vpce-doctor").is_dir()
