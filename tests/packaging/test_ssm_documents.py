"""The SSM documents, associations and IAM policies in packaging/.

Structure as Systems Manager checks it (schema 2.2 Command documents, parameter types, every
``{{ parameter }}`` declared and every parameter used, allowedPattern/allowedValues), injection
safety (SSM substitutes parameters into the shell script as text), the State Manager schedules,
least-privilege IAM that matches what the code calls; then the RunCheck command itself: rendered
the way the SSM agent renders it (agent/parameters/parameters.go: ``{{\\s*name\\s*}}`` replaced by
the value), run with ``sh`` and ``bash`` against a stand-in agent (exit codes, trimming, config
overlay), and inside the lab (``python -m tests.lab up/exec/down``, root only).

Issue 11 (security): the operator policy sends RunCheck only (Install is root on every instance:
admin-install.json); RunCheck reads configFile only as a root-owned regular file directly in
/etc/vpce-doctor (allowedPattern, and a runtime check shown against symlinks, ``..``, foreign owners)
and never sends a file's content back; Install downloads only from the pinned S3 prefix, only a file
with the stated SHA-256, and an RPM only with a valid signature (run with stand-ins for aws, dnf, curl).
Scripts run against a scratch folder standing in for /etc/vpce-doctor: the rendered text's
``/etc/vpce-doctor`` is rewritten to it, so no test touches /etc.
"""
from __future__ import annotations

import functools
import hashlib
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
    "configFile": ["/etc/vpce-doctor/config.yaml", "/etc/vpce-doctor/agent.yml", "/etc/vpce-doctor/lab_1-a.b.yaml"],
    "maxOutputChars": ["1000", "24000", "47000"],
    "packageFile": ["vpce-doctor-0.1.0-1.amzn2023.noarch.rpm", "vpce_doctor-0.1.0-py3-none-any.whl",
                    "vpce-doctor-1.2.3+local.4-1.amzn2023.noarch.rpm"],
    "sha256": ["0123456789abcdef" * 4, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"],
}
BAD = {
    "timeout": ["0", "601", "1000", "-1", "1.5", ""],
    "maxOutputChars": ["999", "47001", "48000", "100000", ""],
    "s3Bucket": ["A-Bucket", "b", "-bucket", "bucket-"],
    "extraServices": ["kms,", ",kms", "Kms", "kms,,logs", "kms logs"],
    # Only a file directly in /etc/vpce-doctor: no other folder, no .., no subfolder, YAML names only.
    "configFile": ["etc/config.yaml", "", "/etc/x y", "/etc/shadow", "/etc/vpce-doctor/../shadow",
                   "/etc/vpce-doctor/../../etc/shadow.yaml", "/etc/vpce-doctor/..yaml", "/etc/vpce-doctor/.yaml",
                   "/etc/vpce-doctor/sub/config.yaml", "/etc/vpce-doctorx/config.yaml", "/etc/vpce-doctor/config.json",
                   "/etc/vpce-doctor/config.yaml.bak", "/run/vpce-lab/ssmdoc/agent.yaml", "/root/.aws/config.yaml",
                   "/etc/vpce-doctor//config.yaml", "/proc/self/environ"],
    # Only a file name under the one pinned prefix: no URL, no other bucket, no folder, no ..
    "packageFile": ["s3://other-bucket/vpce-doctor-0.1.0-1.noarch.rpm", "https://example.com/vpce-doctor-0.1.0.rpm",
                    "../vpce-doctor-0.1.0-1.noarch.rpm", "x/vpce-doctor-0.1.0-1.noarch.rpm",
                    "vpce-doctor-0.1.0/../../evil.rpm", "evil-0.1.0-1.noarch.rpm", "vpce-doctor-0.1.0.tar.gz",
                    "-vpce-doctor-0.1.0.rpm", "vpce-doctor-.rpm", ""],
    "packageSource": ["s3://other-bucket/vpce-doctor/packages/", "https://example.com/vpce-doctor/packages/",
                      "s3://DOC-EXAMPLE-BUCKET/", "s3://DOC-EXAMPLE-BUCKET/vpce-doctor/packages/../",
                      "s3://DOC-EXAMPLE-BUCKET/vpce-doctor/packages/x/", ""],
    "sha256": ["", "0" * 63, "0" * 65, "0123456789ABCDEF" * 4, "g" * 64, " " + "0" * 64],
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


def render(doc: Mapping[str, Any], values: Optional[Mapping[str, str]] = None, *, check: bool = True) -> str:
    """The script the SSM agent writes to _script.sh: defaults plus ``values``, validated (unless
    ``check`` is false: what the script does if a pattern were loosened), each ``{{ name }}``
    replaced by its value, runCommand lines joined with newlines."""
    merged: Dict[str, str] = {}
    for name, spec in doc["parameters"].items():
        if name in (values or {}):
            merged[name] = (values or {})[name]
        elif "default" in spec:
            merged[name] = str(spec["default"])
        else:
            raise ValueError(f"{name} is required")
    for name, value in merged.items():
        if check:
            validate(doc, name, value)
    text = "\n".join(doc["mainSteps"][0]["inputs"]["runCommand"])
    for name, value in merged.items():
        text = re.sub(r"\{\{\s*%s\s*\}\}" % re.escape(name), lambda _m, v=value: v, text)
    assert "{{" not in text
    return text


ETC = "/etc/vpce-doctor"


def localize(script: str, etc: Path, owner: Optional[int] = None) -> str:
    """The rendered script with ``etc`` standing in for /etc/vpce-doctor (the folder, the default
    config, a configFile value in it) and, for a test run without root, ``owner`` as the uid that
    must own it. A test edit of the rendered text only: the documents have no such knob."""
    assert ETC in script
    out = script.replace(ETC, str(etc))
    if owner is not None:
        assert out.count("\nVD_CONFIG_OWNER=0\n") == 1
        out = out.replace("\nVD_CONFIG_OWNER=0\n", f"\nVD_CONFIG_OWNER={owner}\n")
    return out


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
    # checks/dhcpdns.py asks DescribeVpcs/DescribeDhcpOptions with the same client, when a nameserver misleads
    source = "".join((REPO / "checks" / f).read_text(encoding="utf-8") for f in ("ec2api.py", "dhcpdns.py"))
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
    """A directory with the stand-in agent on PATH, a folder standing in for /etc/vpce-doctor
    (``etc``: owned by this user, 0755), and the rendered script runner."""

    def __init__(self, root: Path) -> None:
        self.root = root = root.resolve()  # the runtime check compares resolved paths
        self.bin = root / "bin"
        self.bin.mkdir()
        agent = self.bin / "vpce-doctor"
        agent.write_text(FAKE_AGENT.format(python=sys.executable), encoding="utf-8")
        agent.chmod(agent.stat().st_mode | stat.S_IXUSR)
        self.log = root / "agent-log.json"
        self.etc = root / "etc-vpce-doctor"
        self.etc.mkdir()
        self.etc.chmod(0o755)

    def config(self, name: str, text: str, mode: int = 0o644) -> Path:
        """A config file in the stand-in /etc/vpce-doctor, owned by this user."""
        path = self.etc / name
        path.write_text(text, encoding="utf-8")
        path.chmod(mode)
        return path

    def run(self, values: Optional[Mapping[str, str]] = None, *, shell: str = "sh", rc: int = 0,
            out: str = "", err: str = "", with_agent: bool = True, check: bool = True,
            owner: Optional[int] = None, env: Optional[Mapping[str, str]] = None) -> subprocess.CompletedProcess:
        """Render RunCheck with ``values`` and run it. The config must be owned by ``owner``
        (default: this user, i.e. root when the tests run as root)."""
        script = self.root / "_script.sh"
        owner = os.geteuid() if owner is None else owner
        text = localize(render(_load(RUN_CHECK), values, check=check), self.etc, None if owner == 0 else owner)
        script.write_text(text, encoding="utf-8")
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


def test_arguments_and_no_config_copy_without_overrides(stand: Stand) -> None:
    config = stand.config("site.yaml", "timeouts: {deadline_s: 5}\n")
    done = stand.run({"format": "nagios", "timeout": "42", "configFile": f"{ETC}/site.yaml"}, out="OK\n")
    assert done.returncode == 0, done.stderr
    assert stand.agent_log()["argv"] == ["check", "--format", "nagios", "--timeout", "42", "--color", "never",
                                         "--config", str(config)]


def test_parameters_are_laid_over_the_instance_config(stand: Stand) -> None:
    folder = stand.etc
    config = stand.config("config.yaml", textwrap.dedent("""\
        extra_services: [kms]
        ca_bundle: ca.pem
        s3: {bucket: old-bucket, get_object: true}
        egress: {timeout_s: 2}
        """))
    done = stand.run({"extraServices": "logs,kms", "s3Bucket": "new-bucket",
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


def test_a_named_config_that_does_not_exist_is_unknown(stand: Stand) -> None:
    done = stand.run({"configFile": f"{ETC}/nope.yaml", "s3Bucket": "b-1"})
    assert done.returncode == 3 and "does not exist" in _text(done.stderr)
    assert not stand.log.exists()  # the agent never ran


def test_a_missing_default_config_means_built_in_defaults(stand: Stand) -> None:
    done = stand.run({}, out="OK\n")
    assert done.returncode == 0, done.stderr
    assert "--config" not in stand.agent_log()["argv"]


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


def _json_report_with_nulls(n: int) -> Dict[str, Any]:
    """Findings whose many empty fields (no cause, not blocked, no resource) are what does not fit."""
    report = _json_report(n, 4, summary_chars=60)
    for f in report["findings"]:
        f.update(cause=None, fix=None, blocked_by=None, resource=None, detail="", related=[])
    report["facts"]["blob"] = ""
    return report


@pytest.mark.parametrize("report, cut", [
    (_json_report(50, 200), None),  # compact JSON fits: nothing removed
    (_json_report_with_nulls(160), "empty fields of findings removed"),  # every evidence kept
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
    if cut == "empty fields of findings removed":
        assert "evidence" not in parsed["notes"][-1]
        assert [f["evidence"] for f in parsed["findings"]] == [f["evidence"] for f in report["findings"]]


# --- issue 11: who may send what ----------------------------------------------------------------------

ACCOUNT = "111122223333"  # the caller's account (${aws:PrincipalAccount})
FOREIGN = "444455556666"  # an account that shares a document of the same name with it
INSTANCE_ARN = f"arn:aws:ec2:us-east-1:{ACCOUNT}:instance/i-0123456789abcdef0"


def _document_arn(name: str, account: str = ACCOUNT) -> str:
    return f"arn:aws:ssm:us-east-1:{account}:document/{name}"


def _iam_match(pattern: str, value: str, *, case: bool = True) -> bool:
    """IAM's wildcards: * any run of characters, ? one character; nothing else is special."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE) is not None


def _allows(policy: Mapping[str, Any], action: str, resource: str) -> bool:
    """Whether an Allow statement grants ``action`` on ``resource`` to a principal of ACCOUNT.
    Conditions are ignored: they only narrow an Allow, so "never allows" stays a safe reading."""
    for st in policy["Statement"]:
        actions = [st["Action"]] if isinstance(st["Action"], str) else st["Action"]
        resources = [st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"]
        if st["Effect"] == "Allow" and any(_iam_match(a, action, case=False) for a in actions):
            if any(_iam_match(r.replace("${aws:PrincipalAccount}", ACCOUNT), resource) for r in resources):
                return True
    return False


# Documents that run code as root besides RunCheck: ours, and AWS's that take a script or a package.
ROOT_DOCUMENTS = ["VpceDoctor-Install", "AWS-RunShellScript", "AWS-RunRemoteScript", "AWS-ConfigureAWSPackage",
                  "AWS-InstallApplication", "AWS-RunSaltState", "VpceDoctor-RunCheck-old", "Other"]


def test_operator_policy_never_sends_install_or_any_other_document() -> None:
    policy = _policy("operator-run-command.json")
    assert _allows(policy, "ssm:SendCommand", _document_arn("VpceDoctor-RunCheck"))
    assert _allows(policy, "ssm:SendCommand", INSTANCE_ARN)
    for name in ROOT_DOCUMENTS:
        assert not _allows(policy, "ssm:SendCommand", _document_arn(name)), name
    # A same-named document shared from another account is someone else's script.
    assert not _allows(policy, "ssm:SendCommand", _document_arn("VpceDoctor-RunCheck", FOREIGN))
    # Nothing else that runs code or changes what RunCheck is.
    assert set(_actions(policy)) == {"ssm:SendCommand", "ssm:ListCommands", "ssm:ListCommandInvocations",
                                     "ssm:GetCommandInvocation"}


def test_install_is_sent_only_through_the_admin_policy() -> None:
    admin = _policy("admin-install.json")
    assert _allows(admin, "ssm:SendCommand", _document_arn("VpceDoctor-Install"))
    assert not _allows(admin, "ssm:SendCommand", _document_arn("VpceDoctor-Install", FOREIGN))
    for name in ROOT_DOCUMENTS[1:]:
        assert not _allows(admin, "ssm:SendCommand", _document_arn(name)), name
    for path in _policies():
        if path.name != "admin-install.json":
            assert not _allows(_load(path), "ssm:SendCommand", _document_arn("VpceDoctor-Install")), path.name
    readme = (IAM_DIR / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if line.startswith("| [`operator-run-command.json`]"))
    assert "VpceDoctor-Install" not in row
    assert any(line.startswith("| [`admin-install.json`]") for line in readme.splitlines())


def test_install_source_is_one_pinned_prefix_that_the_instance_policy_matches() -> None:
    spec = _load(INSTALL)["parameters"]["packageSource"]
    assert spec["allowedValues"] == [spec["default"]] and "allowedPattern" not in spec
    source = spec["default"]
    assert re.fullmatch(r"s3://[A-Za-z0-9.-]+/([A-Za-z0-9._-]+/)*", source), source
    # The script checks the same prefix (one sed pins both), in case a copy loosens allowedValues.
    script = "\n".join(_load(INSTALL)["mainSteps"][0]["inputs"]["runCommand"])
    assert re.findall(r"^PINNED='(.*)'$", script, re.M) == [source]
    (st,) = _policy("install-package-from-s3.json")["Statement"]
    assert st["Action"] == "s3:GetObject"
    assert st["Resource"] == "arn:aws:s3:::" + source[len("s3://"):] + "*"
    assert _load(INSTALL)["parameters"]["sha256"]["allowedPattern"] == "^[0-9a-f]{64}$"
    assert "default" not in _load(INSTALL)["parameters"]["sha256"]  # required


# --- issue 11: what RunCheck may read ---------------------------------------------------------------

SECRET = "SECRETHASH"
SHADOW = f"root:$6$salt${SECRET}:19000:0:99999:7:::\nbin:*:19000:0:99999:7:::\n"


def _refused(done: subprocess.CompletedProcess, stand: Stand, why: str) -> None:
    """Exit 3 with one line naming the reason, no byte of the file back, and the agent never ran
    (so it could not read the file either)."""
    err = _text(done.stderr)
    assert done.returncode == 3, (done.returncode, err)
    assert why in err and err.count("\n") == 1 and err.startswith("vpce-doctor RunCheck: configFile "), err
    assert SECRET not in err + _text(done.stdout)
    assert not stand.log.exists(), "the agent was given the file"


@pytest.mark.parametrize("shell", _shells())
def test_run_check_refuses_a_symlink(stand: Stand, tmp_path: Path, shell: str) -> None:
    secret = tmp_path / "shadow"
    secret.write_text(SHADOW, encoding="utf-8")
    (stand.etc / "config.yaml").symlink_to(secret)
    _refused(stand.run({}, shell=shell), stand, "symbolic link")  # the default configFile
    # Even to a good file in the folder: the check and the agent's open must see the same file.
    stand.config("real.yaml", "timeouts: {deadline_s: 5}\n")
    (stand.etc / "alias.yaml").symlink_to(stand.etc / "real.yaml")
    _refused(stand.run({"configFile": f"{ETC}/alias.yaml"}, shell=shell), stand, "symbolic link")


@pytest.mark.parametrize("shell", _shells())
def test_run_check_refuses_paths_that_leave_the_folder(stand: Stand, shell: str) -> None:
    (stand.root / "shadow").write_text(SHADOW, encoding="utf-8")
    sub = stand.etc / "sub"
    sub.mkdir()
    (sub / "config.yaml").write_text(SHADOW, encoding="utf-8")
    for value in (f"{ETC}/../shadow", f"{ETC}/sub/config.yaml", f"{ETC}/sub/../../shadow"):
        with pytest.raises(ValueError):
            validate(_load(RUN_CHECK), "configFile", value)
        # The runtime check holds on its own (as if a copy of the document loosened the pattern).
        _refused(stand.run({"configFile": value}, shell=shell, check=False), stand, "not a file directly in")


def test_run_check_refuses_a_config_folder_that_is_a_link(stand: Stand, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "config.yaml").write_text(SHADOW, encoding="utf-8")
    stand.etc.rmdir()
    stand.etc.symlink_to(elsewhere)
    _refused(stand.run({"configFile": f"{ETC}/config.yaml"}), stand, "not a file directly in")


def test_run_check_refuses_a_file_not_owned_by_root(stand: Stand) -> None:
    config = stand.config("config.yaml", SHADOW)
    if os.geteuid() == 0:
        os.chown(config, 65534, 65534)  # nobody's file in root's folder
    # Without root the folder itself is not root's: refused one step earlier, for the same reason.
    _refused(stand.run({"configFile": f"{ETC}/config.yaml"}, owner=0), stand, "not owned by root")


@pytest.mark.parametrize("mode", [0o664, 0o646])
def test_run_check_refuses_a_file_others_can_write(stand: Stand, mode: int) -> None:
    stand.config("config.yaml", SHADOW, mode=mode)
    _refused(stand.run({"configFile": f"{ETC}/config.yaml"}), stand, "writable by group or others")


def test_run_check_refuses_a_folder_others_can_write(stand: Stand) -> None:
    stand.config("config.yaml", SHADOW)
    stand.etc.chmod(0o777)
    _refused(stand.run({"configFile": f"{ETC}/config.yaml"}), stand, "writable by group or others")


def test_run_check_refuses_a_fifo(stand: Stand) -> None:
    os.mkfifo(stand.etc / "config.yaml", 0o644)  # the agent's open() would block for the whole step
    _refused(stand.run({"configFile": f"{ETC}/config.yaml"}), stand, "not a regular file")


@pytest.mark.parametrize("content, why", [
    (f"ok: 1\nroot: $6$salt${SECRET}: 19000\n", "is not valid YAML (line 2, column"),
    (b"ok: \xff" + SECRET.encode() + b"\n", "is not UTF-8 text"),
])
def test_the_overlay_never_echoes_the_config(stand: Stand, content: Any, why: str) -> None:
    config = stand.etc / "config.yaml"
    config.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    done = stand.run({"s3Bucket": "b-1"})  # a parameter: the helper reads the config to lay it over
    err = _text(done.stderr)
    assert done.returncode == 3 and why in err and err.count("\n") == 1, err
    assert SECRET not in err + _text(done.stdout)


# --- issue 11: what Install installs (stand-ins for aws, curl, dnf, rpm; nothing leaves the host) ----

INSTALL_FAKES = {
    # IMDS: a token, then the region.
    "curl": 'case "$*" in *api/token*) echo token ;; *placement/region*) echo us-east-1 ;; *) exit 22 ;; esac\n',
    # aws s3 cp --only-show-errors --region R s3://SOURCE/NAME DEST: from the stand-in bucket folder.
    "aws": 'echo "$*" >> "$FAKE_DIR/aws.log"\n'
           'for a in "$@"; do src=$dst; dst=$a; done\n'
           'case $src in "$FAKE_SOURCE"*) cp "$FAKE_BUCKET/${src#"$FAKE_SOURCE"}" "$dst" ;; *) exit 1 ;; esac\n',
    "dnf": 'echo "$*" >> "$FAKE_DIR/dnf.log"\n',
    "vpce-doctor": 'echo "vpce-doctor 0.1.0"\n',
    # rpm/rpmkeys: the real ones on a scratch database when FAKE_RPMDB is set, else scripted.
    "rpm": 'echo "rpm $*" >> "$FAKE_DIR/rpm.log"\n'
           '[ -z "$FAKE_RPMDB" ] || exec /usr/bin/rpm --dbpath "$FAKE_RPMDB" "$@"\n'
           'case "$*" in *-qp*) printf vpce-doctor ;; esac\n',
    "rpmkeys": 'echo "rpmkeys $*" >> "$FAKE_DIR/rpm.log"\n'
               '[ -z "$FAKE_RPMDB" ] || exec /usr/bin/rpmkeys --dbpath "$FAKE_RPMDB" "$@"\n'
               'exit "${FAKE_SIG_RC:-0}"\n',
}
RPM_KEY = "/etc/pki/rpm-gpg/RPM-GPG-KEY-vpce-doctor"


class InstallStand:
    """VpceDoctor-Install run with stand-ins on PATH, a folder as the pinned bucket prefix, and
    scratch folders standing in for /etc/vpce-doctor and the release key's path."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.bin, self.bucket, self.etc = self.root / "bin", self.root / "bucket", self.root / "etc-vpce-doctor"
        for d in (self.bin, self.bucket, self.etc):
            d.mkdir()
        for name, body in INSTALL_FAKES.items():
            path = self.bin / name
            path.write_text("#!/bin/sh\n" + body, encoding="utf-8")
            path.chmod(0o755)
        self.key = self.root / "RPM-GPG-KEY-vpce-doctor"
        self.source = _load(INSTALL)["parameters"]["packageSource"]["default"]

    def put(self, name: str, data: bytes) -> str:
        """The package in the stand-in bucket; its SHA-256."""
        (self.bucket / name).write_bytes(data)
        return hashlib.sha256(data).hexdigest()

    def run(self, values: Mapping[str, str], *, check: bool = True, sig_rc: int = 0,
            rpmdb: Optional[Path] = None) -> subprocess.CompletedProcess:
        text = localize(render(_load(INSTALL), values, check=check), self.etc).replace(RPM_KEY, str(self.key))
        script = self.root / "_install.sh"
        script.write_text(text, encoding="utf-8")
        for log in ("aws", "dnf", "rpm"):
            (self.root / f"{log}.log").unlink(missing_ok=True)
        env = dict(os.environ, PATH=os.pathsep.join([str(self.bin), "/usr/bin", "/bin"]), FAKE_DIR=str(self.root),
                   FAKE_BUCKET=str(self.bucket), FAKE_SOURCE=self.source, FAKE_SIG_RC=str(sig_rc),
                   FAKE_RPMDB=str(rpmdb or ""))
        return subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=60)

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(encoding="utf-8") if path.exists() else ""


@pytest.fixture
def install(tmp_path: Path) -> InstallStand:
    return InstallStand(tmp_path)


RPM_NAME = "vpce-doctor-0.1.0-1.amzn2023.noarch.rpm"
WHEEL_NAME = "vpce_doctor-0.1.0-py3-none-any.whl"


@pytest.mark.parametrize("name", [RPM_NAME, WHEEL_NAME])
def test_install_refuses_a_file_with_another_checksum(install: InstallStand, name: str) -> None:
    good = install.put(name, b"the package the admin meant")
    install.put(name, b"a package swapped in the bucket")
    done = install.run({"packageFile": name, "sha256": good})
    assert done.returncode == 1 and "does not have the SHA-256" in done.stderr, done.stderr
    assert install.log("aws") and not install.log("dnf") and not install.log("rpm")  # downloaded, never installed


def test_install_refuses_sources_outside_the_pinned_prefix(install: InstallStand) -> None:
    digest = install.put(RPM_NAME, b"x")
    for name, value in [("packageSource", "s3://other-bucket/vpce-doctor/packages/"),
                        ("packageSource", "https://example.com/packages/"),
                        ("packageFile", "../other/" + RPM_NAME), ("packageFile", "https://example.com/" + RPM_NAME)]:
        with pytest.raises(ValueError):
            validate(_load(INSTALL), name, value)
        # The script refuses them too, before any download.
        values = {"packageFile": RPM_NAME, "sha256": digest, name: value}
        done = install.run(values, check=False)
        assert done.returncode == 1 and "VpceDoctor-Install: package" in done.stderr, done.stderr
        assert not install.log("aws") and not install.log("dnf")


def test_install_rpm_needs_a_valid_signature(install: InstallStand) -> None:
    digest = install.put(RPM_NAME, b"unsigned")
    done = install.run({"packageFile": RPM_NAME, "sha256": digest}, sig_rc=1)
    assert done.returncode == 1 and "no valid signature" in done.stderr, done.stderr
    assert "_pkgverify_level signature" in install.log("rpm")  # plain rpm -K passes unsigned packages
    assert not install.log("dnf")


def test_install_rpm_is_installed_with_the_gpg_check_on(install: InstallStand) -> None:
    digest = install.put(RPM_NAME, b"signed")
    done = install.run({"packageFile": RPM_NAME, "sha256": digest})
    assert done.returncode == 0, done.stderr
    (dnf,) = install.log("dnf").splitlines()
    assert dnf.startswith("install -y ") and "--setopt=localpkg_gpgcheck=1" in dnf.split()
    assert dnf.endswith("/" + RPM_NAME)
    assert f"installed: vpce-doctor 0.1.0 (dnf, {install.source}{RPM_NAME}, sha256 {digest})" in done.stdout


def _real_rpm_tools() -> str:
    missing = [t for t in ("rpmbuild", "rpmsign", "gpg") if shutil.which(t) is None]
    missing += [t for t in ("/usr/bin/rpm", "/usr/bin/rpmkeys") if not os.path.exists(t)]
    return f"needs {', '.join(missing)}" if missing else ""


@pytest.mark.skipif(bool(_real_rpm_tools()), reason=_real_rpm_tools() or "tools present")
def test_install_with_real_rpm_signatures(install: InstallStand, tmp_path: Path) -> None:
    """The real rpmkeys on a scratch database: unsigned and unknown-key RPMs are refused, an RPM
    signed by the key at the release key's path is installed."""
    gnupg = tmp_path / "gnupg"
    gnupg.mkdir(mode=0o700)
    env = dict(os.environ, GNUPGHOME=str(gnupg))

    def sh(*argv: str) -> str:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (argv, done.stderr)
        return done.stdout

    spec = tmp_path / "vpce-doctor.spec"
    spec.write_text("Name: vpce-doctor\nVersion: 0.1.0\nRelease: 1\nSummary: t\nLicense: MIT\nBuildArch: noarch\n"
                    "%description\nt\n%files\n", encoding="utf-8")
    sh("rpmbuild", "-bb", "--quiet", "--define", f"_topdir {tmp_path / 'top'}", str(spec))
    (built,) = (tmp_path / "top" / "RPMS" / "noarch").glob("*.rpm")
    unsigned = built.read_bytes()
    for uid in ("vpce-doctor release <release@example.invalid>", "someone else <other@example.invalid>"):
        sh("gpg", "--batch", "--passphrase", "", "--quick-gen-key", uid, "rsa2048", "sign", "1d")

    def signed(uid: str) -> bytes:
        copy = tmp_path / f"signed-{uid.split()[0]}.rpm"
        copy.write_bytes(unsigned)
        sh("rpmsign", "--addsign", "--define", f"_gpg_name {uid}", "--define", f"__gpg {shutil.which('gpg')}",
           "--define", "_gpg_sign_cmd_extra_args --batch --pinentry-mode loopback --passphrase ''", str(copy))
        return copy.read_bytes()

    install.key.write_text(sh("gpg", "--armor", "--export", "vpce-doctor release"), encoding="utf-8")
    rpmdb = tmp_path / "rpmdb"
    rpmdb.mkdir()
    for data, ok in [(unsigned, False), (signed("someone"), False), (signed("vpce-doctor"), True)]:
        digest = install.put(RPM_NAME, data)
        done = install.run({"packageFile": RPM_NAME, "sha256": digest}, rpmdb=rpmdb)
        assert (done.returncode == 0) is ok, done.stderr
        assert bool(install.log("dnf")) is ok
        if not ok:
            assert "no valid signature" in done.stderr


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


def _run_in_lab(tmp_path: Path, values: Mapping[str, str], etc: Optional[Path] = None) -> subprocess.CompletedProcess:
    """RunCheck in the lab; ``etc`` (the lab's root-owned 0700 state folder) stands in for /etc/vpce-doctor."""
    script = tmp_path / "run-check.sh"
    text = render(_load(RUN_CHECK), values)
    script.write_text(localize(text, etc) if etc else text, encoding="utf-8")
    # On the instance, with the agent under test first on PATH, by bash (the SSM agent runs
    # "sh -c _script.sh"; sh is bash on Amazon Linux; dash is covered above). The agent's deadline
    # bounds the run; 120 s only guards against a hung lab.
    return _lab("exec", "--name", LAB_NAME, "--", "bash", "-c", 'PATH="$1:$PATH" exec bash "$2"', "run-check",
                str(AGENT_BIN), str(script), timeout=120)


@needs_lab
def test_run_check_in_the_healthy_lab(lab_up: Any, tmp_path: Path) -> None:
    state = lab_up("healthy")
    # Over the scenario's own config (s3 bucket and key), with one more isolation target.
    done = _run_in_lab(tmp_path, {"format": "json", "configFile": f"{ETC}/agent.yaml",
                                  "isolationTargets": "google.com,www.google.com:443"}, etc=state)
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
