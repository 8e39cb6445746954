"""Control bytes from outside never reach the terminal (issue 12 part 7).

The attack: answers that carry ``ESC[2J`` (clear the screen), an OSC title, ``\\r`` (print over the
line), the 8-bit CSI and bidi overrides (U+202E, U+2066). They come from the IMDS stand-in (the
role credentials' Code and Message), a DNS stand-in (a CNAME whose labels hold those bytes) and an
AWS-shaped listener (every error message). ``vpce-doctor check`` runs as a subprocess in a private
network namespace (loopback only) in every format with ``-vv``; stdout and stderr must hold no raw
control byte, and the attack must visibly have arrived (as escapes). The logging formatters and the
report-level pass are checked directly too.
"""
from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Tuple

import pytest

from tests.unit.imds_server import DEFAULT_DATA, ImdsServer
from tests.unit.moto_fixture import FakeAws, Netns
from vpce_doctor import logging_setup
from vpce_doctor.checks.model import Facts, Finding, Status
from vpce_doctor.checks.textsafe import escape_controls, has_controls
from vpce_doctor.render import render_json, render_nagios, render_table
from vpce_doctor.report import Report, Verdict

ATTACK = "\x1b[2J\x1b]0;owned\x07\r\u202eKO\u2066\x9b31m"
XML_ATTACK = "\r\u202eKO\u2066\x9b31m"
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")  # \n and \t are ours
ROLE = "SSMInstanceRole"


def _raw_controls(text: str) -> List[str]:
    return sorted({repr(m.group(0)) for m in RAW.finditer(text)})


# --- the pieces, directly ----------------------------------------------------------------------------

def test_escape_controls_makes_each_control_visible() -> None:
    assert escape_controls(ATTACK) == "\\x1b[2J\\x1b]0;owned\\x07\\r\\u202eKO\\u2066\\x9b31m"
    assert escape_controls("a\nb\tc") == "a\\nb\\tc"
    assert escape_controls("a\nb\tc\r", multiline=True) == "a\nb\tc\\r"
    plain = "ünïcødé ✓ 10.0.1.5 — ok"
    assert escape_controls(plain) is plain and not has_controls(plain)


def _report(text: str) -> Report:
    f = Finding("auth.ssm", Status.CRITICAL, "AWS said: " + text, cause_code="credentials_rejected",
                cause="because " + text, fix="fix " + text, evidence={"message": text, text: [text]})
    ok = Finding("dns.ssm", Status.OK, "answers via cname " + text, evidence={"cnames": [text]}, verified=False)
    return Report((f, ok), Facts(region="us-east-1", instance_id="i-0123456789abcdef0"),
                  (Verdict("session_manager", "Session Manager", "broken", "broken because " + text),),
                  time.time(), 0.1, notes=("note " + text,))


@pytest.mark.parametrize("verbose", [False, True])
def test_every_format_escapes_what_a_report_carries(verbose: bool) -> None:
    r = _report(ATTACK + "\nsecond line")
    outputs = {"table": render_table(r, verbose=verbose), "nagios": render_nagios(r), "json": render_json(r)}
    for fmt, text in outputs.items():
        assert not _raw_controls(text), (fmt, _raw_controls(text))
    # One-line fields stay one line: the newline from the answer is shown, not obeyed.
    assert "AWS said: \\x1b[2J" in outputs["table"] and "\\nsecond line" in outputs["table"]
    assert not any(line.startswith("second line") for fmt in ("table", "nagios") for line in outputs[fmt].splitlines())
    assert r.findings[0].evidence["message"].endswith("\nsecond line")  # evidence keeps its lines (JSON escapes them)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_log_lines_escape_controls(fmt: str) -> None:
    stream = io.StringIO()
    logging_setup.configure(fmt, stream=stream)
    try:
        logging.getLogger("vpce_doctor.test").warning("answer %s", ATTACK, extra={"detail": ATTACK})
    finally:
        logging_setup.configure("text", stream=io.StringIO())
    text = stream.getvalue()
    assert text.count("\n") == 1 and not _raw_controls(text), repr(text)
    assert "\\x1b[2J" in text and "u202e" in text


# --- end to end: the CLI against stand-ins that carry the attack --------------------------------------

class AttackingAws:
    """Every AWS call is refused with a message that carries the attack (JSON 1.1 and XML services)."""

    def __init__(self) -> None:
        self.calls = 0
        self.fake = FakeAws(self._answer)

    def _answer(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Tuple[int, Dict[str, str], bytes]:
        self.calls += 1
        message = "User is not authorized " + ATTACK
        if headers.get("x-amz-target"):
            return 400, {"Content-Type": "application/x-amz-json-1.1"}, json.dumps(
                {"__type": "AccessDeniedException", "message": message}).encode()
        # XML 1.0 has no C0 controls but tab, newline and CR (a parser refuses ESC): the rest stays.
        message = "User is not authorized " + XML_ATTACK
        xml = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>UnauthorizedOperation"
               f"</Code><Message>{message}</Message></Error></Errors><RequestID>r</RequestID></Response>")
        return 403, {"Content-Type": "text/xml"}, xml.encode("utf-8")


def _dns_stand_in(stop: threading.Event) -> Tuple[socket.socket, threading.Thread]:
    """UDP 127.0.0.1:53 (in the namespace): every A query gets a CNAME whose labels hold control
    bytes, then an address on loopback (nothing listens there: connections are refused at once)."""
    import dns.message
    import dns.name
    import dns.rdatatype
    import dns.rrset

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 53))
    sock.settimeout(0.1)
    evil = dns.name.Name([b"x\x1b[2J\r", "\u202eKO".encode(), b"example", b""])

    def serve() -> None:
        while not stop.is_set():
            try:
                wire, peer = sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(wire)
                reply = dns.message.make_response(query)
                qname = query.question[0].name
                if query.question[0].rdtype == dns.rdatatype.A:
                    reply.answer.append(dns.rrset.from_text(qname, 60, "IN", "CNAME", evil.to_text()))
                    reply.answer.append(dns.rrset.from_text(evil, 60, "IN", "A", "127.0.0.9"))
                sock.sendto(reply.to_wire(), peer)
            except Exception:  # noqa: BLE001 - a malformed query gets no answer
                continue

    thread = threading.Thread(target=serve, daemon=True, name="dns-attack")
    thread.start()
    return sock, thread


@pytest.fixture(scope="module")
def netns() -> Iterator[Netns]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2: the agent runs in a private network namespace")
    ns = Netns("ctl")
    try:
        yield ns.create(["127.0.0.9"])
    finally:
        ns.delete()


@pytest.fixture
def attack(tmp_path: Path, netns: Netns, request: Any) -> Iterator[Tuple[Dict[str, str], Path, AttackingAws]]:
    code = request.param
    creds = {"Code": code, "LastUpdated": "2026-12-03T06:00:00Z", "Type": "AWS-HMAC", "Message": "IMDS says " + ATTACK,
             "AccessKeyId": "ASIAEXAMPLEEXAMPLE01", "SecretAccessKey": "not-a-secret", "Token": "t",
             "Expiration": "2036-12-03T12:00:00Z"}
    data = dict(DEFAULT_DATA, **{"iam/security-credentials/": ROLE, f"iam/security-credentials/{ROLE}": json.dumps(creds)})
    aws: AttackingAws = netns.call(AttackingAws)
    stop = threading.Event()
    dns_sock, dns_thread = netns.call(lambda: _dns_stand_in(stop))
    with netns.call(lambda: ImdsServer("ok", data=data)) as imds:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AWS_", "VPCE_DOCTOR_")) and k.lower() not in ("https_proxy", "http_proxy", "no_proxy")}
        env.update({"AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.endpoint + "/", "AWS_CONFIG_FILE": os.devnull,
                    "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "NO_PROXY": "127.0.0.1,localhost"})
        for svc in ("SSM", "EC2", "S3", "MONITORING", "KMS", "LOGS", "STS"):
            env[f"VPCE_DOCTOR_ENDPOINT_URL_{svc}"] = aws.fake.url
        agent = tmp_path / "agent"
        for sub in ("log", "data", "unit.d"):
            (agent / sub).mkdir(parents=True)
        config = tmp_path / "config.yaml"
        config.write_text(f"""\
imds: {{endpoint: "{imds.endpoint}", timeout_s: 1}}
resolver: 127.0.0.1
timeouts: {{deadline_s: 5, dns_s: 0.5, connect_s: 0.5, tls_s: 0.5, api_s: 2}}
egress: {{targets: ["vdt-egress.invalid:443"], timeout_s: 0.3}}
ssm_agent:
  log_dir: {agent / 'log'}
  data_dir: {agent / 'data'}
  config_file: {agent / 'amazon-ssm-agent.json'}
  binaries: [{agent / 'amazon-ssm-agent'}]
  dropin_dirs: [{agent / 'unit.d'}]
""")
        try:
            yield env, config, aws
        finally:
            stop.set()
            dns_sock.close()
            dns_thread.join(timeout=5)
            aws.fake.close()


def _run(ns: Netns, args: List[str], env: Dict[str, str]) -> subprocess.CompletedProcess:
    cmd = ["ip", "netns", "exec", ns.name, sys.executable, "-m", "vpce_doctor"] + args
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


@pytest.mark.parametrize("attack", ["Failed", "Success"], indirect=True,
                         ids=["imds-credentials-message", "aws-error-message"])
def test_no_control_byte_from_imds_dns_or_aws_reaches_any_output(attack: Tuple[Dict[str, str], Path, AttackingAws],
                                                                 netns: Netns) -> None:
    env, config, aws = attack
    outputs = {}
    for fmt in ("table", "json", "nagios"):
        proc = _run(netns, ["check", "--config", str(config), "--format", fmt, "-vv"], env)
        outputs[f"{fmt} stdout"] = proc.stdout
        outputs[f"{fmt} stderr"] = proc.stderr
    proc = _run(netns, ["check", "--config", str(config), "-v"], env)
    outputs["table -v stdout"] = proc.stdout
    if os.environ.get("VDT_DUMP"):
        for where, text in outputs.items():
            print("=====", where, "\n", text)
    for where, text in outputs.items():
        assert not _raw_controls(text), (where, _raw_controls(text), text[:3000])
    # The attack really arrived, and is shown as escapes.
    doc = json.loads(outputs["json stdout"])
    seen = "\n".join(_strings(doc))
    assert "IMDS says \\x1b[2J\\x1b]0;owned\\x07\\r\\u202eKO" in seen, seen[:2000]  # the role credentials' Message
    # EC2's XML error (XML turns the CR into a newline; evidence keeps it, one-line fields show \n).
    assert aws.calls and "not authorized \\n\\u202eKO\\u2066\\x9b31m" in seen, seen[:2000]
    assert "\\u202eKO" in outputs["table stdout"] and "\\u202eKO" in outputs["nagios stdout"]
    # dnspython shows a label's bytes as \DDD: the CNAME arrives escaped as well.
    assert "x\\\\027[2J" in outputs["json stdout"] or "x\\027[2J" in seen, seen[:2000]
