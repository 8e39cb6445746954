"""Verdicts and renderers, from findings."""
from __future__ import annotations

import json
import time

from vpce_doctor.checks.model import Facts, Finding, Status
from vpce_doctor.render import render_json, render_nagios, render_table
from vpce_doctor.report import Report, verdicts

SERVICES = ("ssm", "ec2messages", "ssmmessages")


def healthy() -> dict:
    ids = ["imds", "instance.public_ip", "instance.profile", "ssm_agent", "resolver", "resolver.system", "ec2.api",
           "s3.dns", "s3.route", "s3.api", "s3.object", "egress.google.com"]
    for s in SERVICES:
        ids += [f"dns.{s}", f"eni.{s}", f"reach.{s}"]
    return {i: Finding(i, Status.OK, "fine") for i in ids}


def bad(fid: str, status: Status = Status.CRITICAL, code: str = "tcp_timeout") -> Finding:
    return Finding(fid, status, "broken", cause_code=code, cause=f"{code} happened", fix="fix it")


def report(findings: dict) -> Report:
    fs = tuple(findings.values())
    return Report(fs, Facts(region="us-east-1"), verdicts(fs), time.time(), 0.5)


def v(findings: dict) -> dict:
    return {x.name: x for x in verdicts(tuple(findings.values()))}


def test_healthy_all_works():
    out = v(healthy())
    assert {k: x.status for k, x in out.items()} == {
        "session_manager": "works", "run_command": "works", "s3_gateway": "works", "isolation": "works"}


def test_ssmmessages_missing_breaks_session_manager_not_run_command():
    f = healthy()
    f["dns.ssmmessages"] = bad("dns.ssmmessages", code="endpoint_missing")
    out = v(f)
    assert out["session_manager"].status == "broken" and "dns.ssmmessages" in out["session_manager"].reason
    assert out["run_command"].status == "works" and "ec2messages" in out["run_command"].reason


def test_both_message_channels_broken_breaks_run_command():
    f = healthy()
    f["reach.ssmmessages"] = bad("reach.ssmmessages")
    f["reach.ec2messages"] = bad("reach.ec2messages")
    assert v(f)["run_command"].status == "broken"


def test_ec2messages_broken_is_noted_for_old_agents():
    f = healthy()
    f["dns.ec2messages"] = bad("dns.ec2messages", code="private_dns_disabled")
    sm = v(f)["session_manager"]
    assert sm.status == "works" and "3.1.821.0" in sm.reason  # the release notes: ssmmessages carries commands from 3.1.821.0


def test_degraded_az_still_works_but_says_so():
    f = healthy()
    f["reach.ssm"] = bad("reach.ssm", Status.WARNING, "az_unreachable")
    out = v(f)
    assert out["session_manager"].status == "works" and "degraded" in out["session_manager"].reason


def test_internet_path_breaks_isolation_and_agent_not_connected_breaks_ssm():
    f = healthy()
    f["egress.google.com"] = bad("egress.google.com", code="internet_path")
    f["ssm_agent"] = bad("ssm_agent", Status.WARNING, "ssm_agent_not_connected")
    out = v(f)
    assert out["isolation"].status == "broken" and "egress.google.com" in out["isolation"].reason
    assert out["session_manager"].status == "broken" and out["run_command"].status == "broken"


def test_root_cause_is_named_before_what_it_blocked():
    f = healthy()
    f["reach.ssm"] = Finding("reach.ssm", Status.CRITICAL, "not run", cause="blocked by dns.ssm", blocked_by="dns.ssm")
    f["dns.ssm"] = bad("dns.ssm", code="private_dns_disabled")
    assert v(f)["session_manager"].reason.startswith("broken because dns.ssm")


def test_json_is_stable_and_complete():
    f = healthy()
    f["dns.ssm"] = bad("dns.ssm", code="private_dns_disabled")
    doc = json.loads(render_json(report(f)))
    assert doc["schema_version"] == 2 and doc["status"] == "CRITICAL" and doc["exit_code"] == 2
    assert set(doc["verdicts"]) == {"session_manager", "run_command", "s3_gateway", "isolation"}
    finding = next(x for x in doc["findings"] if x["id"] == "dns.ssm")
    assert set(finding) >= {"id", "status", "summary", "cause", "fix", "evidence", "duration_s", "cause_code"}


def test_table_shows_cause_and_fix_without_colour_off_tty():
    f = healthy()
    f["dns.ssm"] = bad("dns.ssm", code="private_dns_disabled")
    text = render_table(report(f), colour=False)
    assert "private_dns_disabled happened" in text and "fix it" in text and "\033[" not in text
    assert "Overall: CRITICAL (exit 2)" in text
    assert "\033[31m" in render_table(report(f), colour=True)


def test_nagios_first_line_has_status_and_perfdata():
    f = healthy()
    f["reach.ssm"] = Finding("reach.ssm", Status.WARNING, "1 of 2 ENIs unreachable", cause_code="az_unreachable",
                             cause="AZ b", fix="fix SG", evidence={"connect_ms": 1.5})
    lines = render_nagios(report(f)).splitlines()
    assert lines[0].startswith("VPCE-DOCTOR WARNING - reach.ssm: 1 of 2 ENIs unreachable |")
    assert "'reach.ssm_tcp'=0.0015s;;;0" in lines[0] and "'warning'=1;;;0" in lines[0]
    assert len(lines) == 1 + len(f)


def test_isolation_untestable_without_dns_is_unknown_not_broken():
    f = healthy()
    f["resolver"] = bad("resolver", code="resolver_unreachable")
    f["egress.google.com"] = Finding("egress.google.com", Status.CRITICAL, "not run", cause="blocked by resolver",
                                     blocked_by="resolver")
    out = v(f)
    assert out["isolation"].status == "unknown" and "resolver" in out["isolation"].reason
    assert out["session_manager"].status == "broken"


def accepted() -> dict:
    """healthy() plus the checks that prove AWS accepts the instance."""
    out = healthy()
    for fid in ("iam.credentials", "clock", "auth.ssm", "ssm.preferences", "session.requirements",
                "ssm_agent.log", "ssm_agent.version"):
        out[fid] = Finding(fid, Status.OK, "fine")
    return out


def test_acceptance_breaks_the_ssm_verdicts_not_s3():
    f = accepted()
    f["auth.ssm"] = bad("auth.ssm", code="access_denied_identity_policy")
    out = v(f)
    assert out["session_manager"].status == "broken" and "auth.ssm" in out["session_manager"].reason
    assert out["run_command"].status == "broken" and out["s3_gateway"].status == "works"


def test_root_causes_first_and_each_cause_once():
    f = accepted()
    f["auth.ssm"] = bad("auth.ssm", code="clock_skew")
    f["clock"] = bad("clock", code="clock_skew")
    f["ssm_agent"] = bad("ssm_agent", Status.WARNING, code="ssm_agent_not_accepted")  # a symptom
    reason = v(f)["session_manager"].reason
    assert reason.startswith("broken because clock:") and "auth.ssm" not in reason and "ssm_agent" not in reason


def test_session_needs_break_session_manager_only():
    f = accepted()
    f["session.kms"] = bad("session.kms", code="session_kms_endpoint_missing")
    out = v(f)
    assert out["session_manager"].status == "broken" and "session.kms" in out["session_manager"].reason
    assert out["run_command"].status == "works"


def _system_dns(host: str) -> Finding:
    return Finding("resolver.system", Status.CRITICAL, "pinned", cause_code="system_dns_differs",
                   evidence={"differences": [{"host": host, "status": "CRITICAL"}]})


def test_what_the_agent_resolves_counts_per_service():
    f = accepted()
    f["resolver.system"] = _system_dns("ssmmessages.us-east-1.amazonaws.com")
    out = v(f)
    assert out["session_manager"].status == "broken" and "resolver.system" in out["session_manager"].reason
    assert out["run_command"].status == "works" and "ec2messages" in out["run_command"].reason
    f["resolver.system"] = _system_dns("s3.us-east-1.amazonaws.com")
    out = v(f)
    assert out["session_manager"].status == "works" and out["s3_gateway"].status == "broken"


def test_s3_breaks_only_beyond_fifteen_minutes():
    f = accepted()
    f["clock"] = Finding("clock", Status.CRITICAL, "420 s behind", cause_code="clock_skew", evidence={"skew_s": -420})
    assert v(f)["s3_gateway"].status == "works" and v(f)["session_manager"].status == "broken"
    f["clock"] = Finding("clock", Status.CRITICAL, "1200 s ahead", cause_code="clock_skew", evidence={"skew_s": 1200})
    assert v(f)["s3_gateway"].status == "broken"


# --- issue 14: root cause first, once; what was not proven ------------------------------------------
def blocked_by_imds() -> dict:
    f = healthy()
    f["imds"] = Finding("imds", Status.CRITICAL, "IMDS is disabled: the IMDSv2 token request got 403",
                        cause_code="imds_disabled", cause="IMDS is off", fix="enable it")
    for fid in list(f):
        if fid not in ("imds", "ssm_agent"):
            f[fid] = Finding(fid, Status.CRITICAL, "not run: blocked by imds", cause="blocked by imds: IMDS is off",
                             blocked_by="imds")
    return f


def test_blocked_findings_collapse_under_their_root():
    f = blocked_by_imds()
    table = render_table(report(f))
    blocked = [i for i, x in f.items() if x.blocked_by]
    assert sum(1 for line in table.splitlines() if line.startswith("CRITICAL")) == 1  # the root only
    assert f"{len(blocked)} checks not run because of this:" in table
    assert all(i in table for i in blocked)  # named once, in the root's line
    verbose = render_table(report(f), verbose=True)
    assert sum(1 for line in verbose.splitlines() if line.startswith("CRITICAL")) == 1 + len(blocked)


def test_nagios_names_the_worst_root_in_120_characters():
    f = blocked_by_imds()
    f["ssm_agent"] = Finding("ssm_agent", Status.WARNING, "not connected " * 20, cause_code="x", cause="y", fix="z")
    lines = render_nagios(report(f)).splitlines()
    status_text = lines[0].split(" | ", 1)[0]
    assert status_text.startswith("VPCE-DOCTOR CRITICAL - imds: IMDS is disabled") and len(status_text) <= 120
    assert "(+1 more)" in status_text  # the WARNING comes after the CRITICAL root, never first
    assert lines[1].startswith("[CRITICAL] imds:") and lines[2].startswith("[CRITICAL] ")
    assert "checks not run because of imds" in lines[2]
    assert not any(line.startswith("[CRITICAL] dns.ssm") for line in lines)


def test_verdicts_name_the_same_root_of_one_blockage():
    out = v(blocked_by_imds())
    for name in ("session_manager", "run_command", "s3_gateway"):
        assert out[name].status == "broken" and out[name].reason.startswith("broken because imds:"), out[name]
    assert out["isolation"].status == "unknown" and out["isolation"].reason.startswith("not tested because imds:")


def test_unverified_is_shown_as_such_and_does_not_change_the_exit_code():
    f = healthy()
    f["eni.ssm"] = Finding("eni.ssm", Status.OK, "identity not confirmed (no EC2 API)", verified=False)
    r = report(f)
    assert r.exit_code == 0 and r.status == Status.OK
    doc = json.loads(render_json(r))
    assert doc["schema_version"] == 2
    eni = next(x for x in doc["findings"] if x["id"] == "eni.ssm")
    assert eni["status"] == "OK" and eni["verified"] is False
    assert any(line.startswith("UNVERIFIED eni.ssm") for line in render_table(r).splitlines())
    assert "[UNVERIFIED] eni.ssm: identity not confirmed" in render_nagios(r)
    assert "(not proven: eni.ssm)" in v(f)["session_manager"].reason


def test_strict_counts_what_was_not_proven():
    from vpce_doctor.runtime import strictly

    f = Finding("s3.object", Status.OK, "no test object configured", verified=False)
    assert strictly(f).status == Status.WARNING and strictly(f).summary.startswith("not verified: ")
    proven = Finding("s3.api", Status.OK, "200 OK")
    assert strictly(proven) is proven


def test_no_python_repr_reaches_a_report():
    f = healthy()
    f["s3.api"] = Finding("s3.api", Status.CRITICAL, "ListBuckets: ConnectTimeoutError (<botocore.awsrequest."
                          "AWSHTTPSConnection object at 0x7fac70b48bd0>, 'timed out')", cause="c", fix="f")
    r = report(f)
    assert "0x7fac" not in render_table(r) and "0x7fac" not in render_nagios(r) and "0x7fac" not in render_json(r)


def test_an_agent_connected_while_one_path_fails_breaks_only_that_paths_verdicts():
    f = healthy()
    f["dns.ssmmessages"] = bad("dns.ssmmessages", code="private_dns_disabled")
    f["ssm_agent"] = Finding("ssm_agent", Status.WARNING, "connected, but new connections would fail",
                             cause_code="ssm_agent_connected_path_failing", cause="c", fix="f")
    out = v(f)
    assert out["run_command"].status == "works"  # through ec2messages
    assert out["session_manager"].status == "broken" and "dns.ssmmessages" in out["session_manager"].reason


def test_service_proven_over_the_internet_is_not_broken_by_its_dns_finding():
    """Issue 12: Private DNS off, but a NAT carries SSM: the verdicts say works (degraded), the DNS
    finding stays CRITICAL; without that proof the same DNS finding breaks them."""
    f = healthy()
    f["dns.ssm"] = bad("dns.ssm", code="private_dns_disabled")
    f["eni.ssm"] = Finding("eni.ssm", Status.CRITICAL, "not run: blocked by dns.ssm", blocked_by="dns.ssm")
    f["reach.ssm"] = Finding("reach.ssm", Status.WARNING, "ssm works, but not through an interface endpoint",
                             cause_code="reach_via_internet", evidence={"path": "internet"})
    out = v(f)
    assert out["session_manager"].status == "works" and "not through an interface endpoint" in out["session_manager"].reason
    assert out["run_command"].status == "works"
    f["reach.ssm"] = Finding("reach.ssm", Status.CRITICAL, "blocked", blocked_by="dns.ssm")
    assert v(f)["session_manager"].status == "broken"
