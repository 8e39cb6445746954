"""A stand-in for the AWS layer (tests.lab.aws), for testing the network without moto.

Same command line and contract: serves HTTPS (a fixed 200 page, no AWS API) on world["listen_ips"],
writes ``<state>/aws-ids.json`` with made-up ids and prints READY. ``up --aws stub`` uses it.

    python -m tests.lab.aws_stub --world <state>/world.json --state-dir <state>
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import List, Optional

from .internet import serve_tls

STUB_IDS = {
    "vpc_id": "vpc-0stub0000000000a", "route_table_id": "rtb-0stub0000000000a",
    "instance_id": "i-0stub0000000000a", "instance_sg_id": "sg-0stub00000000inst",
    "endpoint_sg_id": "sg-0stub0000000000ep", "s3_gateway_endpoint_id": "vpce-0stub000000000s3",
    "s3_prefix_list_id": "pl-63a5400a", "role_name": "SSMInstanceRole",
    "instance_profile_arn": "arn:aws:iam::123456789012:instance-profile/SSMInstanceRole",
    "credentials": {"AccessKeyId": "ASIASTUBSTUBSTUBSTUB", "SecretAccessKey": "stub" * 10,
                    "Token": "stub-session-token", "Expiration": "2099-01-01T00:00:00Z"},
    "moto_url": None,
}


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    world = json.loads(args.world.read_text())
    threads = serve_tls(world["listen_ips"], 443, world["cert"], world["key"])
    ids = dict(STUB_IDS)
    ids["subnet_ids"] = {s["az"]: f"subnet-0stub{s['az'][-1] * 12}" for s in world["subnets"]}
    ids["endpoints"] = {e["service"]: f"vpce-0stub{i:012d}" for i, e in enumerate(world["interface_endpoints"])}
    tmp = args.state_dir / "aws-ids.json.tmp"
    tmp.write_text(json.dumps(ids, indent=1))
    tmp.replace(args.state_dir / "aws-ids.json")
    print("READY", flush=True)
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
