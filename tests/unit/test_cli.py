"""The command line as a user meets it: --version, --help, exit codes, one-line errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vpce_doctor import __version__
from vpce_doctor.cli import main

# Facts from the config, IMDS off, everything on loopback: no check may leave this machine.
LOOPBACK_CONFIG = """\
imds: {enabled: false}
facts:
  region: us-east-1
  vpc_cidr: 127.0.0.0/8
  vpc_cidrs: [127.0.0.0/8]
  instance_id: i-0123456789abcdef0
  vpc_id: vpc-0123456789abcdef0
  subnet_id: subnet-0123456789abcdef0
  public_ipv4: null
  instance_profile_arn: arn:aws:iam::123456789012:instance-profile/SSMInstanceProfile
resolver: 127.0.0.1
timeouts: {deadline_s: 4, dns_s: 0.5}
"""


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"vpce-doctor {__version__}"


def test_help_explains_each_subcommand(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "check" in out and "config" in out and "private" in out.lower()


def test_usage_error_is_exit_3_not_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["check", "--format", "xml"])
    assert exc.value.code == 3


def test_bad_config_is_one_line_exit_3(tmp_path: Path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("egress:\n  timeout_s: fast\n")
    assert main(["check", "--config", str(bad)]) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "egress.timeout_s" in err and "Traceback" not in err


def test_config_check_ok_and_bad(tmp_path: Path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text(LOOPBACK_CONFIG)
    assert main(["config", "check", str(good)]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["config", "check", str(tmp_path / "missing.yaml")]) == 3


def test_unknown_only_selector_is_exit_3(tmp_path: Path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(LOOPBACK_CONFIG)
    assert main(["check", "--config", str(cfg), "--only", "nosuchcheck"]) == 3
    assert "nosuchcheck" in capsys.readouterr().err


def test_instance_facts_only_run_in_a_subprocess_gives_json(tmp_path: Path):
    """The console entry point end to end, on checks that need no network (facts from config)."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(LOOPBACK_CONFIG + "checks: {ssm_agent: false}\n")
    proc = subprocess.run([sys.executable, "-m", "vpce_doctor", "check", "--config", str(cfg), "--format", "json",
                           "--only", "instance"], capture_output=True, text=True, timeout=30)
    doc = json.loads(proc.stdout)
    ids = {f["id"]: f for f in doc["findings"]}
    assert ids["instance.profile"]["status"] == "OK" and ids["instance.public_ip"]["status"] == "OK"
    assert ids["imds"]["status"] == "OK" and proc.returncode == 0
