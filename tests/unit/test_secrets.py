"""No secret leaves the process (issue 11): fake credentials and a proxy password are planted in
every place the agent reads — the environment, IMDS's role credentials, the SSM agent's unit
drop-in and log, AWS error answers that echo the signed request — and every output is searched:
``check`` in each format with ``-vv`` (stdout and stderr), the daemon's log, last-report.json, the
custom inventory file, the PutInventory body that went to the (stand-in) service, ``/report`` and
``/metrics``.

Real parts: the CLI and the daemon as subprocesses, the IMDS stand-in and a service-shaped HTTP
listener, all inside a private network namespace with loopback only (the resolver and egress
probes go nowhere). The proxy named in the environment is a closed loopback port (NO_PROXY keeps
the stand-ins direct, so the password is only *configured*).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Tuple

import pytest

from tests.unit.imds_server import DEFAULT_DATA, ImdsServer, closed_port
from tests.unit.moto_fixture import FakeAws, Netns

KEY_ID = "ASIAPLANTEDKEYID0001"
SECRET = "pLaNtEd/SeCrEtKeY+0123456789abcdefGHIJKLmn"
TOKEN = "IQoJb3JpZ2luX2VjPLANTEDsessionTOKEN0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH0123456789"
PASSWORD = "Pr0xyPa55w0rd"
ROLE = "SSMInstanceRole"
PLANTED = (KEY_ID, SECRET, TOKEN, PASSWORD)


class Service:
    """One listener for every AWS service the agent calls: each answer is an error that echoes what
    a real service (or a proxy's error page) may echo — the Authorization header and the canonical
    request with ``x-amz-security-token``. It records every request body."""

    def __init__(self) -> None:
        self.bodies: List[bytes] = []
        self.signatures: List[str] = []
        self.fake = FakeAws(self._answer)

    def _answer(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Tuple[int, Dict[str, str], bytes]:
        self.bodies.append(body)
        auth = headers.get("authorization", "")
        self.signatures += re.findall(r"Signature=([0-9a-f]{64})", auth)
        token = headers.get("x-amz-security-token", "")
        canonical = (f"POST\n/\n\ncontent-type:application/x-amz-json-1.1\nhost:{headers.get('host')}\n"
                     f"x-amz-security-token:{token}\nx-amz-target:{headers.get('x-amz-target')}\n")
        if headers.get("x-amz-target"):  # JSON 1.1 (ssm, kms, logs)
            message = ("The request signature we calculated does not match the signature you provided. "
                       f"The Canonical String for this request should have been\n'{canonical}'\n"
                       f"Authorization: {auth}")
            return 400, {"Content-Type": "application/x-amz-json-1.1"}, json.dumps(
                {"__type": "InvalidSignatureException", "message": message}).encode()
        xml = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>SignatureDoesNotMatch</Code>"
               f"<Message>Authorization {auth} token {token}</Message></Error></Errors><RequestID>r</RequestID></Response>")
        return 403, {"Content-Type": "text/xml"}, xml.encode()


@pytest.fixture(scope="module")
def netns() -> Iterator[Netns]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2: the agent runs in a private network namespace")
    ns = Netns("sec")
    try:
        yield ns.create([])
    finally:
        ns.delete()


@pytest.fixture
def planted(tmp_path: Path, netns: Netns) -> Iterator[Tuple[Dict[str, str], Path, Service]]:
    creds = {"Code": "Success", "LastUpdated": "2026-12-03T06:00:00Z", "Type": "AWS-HMAC", "AccessKeyId": KEY_ID,
             "SecretAccessKey": SECRET, "Token": TOKEN, "Expiration": "2036-12-03T12:00:00Z"}
    data = dict(DEFAULT_DATA, **{"iam/security-credentials/": ROLE, f"iam/security-credentials/{ROLE}": json.dumps(creds)})
    service: Service = netns.call(Service)  # its listening socket lives in the namespace
    agent = tmp_path / "agent"
    (agent / "log").mkdir(parents=True)
    (agent / "data").mkdir()
    (agent / "unit.d").mkdir()
    (agent / "unit.d" / "proxy.conf").write_text(
        f'[Service]\nEnvironment="HTTPS_PROXY=http://admin:{PASSWORD}@proxy.corp:3128"\n')
    (agent / "log" / "amazon-ssm-agent.log").write_text(
        "2026-12-03 06:00:00 INFO amazon-ssm-agent - v3.3.987.0\n"
        f"2026-12-03 06:00:01 ERROR [ssm] proxyconnect tcp: dial http://admin:{PASSWORD}@proxy.corp:3128 refused\n"
        f"2026-12-03 06:00:02 ERROR GET https://b.s3.amazonaws.com/k?X-Amz-Credential={KEY_ID}%2F20261203"
        f"&X-Amz-Security-Token={TOKEN}&X-Amz-Signature=00ff 403\n")
    with netns.call(lambda: ImdsServer("ok", data=data)) as imds:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AWS_", "VPCE_DOCTOR_")) and k.lower() not in ("https_proxy", "http_proxy", "no_proxy")}
        env.update({
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.endpoint + "/", "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "HTTPS_PROXY": f"user:{PASSWORD}@127.0.0.1:{closed_port()}",  # no scheme: botocore accepts it
            "NO_PROXY": "127.0.0.1,localhost",
        })
        for svc in ("SSM", "EC2", "S3", "MONITORING", "KMS", "LOGS"):
            env[f"VPCE_DOCTOR_ENDPOINT_URL_{svc}"] = service.fake.url
        config = tmp_path / "config.yaml"
        config.write_text(f"""\
imds: {{endpoint: "{imds.endpoint}", timeout_s: 1}}
resolver: 127.0.0.1
timeouts: {{deadline_s: 5, dns_s: 0.3, connect_s: 0.5, api_s: 2}}
egress: {{targets: ["vdt-egress.invalid:443"], timeout_s: 0.3}}
ssm_agent:
  log_dir: {agent / 'log'}
  data_dir: {agent / 'data'}
  config_file: {agent / 'amazon-ssm-agent.json'}
  binaries: [{agent / 'amazon-ssm-agent'}]
  dropin_dirs: [{agent / 'unit.d'}]
daemon: {{state_dir: {tmp_path / 'state'}, interval_s: 3600, jitter_s: 0}}
publish:
  publishers: [last_report, inventory_file, inventory, http]
  inventory_file: {{root: {tmp_path / 'ssm'}}}
  http: {{port: {closed_port()}}}
""")
        (tmp_path / "ssm").mkdir()
        try:
            yield env, config, service
        finally:
            service.fake.close()


def _assert_clean(where: str, text: str, service: Service) -> None:
    for secret in PLANTED + tuple(service.signatures):
        assert secret not in text, f"{where} leaks {secret[:12]}…: …{text[max(0, text.find(secret) - 80):][:200]}…"


def _command(ns: Netns, args: List[str]) -> List[str]:
    return ["ip", "netns", "exec", ns.name, sys.executable, "-m", "vpce_doctor"] + args


def _run(ns: Netns, args: List[str], env: Dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(_command(ns, args), env=env, capture_output=True, text=True, timeout=60)


def test_no_planted_secret_in_any_check_output(planted: Tuple[Dict[str, str], Path, Service], netns: Netns) -> None:
    env, config, service = planted
    outputs = {}
    for fmt in ("json", "nagios", "table"):
        proc = _run(netns, ["check", "--config", str(config), "--format", fmt, "-vv"], env)
        outputs[f"check --format {fmt} stdout"] = proc.stdout
        outputs[f"check --format {fmt} -vv stderr"] = proc.stderr
    doc = json.loads(outputs["check --format json stdout"])
    # The planted places were really read: otherwise this test proves nothing.
    assert service.bodies, "no AWS call reached the stand-in"
    assert doc["facts"]["credentials"].get("state") == "ok" or doc["facts"]["credentials"], doc["facts"]
    assert any("proxy" in n for n in doc["notes"]), doc["notes"]
    assert "DEBUG vpce_doctor" in outputs["check --format json -vv stderr"]
    # botocore's and urllib3's DEBUG lines hold headers and bodies: never below INFO, even with -vv.
    assert not re.search(r"DEBUG (botocore|urllib3|boto3)", outputs["check --format json -vv stderr"])
    if os.environ.get("VDT_DUMP"):
        for where, text in outputs.items():
            print("=====", where, "\n", text[:6000])
    for where, text in outputs.items():
        _assert_clean(where, text, service)


def test_no_planted_secret_in_anything_the_daemon_publishes(planted: Tuple[Dict[str, str], Path, Service],
                                                            tmp_path: Path, netns: Netns) -> None:
    env, config, service = planted
    text = config.read_text()
    port = int(re.search(r"http: \{port: (\d+)\}", text).group(1))  # type: ignore[union-attr]
    proc = subprocess.Popen(_command(netns, ["daemon", "--config", str(config)]), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    served: Dict[str, str] = {}
    try:
        report_file = tmp_path / "state" / "last-report.json"
        got = threading.Event()

        def poll() -> None:  # /report answers 503 until the first cycle is published
            while not got.is_set() and proc.poll() is None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/report", timeout=2) as r:
                        served["/report"] = r.read().decode()
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                        served["/metrics"] = r.read().decode()
                    got.set()
                except OSError:
                    got.wait(0.2)
        netns.call(poll, timeout_s=60)  # the publisher listens inside the namespace
        assert got.is_set(), "the daemon never served /report"
    finally:
        got.set()
        proc.terminate()
        out, err = proc.communicate(timeout=15)
    files = {"last-report.json": report_file.read_text()}
    for path in (tmp_path / "ssm").rglob("*.json"):
        files[str(path.relative_to(tmp_path))] = path.read_text()
    assert any("VpceDoctor" in name for name in files), files.keys()
    bodies = [b.decode("utf-8", "replace") for b in service.bodies]
    assert any("PutInventory" in b or "Custom:VpceDoctor" in b for b in bodies) or bodies
    if os.environ.get("VDT_DUMP"):
        print("===== daemon stderr\n", err)
    # The publisher's failure (the stand-in's answer echoes the signed request) was logged: read, redacted.
    assert "publisher inventory failed" in err or "inventory FAILED" in err, err[-2000:]
    for where, text in {**served, **files, "daemon stdout": out, "daemon stderr": err,
                        **{f"request body {i}": b for i, b in enumerate(bodies)}}.items():
        if where.startswith("request body"):
            # What goes to AWS may carry the signature headers' values elsewhere, never in the body;
            # the proxy password and the role's keys never at all.
            for secret in PLANTED:
                assert secret not in text, f"{where} leaks {secret[:12]}…"
            continue
        _assert_clean(where, text, service)
