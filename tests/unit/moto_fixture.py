"""Real parts for the EC2 API, S3, egress and instance tests.

* moto as a real HTTP server (``ThreadedMotoServer`` on 127.0.0.1, a free port) reached through
  ``vpce_doctor.checks.awsclient.ENDPOINT_URLS``;
* ``FakeAws``: a tiny HTTP listener on 127.0.0.1 that answers exactly like the service for what moto
  doesn't do (S3's 301 for a bucket in another region, AccessDenied with AWS's policy wording,
  EC2's UnauthorizedOperation for some calls while forwarding the rest to moto);
* ``Netns``: a private network namespace ``vdt-<tag>-<pid>`` with loopback only, where test
  addresses (RFC 5737 stand-ins and 10.0.0.2) live and nftables drops make real timeouts. Code
  under test runs in a helper thread that ``setns``-es into it, so nothing it sends leaves the
  namespace; the main thread never changes namespace.

Safety: traffic goes only to loopback or to addresses inside a namespace made here; the AWS
environment is hermetic (fake keys, IMDS disabled, no config files) so nothing reaches real AWS
or the host's 169.254.169.254.
"""
from __future__ import annotations

import contextlib
import ctypes
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import pytest

from vpce_doctor.checks import awsclient
from vpce_doctor.checks.model import Check, Context, Facts, Outcome, Settings

REGION = "us-east-1"
ACCOUNT = "123456789012"
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)

# --- running checks -------------------------------------------------------------------------------


def run_check(check: Check, facts: Facts, settings: Settings, data: Optional[Mapping[str, Any]] = None,
              deadline_s: float = 30.0) -> Outcome:
    """Run one check as the runner does: a Context with the given data of its needs."""
    ctx = Context(facts, settings, dict(data or {}), deadline=time.monotonic() + deadline_s,
                  check_timeout_s=check.timeout_s)
    return check.run(ctx)


def by_id(checks: Sequence[Check]) -> Dict[str, Check]:
    return {c.id: c for c in checks}


# --- hermetic AWS environment ------------------------------------------------------------------------

_AWS_VARS = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CA_BUNDLE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
             "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
             "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
             "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE", "AWS_METADATA_SERVICE_TIMEOUT",
             "AWS_METADATA_SERVICE_NUM_ATTEMPTS", "AWS_EC2_METADATA_SERVICE_ENDPOINT", "AWS_ENDPOINT_URL",
             "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_EC2", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY",
             "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy")


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Dict[str, str]:
    """Fake credentials, IMDS off, no config files, no proxies, no endpoint overrides."""
    for var in _AWS_VARS:
        monkeypatch.delenv(var, raising=False)
    for var in list(os.environ):
        if var.startswith(awsclient.ENV_PREFIX):
            monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAVDTTESTKEY000000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "vdt-test-secret")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setattr(awsclient, "ENDPOINT_URLS", {})
    return dict(os.environ)


def use_endpoints(monkeypatch: pytest.MonkeyPatch, **urls: str) -> None:
    monkeypatch.setattr(awsclient, "ENDPOINT_URLS", dict(urls))


# --- moto -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def moto_reset(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url + "/moto-api/reset", method="POST", data=b""),
                           timeout=10).read()


def boto(service: str, url: str, region: str = REGION) -> Any:
    import boto3

    return boto3.client(service, region_name=region, endpoint_url=url, aws_access_key_id="AKIAVDTTESTKEY000000",
                        aws_secret_access_key="vdt-test-secret")


def seed_vpc(url: str, *, gateway: bool = True, gateway_on_subnet_table: bool = True,
             instance_egress_443: bool = True) -> Dict[str, Any]:
    """The reference lab's VPC in moto: 10.0.0.0/16, subnets in 1a/1b, the subnet's own route table,
    instance + endpoint security groups, interface endpoints ssm/ec2messages/ssmmessages with
    Private DNS, and (optionally) the S3 gateway endpoint on the subnet's route table."""
    ec2 = boto("ec2", url)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsSupport={"Value": True})
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    sub_a = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    sub_b = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.2.0/24", AvailabilityZone="us-east-1b")["Subnet"]["SubnetId"]
    rtb = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.associate_route_table(RouteTableId=rtb, SubnetId=sub_a)
    other_rtb = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    inst_sg = ec2.create_security_group(GroupName="instance", Description="instance", VpcId=vpc)["GroupId"]
    ep_sg = ec2.create_security_group(GroupName="endpoints", Description="endpoints", VpcId=vpc)["GroupId"]
    # Security groups start with "all outbound"; the lab's instance SG allows outbound 443 only.
    ec2.revoke_security_group_egress(GroupId=inst_sg, IpPermissions=[
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    if instance_egress_443:
        ec2.authorize_security_group_egress(GroupId=inst_sg, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    ec2.authorize_security_group_ingress(GroupId=ep_sg, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "UserIdGroupPairs": [{"GroupId": inst_sg}]}])
    endpoints = {}
    for svc in ("ssm", "ec2messages", "ssmmessages"):
        endpoints[svc] = ec2.create_vpc_endpoint(
            VpcId=vpc, ServiceName=f"com.amazonaws.{REGION}.{svc}", VpcEndpointType="Interface",
            SubnetIds=[sub_a, sub_b], SecurityGroupIds=[ep_sg], PrivateDnsEnabled=True)["VpcEndpoint"]["VpcEndpointId"]
    gw = None
    if gateway:
        gw = ec2.create_vpc_endpoint(VpcId=vpc, ServiceName=f"com.amazonaws.{REGION}.s3", VpcEndpointType="Gateway",
                                     RouteTableIds=[rtb if gateway_on_subnet_table else other_rtb]
                                     )["VpcEndpoint"]["VpcEndpointId"]
    pl = ec2.describe_prefix_lists(Filters=[{"Name": "prefix-list-name",
                                             "Values": [f"com.amazonaws.{REGION}.s3"]}])["PrefixLists"][0]
    return {"vpc_id": vpc, "subnet_id": sub_a, "subnet_b": sub_b, "route_table_id": rtb, "other_rtb": other_rtb,
            "instance_sg": inst_sg, "endpoint_sg": ep_sg, "endpoints": endpoints, "s3_gateway": gw,
            "prefix_list_id": pl["PrefixListId"]}


def facts_for(ids: Mapping[str, Any], **over: Any) -> Facts:
    base: Dict[str, Any] = dict(region=REGION, partition="aws", domain="amazonaws.com", vpc_id=ids.get("vpc_id"),
                                subnet_id=ids.get("subnet_id"), vpc_cidr="10.0.0.0/16", vpc_cidrs=("10.0.0.0/16",),
                                subnet_cidr="10.0.1.0/24", local_ipv4="10.0.1.10", instance_id="i-0vdt",
                                security_group_ids=(ids["instance_sg"],) if ids.get("instance_sg") else (),
                                imds_state="ok")
    base.update(over)
    return Facts(**base)


# --- a service-shaped HTTP listener ---------------------------------------------------------------------

Reply = Tuple[int, Mapping[str, str], bytes]


class FakeAws:
    """HTTP on 127.0.0.1:<free port>; ``responder(method, path, headers, body)`` gives the reply.
    ``requests`` records (method, path, headers) of every request. With ``tls=(cert, key)`` it is
    HTTPS, and its URL names ``localhost`` (the name the certificate must carry)."""

    def __init__(self, responder: Callable[[str, str, Mapping[str, str], bytes], Reply],
                 tls: Optional[Tuple[str, str]] = None) -> None:
        self.requests: List[Tuple[str, str, Dict[str, str]]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                fake.requests.append((self.command, self.path, headers))
                status, out_headers, out = responder(self.command, self.path, headers, body)
                if any(k.lower() == "date" for k in out_headers):
                    self.send_response_only(status)  # the responder's own clock (no second Date)
                else:
                    self.send_response(status)
                for k, v in out_headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(out)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _any

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.url = f"https://localhost:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True, name="fake-aws")
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def fake_aws(responder: Callable[[str, str, Mapping[str, str], bytes], Reply]) -> Iterator[FakeAws]:
    fake = FakeAws(responder)
    try:
        yield fake
    finally:
        fake.close()


def s3_error_xml(code: str, message: str, **extra: str) -> bytes:
    """S3's REST error body (https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html)."""
    more = "".join(f"<{k}>{v}</{k}>" for k, v in extra.items())
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            f"{more}<RequestId>VDT0REQUEST0ID01</RequestId><HostId>vdt-host-id=</HostId></Error>").encode()


def ec2_error_xml(code: str, message: str) -> bytes:
    """EC2's query-API error body."""
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code>'
            f"<Message>{message}</Message></Error></Errors>"
            f"<RequestID>0b6a1d2c-vdt0-4f00-9c3e-000000000000</RequestID></Response>").encode()


def forward(url: str, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
    """Pass a request on to moto unchanged (the signature is for the same host:port semantics)."""
    parsed = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers={k: v for k, v in headers.items() if k != "host"})
        resp = conn.getresponse()
        data = resp.read()
        out = {k: v for k, v in resp.getheaders() if k.lower() not in ("content-length", "transfer-encoding",
                                                                        "connection", "server", "date")}
        return resp.status, out, data
    finally:
        conn.close()


def query_action(body: bytes) -> str:
    return urllib.parse.parse_qs(body.decode()).get("Action", [""])[0]


# --- network namespaces ------------------------------------------------------------------------------------


def require_root_tools(*tools: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    for tool in ("ip", "nft") + tools:
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool}")


def _run(cmd: Sequence[str], stdin: Optional[str] = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), input=stdin, capture_output=True, text=True, timeout=15, check=True)


class Netns:
    """A namespace with loopback only (never linked to the host's); test addresses are /32s on lo."""

    def __init__(self, tag: str) -> None:
        self.name = f"vdt-{tag}-{os.getpid()}"
        self.pids: List[int] = []

    def create(self, addresses: Sequence[str] = ()) -> "Netns":
        if os.path.exists(f"/run/netns/{self.name}"):  # our own leftover (same tag and pid)
            self.delete()
        _run(["ip", "netns", "add", self.name])
        _run(["ip", "-n", self.name, "link", "set", "lo", "up"])
        for addr in addresses:
            _run(["ip", "-n", self.name, "addr", "add", f"{addr}/32", "dev", "lo"])
        return self

    def delete(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        self.pids.clear()
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=15)

    def exec(self, *cmd: str, stdin: Optional[str] = None) -> subprocess.CompletedProcess:
        return _run(["ip", "netns", "exec", self.name, *cmd], stdin=stdin)

    def nft(self, rules: Sequence[str], table: str = "vdt") -> None:
        """An input-hook table: drops there behave like a security group or a missing route (timeouts)."""
        body = "\n".join(f"  {r}" for r in rules)
        self.exec("nft", "-f", "-", stdin=f"table inet {table} {{\n chain input {{\n"
                  f"  type filter hook input priority 0; policy accept;\n{body}\n }}\n}}\n")

    def call(self, fn: Callable[[], Any], timeout_s: float = 30.0) -> Any:
        """Run ``fn`` in a fresh thread inside the namespace and return its result (or raise)."""
        box: Dict[str, Any] = {}

        def target() -> None:
            fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {self.name}")
                if os.stat("/proc/thread-self/ns/net").st_ino != os.fstat(fd).st_ino:
                    raise RuntimeError("not inside the test namespace")
                box["result"] = fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                box["error"] = exc
            finally:
                os.close(fd)

        thread = threading.Thread(target=target, daemon=True, name=f"in-{self.name}")
        thread.start()
        thread.join(timeout_s)
        if thread.is_alive():
            raise TimeoutError(f"call in {self.name} did not finish within {timeout_s} s")
        if "error" in box:
            raise box["error"]
        return box["result"]

    def dnsmasq(self, listen: str, records: Sequence[str], workdir: str) -> int:
        """dnsmasq on ``listen``:53 in the namespace, no upstream; answers only ``records``. It
        daemonizes after binding, so it answers once this returns."""
        pid_file = os.path.join(workdir, f"dnsmasq-{self.name}-{listen}.pid")
        self.exec("dnsmasq", "--conf-file=/dev/null", f"--pid-file={pid_file}", "--bind-interfaces",
                  f"--listen-address={listen}", "--port=53", "--no-resolv", "--no-hosts", "--no-poll",
                  "--user=root", "--group=root", "--local-ttl=60", *records)
        with open(pid_file) as fh:
            pid = int(fh.read().strip())
        self.pids.append(pid)
        return pid

    def listener(self, ip: str, port: int) -> socket.socket:
        """A TCP listener inside the namespace (the kernel completes handshakes from the backlog)."""
        def make() -> socket.socket:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((ip, port))
            s.listen(16)
            return s
        return self.call(make)


@contextlib.contextmanager
def netns(tag: str, addresses: Sequence[str] = ()) -> Iterator[Netns]:
    ns = Netns(tag)
    try:
        yield ns.create(addresses)
    finally:
        ns.delete()


def ms_since(start: float) -> float:
    return (time.monotonic() - start) * 1000


def dump(obj: Any) -> str:
    """Findings' evidence must be JSON-serialisable: this raises if not."""
    return json.dumps(obj)
