"""The lab's AWS layer (tests/lab/aws), driven with real boto3 clients over TLS on loopback.

Three layers start once for the module, in parallel, as subprocesses (`python -m tests.lab.aws`,
exactly as the lab core runs it, but with `--listen 127.0.0.1:0`): "good" (the reference lab),
"broken" (the knobs turned off) and "elsewhere" (bucket in us-west-2, endpoint policy denies, no
instance profile). Nothing leaves loopback: every client has endpoint_url https://127.0.0.1:PORT.
"""
from __future__ import annotations

import copy
import http.client
import json
import selectors
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import boto3
import botocore.session
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # `tests.lab.aws` is imported from the work tree, not installed
    sys.path.insert(0, str(REPO))

from tests.lab.aws.model_validation import validate  # noqa: E402
from tests.lab.aws.protocol import Request  # noqa: E402
from tests.lab.aws.s3_policy import parse_s3_request  # noqa: E402

trustme = pytest.importorskip("trustme")
pytest.importorskip("moto")  # the layer under test runs moto in its own process

READY_TIMEOUT_S = 40.0
STOP_BUDGET_S = 2.0
ROLE = "SSMInstanceRole"
BUCKET = "vpce-lab-bucket"
KEY = "hello.txt"
BODY = "hello from the private subnet\n"
REGION = "us-east-1"

BASE_WORLD: Dict[str, Any] = {
    "name": "test", "region": REGION, "partition": "aws", "domain": "amazonaws.com",
    "vpc_cidr": "10.0.0.0/16", "instance_ip": "10.0.1.10",
    "subnets": [{"az": "us-east-1a", "cidr": "10.0.1.0/24"}, {"az": "us-east-1b", "cidr": "10.0.2.0/24"}],
    "instance_subnet_az": "us-east-1a",
    "enable_dns_support": True, "enable_dns_hostnames": True,
    "interface_endpoints": [
        {"service": "ssm", "hostname": "ssm.us-east-1.amazonaws.com", "private_dns": True, "state": "available",
         "enis": [{"az": "us-east-1a", "ip": "10.0.1.101"}, {"az": "us-east-1b", "ip": "10.0.2.101"}]},
        {"service": "ec2messages", "hostname": "ec2messages.us-east-1.amazonaws.com", "private_dns": True,
         "state": "available",
         "enis": [{"az": "us-east-1a", "ip": "10.0.1.102"}, {"az": "us-east-1b", "ip": "10.0.2.102"}]},
    ],
    "public_service_ips": {"ssm.us-east-1.amazonaws.com": "198.51.100.64"},
    "endpoint_sg_inbound_443": True, "instance_sg_outbound_443": True,
    "s3": {"gateway_endpoint": True, "route": True, "ips": ["198.51.100.10", "198.51.100.11"],
           "prefix_list_cidrs": ["198.51.100.0/28"], "policy_allows": True},
    "bucket": {"name": BUCKET, "region": REGION, "key": KEY, "body": BODY},
    "instance": {"public_ip": None, "profile": {"attached": True, "role": ROLE, "s3_permission": True}},
    "internet": "none",
    "listen_ips": [],
}

WORLDS = {
    "good": ({}, ["--fleet-size", "5", "--managed-instance", "i-0fee1de00000000aa"]),
    "broken": ({
        "interface_endpoints": [dict(BASE_WORLD["interface_endpoints"][0], private_dns=False, state="pending")],
        "enable_dns_hostnames": False,
        "endpoint_sg_inbound_443": False, "instance_sg_outbound_443": False,
        "s3": {"gateway_endpoint": True, "route": False},
        "instance": {"public_ip": "198.51.100.99", "profile": {"s3_permission": False}},
        "internet": "igw",
    }, []),
    "elsewhere": ({
        "bucket": {"region": "us-west-2"},
        "s3": {"policy_allows": False},
        "instance": {"profile": {"attached": False}},
    }, []),
}


def _merged(base: Dict[str, Any], changes: Dict[str, Any]) -> Dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


class Layer:
    """One `python -m tests.lab.aws` subprocess and what it wrote."""

    def __init__(self, name: str, world: Dict[str, Any], extra_args: list, tmp: Path, ca: Path) -> None:
        self.name, self.world, self.ca = name, world, ca
        self.state = tmp / f"state-{name}"
        world_path = tmp / f"world-{name}.json"
        world_path.write_text(json.dumps(world))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.lab.aws", "--world", str(world_path), "--state-dir", str(self.state),
             "--listen", "127.0.0.1:0", *extra_args],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.ids: Dict[str, Any] = {}
        self.url = ""

    def wait_ready(self, deadline: float) -> None:
        """Block until the READY line (bounded by ``deadline``), then read aws-ids.json."""
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(timeout=remaining):
                    self.fail("no READY in time")
                line = self.proc.stdout.readline()
                if not line:
                    self.fail("exited before READY")
                if line.strip() == "READY":
                    break
        self.ids = json.loads((self.state / "aws-ids.json").read_text())
        self.url = "https://" + self.ids["front_addresses"][0]

    def fail(self, why: str) -> None:
        self.stop()
        stderr = self.proc.stderr.read() if self.proc.stderr else ""
        pytest.fail(f"layer {self.name}: {why}; stderr:\n{stderr[-4000:]}")

    def stop(self) -> Optional[float]:
        """SIGTERM; returns how long the process took to exit (None if it had already)."""
        if self.proc.poll() is not None:
            return None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return time.monotonic() - started

    def client(self, service: str, creds: str = "instance", region: str = REGION, **config: Any) -> Any:
        if creds == "instance":
            c = self.ids["credentials"]
            keys = dict(aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"],
                        aws_session_token=c["Token"])
        else:
            keys = dict(aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="dummy")
        return boto3.client(service, endpoint_url=self.url, region_name=region, verify=str(self.ca),
                            config=Config(retries={"max_attempts": 1}, **config), **keys)

    def s3(self, creds: str = "instance", region: str = REGION) -> Any:
        return self.client("s3", creds, region, s3={"addressing_style": "path"})

    def raw(self, method: str, host: str, path: str, region: str = REGION) -> http.client.HTTPResponse:
        """A signed S3 request with an AWS Host name (what the agent sends inside the lab), delivered
        to the front on loopback."""
        request = AWSRequest(method=method, url=f"https://{host}{path}")
        S3SigV4Auth(Credentials("AKIAIOSFODNN7EXAMPLE", "dummy"), "s3", region).add_auth(request)
        front_host, front_port = self.ids["front_addresses"][0].rsplit(":", 1)
        context = ssl.create_default_context(cafile=str(self.ca))
        conn = http.client.HTTPSConnection(front_host, int(front_port), context=context, timeout=10)
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host)
        for name, value in request.headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        response.body = response.read()  # type: ignore[attr-defined]
        conn.close()
        return response


@pytest.fixture(scope="module")
def layers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, Layer]]:
    tmp = tmp_path_factory.mktemp("aws-layer")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "*.us-east-1.amazonaws.com", "s3.us-east-1.amazonaws.com",
                           "*.s3.us-east-1.amazonaws.com", "*.s3.amazonaws.com", "*.s3.us-west-2.amazonaws.com")
    ca_path, cert, key = tmp / "ca.pem", tmp / "server.pem", tmp / "server.key"
    ca.cert_pem.write_to_path(str(ca_path))
    server.private_key_pem.write_to_path(str(key))
    for index, pem in enumerate(server.cert_chain_pems):
        pem.write_to_path(str(cert), append=index > 0)

    started: Dict[str, Layer] = {}
    try:
        for name, (changes, args) in WORLDS.items():
            world = _merged(BASE_WORLD, changes)
            world.update(cert=str(cert), key=str(key))
            started[name] = Layer(name, world, args, tmp, ca_path)
        deadline = time.monotonic() + READY_TIMEOUT_S
        for layer in started.values():
            layer.wait_ready(deadline)
        yield started
    finally:
        for layer in started.values():
            layer.stop()


@pytest.fixture(scope="module")
def good(layers: Dict[str, Layer]) -> Layer:
    return layers["good"]


@pytest.fixture(scope="module")
def broken(layers: Dict[str, Layer]) -> Layer:
    return layers["broken"]


@pytest.fixture(scope="module")
def elsewhere(layers: Dict[str, Layer]) -> Layer:
    return layers["elsewhere"]


def error_code(call: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return caught.value.response["Error"]["Code"]


# --- aws-ids.json ------------------------------------------------------------------------------

def test_aws_ids_follow_the_contract(good: Layer, elsewhere: Layer) -> None:
    ids = good.ids
    contract = {"vpc_id", "subnet_ids", "route_table_id", "instance_id", "instance_sg_id", "endpoint_sg_id",
                "endpoints", "s3_gateway_endpoint_id", "s3_prefix_list_id", "credentials", "role_name",
                "instance_profile_arn", "moto_url"}
    assert contract <= set(ids)
    assert set(ids["subnet_ids"]) == {"us-east-1a", "us-east-1b"}
    assert set(ids["endpoints"]) == {"ssm", "ec2messages"}
    assert ids["moto_url"].startswith("http://127.0.0.1:")
    creds = ids["credentials"]
    assert creds["AccessKeyId"].startswith("ASIA") and creds["SecretAccessKey"] and creds["Token"]
    assert time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) < creds["Expiration"]
    assert creds["Expiration"].endswith("Z") and len(creds["Expiration"]) == 20
    assert ids["role_name"] == ROLE
    assert ids["instance_profile_arn"] == f"arn:aws:iam::123456789012:instance-profile/{ROLE}"
    assert len(ids["fleet_instance_ids"]) == 5
    # No instance profile: nothing for IMDS to serve.
    assert elsewhere.ids["credentials"] is None and elsewhere.ids["role_name"] is None


def test_instance_credentials_are_the_role_session(good: Layer) -> None:
    arn = good.client("sts").get_caller_identity()["Arn"]
    assert arn == f"arn:aws:sts::123456789012:assumed-role/{ROLE}/{good.ids['instance_id']}"


# --- EC2 view = lab network --------------------------------------------------------------------

def test_interface_endpoints_carry_lab_enis_and_dns_entries(good: Layer) -> None:
    ec2 = good.client("ec2")
    ssm_id = good.ids["endpoints"]["ssm"]
    endpoint = ec2.describe_vpc_endpoints(VpcEndpointIds=[ssm_id])["VpcEndpoints"][0]
    assert endpoint["ServiceName"] == "com.amazonaws.us-east-1.ssm"
    assert endpoint["VpcEndpointType"] == "Interface" and endpoint["State"] == "available"
    assert endpoint["PrivateDnsEnabled"] is True
    assert sorted(endpoint["SubnetIds"]) == sorted(good.ids["subnet_ids"].values())
    assert [g["GroupId"] for g in endpoint["Groups"]] == [good.ids["endpoint_sg_id"]]

    names = [e["DnsName"] for e in endpoint["DnsEntries"]]
    regional, zonal_a, zonal_b, private = names
    assert regional.startswith(ssm_id + "-") and regional.endswith(".ssm.us-east-1.vpce.amazonaws.com")
    suffix = regional[len(ssm_id) + 1:].split(".")[0]
    assert len(suffix) == 8
    assert zonal_a == f"{ssm_id}-{suffix}-us-east-1a.ssm.us-east-1.vpce.amazonaws.com"
    assert zonal_b == f"{ssm_id}-{suffix}-us-east-1b.ssm.us-east-1.vpce.amazonaws.com"
    assert private == "ssm.us-east-1.amazonaws.com"

    enis = ec2.describe_network_interfaces(NetworkInterfaceIds=endpoint["NetworkInterfaceIds"])["NetworkInterfaces"]
    by_az = {e["AvailabilityZone"]: e for e in enis}
    assert by_az["us-east-1a"]["PrivateIpAddress"] == "10.0.1.101"
    assert by_az["us-east-1b"]["PrivateIpAddress"] == "10.0.2.101"
    for eni in enis:
        assert eni["InterfaceType"] == "vpc_endpoint" and eni["RequesterManaged"] is True
        assert eni["Description"] == f"VPC Endpoint Interface {ssm_id}"
        assert eni["PrivateIpAddresses"] == [{"Primary": True, "PrivateIpAddress": eni["PrivateIpAddress"],
                                              "PrivateDnsName": eni["PrivateDnsName"]}]
    # Filtering by address finds them too (how a check maps a resolved IP back to its ENI).
    found = ec2.describe_network_interfaces(Filters=[{"Name": "addresses.private-ip-address",
                                                       "Values": ["10.0.2.102"]}])["NetworkInterfaces"]
    assert [e["NetworkInterfaceId"] for e in found] and found[0]["PrivateIpAddress"] == "10.0.2.102"


def test_endpoint_private_dns_and_state_follow_the_world(broken: Layer) -> None:
    endpoint = broken.client("ec2").describe_vpc_endpoints(
        VpcEndpointIds=[broken.ids["endpoints"]["ssm"]])["VpcEndpoints"][0]
    assert (endpoint["PrivateDnsEnabled"], endpoint["State"]) == (False, "pending")
    names = [e["DnsName"] for e in endpoint["DnsEntries"]]
    assert len(names) == 3 and all(n.endswith(".ssm.us-east-1.vpce.amazonaws.com") for n in names)


def test_vpc_attributes(good: Layer, broken: Layer) -> None:
    def attrs(layer: Layer) -> tuple:
        ec2, vpc = layer.client("ec2"), layer.ids["vpc_id"]
        return (ec2.describe_vpc_attribute(VpcId=vpc, Attribute="enableDnsSupport")["EnableDnsSupport"]["Value"],
                ec2.describe_vpc_attribute(VpcId=vpc, Attribute="enableDnsHostnames")["EnableDnsHostnames"]["Value"])

    assert attrs(good) == (True, True)
    assert attrs(broken) == (True, False)


def test_route_table_has_the_prefix_list_route_only_when_configured(good: Layer, broken: Layer) -> None:
    def routes(layer: Layer) -> list:
        table = layer.client("ec2").describe_route_tables(Filters=[
            {"Name": "association.subnet-id", "Values": [layer.ids["subnet_ids"]["us-east-1a"]]}])["RouteTables"]
        assert [t["RouteTableId"] for t in table] == [layer.ids["route_table_id"]]
        return table[0]["Routes"]

    good_routes = routes(good)
    assert {"DestinationPrefixListId": good.ids["s3_prefix_list_id"], "GatewayId": good.ids["s3_gateway_endpoint_id"]} \
        in [{k: r[k] for k in ("DestinationPrefixListId", "GatewayId") if k in r} for r in good_routes]
    assert not any(r.get("DestinationCidrBlock") == "0.0.0.0/0" for r in good_routes)

    broken_routes = routes(broken)
    assert broken.ids["s3_gateway_endpoint_id"]  # the endpoint exists …
    assert not any("DestinationPrefixListId" in r for r in broken_routes)  # … its route does not
    assert any(r.get("DestinationCidrBlock") == "0.0.0.0/0" and r.get("GatewayId", "").startswith("igw-")
               for r in broken_routes)


def test_s3_gateway_endpoint(good: Layer) -> None:
    endpoint = good.client("ec2").describe_vpc_endpoints(
        VpcEndpointIds=[good.ids["s3_gateway_endpoint_id"]])["VpcEndpoints"][0]
    assert endpoint["VpcEndpointType"] == "Gateway"
    assert endpoint["ServiceName"] == "com.amazonaws.us-east-1.s3"
    assert endpoint["RouteTableIds"] == [good.ids["route_table_id"]]
    assert endpoint["PrivateDnsEnabled"] is False


def test_prefix_list_holds_lab_s3_cidrs(good: Layer) -> None:
    ec2, pl = good.client("ec2"), good.ids["s3_prefix_list_id"]
    described = ec2.describe_prefix_lists(PrefixListIds=[pl])["PrefixLists"]
    assert described == [{"PrefixListId": pl, "PrefixListName": "com.amazonaws.us-east-1.s3",
                          "Cidrs": ["198.51.100.0/28"]}]
    managed = ec2.describe_managed_prefix_lists(
        Filters=[{"Name": "prefix-list-name", "Values": ["com.amazonaws.us-east-1.s3"]}])["PrefixLists"]
    assert [m["PrefixListId"] for m in managed] == [pl]
    entries = ec2.get_managed_prefix_list_entries(PrefixListId=pl)["Entries"]
    assert [e["Cidr"] for e in entries] == ["198.51.100.0/28"]


def test_instance_and_security_groups(good: Layer, broken: Layer) -> None:
    ec2 = good.client("ec2")
    instance = ec2.describe_instances(InstanceIds=[good.ids["instance_id"]])["Reservations"][0]["Instances"][0]
    assert instance["PrivateIpAddress"] == "10.0.1.10"
    assert instance["SubnetId"] == good.ids["subnet_ids"]["us-east-1a"]
    assert "PublicIpAddress" not in instance
    assert instance["IamInstanceProfile"]["Arn"] == good.ids["instance_profile_arn"]
    assert [g["GroupId"] for g in instance["SecurityGroups"]] == [good.ids["instance_sg_id"]]

    def rules(layer: Layer) -> tuple:
        groups = {g["GroupId"]: g for g in layer.client("ec2").describe_security_groups(
            GroupIds=[layer.ids["instance_sg_id"], layer.ids["endpoint_sg_id"]])["SecurityGroups"]}
        out = groups[layer.ids["instance_sg_id"]]["IpPermissionsEgress"]
        into = groups[layer.ids["endpoint_sg_id"]]["IpPermissions"]
        return ([(r["IpProtocol"], r.get("FromPort"), r.get("ToPort")) for r in out],
                [(r["IpProtocol"], r.get("FromPort"), [x["CidrIp"] for x in r["IpRanges"]]) for r in into])

    assert rules(good) == ([("tcp", 443, 443)], [("tcp", 443, ["10.0.1.0/24"])])
    assert rules(broken) == ([], [])

    broken_instance = broken.client("ec2").describe_instances(
        InstanceIds=[broken.ids["instance_id"]])["Reservations"][0]["Instances"][0]
    assert broken_instance["PublicIpAddress"] == "198.51.100.99"


# --- S3 ----------------------------------------------------------------------------------------

def test_s3_list_get_head_put(good: Layer) -> None:
    s3 = good.s3()
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [BUCKET]
    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == BODY.encode()
    assert s3.head_object(Bucket=BUCKET, Key=KEY)["ContentLength"] == len(BODY)
    s3.head_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="probe.txt", Body=b"x" * 70_000)  # a body bigger than one TLS record
    assert s3.get_object(Bucket=BUCKET, Key="probe.txt")["Body"].read() == b"x" * 70_000


def test_s3_virtual_hosted_name_reaches_the_bucket(good: Layer) -> None:
    response = good.raw("GET", f"{BUCKET}.s3.us-east-1.amazonaws.com", f"/{KEY}")
    assert response.status == 200 and response.body == BODY.encode()  # type: ignore[attr-defined]


def test_s3_access_denied_without_role_permission(broken: Layer) -> None:
    s3 = broken.s3()
    principal = f"arn:aws:sts::123456789012:assumed-role/{ROLE}/{broken.ids['instance_id']}"
    with pytest.raises(ClientError) as caught:
        s3.list_buckets()
    error = caught.value.response["Error"]
    assert (error["Code"], caught.value.response["ResponseMetadata"]["HTTPStatusCode"]) == ("AccessDenied", 403)
    assert error["Message"] == (f"User: {principal} is not authorized to perform: s3:ListAllMyBuckets because no "
                                "identity-based policy allows the s3:ListAllMyBuckets action")
    with pytest.raises(ClientError) as caught:
        s3.get_object(Bucket=BUCKET, Key=KEY)
    assert caught.value.response["Error"]["Message"] == (
        f'User: {principal} is not authorized to perform: s3:GetObject on resource: '
        f'"arn:aws:s3:::{BUCKET}/{KEY}" because no identity-based policy allows the s3:GetObject action')
    assert error_code(s3.head_object, Bucket=BUCKET, Key=KEY) == "403"  # HEAD: status only, as on AWS
    assert "s3:ListBucket" in str(pytest.raises(ClientError, s3.list_objects_v2, Bucket=BUCKET).value)
    # Another principal (the lab's own tooling) is not the instance role.
    assert broken.s3(creds="other").get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == BODY.encode()


def test_s3_endpoint_policy_denies_explicitly(elsewhere: Layer) -> None:
    with pytest.raises(ClientError) as caught:
        elsewhere.s3(creds="other").list_buckets()
    error = caught.value.response["Error"]
    assert error["Code"] == "AccessDenied"
    assert error["Message"].endswith("is not authorized to perform: s3:ListAllMyBuckets with an explicit deny in "
                                     "a VPC endpoint policy")


def test_s3_bucket_in_another_region_redirects(elsewhere: Layer) -> None:
    path_style = elsewhere.raw("GET", "s3.us-east-1.amazonaws.com", f"/{BUCKET}/{KEY}")
    assert path_style.status == 301
    assert path_style.getheader("x-amz-bucket-region") == "us-west-2"
    body = path_style.body.decode()  # type: ignore[attr-defined]
    assert "<Code>PermanentRedirect</Code>" in body and "<Endpoint>s3.us-west-2.amazonaws.com</Endpoint>" in body
    assert f"<Bucket>{BUCKET}</Bucket>" in body

    virtual = elsewhere.raw("GET", f"{BUCKET}.s3.us-east-1.amazonaws.com", f"/{KEY}")
    assert virtual.status == 301
    assert f"<Endpoint>{BUCKET}.s3.us-west-2.amazonaws.com</Endpoint>" in virtual.body.decode()  # type: ignore

    head = elsewhere.raw("HEAD", f"{BUCKET}.s3.us-east-1.amazonaws.com", f"/{KEY}")
    assert (head.status, head.body, head.getheader("x-amz-bucket-region")) == (301, b"", "us-west-2")  # type: ignore

    # The right endpoint, signed for the wrong region: AuthorizationHeaderMalformed naming the region.
    wrong_scope = elsewhere.raw("GET", "s3.us-west-2.amazonaws.com", f"/{BUCKET}/{KEY}", region="us-east-1")
    assert wrong_scope.status == 400 and "<Region>us-west-2</Region>" in wrong_scope.body.decode()  # type: ignore

    # Addressed to its own region, it works: the endpoint policy only covers us-east-1's gateway.
    right = elsewhere.raw("GET", "s3.us-west-2.amazonaws.com", f"/{BUCKET}/{KEY}", region="us-west-2")
    assert right.status == 200 and right.body == BODY.encode()  # type: ignore[attr-defined]

    # boto3 on a bare address: the signing region stands for the endpoint's, so botocore gets the 301,
    # follows x-amz-bucket-region and re-signs for us-west-2, as it does against AWS.
    s3 = elsewhere.s3(creds="other")
    scopes: list = []
    s3.meta.events.register("before-send.s3.GetObject", lambda request, **_: scopes.append(
        (request.url.split("/")[2], request.headers["Authorization"].decode().split("/")[2])))
    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == BODY.encode()
    front = elsewhere.ids["front_addresses"][0]
    assert scopes == [(front, "us-east-1"), (front, "us-west-2")]  # both went to loopback


def test_parse_s3_request() -> None:
    def target(host: str, path: str, auth: str = "") -> Any:
        headers = (("Host", host),) + ((("Authorization", auth),) if auth else ())
        found = parse_s3_request(Request("GET", path, headers, b""))
        return found and (found.bucket, found.key, found.endpoint_region)

    assert target("bkt.s3.us-west-2.amazonaws.com", "/a/b.txt") == ("bkt", "a/b.txt", "us-west-2")
    assert target("s3.us-east-1.amazonaws.com", "/bkt/k") == ("bkt", "k", "us-east-1")
    assert target("s3.amazonaws.com", "/") == (None, None, "us-east-1")
    assert target("ssm.us-east-1.amazonaws.com", "/") is None
    signed = "AWS4-HMAC-SHA256 Credential=AKID/20240101/eu-west-1/s3/aws4_request, SignedHeaders=host, Signature=x"
    assert target("127.0.0.1:8443", "/bkt/k", signed) == ("bkt", "k", "eu-west-1")


# --- SSM inventory -----------------------------------------------------------------------------

def item(type_name: str = "Custom:VpceDoctor", content: Optional[list] = None, **extra: Any) -> Dict[str, Any]:
    body = {"TypeName": type_name, "SchemaVersion": "1.0", "CaptureTime": "2024-05-01T12:00:00Z",
            "Content": [{"Status": "OK"}] if content is None else content}
    body.update(extra)
    return body


def test_put_inventory_happy_path_and_response_shapes(good: Layer) -> None:
    ssm, iid = good.client("ssm"), good.ids["instance_id"]
    ssm.put_inventory(InstanceId=iid, Items=[item("Custom:VpceDoctor.Shape", [{"A": "1", "B": "x"}, {"A": "2", "B": ""}])])
    got = ssm.get_inventory(Filters=[{"Key": "AWS:InstanceInformation.InstanceId", "Values": [iid]}],
                            ResultAttributes=[{"TypeName": "Custom:VpceDoctor.Shape"}])
    assert got["Entities"] == [{"Id": iid, "Data": {"Custom:VpceDoctor.Shape": {
        "TypeName": "Custom:VpceDoctor.Shape", "SchemaVersion": "1.0", "CaptureTime": "2024-05-01T12:00:00Z",
        "Content": [{"A": "1", "B": "x"}, {"A": "2", "B": ""}]}}}]
    listed = ssm.list_inventory_entries(InstanceId=iid, TypeName="Custom:VpceDoctor.Shape")

    model = botocore.session.get_session().get_service_model("ssm")
    for operation, response in (("GetInventory", got), ("ListInventoryEntries", listed)):
        payload = {k: v for k, v in response.items() if k != "ResponseMetadata"}
        assert validate(model.operation_model(operation).output_shape, payload) == []
    assert listed["Entries"] == [{"A": "1", "B": "x"}, {"A": "2", "B": ""}]
    assert (listed["TypeName"], listed["InstanceId"], listed["SchemaVersion"]) == ("Custom:VpceDoctor.Shape", iid, "1.0")
    # What the agent published is on disk for the lab to inspect.
    stored = json.loads((good.state / "inventory.json").read_text())
    assert stored[iid]["Custom:VpceDoctor.Shape"]["Content"][0] == {"A": "1", "B": "x"}


@pytest.mark.parametrize("instance_id, items, code", [
    ("i-0123456789abcdef0", [item()], "InvalidInstanceId"),
    ("not-an-instance", [item()], "ValidationException"),
    ("self", [item(f"Custom:T{i}") for i in range(31)], "ValidationException"),
    ("self", [item("Vendor:Thing")], "InvalidTypeNameException"),
    ("self", [item("Custom:" + "x" * 94)], "InvalidTypeNameException"),
    ("self", [item("AWS:NoSuchType")], "InvalidTypeNameException"),
    ("self", [item(SchemaVersion="1")], "ValidationException"),
    ("self", [item(SchemaVersion="1234567.0")], "ValidationException"),
    ("self", [item(CaptureTime="2024-05-01T12:00:00")], "ValidationException"),
    ("self", [item(CaptureTime="2024-05-01T12:00:00.123Z")], "ValidationException"),
    ("self", [item(CaptureTime="2024-05-01 12:00:00Z")], "ValidationException"),
    ("self", [item(ContentHash="h" * 257)], "ValidationException"),
    ("self", [item(content=[{"Status": "OK"}] * 10_001)], "InvalidItemContentException"),
    ("self", [item(content=[{f"k{i}": "v" for i in range(51)}])], "InvalidItemContentException"),
    ("self", [item(content=[{"k" * 65: "v"}])], "InvalidItemContentException"),
    ("self", [item(content=[{"Status": "v" * 4097}])], "InvalidItemContentException"),
    ("self", [item(content=[{"Status": "OK"}, {"status": "OK"}])], "ItemContentMismatchException"),
    ("self", [item(content=[{"Status": "OK"}, {"Status": "OK", "Extra": "1"}])], "ItemContentMismatchException"),
    ("self", [item(content=[{"Blob": "v" * 4000, "N": str(i)} for i in range(60)])], "ItemSizeLimitExceededException"),
])
def test_put_inventory_validation(good: Layer, instance_id: str, items: list, code: str) -> None:
    iid = good.ids["instance_id"] if instance_id == "self" else instance_id
    ssm = good.client("ssm")
    with pytest.raises(ClientError) as caught:
        ssm.put_inventory(InstanceId=iid, Items=items)
    response = caught.value.response
    assert (response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]) == (code, 400)
    assert response["Error"]["Message"]
    if code in ("InvalidItemContentException", "ItemContentMismatchException", "ItemSizeLimitExceededException"):
        assert response["TypeName"] == items[0]["TypeName"]  # the error shape's own member


def test_put_inventory_is_all_or_nothing(good: Layer) -> None:
    ssm, iid = good.client("ssm"), good.ids["instance_id"]
    valid, invalid = item("Custom:VpceDoctor.Atomic"), item("Custom:VpceDoctor.Bad", [{"A": "1"}, {"B": "2"}])
    assert error_code(ssm.put_inventory, InstanceId=iid, Items=[valid, invalid]) == "ItemContentMismatchException"
    assert ssm.list_inventory_entries(InstanceId=iid, TypeName="Custom:VpceDoctor.Atomic")["Entries"] == []


def test_validation_message_is_worded_like_aws(good: Layer) -> None:
    with pytest.raises(ClientError) as caught:
        good.client("ssm").put_inventory(InstanceId="i-083e1601960282cd", Items=[item()])
    assert caught.value.response["Error"]["Message"] == (
        "1 validation error detected: Value 'i-083e1601960282cd' at 'instanceId' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: (^i-(\\w{8}|\\w{17})$)|(^mi-\\w{17}$)")


def test_content_hash_skips_unchanged_items(good: Layer) -> None:
    ssm, iid = good.client("ssm"), good.ids["instance_id"]
    first = item("Custom:VpceDoctor.Hash", [{"Status": "OK"}], ContentHash="abc")
    ssm.put_inventory(InstanceId=iid, Items=[first])
    same_hash = item("Custom:VpceDoctor.Hash", [{"Status": "CRITICAL"}], ContentHash="abc",
                     CaptureTime="2024-05-01T13:00:00Z")
    ssm.put_inventory(InstanceId=iid, Items=[same_hash])
    listed = ssm.list_inventory_entries(InstanceId=iid, TypeName="Custom:VpceDoctor.Hash")
    assert (listed["Entries"], listed["CaptureTime"]) == ([{"Status": "OK"}], "2024-05-01T12:00:00Z")
    ssm.put_inventory(InstanceId=iid, Items=[dict(same_hash, ContentHash="def")])
    listed = ssm.list_inventory_entries(InstanceId=iid, TypeName="Custom:VpceDoctor.Hash")
    assert (listed["Entries"], listed["CaptureTime"]) == ([{"Status": "CRITICAL"}], "2024-05-01T13:00:00Z")


def test_custom_schema_count_limit(broken: Layer) -> None:
    ssm, iid = broken.client("ssm", creds="other"), broken.ids["instance_id"]
    ssm.put_inventory(InstanceId=iid, Items=[item(f"Custom:Limit{i}") for i in range(20)])
    assert error_code(ssm.put_inventory, InstanceId=iid, Items=[item("Custom:Limit20")]) \
        == "CustomSchemaCountLimitExceededException"
    ssm.put_inventory(InstanceId=iid, Items=[item("Custom:Limit0", [{"Status": "again"}])])  # existing type: fine


@pytest.fixture(scope="module")
def fleet_inventory(good: Layer) -> Dict[str, str]:
    """Status per instance of the good layer's fleet (registered with --fleet-size and --managed-instance)."""
    ssm = good.client("ssm")
    instances = [good.ids["instance_id"], *good.ids["fleet_instance_ids"], "i-0fee1de00000000aa"]
    statuses = dict(zip(instances, ["OK", "CRITICAL", "WARNING", "OK", "CRITICAL", "UNKNOWN", "OK"]))
    for index, (iid, status) in enumerate(statuses.items()):
        ssm.put_inventory(InstanceId=iid, Items=[item("Custom:VpceDoctor.Status", [
            {"Status": status, "ExitCode": str(index % 4), "Checked": f"2024-05-0{index + 1}T00:00:00Z"}])])
    return statuses


def _ids(ssm: Any, filters: list) -> set:
    found = ssm.get_inventory(Filters=filters, ResultAttributes=[{"TypeName": "Custom:VpceDoctor.Status"}])
    return {e["Id"] for e in found["Entities"]}


def test_get_inventory_filters(good: Layer, fleet_inventory: Dict[str, str]) -> None:
    ssm = good.client("ssm")
    key = "Custom:VpceDoctor.Status.Status"  # type Custom:VpceDoctor.Status, attribute Status

    def having(*statuses: str) -> set:
        return {i for i, s in fleet_inventory.items() if s in statuses}

    assert _ids(ssm, [{"Key": key, "Values": ["CRITICAL"], "Type": "Equal"}]) == having("CRITICAL")
    assert _ids(ssm, [{"Key": key, "Values": ["OK", "WARNING"]}]) == having("OK", "WARNING")  # Equal by default
    assert _ids(ssm, [{"Key": key, "Values": ["OK"], "Type": "NotEqual"}]) == having("CRITICAL", "WARNING", "UNKNOWN")
    assert _ids(ssm, [{"Key": key, "Values": ["UN", "WA"], "Type": "BeginWith"}]) == having("UNKNOWN", "WARNING")
    assert _ids(ssm, [{"Key": key, "Values": ["x"], "Type": "Exists"}]) == set(fleet_inventory)
    assert len(_ids(ssm, [{"Key": "Custom:VpceDoctor.Status.ExitCode", "Values": ["2"], "Type": "GreaterThan"}])) == 1
    assert len(_ids(ssm, [{"Key": "Custom:VpceDoctor.Status.Checked", "Values": ["2024-05-03T00:00:00Z"],
                           "Type": "LessThan"}])) == 2
    first = good.ids["instance_id"]
    assert _ids(ssm, [{"Key": "AWS:InstanceInformation.InstanceId", "Values": [first]},
                      {"Key": key, "Values": ["OK"]}]) == {first}
    assert _ids(ssm, [{"Key": "Custom:NeverPublished.Status", "Values": ["OK"]}]) == set()

    too_many = [{"Key": key, "Values": ["OK"]}] * 6
    assert error_code(ssm.get_inventory, Filters=too_many) == "ValidationException"
    assert error_code(ssm.get_inventory, Filters=[{"Key": "Status", "Values": ["OK"]}]) == "InvalidFilter"
    assert error_code(ssm.get_inventory, Filters=[{"Key": key, "Values": ["1", "2"], "Type": "LessThan"}]) \
        == "InvalidFilter"


def test_get_inventory_default_view_and_pagination(good: Layer, fleet_inventory: Dict[str, str]) -> None:
    ssm = good.client("ssm")
    # Without ResultAttributes: AWS:InstanceInformation of every managed instance.
    everything = ssm.get_inventory()["Entities"]
    assert {e["Id"] for e in everything} == set(fleet_inventory)
    info = {e["Id"]: e["Data"]["AWS:InstanceInformation"]["Content"][0] for e in everything}
    assert info[good.ids["instance_id"]]["IpAddress"] == "10.0.1.10"
    assert info[good.ids["instance_id"]]["InstanceStatus"] == "Active"

    pages, token, seen = 0, None, []
    while True:
        kwargs = {"MaxResults": 3, "ResultAttributes": [{"TypeName": "Custom:VpceDoctor.Status"}]}
        if token:
            kwargs["NextToken"] = token
        page = ssm.get_inventory(**kwargs)
        pages += 1
        assert len(page["Entities"]) <= 3
        seen += [e["Id"] for e in page["Entities"]]
        token = page.get("NextToken")
        if not token:
            break
    assert pages == 3 and sorted(seen) == sorted(fleet_inventory) and len(seen) == len(set(seen))
    assert [p["Id"] for p in ssm.get_paginator("get_inventory").paginate(
        PaginationConfig={"PageSize": 2}).build_full_result()["Entities"]] == sorted(fleet_inventory)

    assert error_code(ssm.get_inventory, MaxResults=51) == "ValidationException"
    assert error_code(ssm.get_inventory, NextToken="garbage") == "InvalidNextToken"


def test_list_inventory_entries(good: Layer, fleet_inventory: Dict[str, str]) -> None:
    ssm, iid = good.client("ssm"), good.ids["instance_id"]
    rows = [{"Name": f"check-{i}", "Status": "OK" if i % 2 else "CRITICAL"} for i in range(5)]
    ssm.put_inventory(InstanceId=iid, Items=[item("Custom:VpceDoctor.Findings", rows)])

    first = ssm.list_inventory_entries(InstanceId=iid, TypeName="Custom:VpceDoctor.Findings", MaxResults=2)
    assert first["Entries"] == rows[:2] and first["NextToken"]
    rest = ssm.list_inventory_entries(InstanceId=iid, TypeName="Custom:VpceDoctor.Findings",
                                      MaxResults=3, NextToken=first["NextToken"])
    assert rest["Entries"] == rows[2:] and "NextToken" not in rest

    critical = ssm.list_inventory_entries(InstanceId=iid, TypeName="Custom:VpceDoctor.Findings",
                                          Filters=[{"Key": "Status", "Values": ["CRITICAL"], "Type": "Equal"}])
    assert [r["Name"] for r in critical["Entries"]] == ["check-0", "check-2", "check-4"]

    empty = ssm.list_inventory_entries(InstanceId=iid, TypeName="Custom:NeverPublished")
    assert (empty["Entries"], empty["TypeName"], empty["InstanceId"]) == ([], "Custom:NeverPublished", iid)
    assert error_code(ssm.list_inventory_entries, InstanceId="i-0123456789abcdef0",
                      TypeName="Custom:VpceDoctor.Findings") == "InvalidInstanceId"
    assert error_code(ssm.list_inventory_entries, InstanceId=iid, TypeName="AWS:Nope") == "InvalidTypeNameException"


def test_chunked_request_body_and_keep_alive(good: Layer) -> None:
    """A body sent with Transfer-Encoding: chunked arrives whole; one connection serves several calls."""
    host, port = good.ids["front_addresses"][0].rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), timeout=10,
                                       context=ssl.create_default_context(cafile=str(good.ca)))
    payload = json.dumps({"InstanceId": good.ids["instance_id"], "Items": [item("Custom:VpceDoctor.Chunked")]})
    headers = {"Host": "ssm.us-east-1.amazonaws.com", "X-Amz-Target": "AmazonSSM.PutInventory",
               "Content-Type": "application/x-amz-json-1.1"}
    try:
        conn.request("POST", "/", body=iter([payload[:10].encode(), payload[10:].encode()]), headers=headers,
                     encode_chunked=True)
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"{}")
        conn.request("POST", "/", body=json.dumps({"InstanceId": good.ids["instance_id"],
                                                   "TypeName": "Custom:VpceDoctor.Chunked"}),
                     headers=dict(headers, **{"X-Amz-Target": "AmazonSSM.ListInventoryEntries"}))
        response = conn.getresponse()
        assert response.status == 200 and json.loads(response.read())["Entries"] == [{"Status": "OK"}]
    finally:
        conn.close()


# --- what moto already does passes through ------------------------------------------------------

def test_cloudwatch_and_ssm_passthrough(good: Layer) -> None:
    cloudwatch = good.client("cloudwatch")
    cloudwatch.put_metric_data(Namespace="VpceDoctor", MetricData=[
        {"MetricName": "Status", "Value": 2.0, "Dimensions": [{"Name": "InstanceId", "Value": good.ids["instance_id"]}]}])
    assert [m["MetricName"] for m in cloudwatch.list_metrics(Namespace="VpceDoctor")["Metrics"]] == ["Status"]
    ssm = good.client("ssm")
    ssm.put_parameter(Name="/lab/probe", Value="1", Type="String")
    assert ssm.get_parameter(Name="/lab/probe")["Parameter"]["Value"] == "1"


# --- process behaviour --------------------------------------------------------------------------

def test_bad_world_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "world.json").write_text(json.dumps({"name": "x"}))
    done = subprocess.run([sys.executable, "-m", "tests.lab.aws", "--world", str(tmp_path / "world.json"),
                           "--state-dir", str(tmp_path / "state")], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "world.json" in done.stderr and "READY" not in done.stdout


def test_sigterm_stops_within_two_seconds(layers: Dict[str, Layer]) -> None:
    layer = layers["elsewhere"]  # the last user of this layer is above
    took = layer.stop()
    assert took is not None and took < STOP_BUDGET_S
    assert layer.proc.returncode == 0
    with pytest.raises(OSError):
        layer.raw("GET", "s3.us-west-2.amazonaws.com", "/")
