"""IMDSv2 at 169.254.169.254:80, serving the ids the AWS layer created (``<state>/aws-ids.json``).

Modes (scenario ``imds:``), as EC2 behaves:
  ok         tokens required (IMDSv2 only): GETs without a valid token get 401
  disabled   HttpEndpoint=disabled: 403 to every request
  token_403  the token PUT gets 403
  hop_limit  the token PUT is never answered (the response would die at the hop limit); the
             connection is held until the client gives up; GETs without a token get 401

    python -m tests.lab.imds --state-dir /run/vpce-lab/lab --mode ok
"""
from __future__ import annotations

import argparse
import json
import secrets
import socket
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, List, Optional

from . import ipv6lab
from .world import IMDS_IP, INSTANCE_IP, INSTANCE_MAC, SUBNETS, VPC_CIDR

TOKEN_HEADER = "X-aws-ec2-metadata-token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
MAX_TTL_S = 21600
ACCOUNT_ID = "123456789012"  # moto's default account


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def metadata(world: Dict[str, Any], ids: Dict[str, Any]) -> Dict[str, str]:
    """Flat map of /latest/<path> -> body; directories are listed from it."""
    region = world["region"]
    az = world.get("instance_subnet_az", region + "a")
    instance = world.get("instance") or {}
    profile = instance.get("profile") or {}
    public_ip = instance.get("public_ip")
    mac = INSTANCE_MAC
    nic = f"meta-data/network/interfaces/macs/{mac}"
    cidrs = [VPC_CIDR]
    sg_ids = [ids["instance_sg_id"]] if ids.get("instance_sg_id") else []
    md: Dict[str, str] = {
        "meta-data/ami-id": "ami-0a1b2c3d4e5f60718",
        "meta-data/instance-id": ids["instance_id"],
        "meta-data/instance-type": "t3.micro",
        "meta-data/placement/region": region,
        "meta-data/placement/availability-zone": az,
        "meta-data/mac": mac,
        "meta-data/local-ipv4": INSTANCE_IP,
        "meta-data/local-hostname": f"ip-{INSTANCE_IP.replace('.', '-')}.ec2.internal",
        "meta-data/services/partition": world.get("partition", "aws"),
        "meta-data/services/domain": world.get("domain", "amazonaws.com"),
        "meta-data/security-groups": "vdl-instance-sg" if sg_ids else "",
        f"{nic}/device-number": "0",
        f"{nic}/mac": mac,
        f"{nic}/owner-id": ACCOUNT_ID,
        f"{nic}/vpc-id": ids["vpc_id"],
        f"{nic}/subnet-id": ids["subnet_ids"][az],
        f"{nic}/vpc-ipv4-cidr-block": cidrs[0],
        f"{nic}/vpc-ipv4-cidr-blocks": "\n".join(cidrs),
        f"{nic}/subnet-ipv4-cidr-block": SUBNETS[az[-1]],
        f"{nic}/security-group-ids": "\n".join(sg_ids),
        f"{nic}/local-ipv4s": INSTANCE_IP,
        "dynamic/instance-identity/document": json.dumps({
            "accountId": ACCOUNT_ID, "architecture": "x86_64", "availabilityZone": az,
            "imageId": "ami-0a1b2c3d4e5f60718", "instanceId": ids["instance_id"], "instanceType": "t3.micro",
            "privateIp": INSTANCE_IP, "region": region, "version": "2017-09-30"}, indent=2),
    }
    add6, drop6 = ipv6lab.imds_paths(world.get("ipv6"), nic, az[-1])  # IPv6: ipv6s, CIDRs; IPv6-only: no IPv4
    md.update(add6)
    for path in drop6:
        md.pop(path, None)
    if public_ip:
        md["meta-data/public-ipv4"] = public_ip
        md[f"{nic}/public-ipv4s"] = public_ip
    if profile.get("attached", True):
        role = ids.get("role_name") or profile.get("role", "SSMInstanceRole")
        creds = ids["credentials"]
        # The instance profile itself is fine in both cases below: iam/info says Success.
        md["meta-data/iam/info"] = ec2_json({
            "Code": "Success", "LastUpdated": _now(), "InstanceProfileArn": ids["instance_profile_arn"],
            "InstanceProfileId": "AIPA" + ids["instance_id"][2:].upper().ljust(17, "X")[:17]})
        if not profile.get("trusts_ec2", True):
            # EC2 could not assume the role (its trust policy lacks ec2.amazonaws.com): a 200 whose
            # document says so (IAM user guide, troubleshoot_iam-ec2.html#troubleshoot_iam-ec2_errors-info-doc;
            # the wording as IMDS serves it, e.g. awslabs/smithy-rs imds credentials tests).
            md[f"meta-data/iam/security-credentials/{role}"] = ec2_json({
                "Code": "AssumeRoleUnauthorizedAccess",
                "Message": f"EC2 cannot assume the role {role}.  Please see documentation at "
                           "https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_iam-ec2.html"
                           "#troubleshoot_iam-ec2_errors-info-doc.",
                "LastUpdated": _now()})
        else:
            expiration = creds["Expiration"]
            if profile.get("credentials_expired", False):
                # Credentials EC2 stopped refreshing: an Expiration in the past (the AWS layer refuses the token).
                expiration = datetime.fromtimestamp(time.time() - 3600, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            md[f"meta-data/iam/security-credentials/{role}"] = ec2_json({
                "Code": "Success", "LastUpdated": _now(), "Type": "AWS-HMAC",
                "AccessKeyId": creds["AccessKeyId"], "SecretAccessKey": creds["SecretAccessKey"],
                "Token": creds["Token"], "Expiration": expiration})
    return md


def ec2_json(fields: Dict[str, str]) -> str:
    """IMDS's own JSON layout (two-space indent, ``"Key" : "value"``), as EC2 serves these documents."""
    lines = [f"  {json.dumps(k)} : {json.dumps(v)}" for k, v in fields.items()]
    return "{\n" + ",\n".join(lines) + "\n}"


def listing(md: Dict[str, str], directory: str) -> Optional[str]:
    """The children of ``directory`` (sub-directories end with '/'), or None if it has none."""
    prefix = directory.rstrip("/") + "/" if directory else ""
    children: List[str] = []
    for path in md:
        if path.startswith(prefix) and path != prefix:
            head, sep, _ = path[len(prefix):].partition("/")
            entry = head + ("/" if sep else "")
            if entry not in children:
                children.append(entry)
    return "\n".join(sorted(children)) if children else None


class Imds:
    def __init__(self, mode: str, md: Dict[str, str]) -> None:
        self.mode = mode
        self.md = md
        self.tokens: Dict[str, float] = {}
        self.lock = threading.Lock()

    def new_token(self, ttl_s: int) -> str:
        token = secrets.token_urlsafe(40)
        with self.lock:
            self.tokens[token] = time.monotonic() + ttl_s
        return token

    def token_valid(self, token: Optional[str]) -> bool:
        with self.lock:
            return bool(token) and self.tokens.get(token or "", 0) > time.monotonic()


def make_handler(imds: Imds) -> type:
    class Handler(BaseHTTPRequestHandler):
        server_version = "EC2ws"
        sys_version = ""
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args: Any) -> None:  # one line per request in the log file
            print(f"{self.command} {self.path} -> " + (args[1] if len(args) > 1 else ""), flush=True)

        def reply(self, code: int, body: str = "", headers: Optional[Dict[str, str]] = None) -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if imds.mode == "disabled" or imds.mode == "token_403":
                return self.reply(403, "Forbidden")
            if self.path != "/latest/api/token":
                return self.reply(404, "Not Found")
            if imds.mode == "hop_limit":
                return self.hold()
            ttl = self.headers.get(TTL_HEADER, "")
            if not ttl.isdigit() or not 1 <= int(ttl) <= MAX_TTL_S:
                return self.reply(400, "Bad Request")
            self.reply(200, imds.new_token(int(ttl)), {TTL_HEADER: ttl})

        def hold(self) -> None:
            """Never answer: wait until the client closes (EOF) or the server shuts down."""
            self.close_connection = True
            while self.connection.recv(4096):
                pass

        def do_GET(self) -> None:  # noqa: N802
            if imds.mode == "disabled":
                return self.reply(403, "Forbidden")
            if not imds.token_valid(self.headers.get(TOKEN_HEADER)):
                return self.reply(401, "Unauthorized")
            path = self.path.split("?", 1)[0]
            if not path.startswith("/latest/"):
                return self.reply(200, "latest") if path in ("/", "") else self.reply(404, "Not Found")
            key = path[len("/latest/"):]
            if key.rstrip("/") in imds.md and not key.endswith("/"):
                return self.reply(200, imds.md[key])
            children = listing(imds.md, key.rstrip("/"))
            return self.reply(200, children) if children is not None else self.reply(404, "Not Found")

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # socketserver's 5 drops SYNs of a burst of concurrent clients


class _Server6(_Server):
    address_family = socket.AF_INET6


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="IMDSv2 for the vpce-doctor lab")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--mode", choices=("ok", "disabled", "token_403", "hop_limit"), default="ok")
    parser.add_argument("--listen", default=IMDS_IP)
    parser.add_argument("--listen6", default=None, help="also serve here (IPv6, e.g. fd00:ec2::254)")
    args = parser.parse_args(argv)
    world = json.loads((args.state_dir / "world.json").read_text())
    ids = json.loads((args.state_dir / "aws-ids.json").read_text())
    imds = Imds(args.mode, metadata(world, ids))
    server = _Server((args.listen, 80), make_handler(imds))
    if args.listen6:  # the same IMDS (tokens too) on [fd00:ec2::254]
        server6 = _Server6((args.listen6, 80), make_handler(imds))
        threading.Thread(target=server6.serve_forever, daemon=True).start()
        print(f"IMDS {args.mode} on [{args.listen6}]:80", flush=True)
    print(f"IMDS {args.mode} on {args.listen}:80", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
