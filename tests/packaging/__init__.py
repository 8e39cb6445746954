"""Packaging tests: the wheel and sdist (test_wheel.py), the Amazon Linux 2023 RPM (test_rpm.py),
the SSM documents and the docs.

Shared here, for the wheel and RPM tests: where the interpreters are, fresh virtualenvs, the AL2023
pins, a hermetic way to run the agent, and the rule for missing tools: skipped with the reason on
a developer machine, a failure in CI (CI=true), where the scripts must have installed them.

Network: pip talks to the configured package index; the agent runs with a config that needs no
network at all (every fact set, IMDS off) and, as root, inside a fresh network namespace that
has only loopback, so even a bug could not reach anything.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import pytest

REPO = Path(__file__).resolve().parents[2]
PINS_FILE = Path(__file__).resolve().parent / "al2023-constraints.txt"
PIP_TIMEOUT_S = 600.0
RUN_TIMEOUT_S = 60.0

# A config that needs nothing from the network: every fact set, IMDS off, the optional API checks
# off. `check --only instance` then proves the install end to end (config, IMDS gate, runner, report).
LOOPBACK_CONFIG = """\
facts:
  region: us-east-1
  instance_id: i-0123456789abcdef0
  mac: "0e:12:34:56:78:9a"
  vpc_id: vpc-0123456789abcdef0
  subnet_id: subnet-0123456789abcdef0
  vpc_cidr: 10.0.0.0/16
  subnet_cidr: 10.0.1.0/24
  local_ipv4: 10.0.1.10
  public_ipv4: null
  instance_profile_arn: arn:aws:iam::123456789012:instance-profile/SSMInstanceProfile
imds:
  enabled: false
checks:
  ssm_agent: false
  ec2_api: false
"""
INSTANCE_FINDINGS = {"imds", "instance.public_ip", "instance.profile", "instance.ipv6"}


def pins() -> Dict[str, str]:
    """AL2023's versions: distribution name -> version."""
    out: Dict[str, str] = {}
    for line in PINS_FILE.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            out[name.strip()] = version.strip()
    return out


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require(ok: bool, what: str) -> None:
    """Skip with ``what`` as the reason, except in CI, where a missing prerequisite is a failure."""
    if ok:
        return
    if in_ci():
        pytest.fail(f"CI=true but {what}", pytrace=False)
    pytest.skip(what)


def _version_of(python: str) -> Optional[tuple]:
    try:
        out = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return tuple(int(x) for x in out.strip().split("."))


def _pyenv_pythons(prefix: str) -> List[str]:
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    return [str(p / "bin" / "python3") for p in sorted(root.glob(prefix + "*"), reverse=True)]


def find_python(minimum: tuple, maximum: Optional[tuple] = None) -> Optional[str]:
    """A CPython with minimum <= version <= maximum (major.minor): $PYTHON39 for 3.9, this
    interpreter, pyenv's, then pythonX.Y on PATH."""
    candidates: List[str] = []
    if maximum == (3, 9):
        candidates += [os.environ.get("PYTHON39", ""), *_pyenv_pythons("3.9."), "python3.9"]
    else:
        candidates.append(sys.executable)
        for minor in range(minimum[1], minimum[1] + 4):
            candidates += _pyenv_pythons(f"3.{minor}.") + [f"python3.{minor}"]
    for cand in candidates:
        path = shutil.which(cand) if cand else None
        version = _version_of(path) if path else None
        if version and version >= minimum and (maximum is None or version <= maximum):
            return path
    return None


def run(argv: Sequence[str], timeout: float = RUN_TIMEOUT_S, env: Optional[Mapping[str, str]] = None,
        cwd: Optional[Path] = None, check: bool = True) -> subprocess.CompletedProcess:
    """Runs a command; on failure the assertion shows the command and its output."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          env=dict(env) if env is not None else None, cwd=str(cwd) if cwd else None)
    if check:
        assert proc.returncode == 0, (f"{' '.join(map(str, argv))} exited {proc.returncode}\n"
                                      f"stdout: {proc.stdout[-3000:]}\nstderr: {proc.stderr[-3000:]}")
    return proc


def make_venv(python: str, path: Path, packages: Sequence[str], constraints: Optional[Path] = None) -> Path:
    """A fresh virtualenv at ``path`` with ``packages`` (pip arguments) installed; returns its python."""
    run([python, "-m", "venv", str(path)], timeout=120)
    venv_python = path / "bin" / "python"
    if packages:
        argv = [str(venv_python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        if constraints is not None:
            argv += ["-c", str(constraints)]
        run(argv + list(packages), timeout=PIP_TIMEOUT_S)
    return venv_python


def installed_versions(python: Path, names: Sequence[str]) -> Dict[str, str]:
    code = ("import sys, json\nfrom importlib.metadata import version\n"
            "print(json.dumps({n: version(n) for n in sys.argv[1:]}))")
    import json
    return json.loads(run([str(python), "-c", code, *names]).stdout)


def agent_env(extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """No AWS credentials, config files, IMDS or proxies of the host: nothing to reach out with."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "PYTHON")) and k.lower() not in
           {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}}
    env.update({"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull})
    env.update(extra or {})
    return env


def isolated(argv: Sequence[str]) -> List[str]:
    """As root, run ``argv`` in a new network namespace (loopback only, and down)."""
    unshare = shutil.which("unshare")
    if os.geteuid() == 0 and unshare:
        return [unshare, "--net", "--", *argv]
    return list(argv)
