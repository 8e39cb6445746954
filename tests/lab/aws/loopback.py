"""The AWS layer on loopback, for tests and benchmarks that need real AWS APIs but no namespaces:
`python -m tests.lab.aws --listen 127.0.0.1:0` with a trustme CA, started, awaited and stopped."""
from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[3]
REGION = "us-east-1"
STOP_TIMEOUT_S = 10.0


def ready_line(proc: "subprocess.Popen[str]", timeout_s: float, is_ready: Callable[[str], bool],
               fail: Callable[[str], None]) -> str:
    """The first stdout line ``is_ready`` accepts, waited for at most ``timeout_s``; ``fail(why)``
    (which raises) when the process says nothing in time or exits first."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sel.select(timeout=remaining):
                fail("no READY in time")
            line = proc.stdout.readline()
            if not line:
                fail("exited before READY")
            if is_ready(line):
                return line


def terminate(proc: "subprocess.Popen[Any]", timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM, then SIGKILL after ``timeout_s``; reaped either way."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def loopback_world(name: str) -> Dict[str, Any]:
    """A minimal world: one ssm endpoint, the S3 gateway path, a bucket; nothing listens but the front."""
    return {
        "name": name, "region": REGION, "partition": "aws", "domain": "amazonaws.com",
        "vpc_cidr": "10.0.0.0/16", "instance_ip": "10.0.1.10",
        "subnets": [{"az": "us-east-1a", "cidr": "10.0.1.0/24"}, {"az": "us-east-1b", "cidr": "10.0.2.0/24"}],
        "instance_subnet_az": "us-east-1a",
        "interface_endpoints": [
            {"service": "ssm", "hostname": "ssm.us-east-1.amazonaws.com", "private_dns": True, "state": "available",
             "enis": [{"az": "us-east-1a", "ip": "10.0.1.101"}, {"az": "us-east-1b", "ip": "10.0.2.101"}]}],
        "public_service_ips": {"ssm.us-east-1.amazonaws.com": "198.51.100.64"},
        "s3": {"gateway_endpoint": True, "route": True, "ips": ["198.51.100.10"],
               "prefix_list_cidrs": ["198.51.100.0/28"], "policy_allows": True},
        "bucket": {"name": "vpce-lab-bucket", "region": REGION, "key": "hello.txt", "body": "hello\n"},
        "instance": {"public_ip": None, "profile": {"attached": True, "role": "SSMInstanceRole", "s3_permission": True}},
        "internet": "none", "listen_ips": [],
    }


class LayerError(RuntimeError):
    """The layer did not come up; the message ends with its stderr."""


class LoopbackLayer:
    """One layer subprocess (``VPCE_LAB_PYTHON`` picks its interpreter, e.g. moto's on a 3.9 run)."""

    def __init__(self, tmp: Path, world: Dict[str, Any], extra_args: Sequence[str] = ()) -> None:
        import trustme

        ca = trustme.CA()
        # 127.0.0.2-3: extra loopback addresses a test may declare an endpoint's ENIs (--endpoint-listen).
        server = ca.issue_cert("127.0.0.1", "127.0.0.2", "127.0.0.3", "*.us-east-1.amazonaws.com")
        self.ca = tmp / "ca.pem"
        cert, key = tmp / "server.pem", tmp / "server.key"
        ca.cert_pem.write_to_path(str(self.ca))
        server.private_key_pem.write_to_path(str(key))
        for index, pem in enumerate(server.cert_chain_pems):
            pem.write_to_path(str(cert), append=index > 0)
        (tmp / "world.json").write_text(json.dumps(dict(world, cert=str(cert), key=str(key))))
        self.state = tmp / "state"
        python = os.environ.get("VPCE_LAB_PYTHON") or sys.executable
        self.proc = subprocess.Popen(
            [python, "-m", "tests.lab.aws", "--world", str(tmp / "world.json"), "--state-dir", str(self.state),
             "--listen", "127.0.0.1:0", *extra_args],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.ids: Dict[str, Any] = {}
        self.url = ""

    def wait_ready(self, timeout_s: float) -> None:
        """Block until the READY line (bounded), then read aws-ids.json."""
        ready_line(self.proc, timeout_s, lambda line: line.strip() == "READY", self._fail)
        self.ids = json.loads((self.state / "aws-ids.json").read_text())
        self.url = "https://" + self.ids["front_addresses"][0]

    def _fail(self, why: str) -> None:
        self.stop()
        stderr = self.proc.stderr.read() if self.proc.stderr else ""
        raise LayerError(f"AWS layer: {why}; stderr:\n{stderr[-3000:]}")

    def stop(self) -> None:
        terminate(self.proc)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    @property
    def instance_id(self) -> str:
        return str(self.ids["instance_id"])

    @property
    def instance_ids(self) -> List[str]:
        """Every managed instance: the lab's own and the fleet (``--fleet-size``), sorted."""
        return sorted([self.ids["instance_id"], *self.ids.get("fleet_instance_ids", [])])

    def client(self, service: str, credentials: Optional[Dict[str, str]] = None, url: Optional[str] = None,
               **config: Any) -> Any:
        """A boto3 client for the front (or ``url``, another front address): the instance's credentials
        unless others are given."""
        import boto3
        from botocore.config import Config

        c = credentials or self.ids["credentials"]
        return boto3.client(service, endpoint_url=url or self.url, region_name=REGION, verify=str(self.ca),
                            aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"],
                            aws_session_token=c.get("Token"),
                            config=Config(retries={"max_attempts": 1}, **config))
