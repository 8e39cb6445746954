"""The lab's fake SSM agent: the scenario key, the real agent's log lines per condition (read back by
the agent's own classifier), and its tmpfs disk (mounted, filled, unmounted)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.lab import agent_files
from tests.lab.fake_agent_spec import AgentSpec
from tests.lab.scenario import ScenarioError, parse
from vpce_doctor.checks import agentlog

EXPECTED_KIND = {"access_denied": "access_denied", "no_space": "no_space", "proxy": "proxy", "x509": "tls",
                 "expired_token": "expired_token", "clock": "clock", "hibernating": "hibernate"}


def test_old_strings_still_work():
    for state in ("running", "stopped", "not_connected"):
        sc = parse({"ssm_agent": state}, "s.yaml")
        assert sc.ssm_agent == state and sc.ssm_agent.state == state and sc.ssm_agent.user == "root"
    assert parse({}, "s.yaml").ssm_agent == "running"


def test_mapping():
    sc = parse({"ssm_agent": {"state": "not_connected", "version": "2.3.50.0", "user": "nobody", "log": "proxy",
                              "environment": {"HTTPS_PROXY": "http://10.0.1.99:3128"}, "disk_full": True,
                              "config": {"Ssm": {"Endpoint": ""}}}}, "s.yaml")
    a = sc.ssm_agent
    assert isinstance(a, AgentSpec) and a.version == "2.3.50.0" and a.disk_full and a.environment["HTTPS_PROXY"]


@pytest.mark.parametrize("value,where", [
    ({"state": "sleeping"}, "ssm_agent.state"), ({"version": 2.3}, "ssm_agent.version"),
    ({"user": "a b"}, "ssm_agent.user"), ({"environment": {"PATH": "/x"}}, "ssm_agent.environment"),
    ({"log": "weird"}, "ssm_agent.log"), ({"disk_full": "yes"}, "ssm_agent.disk_full"),
    ({"colour": 1}, "ssm_agent.colour"), ("sleeping", "ssm_agent")])
def test_bad_values_are_one_line_errors(value, where):
    with pytest.raises(ScenarioError) as info:
        parse({"ssm_agent": value}, "s.yaml")
    assert str(info.value).startswith(f"s.yaml:{where}: ") and "\n" not in str(info.value)


@pytest.mark.parametrize("condition", sorted(EXPECTED_KIND))
def test_the_lab_writes_what_the_agent_classifies(tmp_path, condition):
    spec = AgentSpec(log=condition, version="3.2.1.0")
    tails = []
    for name, lines in agent_files.log_lines(spec, "us-east-1").items():
        (tmp_path / name).write_text("".join(line + "\n" for line in lines))
        tails.append(agentlog.read_tail(str(tmp_path / name)))
    reading = agentlog.classify(tails)
    assert reading.version == "3.2.1.0" and EXPECTED_KIND[condition] in reading.hits
    assert reading.hibernating is (condition == "hibernating")
    if condition not in ("hibernating",):  # each error is in amazon-ssm-agent.log and errors.log: counted once
        assert reading.hits[EXPECTED_KIND[condition]]["count"] == 3


def test_healthy_log_has_no_cause(tmp_path):
    lines = agent_files.log_lines(AgentSpec(), "us-east-1")["amazon-ssm-agent.log"]
    (tmp_path / "a.log").write_text("\n".join(lines) + "\n")
    reading = agentlog.classify([agentlog.read_tail(str(tmp_path / "a.log"))])
    assert reading.hits == {} and reading.version == AgentSpec().version


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_disk_is_a_tmpfs_that_fills_and_unmounts(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    try:
        agent_files.setup(state, AgentSpec(disk_full=True, version="3.3.40.0", environment={"HTTPS_PROXY": "h:1"}),
                          "us-east-1")
        p = agent_files.paths(state)
        assert agent_files.mounts_under(state) == [str(p["fs"])]
        st = os.statvfs(p["data_dir"])
        assert st.f_bavail * st.f_frsize < 64 * 1024  # full
        assert "SSM Agent version: 3.3.40.0" in p["bin"].read_text()
        assert 'Environment="HTTPS_PROXY=h:1"' in (p["dropin_dir"] / "proxy.conf").read_text()
    finally:
        agent_files.unmount(state)
    assert agent_files.mounts_under(state) == []
    assert not (Path(agent_files.paths(state)["data_dir"]) / "filler").exists()
