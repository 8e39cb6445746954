"""The SSM agent's evidence readers (checks/agentfiles.py) and the ssm_agent.* findings, against real
files, executables and directories in tmp dirs. The log lines are the real agent's strings
(github:aws/amazon-ssm-agent: core/app/agent.go, agent/agent.go, agent/hibernation/hibernation.go)."""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, Dict, Optional

import pytest

from vpce_doctor.checks import agentfiles as af
from vpce_doctor.checks import agentlog
from vpce_doctor.checks import ssmagent
from vpce_doctor.checks.model import Facts, Settings, Status
from vpce_doctor.config import parse_config
from vpce_doctor.errors import ConfigError

try:
    from tests.unit.moto_fixture import by_id, run_check
except ImportError:  # tests/unit on sys.path
    from moto_fixture import by_id, run_check  # type: ignore

FACTS = Facts(region="us-east-1", domain="amazonaws.com", vpc_cidrs=("10.0.0.0/16",), imds_state="ok")
START = "2026-12-02 10:00:00.0001 INFO [amazon-ssm-agent] amazon-ssm-agent - v3.3.987.0"
DENIED = ("2026-12-02 10:01:00.0000 ERROR [ssm-agent-worker] error when calling AWS APIs. error details - "
          "AccessDeniedException: User: arn:aws:sts::123456789012:assumed-role/R/i-0abc is not authorized to "
          "perform: ssm:UpdateInstanceInformation on resource: arn:aws:ec2:us-east-1:123456789012:instance/i-0abc "
          "because no VPC endpoint policy allows the ssm:UpdateInstanceInformation action")
HIBERNATE = "2026-12-02 10:02:00.0000 INFO [ssm-agent-worker] Entering SSM Agent hibernate - AccessDeniedException"
BACKOFF = "2026-12-02 10:10:00.0000 INFO Backing off health check to every 3600 seconds for 10800 seconds."
NO_SPACE = ("2026-12-02 10:03:00.0000 ERROR open /var/lib/amazon/ssm/i-0abc/document/state/pending/x: "
            "no space left on device")
PROXY = ('2026-12-02 10:03:00.0000 ERROR RequestError: send request failed caused by: Post '
         '"https://ssm.us-east-1.amazonaws.com/": proxyconnect tcp: dial tcp 10.0.1.99:3128: connect: connection refused')


def write(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def settings_for(tmp_path: Path, **kw: Any) -> Settings:
    log = tmp_path / "log"
    data = tmp_path / "lib"
    log.mkdir(exist_ok=True)
    data.mkdir(exist_ok=True)
    base = dict(ssm_agent_log_dir=str(log), ssm_agent_data_dir=str(data),
                ssm_agent_config_file=str(tmp_path / "amazon-ssm-agent.json"),
                ssm_agent_binaries=(str(tmp_path / "bin" / "amazon-ssm-agent"),),
                ssm_agent_dropin_dirs=(str(tmp_path / "amazon-ssm-agent.service.d"),))
    base.update(kw)
    return Settings(**base)


def run(cid: str, settings: Settings, data: Optional[Dict[str, Any]] = None, facts: Facts = FACTS):
    return run_check(by_id(ssmagent.checks(settings))[cid], facts, settings, data=data)


RUNNING = {"ssm_agent": {"pids": [os.getpid()], "endpoint_connections": []}}


# --- log tails: bounded, binary, rotated, unreadable --------------------------------------------------

def test_tail_of_a_50_mb_log_reads_at_most_1_mib(tmp_path):
    path = tmp_path / "amazon-ssm-agent.log"
    line = b"2026-12-02 09:00:00.0000 INFO filler line that says nothing at all\n"
    with open(path, "wb") as fh:
        fh.write(line * (50 * 1024 * 1024 // len(line)))
        fh.write((START + "\n" + PROXY + "\n").encode())
    tail = agentlog.read_tail(str(path))
    assert tail.truncated and not tail.rotated and tail.problem is None and tail.size > 50_000_000
    assert sum(len(x) + 1 for x in tail.lines) <= agentlog.MAX_TAIL_BYTES
    assert tail.lines[0].startswith("2026-12-02 09:00:00.0000 INFO filler")  # the cut first line was dropped
    reading = agentlog.classify([tail])
    assert reading.version == "3.3.987.0" and set(reading.hits) == {"proxy"}


def test_binary_junk_is_tolerated_and_counted(tmp_path):
    path = tmp_path / "errors.log"
    path.write_bytes(os.urandom(4096) + b"\0\0\0\n" + (NO_SPACE + "\n").encode() + b"\xff\xfe\n")
    tail = agentlog.read_tail(str(path))
    assert tail.problem is None and tail.binary_bytes > 0
    assert "no_space" in agentlog.classify([tail]).hits


def test_rotated_during_the_read_is_said(tmp_path, monkeypatch):
    path = write(tmp_path / "amazon-ssm-agent.log", START, DENIED)
    real_pread = os.pread

    def rotate_then_read(fd, n, offset):  # logrotate renames the file and starts a new one mid-read
        if path.exists() and not (tmp_path / "amazon-ssm-agent.log.1").exists():
            path.rename(tmp_path / "amazon-ssm-agent.log.1")
            write(path, START)
        return real_pread(fd, n, offset)

    monkeypatch.setattr(agentlog.os, "pread", rotate_then_read)
    tail = agentlog.read_tail(str(path))
    assert tail.rotated and tail.problem is None and "access_denied" in agentlog.classify([tail]).hits


@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory", "missing"])
def test_what_is_not_a_plain_file_is_not_read(tmp_path, kind):
    path = tmp_path / "amazon-ssm-agent.log"
    if kind == "symlink":
        write(tmp_path / "secret", "root-only")
        path.symlink_to(tmp_path / "secret")
    elif kind == "fifo":
        os.mkfifo(path)  # O_NONBLOCK: never blocks
    elif kind == "directory":
        path.mkdir()
    tail = agentlog.read_tail(str(path))
    assert tail.problem and not tail.lines
    assert tail.exists is (kind != "missing")
    if kind == "symlink":
        assert "symlink" in tail.problem


def test_unreadable_log_is_named_in_the_finding(tmp_path, monkeypatch):
    s = settings_for(tmp_path)
    write(Path(s.ssm_agent_log_dir) / "amazon-ssm-agent.log", START, DENIED)
    real_open = os.open

    def deny(path, *a, **kw):  # what a non-root daemon gets for the agent's 0600 logs
        if str(path).startswith(s.ssm_agent_log_dir):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *a, **kw)

    monkeypatch.setattr(af.os, "open", deny)
    f = run("ssm_agent.log", s, RUNNING).findings[0]
    assert f.status == Status.OK and f.summary.startswith("not checked") and "permission denied" in f.summary


# --- classification ----------------------------------------------------------------------------------

def test_only_the_current_run_counts(tmp_path):
    old = DENIED.replace("10:01:00", "09:01:00")
    reading = agentlog.classify([agentlog.read_tail(str(write(tmp_path / "a.log", old, START)))])
    assert reading.hits == {} and reading.last_start == "2026-12-02 10:00:00.0001"


def test_hibernation_across_files_and_policy_type(tmp_path):
    main = write(tmp_path / "amazon-ssm-agent.log", START, DENIED, HIBERNATE)
    hib = write(tmp_path / "hibernate.log", BACKOFF)
    reading = agentlog.classify([agentlog.read_tail(str(main)), agentlog.read_tail(str(hib))])
    assert reading.hibernating and reading.policy_type() == "vpc_endpoint_policy"
    assert reading.hits["access_denied"]["count"] == 1
    assert reading.hits["hibernate"]["last"].endswith("for 10800 seconds.")


def test_secrets_in_log_lines_are_redacted(tmp_path):
    line = ("2026-12-02 10:05:00.0000 ERROR x509: certificate signed by unknown authority GET "
            "https://u:pw@s3.amazonaws.com/x?X-Amz-Signature=abcdef&X-Amz-Security-Token=SECRETTOKEN")
    reading = agentlog.classify([agentlog.read_tail(str(write(tmp_path / "a.log", START, line)))])
    text = reading.hits["tls"]["last"]
    assert "SECRETTOKEN" not in text and "abcdef" not in text and "pw@" not in text


# --- version -----------------------------------------------------------------------------------------

def fake_binary(path: Path, body: str, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(mode)
    return path


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the trusted-path rule wants root-owned files")


@needs_root
def test_version_from_the_binary(tmp_path):
    binary = fake_binary(tmp_path / "bin" / "amazon-ssm-agent", "echo \"SSM Agent version: 3.3.40.0\"; env | wc -c")
    probe = af.run_version([str(binary)])
    assert probe.version == "3.3.40.0" and probe.binary == str(binary)


@needs_root
@pytest.mark.parametrize("kind", ["symlink", "group_writable", "not_root", "dir_not_root"])
def test_untrusted_binary_is_refused(tmp_path, kind):
    real = fake_binary(tmp_path / "real" / "amazon-ssm-agent", 'echo "SSM Agent version: 3.3.40.0"')
    path = tmp_path / "bin" / "amazon-ssm-agent"
    path.parent.mkdir()
    if kind == "symlink":
        path.symlink_to(real)
    elif kind == "group_writable":
        fake_binary(path, 'echo "SSM Agent version: 3.3.40.0"', 0o775)
    elif kind == "not_root":
        fake_binary(path, 'echo "SSM Agent version: 3.3.40.0"')
        os.chown(path, 65534, 65534)
    else:
        fake_binary(path, 'echo "SSM Agent version: 3.3.40.0"')
        os.chown(path.parent, 65534, 65534)
    probe = af.run_version([str(path)])
    assert probe.version is None and probe.problems and "refused" in probe.problems[0]


@needs_root
def test_hanging_or_chatty_binary_is_bounded(tmp_path):
    hang = fake_binary(tmp_path / "a" / "amazon-ssm-agent", "sleep 30")
    probe = af.run_version([str(hang)], timeout_s=0.3)
    assert probe.version is None and "no answer within 0.3 s" in probe.problems[0]
    chatty = fake_binary(tmp_path / "b" / "amazon-ssm-agent", "yes junk")
    probe = af.run_version([str(chatty)], timeout_s=2.0)
    assert probe.version is None and len(probe.problems[0]) < 500


@pytest.mark.parametrize("version,session,mgs", [("2.3.50.0", False, False), ("2.3.68.0", True, False),
                                                  ("3.1.821.0", True, True), ("3.3.987.0", True, True)])
def test_version_gate(version, session, mgs):
    caps = ssmagent.capabilities(version)
    assert caps["session_manager"] is session and caps["run_command_via_ssmmessages"] is mgs


@needs_root
def test_too_old_agent_is_critical(tmp_path):
    s = settings_for(tmp_path)
    fake_binary(Path(s.ssm_agent_binaries[0]), 'echo "SSM Agent version: 2.3.50.0"')
    f = run("ssm_agent.version", s, RUNNING).findings[0]
    assert f.status == Status.CRITICAL and f.cause_code == "ssm_agent_too_old" and "2.3.68.0" in f.cause


def test_version_falls_back_to_the_start_line(tmp_path):
    s = settings_for(tmp_path)
    write(Path(s.ssm_agent_log_dir) / "amazon-ssm-agent.log", START)
    f = run("ssm_agent.version", s, RUNNING).findings[0]
    assert f.status == Status.OK and f.evidence["source"] == "log" and f.evidence["version"] == "3.3.987.0"


# --- proxy -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw,shown", [
    ("http://user:pa:ss@proxy:3128", "http://***@proxy:3128"), ("user:pass@10.0.0.5:3128", "***@10.0.0.5:3128"),
    ("https://proxy.corp:8443", "https://proxy.corp:8443"), ("http://u:p@ss@h:1", "http://***@h:1"),
    ("u:p@ss@h:1", "***@h:1"), ("socks5://u@h:1080/", "socks5://***@h:1080/")])
def test_proxy_redaction(raw, shown):
    assert af.redact_proxy(raw) == shown


@pytest.mark.parametrize("no_proxy,host,covered", [
    ("169.254.169.254,localhost", "169.254.169.254", True), ("169.254.0.0/16", "169.254.169.254", True),
    (".amazonaws.com", "ssm.us-east-1.amazonaws.com", True), ("amazonaws.com", "ssm.us-east-1.amazonaws.com", True),
    ("*", "x", True), ("localhost,127.0.0.1", "169.254.169.254", False), ("", "ssm.x", False)])
def test_no_proxy_rule(no_proxy, host, covered):
    assert af.no_proxy_covers(no_proxy, host) is covered


def test_proxy_only_in_the_unit_without_imds_exemption(tmp_path):
    s = settings_for(tmp_path)
    d = Path(s.ssm_agent_dropin_dirs[0])
    d.mkdir()
    write(d / "10-proxy.conf", "[Service]", 'Environment="HTTPS_PROXY=http://u:secret@10.0.1.99:3128" '
          '"HTTP_PROXY=http://u:secret@10.0.1.99:3128"', "Environment=NO_PROXY=localhost")
    f = run("ssm_agent.proxy", s, {"ssm_agent": None}).findings[0]
    assert f.status == Status.CRITICAL and f.cause_code == "ssm_agent_proxy_imds"
    assert "secret" not in repr(f.to_dict()) and f.evidence["dropins"]["HTTPS_PROXY"] == "http://***@10.0.1.99:3128"


def test_proxy_with_exemptions_is_ok(tmp_path):
    s = settings_for(tmp_path)
    d = Path(s.ssm_agent_dropin_dirs[0])
    d.mkdir()
    write(d / "p.conf", "[Service]", "Environment=HTTPS_PROXY=http://10.0.1.99:3128 HTTP_PROXY=http://10.0.1.99:3128 "
          "no_proxy=169.254.169.254,.amazonaws.com")
    assert run("ssm_agent.proxy", s).findings[0].status == Status.OK


# --- the log finding: the agent is blamed only when its path and the service accept it --------------

def test_access_denied_with_auth_failing_points_to_the_policy(tmp_path):
    s = settings_for(tmp_path)
    write(Path(s.ssm_agent_log_dir) / "amazon-ssm-agent.log", START, DENIED, HIBERNATE)
    f = run("ssm_agent.log", s, {**RUNNING, "auth.ssm": None, "clock": {}}).findings[0]
    assert f.cause_code == "ssm_agent_waits_for" and "auth.ssm" in f.cause and "restart" not in f.fix


def test_hibernating_after_the_fix_says_restart(tmp_path):
    s = settings_for(tmp_path)
    write(Path(s.ssm_agent_log_dir) / "amazon-ssm-agent.log", START, DENIED, HIBERNATE)
    write(Path(s.ssm_agent_log_dir) / "hibernate.log", BACKOFF)
    data = {**RUNNING, "auth.ssm": {"ok": True}, "iam.credentials": {}, "clock": {}, "resolver.system": {"differences": 0}}
    f = run("ssm_agent.log", s, data).findings[0]
    assert f.status == Status.CRITICAL and f.cause_code == "ssm_agent_hibernating"
    assert "sudo systemctl restart amazon-ssm-agent" in f.fix


def test_pinned_names_block_the_restart_advice(tmp_path):
    s = settings_for(tmp_path)
    write(Path(s.ssm_agent_log_dir) / "amazon-ssm-agent.log", START, HIBERNATE)
    f = run("ssm_agent.log", s, {**RUNNING, "resolver.system": {"differences": 3,
                                                             "misled_hosts": ["ssm.us-east-1.amazonaws.com"]}}).findings[0]
    assert f.cause_code == "ssm_agent_waits_for" and "resolver.system" in f.cause


def test_a_harmless_difference_does_not_hold_the_restart_advice(tmp_path):
    """An /etc/hosts pin to a working ENI differs from DNS but misleads nobody (no misled_hosts)."""
    s = settings_for(tmp_path)
    write(Path(s.ssm_agent_log_dir) / "amazon-ssm-agent.log", START, HIBERNATE)
    f = run("ssm_agent.log", s, {**RUNNING, "resolver.system": {"differences": 1, "misled_hosts": []}}).findings[0]
    assert f.cause_code != "ssm_agent_waits_for"


def test_no_space_is_named(tmp_path):
    s = settings_for(tmp_path)
    write(Path(s.ssm_agent_log_dir) / "errors.log", START, NO_SPACE)
    f = run("ssm_agent.log", s, RUNNING).findings[0]
    assert f.status == Status.CRITICAL and f.cause_code == "ssm_agent_log_no_space"


def test_nothing_installed_is_no_alarm(tmp_path):
    s = settings_for(tmp_path, ssm_agent_log_dir=str(tmp_path / "none"), ssm_agent_data_dir=str(tmp_path / "none2"))
    for cid in ("ssm_agent.user", "ssm_agent.version", "ssm_agent.proxy", "ssm_agent.log", "ssm_agent.disk",
                "ssm_agent.config"):
        f = run(cid, s, {"ssm_agent": None}).findings[0]
        assert f.status == Status.OK, (cid, f.summary)


# --- user, disk, config ------------------------------------------------------------------------------

def test_user_of_our_own_process():
    f = run("ssm_agent.user", Settings(), RUNNING).findings[0]
    if os.geteuid() == 0:
        assert f.status == Status.OK and f.evidence["processes"][0]["uid"] == 0
    else:
        assert f.status == Status.CRITICAL and f.cause_code == "ssm_agent_not_root"


def test_disk_ok_and_full(tmp_path, monkeypatch):
    s = settings_for(tmp_path)
    assert run("ssm_agent.disk", s, RUNNING).findings[0].status == Status.OK
    real = os.statvfs

    class Full:  # a real statvfs with no blocks left, as a full filesystem reports
        def __init__(self, st):
            self.f_bavail, self.f_frsize, self.f_blocks = 0, st.f_frsize, st.f_blocks
            self.f_favail, self.f_files = st.f_favail, st.f_files

    monkeypatch.setattr(af.os, "statvfs", lambda p: Full(real(p)))
    f = run("ssm_agent.disk", s, RUNNING).findings[0]
    assert f.status == Status.CRITICAL and f.cause_code == "ssm_agent_disk_full"


@pytest.mark.parametrize("content,status,code", [
    ('{"Agent": {"Region": ""}, "Ssm": {"Endpoint": ""}}', Status.OK, None),
    ('{"Agent": {"Region": "eu-west-1"}}', Status.CRITICAL, "ssm_agent_config_region"),
    ('{"Ssm": {"Endpoint": "https://vpce-0a-b.ssm.us-east-1.vpce.amazonaws.com"}}', Status.WARNING,
     "ssm_agent_config_endpoint"),
    ('{"Ssm": {"Endpoint": "ssm.us-east-1.amazonaws.com"}}', Status.OK, None),
    ('{"Agent": ', Status.WARNING, "ssm_agent_config_invalid"),
    ('{"Agent": {"Region": 7}}', Status.WARNING, "ssm_agent_config_invalid"),
    ("[" * 100000, Status.WARNING, "ssm_agent_config_invalid"), ("\0binary", Status.WARNING, "ssm_agent_config_invalid"),
    ("[1, 2]", Status.WARNING, "ssm_agent_config_invalid"),
])
def test_agent_json(tmp_path, content, status, code):
    s = settings_for(tmp_path)
    Path(s.ssm_agent_config_file).write_text(content)
    f = run("ssm_agent.config", s).findings[0]
    assert f.status == status and f.cause_code == code


def test_config_section_is_validated():
    cfg = parse_config({"ssm_agent": {"log_dir": "/x/log", "binaries": ["/opt/a"]}}, "c.yaml")
    assert cfg.settings.ssm_agent_log_dir == "/x/log" and cfg.settings.ssm_agent_binaries == ("/opt/a",)
    assert cfg.settings.ssm_agent_data_dir == "/var/lib/amazon/ssm"
    for bad in ({"log_dir": "relative"}, {"binaries": []}, {"binary": "/x"}):
        with pytest.raises(ConfigError) as info:
            parse_config({"ssm_agent": bad}, "c.yaml")
        assert "\n" not in str(info.value) and str(info.value).startswith("c.yaml: ssm_agent.")


def test_mode_bits_helper_sanity(tmp_path):
    p = fake_binary(tmp_path / "x", "true")
    assert stat.S_IMODE(p.stat().st_mode) == 0o755


@needs_root
def test_old_agent_needs_the_failing_ec2messages(tmp_path):
    s = settings_for(tmp_path)
    fake_binary(Path(s.ssm_agent_binaries[0]), 'echo "SSM Agent version: 3.0.1124.0"')
    f = run("ssm_agent.version", s, {**RUNNING, "dns.ec2messages": None, "reach.ec2messages": None}).findings[0]
    assert f.status == Status.CRITICAL and f.cause_code == "ssm_agent_needs_ec2messages"
    newer = fake_binary(Path(s.ssm_agent_binaries[0]), 'echo "SSM Agent version: 3.3.40.0"')
    os.utime(newer, (1, 1))  # a new file identity for the version cache
    f = run("ssm_agent.version", s, {**RUNNING, "dns.ec2messages": None, "reach.ec2messages": None}).findings[0]
    assert f.status == Status.OK and f.evidence["run_command_via_ssmmessages"] is True


@needs_root
def test_a_root_owned_symlinked_directory_is_followed(tmp_path):
    """snap's /snap/amazon-ssm-agent/current is a symlink to the revision: fine when root's all the way."""
    fake_binary(tmp_path / "rev" / "amazon-ssm-agent", 'echo "SSM Agent version: 3.3.40.0"')
    (tmp_path / "current").symlink_to(tmp_path / "rev")
    assert af.run_version([str(tmp_path / "current" / "amazon-ssm-agent")]).version == "3.3.40.0"


def test_proxy_only_in_a_new_drop_in_counts_too(tmp_path):
    """The running agent (our own process here) has no proxy; a drop-in adds one at the next start."""
    if any(k.lower().endswith("_proxy") for k in os.environ):
        pytest.skip("this test process has proxy variables")
    s = settings_for(tmp_path)
    d = Path(s.ssm_agent_dropin_dirs[0])
    d.mkdir()
    write(d / "p.conf", "[Service]", "Environment=HTTP_PROXY=http://10.0.1.99:3128")
    f = run("ssm_agent.proxy", s, RUNNING).findings[0]
    assert f.status == Status.CRITICAL and f.cause_code == "ssm_agent_proxy_imds"
    assert "not yet in the running agent" in f.summary and f.evidence["environment"] == {}
