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


@pytest.mark.parametrize("selector,said", [("nosuchcheck", "no check matches nosuchcheck;"),
                                           ("dsn", "dsn (did you mean dns?)")])  # a typo gets a suggestion
def test_unknown_only_selector_is_exit_3(tmp_path: Path, capsys, selector: str, said: str):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(LOOPBACK_CONFIG)
    assert main(["check", "--config", str(cfg), "--only", selector]) == 3
    assert said in capsys.readouterr().err


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


# --- papercuts (issue 14) ----------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["nagios", "json"])
def test_bad_config_still_gives_monitors_their_stdout(tmp_path: Path, capsys, fmt: str):
    bad = tmp_path / "bad.yaml"
    bad.write_text("egress:\n  timeout_s: fast\n")
    assert main(["check", "--config", str(bad), "--format", fmt]) == 3
    out = capsys.readouterr().out
    if fmt == "nagios":
        assert out.startswith("VPCE-DOCTOR UNKNOWN - ") and "egress.timeout_s" in out and len(out.splitlines()) == 1
    else:
        doc = json.loads(out)
        assert doc["status"] == "UNKNOWN" and doc["exit_code"] == 3 and "egress.timeout_s" in doc["error"]
        assert doc["findings"] == [] and "schema_version" in doc


def test_config_alone_explains_config_not_everything(capsys):
    assert main(["config"]) == 3
    out = capsys.readouterr().out
    assert "check" in out and "validate" in out.lower() and "daemon" not in out


def test_a_closed_pipe_is_not_an_internal_error(tmp_path: Path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(LOOPBACK_CONFIG + "checks: {ssm_agent: false}\n")
    proc = subprocess.Popen([sys.executable, "-m", "vpce_doctor", "check", "--config", str(cfg), "--only", "instance",
                             "-v"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # `| head -0`: the reader is gone before we print
    err = proc.stderr.read()
    assert proc.wait(30) == 0, err
    assert "internal error" not in err and "BrokenPipe" not in err and "Traceback" not in err


def test_lab_exec_gives_the_agent_the_scenarios_config(tmp_path: Path):
    from tests.lab.cli import with_lab_config

    cfg = tmp_path / "agent.yaml"
    assert with_lab_config(["vpce-doctor", "check", "-v"], cfg) == ["vpce-doctor", "check", "-v"]  # no file yet
    cfg.write_text("{}\n")
    assert with_lab_config(["vpce-doctor", "check", "-v"], cfg) == ["vpce-doctor", "check", "--config", str(cfg), "-v"]
    assert with_lab_config(["python", "-m", "vpce_doctor", "daemon"], cfg)[3:] == ["daemon", "--config", str(cfg)]
    assert with_lab_config(["vpce-doctor", "check", "--config", "x"], cfg) == ["vpce-doctor", "check", "--config", "x"]
    assert with_lab_config(["vpce-doctor", "fleet"], cfg) == ["vpce-doctor", "fleet"]
    assert with_lab_config(["dig", "ssm"], cfg) == ["dig", "ssm"]


# --- per-check overrides (issue 14) ------------------------------------------------------------------
def test_overrides_disable_and_cap_checks_and_say_so(tmp_path: Path, capsys):
    """Offline checks only (facts from the config): nothing leaves the machine."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(LOOPBACK_CONFIG.replace("instance_profile_arn: arn:aws:iam::123456789012:instance-profile/"
                                           "SSMInstanceProfile", "instance_profile_arn: null")
                   + "checks:\n  ssm_agent: false\n  overrides:\n    egress: {enabled: false}\n"
                   "    instance.profile: {severity: WARNING}\n    instance.public_ip: {enabled: false}\n")
    code = main(["check", "--config", str(cfg), "--format", "json", "--only", "instance"])
    doc = json.loads(capsys.readouterr().out)
    ids = {f["id"]: f for f in doc["findings"]}
    assert "instance.public_ip" not in ids  # disabled: not run
    profile = ids["instance.profile"]
    assert profile["status"] == "WARNING"  # no instance profile is CRITICAL, capped by the config
    assert profile["evidence"]["severity_override"] == {"selector": "instance.profile", "was": "CRITICAL",
                                                        "now": "WARNING"}
    assert code == 1
    notes = " | ".join(doc["notes"])
    assert "not run: " in notes and "egress" in notes and "instance.public_ip" in notes
    assert "instance.profile at most WARNING" in notes


def test_a_disabled_check_that_others_need_still_runs():
    from vpce_doctor.checks.model import Check, Finding, Status, outcome
    from vpce_doctor.runtime import disable, drop_disabled

    def run(ctx):  # never called
        return outcome()

    checks = [Check("resolver", run), Check("dns.ssm", run, needs=("resolver",)), Check("egress.x", run)]
    overrides = (("resolver", False, None), ("egress", False, None), ("nope", False, None))
    kept, notes, kept_ids = disable(checks, overrides)
    assert [c.id for c in kept] == ["resolver", "dns.ssm"] and kept_ids == {"resolver"}
    assert "checks.overrides: resolver still runs: dns.ssm needs it" in notes
    assert "checks.overrides: not run: egress.x" in notes
    findings = [Finding("resolver", Status.OK, "ok"), Finding("dns.ssm", Status.OK, "ok")]
    shown, more = drop_disabled(findings, overrides, kept_ids, [c.id for c in checks])
    assert shown == findings  # the resolver ran because dns.ssm needs it: its finding stays
    assert more == ["checks.overrides: no check matches nope (nothing disabled for it)"]


@pytest.mark.parametrize("text,fragment", [
    ("checks: {overrides: {dsn: {enabled: false}}}", 'checks.overrides.dsn: "dsn" is not a check id (did you mean "dns"?)'),
    ("checks: {overrides: {egress: {severity: LOW}}}", "checks.overrides.egress.severity:"),
    ("checks: {overrides: {egress: {enabeld: false}}}", 'unknown key (did you mean "enabled"?)'),
])
def test_bad_overrides_are_one_line(tmp_path: Path, capsys, text: str, fragment: str):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text + "\n")
    assert main(["config", "check", str(cfg)]) == 3
    assert fragment in capsys.readouterr().err


@pytest.mark.parametrize("only", [",,,", " , ", ""])
def test_only_with_nothing_between_the_commas_is_a_usage_error(only: str, capsys):
    """",,," selects no check: read as "no filter" it would run everything. Like every usage error: 3."""
    with pytest.raises(SystemExit) as exc:
        main(["check", "--only", only])
    assert exc.value.code == 3
    err = capsys.readouterr().err
    assert "argument --only:" in err and "names nothing" in err


def test_verbose_is_documented_as_the_full_table(capsys):
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "every check with its evidence" in out and "-vv also logs debug" in out


@pytest.mark.parametrize("text, key", [
    ("facts: {region: cn-north-1, partition: aws}\n", "facts.region: \"cn-north-1\" is a region of the aws-cn partition"),
    ("imds: {endpoint: \"http://169.254.169.254:0\"}\n", "imds.endpoint: \"http://169.254.169.254:0\" names port 0"),
    ("imds: {endpoint: \"http://169.254.169.254 \"}\n", "imds.endpoint: \"http://169.254.169.254 \" has whitespace"),
    ("publish: {http: {port: 0}}\n", "publish.http.port: 0 is not a port"),
])
def test_config_check_refuses_port_zero_whitespace_and_a_foreign_region(tmp_path: Path, capsys, text: str, key: str):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    assert main(["config", "check", str(cfg)]) == 3
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1 and key in captured.err, captured.err


def test_check_starts_the_isolation_probe_first_for_the_targets_it_runs(tmp_path, monkeypatch):
    """`check` starts egress probes before the run (from the config read ahead), only for the
    targets that --only and checks.overrides leave in, with the settings the run then uses."""
    from vpce_doctor.checks import isolation_probe

    started = []
    monkeypatch.setattr(isolation_probe, "prestart", lambda settings, targets: started.append((settings, list(targets))))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(LOOPBACK_CONFIG + 'egress: {targets: ["127.0.0.1:9", "127.0.0.2:9"], timeout_s: 0.2}\n'
                   "checks: {overrides: {egress.127.0.0.2: {enabled: false}}}\n")
    main(["check", "--config", str(cfg), "--format", "json", "--only", "egress"])
    assert [[t.host for t in targets] for _, targets in started] == [["127.0.0.1"]]
    assert started[0][0].egress_timeout_s == 0.2 and started[0][0].resolver == "127.0.0.1"
    started.clear()
    main(["check", "--config", str(cfg), "--format", "json", "--only", "resolver"])
    assert started == []  # nothing of this run dials the internet targets
