"""The SSM documents, associations and IAM policies in packaging/.

Structure as Systems Manager checks it (schema 2.2 Command documents, parameter types, every
``{{ parameter }}`` declared and every parameter used, allowedPattern/allowedValues), injection
safety (SSM substitutes parameters into the shell script as text), the State Manager schedules,
least-privilege IAM that matches what the code calls; then the RunCheck command itself: rendered
the way the SSM agent renders it (agent/parameters/parameters.go: ``{{\\s*name\\s*}}`` replaced by
the value), run with ``sh`` and ``bash`` against a stand-in agent (exit codes, trimming, config
overlay), and inside the lab (``python -m tests.lab up/exec/down``, root only).
"""
from __future__ import annotations

import functools
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SSM_DIR = REPO / "packaging" / "ssm"
IAM_DIR = REPO / "packaging" / "iam"
RUN_CHECK = SSM_DIR / "VpceDoctor-RunCheck.yaml"
INSTALL = SSM_DIR / "VpceDoctor-Install.yaml"

SSM_TYPES = {"String", "StringList", "Boolean", "Integer", "MapList", "StringMap"}
PARAM_NAME = re.compile(r"^[a-zA-Z0-9]+$")  # amazon-ssm-agent agent/parameters/parameters.go
REFERENCE = re.compile(r"\{\{\s*([^{}\s]+)\s*\}\}")
RUN_COMMAND_LIMIT = 48_000  # characters of output Run Command keeps (the console)
INLINE_STDOUT = 24_000  # get-command-invocation StandardOutputContent: the first 24,000 characters
EXIT_REBOOT = 194  # asks the SSM agent to reboot and run the document again: must never be emitted

# What no parameter value may carry: SSM pastes values into the script as text (inside single
# quotes, tested below), and substitutes parameters one after another (so no braces either).
# S3's "safe" key characters ! ( ) * stay allowed: inside single quotes they are plain text.
SHELL_META = ["'", '"', "$", "`", ";", "|", "&", "\\", " ", "\t", "\n", "\r", "<", ">", "{", "}", "#", "?"]
MALICIOUS = [
    "x'; rm -rf / #", "$(id)", "`id`", "a;b", "a|b", "a&&b", "a b", "a\nb", '"a"', "a\\b",
    "${IFS}", "x' || curl 203.0.113.1 '", "ok\n--help",
]
# Legitimate values per parameter (the defaults are checked too).
GOOD = {
    "format": ["table", "json", "nagios"],
    "extraServices": ["kms", "kms,logs,monitoring,ecr.api", "execute-api,sagemaker.runtime"],
    "s3Bucket": ["vpce-lab-bucket", "my.bucket-1"],
    "s3Key": ["hello.txt", "vpce-doctor/probe.txt", "a/b-c_d.e!f(1)=2+3,4@5"],
    "isolationTargets": ["google.com", "google.com:443,example.com:80,203.0.113.10"],
    "timeout": ["1", "10", "99", "120", "600"],
    "configFile": ["/etc/vpce-doctor/config.yaml", "/run/vpce-lab/ssmdoc/agent.yaml"],
    "maxOutputChars": ["1000", "24000", "47000"],
    "packageUrl": ["s3://my-bucket/vpce-doctor/packages/vpce-doctor-0.1.0-1.amzn2023.noarch.rpm",
                   "https://example.com/dist/vpce_doctor-0.1.0-py3-none-any.whl",
                   "https://my-bucket.s3.us-east-1.amazonaws.com/pkg/vpce%2Bdoctor-0.1.0-1.noarch.rpm"],
}
BAD = {
    "timeout": ["0", "601", "1000", "-1", "1.5", ""],
    "maxOutputChars": ["999", "47001", "48000", "100000", ""],
    "s3Bucket": ["A-Bucket", "b", "-bucket", "bucket-"],
    "extraServices": ["kms,", ",kms", "Kms", "kms,,logs", "kms logs"],
    "configFile": ["etc/config.yaml", "", "/etc/x y"],
    "packageUrl": ["http://example.com/x.rpm", "https://example.com/x.rpm?X-Amz-Signature=1&a=b",
                   "s3://b/x.tar.gz", "file:///tmp/x.rpm", "ftp://example.com/x.rpm"],
}


# --- loading and rendering like Systems Manager -----------------------------------------------------

def _load(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)


def _files(directory: Path) -> List[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in (".json", ".yaml", ".yml"))


def _documents() -> List[Path]:
    return [p for p in _files(SSM_DIR) if "schemaVersion" in _load(p)]


def _associations() -> List[Path]:
    return [p for p in _files(SSM_DIR) if "ScheduleExpression" in _load(p)]


def validate(doc: Mapping[str, Any], name: str, value: str) -> None:
    """What send-command/create-association do with a String value: ValueError when refused."""
    spec = doc["parameters"].get(name)
    if spec is None:
        raise ValueError(f"undeclared parameter {name}")
    if not isinstance(value, str):
        raise ValueError(f"{name}: not a string")
    if "allowedValues" in spec and value not in spec["allowedValues"]:
        raise ValueError(f"{name}: {value!r} is not one of {spec['allowedValues']}")
    # The whole value must match (as in Go and Java): Python's $ would also accept a trailing newline.
    if "allowedPattern" in spec and not re.fullmatch(spec["allowedPattern"], value):
        raise ValueError(f"{name}: {value!r} does not match {spec['allowedPattern']}")


def render(doc: Mapping[str, Any], values: Optional[Mapping[str, str]] = None) -> str:
    """The script the SSM agent writes to _script.sh: defaults plus ``values``, validated, each
    ``{{ name }}`` replaced by its value, runCommand lines joined with newlines."""
    merged: Dict[str, str] = {}
    for name, spec in doc["parameters"].items():
        if name in (values or {}):
            merged[name] = (values or {})[name]
        elif "default" in spec:
            merged[name] = str(spec["default"])
        else:
            raise ValueError(f"{name} is required")
    for name, value in merged.items():
        validate(doc, name, value)
    text = "\n".join(doc["mainSteps"][0]["inputs"]["runCommand"])
    for name, value in merged.items():
        text = re.sub(r"\{\{\s*%s\s*\}\}" % re.escape(name), lambda _m, v=value: v, text)
    assert "{{" not in text
    return text


# --- document structure -----------------------------------------------------------------------------

def test_packaging_ssm_holds_documents_and_associations_only() -> None:
    docs, assocs = _documents(), _associations()
    assert {p.name for p in docs} >= {RUN_CHECK.name, INSTALL.name}
    assert set(docs) | set(assocs) == set(_files(SSM_DIR))
    names = {_load(p)["Name"] for p in assocs}
    assert {"VpceDoctor-RunCheck", "AWS-GatherSoftwareInventory"} <= names


@pytest.mark.parametrize("path", _documents(), ids=lambda p: p.name)
def test_document_is_a_schema_22_command_document(path: Path) -> None:
    doc = _load(path)
    assert doc["schemaVersion"] == "2.2"
    assert isinstance(doc["description"], str) and doc["description"].strip()
    assert set(doc) <= {"schemaVersion", "description", "parameters", "mainSteps"}
    steps = doc["mainSteps"]
    assert isinstance(steps, list) and steps
    assert len({s["name"] for s in steps}) == len(steps)
    for step in steps:
        assert step["action"] == "aws:runShellScript"
        assert re.match(r"^[A-Za-z0-9_.-]{1,100}$", step["name"])
        assert step["precondition"] == {"StringEquals": ["platformType", "Linux"]}
        inputs = step["inputs"]
        assert set(inputs) <= {"runCommand", "timeoutSeconds", "workingDirectory"}
        assert isinstance(inputs["runCommand"], list) and inputs["runCommand"]
        assert all(isinstance(line, str) for line in inputs["runCommand"])
        assert isinstance(inputs["timeoutSeconds"], int) and 1 <= inputs["timeoutSeconds"] <= 172_800
        assert inputs["runCommand"][0].startswith("#!/bin/sh\n")


@pytest.mark.parametrize("path", _documents(), ids=lambda p: p.name)
def test_parameters_are_valid_ssm_parameters(path: Path) -> None:
    doc = _load(path)
    for name, spec in doc["parameters"].items():
        assert PARAM_NAME.match(name), name
        assert spec["type"] in SSM_TYPES, name
        assert set(spec) <= {"type", "description", "default", "allowedValues", "allowedPattern",
                             "displayType", "minItems", "maxItems", "maxChars"}, name
        assert isinstance(spec.get("description"), str) and spec["description"], name
        # Every value is pasted into a shell script: each parameter is restricted, and as a String
        # (a StringList inside a line would be pasted as JSON, quotes and all).
        assert spec["type"] == "String", name
        assert "allowedValues" in spec or "allowedPattern" in spec, f"{name} accepts anything"
        if "allowedValues" in spec:
            assert spec["allowedValues"] and all(isinstance(v, str) for v in spec["allowedValues"]), name
            assert len(set(spec["allowedValues"])) == len(spec["allowedValues"]), name
        if "allowedPattern" in spec:
            pattern = spec["allowedPattern"]
            re.compile(pattern)
            assert pattern.startswith("^") and pattern.endswith("$"), f"{name}: anchor the pattern"
        if "default" in spec:
            assert isinstance(spec["default"], str), name
            validate(doc, name, spec["default"])


@pytest.mark.parametrize("path", _documents(), ids=lambda p: p.name)
def test_every_reference_is_declared_and_every_parameter_used(path: Path) -> None:
    doc = _load(path)
    body = json.dumps(doc["mainSteps"])
    used = set(REFERENCE.findall(body))
    assert used == set(doc["parameters"]), (used, set(doc["parameters"]))
    assert body.count("{{") == len(REFERENCE.findall(body))  # no stray {{ the service would reject


@pytest.mark.parametrize("path", _documents(), ids=lambda p: p.name)
def test_parameters_are_only_pasted_into_single_quoted_assignments(path: Path) -> None:
    doc = _load(path)
    for line in "\n".join(doc["mainSteps"][0]["inputs"]["runCommand"]).splitlines():
        if "{{" in line:
            assert re.match(r"^[A-Z0-9_]+='\{\{ [A-Za-z0-9]+ \}\}'$", line.strip()), line


@pytest.mark.parametrize("path", _documents(), ids=lambda p: p.name)
def test_good_values_pass_and_injections_are_refused(path: Path) -> None:
    doc = _load(path)
    for name, spec in doc["parameters"].items():
        samples = GOOD.get(name) or spec.get("allowedValues")
        assert samples, f"add good samples for {name}"
        for value in samples:
            validate(doc, name, value)
        for value in MALICIOUS + BAD.get(name, []):
            with pytest.raises(ValueError):
                validate(doc, name, value)
        for ch in SHELL_META:
            for value in samples:
                for bad in (value[:1] + ch + value[1:], value + ch, ch + value):
                    with pytest.raises(ValueError):
                        validate(doc, name, bad)


@pytest.mark.parametrize("path", _documents(), ids=lambda p: p.name)
def test_rendered_scripts_parse_in_sh_and_bash(path: Path, tmp_path: Path) -> None:
    doc = _load(path)
    required = {n: GOOD[n][0] for n, spec in doc["parameters"].items() if "default" not in spec}
    script = tmp_path / "_script.sh"
    script.write_text(render(doc, required), encoding="utf-8")
    for shell in _shells():
        done = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, (shell, done.stderr)


def test_run_check_parameters_and_timeouts() -> None:
    doc = _load(RUN_CHECK)
    params = doc["parameters"]
    assert params["format"]["allowedValues"] == ["table", "json", "nagios"]
    assert params["format"]["default"] == "table"
    assert {"extraServices", "s3Bucket", "s3Key", "isolationTargets", "timeout"} <= set(params)
    max_deadline = max(int(v) for v in GOOD["timeout"])
    with pytest.raises(ValueError):
        validate(doc, "timeout", str(max_deadline + 1))
    # The step outlives the longest deadline plus the helper's own bound (deadline + 60 s).
    assert doc["mainSteps"][0]["inputs"]["timeoutSeconds"] > max_deadline + 60
    with pytest.raises(ValueError):
        validate(doc, "maxOutputChars", str(RUN_COMMAND_LIMIT))
    assert int(params["maxOutputChars"]["default"]) <= INLINE_STDOUT


# --- associations -----------------------------------------------------------------------------------

def _rate_minutes(expression: str) -> int:
    m = re.match(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$", expression)
    assert m, f"{expression}: expected rate(N minutes|hours|days)"
    n, unit = int(m.group(1)), m.group(2)
    return n * {"minute": 1, "hour": 60, "day": 1440}[unit.rstrip("s")]


@pytest.mark.parametrize("path", _associations(), ids=lambda p: p.name)
def test_association_is_create_association_input(path: Path) -> None:
    assoc = _load(path)
    allowed = {"Name", "AssociationName", "DocumentVersion", "Targets", "ScheduleExpression", "Parameters",
               "MaxConcurrency", "MaxErrors", "ComplianceSeverity", "ApplyOnlyAtCronInterval", "OutputLocation"}
    assert set(assoc) <= allowed
    assert re.match(r"^[a-zA-Z0-9_.-]{3,128}$", assoc["AssociationName"])
    assert _rate_minutes(assoc["ScheduleExpression"]) >= 30  # State Manager's minimum rate
    assert assoc["Targets"] and all(set(t) == {"Key", "Values"} and t["Values"] for t in assoc["Targets"])
    for values in assoc.get("Parameters", {}).values():
        assert isinstance(values, list) and all(isinstance(v, str) for v in values)


def test_run_check_association_uses_declared_valid_parameters() -> None:
    assoc = _load(SSM_DIR / "association-run-check.json")
    doc = _load(RUN_CHECK)
    assert assoc["Name"] == "VpceDoctor-RunCheck"
    for name, values in assoc["Parameters"].items():
        assert len(values) == 1
        validate(doc, name, values[0])
    render(doc, {k: v[0] for k, v in assoc["Parameters"].items()})
    # Broken instances fail their invocation on purpose: errors must not stop the rest of the fleet.
    assert assoc["MaxErrors"] == "100%"


def test_inventory_association_collects_custom_inventory() -> None:
    assoc = _load(SSM_DIR / "association-inventory.json")
    assert assoc["Name"] == "AWS-GatherSoftwareInventory"
    assert assoc["Parameters"]["customInventory"] == ["Enabled"]
    assert _rate_minutes(assoc["ScheduleExpression"]) >= 30


# --- IAM ---------------------------------------------------------------------------------------------

def _policies() -> List[Path]:
    return sorted(IAM_DIR.glob("*.json"))


def _actions(policy: Mapping[str, Any]) -> List[str]:
    out: List[str] = []
    for st in policy["Statement"]:
        actions = st["Action"]
        out += [actions] if isinstance(actions, str) else list(actions)
    return out


@pytest.mark.parametrize("path", _policies(), ids=lambda p: p.name)
def test_policy_is_valid_least_privilege_json(path: Path) -> None:
    policy = json.loads(path.read_text(encoding="utf-8"))
    assert set(policy) == {"Version", "Statement"}
    assert policy["Version"] == "2012-10-17"
    statements = policy["Statement"]
    assert isinstance(statements, list) and statements
    sids = [st["Sid"] for st in statements]
    assert len(set(sids)) == len(sids) and all(re.match(r"^[A-Za-z0-9]+$", s) for s in sids)
    for st in statements:
        assert set(st) <= {"Sid", "Effect", "Action", "Resource", "Condition"}
        assert st["Effect"] == "Allow" and "Resource" in st
        assert "NotAction" not in st and "NotResource" not in st
    for action in _actions(policy):
        assert "*" not in action and re.match(r"^[a-z0-9-]+:[A-Z][A-Za-z]+$", action), action


def _policy(name: str) -> Dict[str, Any]:
    return json.loads((IAM_DIR / name).read_text(encoding="utf-8"))


def test_ec2_policy_allows_exactly_what_the_ec2_view_calls() -> None:
    source = (REPO / "checks" / "ec2api.py").read_text(encoding="utf-8")
    calls = set(re.findall(r"\b(describe_[a-z_]+|get_managed_prefix_list_entries)\b", source))
    expected = {"ec2:" + "".join(w.capitalize() for w in c.split("_")) for c in calls}
    assert len(expected) >= 8
    assert set(_actions(_policy("ec2-describe-for-endpoint-identity.json"))) == expected


def test_s3_policy_allows_what_the_s3_checks_call() -> None:
    source = (REPO / "checks" / "s3.py").read_text(encoding="utf-8")
    needed = set(re.findall(r'"(s3:[A-Za-z]+)"', source))
    assert needed == {"s3:ListAllMyBuckets", "s3:GetObject", "s3:ListBucket"}
    policy = _policy("s3-test-object.json")
    assert set(_actions(policy)) == needed
    for st in policy["Statement"]:  # only ListAllMyBuckets has no resource narrower than "*"
        assert (st["Resource"] == "*") == (st["Action"] == "s3:ListAllMyBuckets")


def test_cloudwatch_policy_is_limited_to_the_agents_namespace() -> None:
    from vpce_doctor.publishers.settings import PublishSettings

    (st,) = _policy("cloudwatch-put-metric-data.json")["Statement"]
    assert st["Action"] == "cloudwatch:PutMetricData"
    assert st["Condition"] == {"StringEquals": {"cloudwatch:namespace": PublishSettings().cloudwatch_namespace}}


def test_fleet_operator_policy_reads_inventory_only() -> None:
    assert set(_actions(_policy("operator-fleet-view.json"))) == {"ssm:GetInventory", "ssm:ListInventoryEntries"}


# --- the RunCheck command, run with a stand-in agent (no root) ---------------------------------------

FAKE_AGENT = """\
#!{python}
# Stand-in for vpce-doctor: logs its argv and the config it was given, prints $FAKE_OUT, exits $FAKE_RC.
import json, os, sys
argv = sys.argv[1:]
config = argv[argv.index("--config") + 1] if "--config" in argv else None
log = {{"argv": argv, "config": open(config).read() if config and os.path.exists(config) else None}}
with open(os.environ["FAKE_LOG"], "w") as f:
    json.dump(log, f)
out = os.environ.get("FAKE_OUT")
if out:
    sys.stdout.buffer.write(open(out, "rb").read())
sys.stderr.buffer.write(os.environ.get("FAKE_ERR", "").encode("utf-8"))
sys.exit(int(os.environ.get("FAKE_RC", "0")))
"""


def _shells() -> List[str]:
    return [s for s in ("sh", "bash") if shutil.which(s)]


class Stand:
    """A directory with the stand-in agent on PATH, and the rendered script runner."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir()
        agent = self.bin / "vpce-doctor"
        agent.write_text(FAKE_AGENT.format(python=sys.executable), encoding="utf-8")
        agent.chmod(agent.stat().st_mode | stat.S_IXUSR)
        self.log = root / "agent-log.json"

    def run(self, values: Optional[Mapping[str, str]] = None, *, shell: str = "sh", rc: int = 0,
            out: str = "", err: str = "", with_agent: bool = True,
            env: Optional[Mapping[str, str]] = None) -> subprocess.CompletedProcess:
        script = self.root / "_script.sh"
        script.write_text(render(_load(RUN_CHECK), values), encoding="utf-8")
        out_file = self.root / "agent-out.txt"
        out_file.write_text(out, encoding="utf-8")
        full_env = dict(os.environ, FAKE_LOG=str(self.log), FAKE_OUT=str(out_file), FAKE_RC=str(rc), FAKE_ERR=err,
                        PATH=os.pathsep.join(([str(self.bin)] if with_agent else []) + ["/usr/bin", "/bin"]),
                        **(env or {}))
        if self.log.exists():
            self.log.unlink()
        return subprocess.run([shell, str(script)], env=full_env, capture_output=True, timeout=60)

    def agent_log(self) -> Dict[str, Any]:
        return json.loads(self.log.read_text(encoding="utf-8"))


@pytest.fixture
def stand(tmp_path: Path) -> Stand:
    return Stand(tmp_path)


def _text(data: bytes) -> str:
    return data.decode("utf-8")


@pytest.mark.parametrize("shell", _shells())
@pytest.mark.parametrize("agent_rc, expected", [(0, 0), (1, 1), (2, 2), (3, 3), (EXIT_REBOOT, 3), (127, 3), (255, 3)])
def test_exit_code_is_the_status_and_never_194(stand: Stand, shell: str, agent_rc: int, expected: int) -> None:
    done = stand.run(shell=shell, rc=agent_rc, out="Overall: something\n")
    assert done.returncode == expected, done.stderr
    assert _text(done.stdout) == "Overall: something\n"
    if expected != agent_rc:
        assert f"vpce-doctor exited {agent_rc}" in _text(done.stderr)


def test_a_crash_without_a_report_is_unknown_not_warning(stand: Stand) -> None:
    done = stand.run(rc=1, err="Traceback (most recent call last):\nImportError: no module\n")
    assert done.returncode == 3
    assert "ImportError" in _text(done.stderr) and "without a report" in _text(done.stderr)


def test_missing_agent_is_unknown(stand: Stand) -> None:
    if any(os.access(os.path.join(d, "vpce-doctor"), os.X_OK) for d in ("/usr/local/bin", "/usr/bin", "/opt/vpce-doctor/bin")):
        pytest.skip("vpce-doctor is installed system-wide here")
    done = stand.run(with_agent=False)
    assert done.returncode == 3 and "not installed" in _text(done.stderr)


def test_arguments_and_no_config_copy_without_overrides(stand: Stand, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("timeouts: {deadline_s: 5}\n", encoding="utf-8")
    done = stand.run({"format": "nagios", "timeout": "42", "configFile": str(config)}, out="OK\n")
    assert done.returncode == 0, done.stderr
    assert stand.agent_log()["argv"] == ["check", "--format", "nagios", "--timeout", "42", "--color", "never",
                                         "--config", str(config)]


def test_parameters_are_laid_over_the_instance_config(stand: Stand, tmp_path: Path) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    config = folder / "config.yaml"
    config.write_text(textwrap.dedent("""\
        extra_services: [kms]
        ca_bundle: ca.pem
        s3: {bucket: old-bucket, get_object: true}
        egress: {timeout_s: 2}
        """), encoding="utf-8")
    done = stand.run({"configFile": str(config), "extraServices": "logs,kms", "s3Bucket": "new-bucket",
                      "s3Key": "dir/probe.txt", "isolationTargets": "example.com:443,google.com"}, out="x\n")
    assert done.returncode == 0, done.stderr
    log = stand.agent_log()
    assert log["argv"][-2] == "--config" and log["argv"][-1] != str(config)
    merged = yaml.safe_load(log["config"])
    assert merged == {
        "extra_services": ["kms", "logs"],
        "ca_bundle": str(folder / "ca.pem"),  # relative paths are the original folder's
        "s3": {"bucket": "new-bucket", "get_object": True, "key": "dir/probe.txt"},
        "egress": {"timeout_s": 2, "targets": ["example.com:443", "google.com"]},
    }


def test_a_named_config_that_does_not_exist_is_unknown(stand: Stand, tmp_path: Path) -> None:
    done = stand.run({"configFile": str(tmp_path / "nope.yaml"), "s3Bucket": "b-1"})
    assert done.returncode == 3 and "does not exist" in _text(done.stderr)


def _table(lines: int) -> str:
    body = "".join(f"CRITICAL reach.svc{i}.10.0.1.{i % 250}  {'timed out ' * 8}\n" for i in range(lines))
    return ("vpce-doctor 0.1.0 — i-0 in vpc-0 (us-east-1), 3.2 s\n\n" + body
            + "\nVerdicts\n  broken  Session Manager  broken because …\n\nOverall: CRITICAL (exit 2)\n")


@pytest.mark.parametrize("limit", ["24000", "47000"])
def test_long_text_keeps_head_and_verdicts_within_the_limit(stand: Stand, limit: str) -> None:
    report = _table(2000)
    assert len(report) > 100_000
    done = stand.run({"maxOutputChars": limit}, rc=2, out=report)
    out = _text(done.stdout)
    assert done.returncode == 2
    assert len(out) <= int(limit) and len(out) > int(limit) - 1000
    assert out.startswith("vpce-doctor 0.1.0") and out.endswith("Overall: CRITICAL (exit 2)\n")
    assert "characters cut to fit maxOutputChars" in out


def test_output_is_utf8_in_the_c_locale(stand: Stand) -> None:
    # With UTF-8 mode off in the C locale, Python's stdout is ASCII: the em dash must not crash the helper.
    report = _table(3)
    done = stand.run(rc=2, out=report, env={"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0"})
    assert done.returncode == 2, done.stderr
    assert _text(done.stdout) == report


def test_long_stderr_is_trimmed_to_its_tail(stand: Stand) -> None:
    done = stand.run(rc=0, out="OK\n", err="warning\n" * 5000 + "last line\n")
    err = _text(done.stderr)
    assert len(err) <= 8000 and err.endswith("last line\n")


def _json_report(n: int, evidence_chars: int, summary_chars: int = 60) -> Dict[str, Any]:
    findings = [{"id": f"reach.svc{i}", "status": "CRITICAL" if i % 3 == 0 else "OK",
                 "summary": "s" * summary_chars, "cause_code": "tcp_timeout" if i % 3 == 0 else None,
                 "evidence": {"blob": "e" * evidence_chars}} for i in range(n)]
    return {"schema_version": 1, "status": "CRITICAL", "exit_code": 2, "verdicts": {"isolation": {"status": "works"}},
            "facts": {"region": "us-east-1", "blob": "f" * 5000}, "findings": findings, "notes": ["first note"]}


@pytest.mark.parametrize("report, cut", [
    (_json_report(50, 200), None),  # compact JSON fits: nothing removed
    (_json_report(60, 1000), "evidence of OK findings removed"),
    (_json_report(300, 1000), "all evidence removed"),
    (_json_report(300, 1000, summary_chars=150), "OK findings removed"),
    (_json_report(2000, 1000, summary_chars=200), "only the first"),
])
def test_long_json_stays_valid_json_within_the_limit(stand: Stand, report: Dict[str, Any], cut: Optional[str]) -> None:
    text = json.dumps(report, indent=2)
    assert len(text) > INLINE_STDOUT
    done = stand.run({"format": "json"}, rc=2, out=text)
    out = _text(done.stdout)
    assert done.returncode == 2 and len(out) <= INLINE_STDOUT
    parsed = json.loads(out)
    assert parsed["status"] == "CRITICAL" and parsed["exit_code"] == 2 and parsed["verdicts"]
    assert parsed["notes"][0] == "first note"
    if cut is None:
        assert parsed["findings"] == report["findings"] and parsed["notes"] == ["first note"]
    else:
        assert cut in parsed["notes"][-1]
        assert parsed["findings"][0]["id"] == next(f["id"] for f in report["findings"] if f["status"] != "OK")


# --- the RunCheck command in the lab (root) ---------------------------------------------------------

LAB_NAME = "ssmdoc"
# The lab's tools (moto, …) may live in another environment than the agent under test, which is
# always this interpreter's vpce-doctor (e.g. CPython 3.9 with Amazon Linux 2023's library versions).
LAB_PYTHON = os.environ.get("VPCE_LAB_PYTHON") or sys.executable
AGENT_BIN = Path(sys.executable).parent


@functools.lru_cache(maxsize=None)
def _lab_unavailable() -> str:
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, nftables)"
    from tests.lab import lab as labmod

    missing = [t for t in labmod.REQUIRED_TOOLS if shutil.which(t) is None and not os.path.exists(f"/usr/sbin/{t}")]
    if missing:
        return f"missing tools: {', '.join(missing)}"
    if subprocess.run([LAB_PYTHON, "-c", "import moto"], capture_output=True, timeout=60).returncode != 0:
        return f"moto is not installed for {LAB_PYTHON} (set VPCE_LAB_PYTHON to the lab's interpreter)"
    if not (AGENT_BIN / "vpce-doctor").exists():
        return f"vpce-doctor is not installed next to {sys.executable}"
    return ""


needs_lab = pytest.mark.skipif(bool(_lab_unavailable()), reason=_lab_unavailable() or "lab available")


def _lab(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([LAB_PYTHON, "-m", "tests.lab", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def lab_up() -> Iterator[Any]:
    """``up(scenario)`` brings the lab 'ssmdoc' up; it is torn down afterwards whatever happens."""
    def up(scenario: str) -> Path:
        _lab("down", "--name", LAB_NAME)  # a leftover from an interrupted run
        done = _lab("up", scenario, "--name", LAB_NAME)
        assert done.returncode == 0, done.stderr
        state = re.search(r", state (/\S+)\)", done.stdout)  # "lab 'ssmdoc' up: … (namespaces …, state DIR)"
        assert state, done.stdout
        return Path(state.group(1))

    try:
        yield up
    finally:
        down = _lab("down", "--name", LAB_NAME)
        assert down.returncode == 0, down.stderr


def _run_in_lab(tmp_path: Path, values: Mapping[str, str]) -> subprocess.CompletedProcess:
    script = tmp_path / "run-check.sh"
    script.write_text(render(_load(RUN_CHECK), values), encoding="utf-8")
    # On the instance, with the agent under test first on PATH, by bash (the SSM agent runs
    # "sh -c _script.sh"; sh is bash on Amazon Linux; dash is covered above). The agent's deadline
    # bounds the run; 120 s only guards against a hung lab.
    return _lab("exec", "--name", LAB_NAME, "--", "bash", "-c", 'PATH="$1:$PATH" exec bash "$2"', "run-check",
                str(AGENT_BIN), str(script), timeout=120)


@needs_lab
def test_run_check_in_the_healthy_lab(lab_up: Any, tmp_path: Path) -> None:
    state = lab_up("healthy")
    # Over the scenario's own config (s3 bucket and key), with one more isolation target.
    done = _run_in_lab(tmp_path, {"format": "json", "configFile": str(state / "agent.yaml"),
                                  "isolationTargets": "google.com,www.google.com:443"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert len(done.stdout) <= INLINE_STDOUT < RUN_COMMAND_LIMIT
    report = json.loads(done.stdout)
    assert report["status"] == "OK" and report["exit_code"] == 0
    findings = {f["id"]: f for f in report["findings"]}
    assert findings["egress.www.google.com"]["status"] == "OK"
    assert findings["s3.object"]["status"] == "OK" and findings["s3.object"]["evidence"]["key"] == "hello.txt"
    # A parameter that names a missing object makes the same instance CRITICAL, in nagios format.
    done = _run_in_lab(tmp_path, {"format": "nagios", "s3Bucket": "vpce-lab-bucket", "s3Key": "no/such.txt"})
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.startswith("VPCE-DOCTOR CRITICAL - s3.object") and "no such key" in done.stdout
    assert len(done.stdout) <= INLINE_STDOUT


@needs_lab
def test_run_check_in_a_broken_lab(lab_up: Any, tmp_path: Path) -> None:
    lab_up("endpoint-sg-no-443")
    done = _run_in_lab(tmp_path, {})
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert len(done.stdout) <= INLINE_STDOUT < RUN_COMMAND_LIMIT
    assert "Overall: CRITICAL (exit 2)" in done.stdout
    assert "Session Manager" in done.stdout and "broken" in done.stdout
