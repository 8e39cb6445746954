"""The table for people (agent/render.py, agent/table_fold.py): what is wrong first, worst first,
with cause and fix; then what is OK but not proven; then one line per area; ``verbose`` shows every
row. The JSON and Nagios renderings do not change with the table's folding."""
from __future__ import annotations

import json
import re
import time
from typing import Dict, List

from vpce_doctor.checks.model import Facts, Finding, Status
from vpce_doctor.render import render_json, render_nagios, render_table
from vpce_doctor.report import Report, verdicts

IPS = {"ssm": ("10.0.1.101", "10.0.2.101"), "ssmmessages": ("10.0.1.103", "10.0.2.103")}


def _reach_ip(svc: str, ip: str, az: str, connect_ms: float, status: Status = Status.OK) -> Finding:
    ev = {"ip": ip, "tcp": "connected" if status == Status.OK else "timeout", "connect_ms": connect_ms,
          "az": az, "tls": "ok" if status == Status.OK else "not attempted",
          "tls_version": "TLSv1.3" if status == Status.OK else None}
    if status == Status.OK:
        return Finding(f"reach.{svc}.{ip}", status, f"{ip}:443 ({az}) accepts TLS", evidence=ev)
    return Finding(f"reach.{svc}.{ip}", status, f"{ip}:443 ({az}) TCP timeout", evidence=ev,
                   cause_code="tcp_timeout", cause=f"{ip} does not answer TCP 443", fix="open TCP 443")


def findings(broken: bool = False) -> List[Finding]:
    out = [
        Finding("imds", Status.OK, "IMDSv2 answered", evidence={"state": "ok", "duration_ms": 28.0}),
        Finding("instance.public_ip", Status.OK, "no public IPv4 address", evidence={"public_ipv4": None}),
        Finding("instance.profile", Status.OK, "instance profile …",
                evidence={"instance_profile_arn": "arn:aws:iam::123456789012:instance-profile/SSMInstanceRole"}),
        Finding("resolver", Status.OK, "The Amazon resolver answers", evidence={"server": "10.0.0.2", "latency_ms": 6.3}),
        Finding("ec2.api", Status.OK, "EC2 API not reachable from here", verified=False,
                evidence={"available": False}),
    ]
    for svc, (ip_a, ip_b) in IPS.items():
        out += [Finding(f"dns.{svc}", Status.OK, "Private DNS works", evidence={"answers": [ip_a, ip_b]}),
                Finding(f"eni.{svc}", Status.OK, "identity not confirmed", verified=False,
                        evidence={"confirmed": False})]
        if broken and svc == "ssm":
            out += [Finding("reach.ssm", Status.WARNING, "1 of 2 endpoint addresses of ssm fail (10.0.2.101)",
                            cause_code="az_unreachable", cause="one AZ does not answer", fix="check that AZ"),
                    _reach_ip(svc, ip_a, "us-east-1a", 0.4),
                    _reach_ip(svc, ip_b, "us-east-1b", 2000.0, Status.WARNING)]
        else:
            out += [Finding(f"reach.{svc}", Status.OK, f"All 2 endpoint addresses of {svc} accept TLS",
                            evidence={"total": 2, "ok_ips": [ip_a, ip_b]}),
                    _reach_ip(svc, ip_a, "us-east-1a", 0.4), _reach_ip(svc, ip_b, "us-east-1b", 3.1)]
    out += [
        Finding("s3.dns", Status.OK, "s3 resolves", evidence={"interface_endpoint": False}),
        Finding("s3.api", Status.CRITICAL if broken else Status.OK, "ListBuckets failed" if broken else "ListBuckets 200",
                evidence={"operation": "ListBuckets", "http_status": 200, "latency_ms": 43.6},
                **({"cause_code": "s3_no_route", "cause": "no route to S3", "fix": "add the gateway route"}
                   if broken else {})),
        Finding("egress.google.com", Status.OK, "isolated: google.com times out"),
        Finding("clock", Status.OK, "local clock agrees with AWS", evidence={"skew_s": 0.7}),
    ]
    return out


def report(fs: List[Finding]) -> Report:
    return Report(tuple(fs), Facts(region="us-east-1", instance_id="i-0123456789abcdef0"), verdicts(fs),
                  time.time(), 0.8)


def area_lines(table: str) -> Dict[str, str]:
    lines = table.split("By area", 1)[1].split("\n\nVerdicts", 1)[0].splitlines()[1:]
    return {line.split()[0]: line for line in lines}


def test_healthy_services_fold_into_one_line_each() -> None:
    table = render_table(report(findings()))
    areas = area_lines(table)
    assert re.search(r"^  ssm\s+ok\s+2 AZ · TLS 1\.3 · connect ≤ 3\.1 ms \(not proven: eni\.ssm\)$", areas["ssm"]), table
    assert "2 AZ · TLS 1.3" in areas["ssmmessages"]
    assert "profile SSMInstanceRole" in areas["instance"] and "IMDSv2" in areas["instance"]
    assert "ListBuckets 200" in areas["s3"] and "google.com unreachable" in areas["egress"]
    assert "What is wrong" not in table
    # Per-address rows and passing checks are folded away; the unproven stay visible.
    assert "reach.ssm.10.0.1.101" not in table and "Private DNS works" not in table
    unproven = table.split("OK but not proven", 1)[1].split("By area", 1)[0]
    assert [line.split()[1] for line in unproven.splitlines()[1:] if line.startswith("UNVERIFIED")] == [
        "ec2.api", "eni.ssm", "eni.ssmmessages"]
    assert table.rstrip().endswith("Overall: OK (exit 0)")


def test_what_is_wrong_comes_first_worst_first_with_cause_and_fix() -> None:
    table = render_table(report(findings(broken=True)))
    head = table.split("OK but not proven", 1)[0]
    rows = [line.split()[:2] for line in head.splitlines() if line[:1].isupper() and line.split()[0] in
            ("CRITICAL", "WARNING")]
    assert rows == [["CRITICAL", "s3.api"], ["WARNING", "reach.ssm"], ["WARNING", "reach.ssm.10.0.2.101"]]
    assert "cause: no route to S3" in head and "fix:   add the gateway route" in head
    assert "one AZ does not answer" in head
    ssm = area_lines(table)["ssm"]
    assert re.search(r"ssm\s+WARNING\s+see above: reach\.ssm, reach\.ssm\.10\.0\.2\.101; passing: 1 AZ", ssm), ssm
    assert table.index("What is wrong") < table.index("OK but not proven") < table.index("By area")


def test_verbose_shows_every_row_in_report_order_with_evidence() -> None:
    fs = findings(broken=True)
    table = render_table(report(fs), verbose=True)
    ids = [line.split()[1] for line in table.splitlines()
           if line.split() and line.split()[0] in ("OK", "WARNING", "CRITICAL", "UNVERIFIED", "UNKNOWN")]
    assert ids == [f.id for f in fs]
    assert "data:" in table and "By area" not in table


def test_json_and_nagios_do_not_depend_on_the_table() -> None:
    r = report(findings(broken=True))
    doc = json.loads(render_json(r))
    assert [f["id"] for f in doc["findings"]] == [f.id for f in r.findings]
    assert doc["schema_version"] == 2
    first = render_nagios(r).splitlines()[0]
    assert first.startswith("VPCE-DOCTOR CRITICAL - s3.api: ListBuckets failed (+2 more) | ")


def test_an_area_with_evidence_of_another_shape_still_gets_a_line() -> None:
    fs = [Finding("imds", Status.OK, "ok", evidence={"duration_ms": "fast"}),
          Finding("reach.ssm.10.0.0.5", Status.OK, "ok", evidence={"connect_ms": "n/a", "tls_version": 13}),
          Finding("dynamodb.api", Status.OK, "ok"), Finding("dynamodb.route", Status.OK, "ok")]
    areas = area_lines(render_table(report(fs)))
    assert "dynamodb" in areas and "api, route ok" in areas["dynamodb"]
    assert set(areas) == {"instance", "ssm", "dynamodb"}


def test_what_a_failure_blocked_is_named_once_under_its_root_and_in_its_area() -> None:
    fs = [f for f in findings() if not f.id.startswith(("eni.ssm", "reach.ssm"))]
    fs = [Finding("dns.ssm", Status.CRITICAL, "ssm resolves to public addresses", cause_code="private_dns_disabled",
                  cause="Private DNS is off", fix="turn it on") if f.id == "dns.ssm" else f for f in fs]
    fs += [Finding("eni.ssm", Status.CRITICAL, "not run", blocked_by="dns.ssm"),
           Finding("reach.ssm", Status.CRITICAL, "not run", blocked_by="eni.ssm"),
           Finding("auth.ssm", Status.CRITICAL, "not run", blocked_by="reach.ssm")]
    table = render_table(report(fs))
    wrong = table.split("What is wrong", 1)[1].split("\n\n", 1)[0]
    assert [line.split()[1] for line in wrong.splitlines()[1:] if line.startswith("CRITICAL")] == ["dns.ssm"]
    assert "3 checks not run because of this: eni.ssm, reach.ssm, auth.ssm" in " ".join(wrong.split())
    areas = area_lines(table)
    assert re.search(r"ssm\s+CRITICAL\s+see above: dns\.ssm; not run because of dns\.ssm: eni\.ssm, reach\.ssm$",
                     areas["ssm"]), areas["ssm"]
    assert "not run because of dns.ssm: auth.ssm" in areas["credentials"]
