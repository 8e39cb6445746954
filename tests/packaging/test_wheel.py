"""The wheel and the sdist, built with ``python -m build`` as a user would, then installed into
fresh virtualenvs: CPython 3.9 with Amazon Linux 2023's library versions, and 3.11+ with the
latest releases. Each install runs ``vpce-doctor --version`` and ``vpce-doctor check --only
instance`` with a config that needs no network (see tests/packaging/__init__.py)."""
from __future__ import annotations

import email
import importlib.util
import json
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import pytest

from vpce_doctor import __version__

from . import (INSTANCE_FINDINGS, LOOPBACK_CONFIG, PINS_FILE, REPO, agent_env, find_python, installed_versions,
               isolated, make_venv, pins, require, run)

DIST = "vpce_doctor"
UNIT_FILES = sorted(p.name for p in (REPO / "systemd").iterdir() if p.suffix in (".service", ".timer"))
DATA = {"config.example.yaml": REPO / "config.example.yaml", "systemd/README.md": REPO / "systemd" / "README.md",
        **{f"systemd/{u}": REPO / "systemd" / u for u in UNIT_FILES}}


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[Path, Path]]:
    """(wheel, sdist). No --wheel/--sdist: build makes the sdist, then the wheel from it."""
    require(importlib.util.find_spec("build") is not None,
            "`build` is not installed in this environment (pip install -e '.[test]')")
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)], timeout=600)
    wheels, sdists = list(out.glob("*.whl")), list(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in out.iterdir())
    yield wheels[0], sdists[0]


def _expected_modules() -> List[str]:
    """Every module of the work tree, by its installed name (agent/ -> vpce_doctor, checks/ -> vpce_doctor.checks)."""
    names = [f"vpce_doctor/{p.relative_to(REPO / 'agent')}" for p in (REPO / "agent").rglob("*.py")]
    names += [f"vpce_doctor/checks/{p.relative_to(REPO / 'checks')}" for p in (REPO / "checks").rglob("*.py")]
    return sorted(n for n in names if "__pycache__" not in n)


def test_wheel_holds_the_packages_the_data_and_nothing_else(dists: Tuple[Path, Path]) -> None:
    wheel, _ = dists
    assert wheel.name == f"{DIST}-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        data_prefix = f"{DIST}-{__version__}.data/data/share/vpce-doctor/"
        data = {n[len(data_prefix):]: zf.read(n) for n in names if n.startswith(data_prefix)}
        info = f"{DIST}-{__version__}.dist-info/"
        meta = email.message_from_bytes(zf.read(info + "METADATA"))
        entry_points = zf.read(info + "entry_points.txt").decode()
    modules = sorted(n for n in names if n.startswith("vpce_doctor/"))
    # Every module of every subpackage (a package missing from pyproject's list fails here), and
    # never a bare top-level `agent`, `checks` or `tests`.
    assert modules == _expected_modules()
    assert not [n for n in names if not n.startswith(("vpce_doctor/", info, data_prefix))]
    # The units and the example config, byte for byte as in the work tree.
    assert data == {k: p.read_bytes() for k, p in DATA.items()}
    assert "vpce-doctor = vpce_doctor.cli:main" in entry_points
    assert "vpce-doctor-copy-inventory = vpce_doctor.inventory_copy:main" in entry_points  # the root copy step
    assert meta["Requires-Python"] == ">=3.9"
    # Lower bounds are exactly what AL2023 ships: higher would make the RPM's system packages too old.
    bounds = {r.split(">=")[0]: r.split(">=")[1] for r in meta.get_all("Requires-Dist") if "extra ==" not in r}
    assert {k.lower(): v for k, v in bounds.items()} == {k.lower(): v for k, v in pins().items()}


def test_sdist_builds_the_wheel_and_carries_units_config_and_readme(dists: Tuple[Path, Path]) -> None:
    _, sdist = dists
    top = f"{DIST}-{__version__}/"
    with tarfile.open(sdist) as tf:
        names = {m.name[len(top):] for m in tf.getmembers() if m.isfile()}
    # The spec's %prep unpacks this sdist and installs the units and the example config from it.
    assert {"pyproject.toml", "README.md", *DATA} <= names
    assert {n for n in names if n.startswith(("agent/", "checks/"))} >= {
        "agent/cli.py", "agent/__init__.py", "checks/__init__.py"}
    assert not [n for n in names if "__pycache__" in n or n.startswith((".venv", ".git/", "tests/"))]


# AL2023's 3.9 with exactly its library versions, and 3.11+ with the latest releases.
INTERPRETERS = [pytest.param("3.9", find_python((3, 9), (3, 9)), PINS_FILE, id="py3.9-al2023-pins"),
                pytest.param("3.11+", find_python((3, 11)), None, id="py3.11+-latest")]


@pytest.mark.parametrize("label, python, constraints", INTERPRETERS)
def test_wheel_installs_and_runs(label: str, python: Optional[str], constraints: Optional[Path],
                                 dists: Tuple[Path, Path], tmp_path: Path) -> None:
    require(python is not None, f"no CPython {label} found (pyenv install, or set PYTHON39)")
    assert python is not None
    wheel, _ = dists
    venv = tmp_path / "venv"
    venv_python = make_venv(python, venv, [str(wheel)], constraints)
    run([str(venv_python), "-m", "pip", "check"])
    deps = installed_versions(venv_python, list(pins()))
    if constraints is not None:
        assert deps == pins()  # exactly AL2023's versions, nothing pulled them up
    else:
        # "latest": at least the bounds; pip picked the newest releases the index has.
        assert all(tuple(map(int, deps[n].split(".")[:2])) >= tuple(map(int, v.split(".")[:2]))
                   for n, v in pins().items()), deps

    agent = venv / "bin" / "vpce-doctor"
    out = run(isolated([str(agent), "--version"]), env=agent_env())
    assert out.stdout.strip() == f"vpce-doctor {__version__}"

    config = tmp_path / "config.yaml"
    config.write_text(LOOPBACK_CONFIG)
    out = run(isolated([str(agent), "check", "--only", "instance", "--config", str(config), "--format", "json"]),
              env=agent_env(), check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["agent_version"] == __version__ and report["status"] == "OK"
    statuses: Dict[str, str] = {f["id"]: f["status"] for f in report["findings"]}
    assert statuses == {fid: "OK" for fid in INSTANCE_FINDINGS}

    # The data files land in <prefix>/share/vpce-doctor, where the systemd README points.
    share = venv / "share" / "vpce-doctor"
    assert {str(p.relative_to(share)) for p in share.rglob("*") if p.is_file()} == set(DATA)
