"""Reading a Resource Data Sync of 10,000 instances (agent/fleet_sync.py): from a plain moto_server on
127.0.0.1 and from a local directory copy, each read in a fresh process (so its peak RSS is the
reader's own), with moto's bare GetObject rate as the reference.

    .venv/bin/python -m tests.bench.fleet_sync [--instances 10000] [--concurrency 32]

prints one JSON line per figure: {"figure": "sync_s3_10000", "wall_s", "objects_per_s", "peak_rss_mb",
"cpu_s", ...}, {"figure": "sync_local_10000", ...}, {"figure": "moto_get_rate", ...}. The entries are
what the daemon publishes (build_inventory over real Reports, causes from checks.causes.explain): one
Report per profile, its instance id swapped per instance, so writing 10,000 objects stays cheap.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from tests.lab.aws.resource_data_sync import (MotoServer, S3Dest, instance_information, moto_get_rate,
                                              write_layout)

REPO = Path(__file__).resolve().parents[2]
TYPE = "Custom:VpceDoctor"
ACCOUNTS = ("111122223333", "444455556666")
REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2")
PLACEHOLDER = "i-0placeholder0000"
CHECK_IDS = ("imds", "instance.public_ip", "instance.profile", "ssm_agent", "resolver", "dns.ssm",
             "dns.ec2messages", "dns.ssmmessages", "reach.ssm.10.0.1.101", "reach.ssm.10.0.2.101",
             "reach.ssmmessages.10.0.1.103", "s3.dns", "s3.route", "s3.api", "egress.google.com")
PROFILES = ({}, {"dns.ssm": ("CRITICAL", "private_dns_disabled")},
            {"reach.ssm.10.0.1.101": ("CRITICAL", "endpoint_sg_no_inbound_443"),
             "s3.route": ("CRITICAL", "s3_route_missing")},
            {"resolver": ("WARNING", "resolver_slow")}, {})
PARAMS = {"vpc_id": "vpc-0fee1de0000000001", "subnet_id": "subnet-0fee1de0000000001",
          "endpoint_id": "vpce-0fee1de0000000001", "service": "ssm", "route_table_id": "rtb-0fee1de0000000001",
          "sg_id": "sg-0fee1de0000000001", "ip": "10.0.1.101", "prefix_list_id": "pl-63a5400a"}


def template(profile: int, region: str) -> Dict[str, Any]:
    from vpce_doctor.checks.causes import explain
    from vpce_doctor.checks.model import Facts, Finding, Status
    from vpce_doctor.publishers.inventory import build_inventory
    from vpce_doctor.report import Report, verdicts

    import dataclasses

    has_resource = "resource" in {f.name for f in dataclasses.fields(Finding)}
    findings = []
    for check in CHECK_IDS:
        status, code = PROFILES[profile].get(check, ("OK", ""))
        text = explain(code, instance_id=PLACEHOLDER, region=region, **PARAMS) if code else {}
        findings.append(Finding(id=check, status=Status[status], summary=f"{check}: {status.lower()}",
                                cause_code=code or None, cause=text.get("cause"), fix=text.get("fix"),
                                evidence={"latency_ms": 1.5, "answers": ["10.0.1.101", "10.0.2.101"]},
                                **({"resource": text["resource"]} if has_resource and text.get("resource") else {})))
    report = Report(tuple(findings), Facts(region=region, instance_id=PLACEHOLDER), tuple(verdicts(findings)),
                    time.time() - 600, 0.5)
    return build_inventory(report, TYPE, "Custom:VpceDoctorVerdict").items[0].api()


def fleet(count: int) -> Iterator[Tuple[str, str, str, Dict[str, Any]]]:
    """``count`` instances over 2 accounts × 3 regions; every 100th publishes nothing (silent)."""
    templates = {(p, r): json.dumps(template(p, r)) for p in range(len(PROFILES)) for r in REGIONS}
    for n in range(count):
        iid = f"i-{0x0f1ee70000000000 + n:017x}"
        account, region = ACCOUNTS[n % 2], REGIONS[n % 3]
        if n % 100 == 99:
            yield account, region, iid, {"AWS:InstanceInformation": instance_information(iid, "ConnectionLost")}
            continue
        item = json.loads(templates[(n % len(PROFILES), region)].replace(PLACEHOLDER, iid))
        yield account, region, iid, {TYPE: item}


def child(url: str, endpoint: Optional[str], concurrency: int) -> int:
    """One read in this process: the real Collector as the sink; prints the figures."""
    from vpce_doctor.fleet_collect import Collector, Selection
    from vpce_doctor.fleet_sync import read_sync

    start, cpu0 = time.monotonic(), time.process_time()
    collector = Collector(Selection())
    stats = read_sync(url, collector, endpoint_url=endpoint, concurrency=concurrency,
                      deadline_at=time.monotonic() + 600)
    wall, cpu = time.monotonic() - start, time.process_time() - cpu0
    data = collector.finish()
    print(json.dumps({"wall_s": round(wall, 3), "objects": stats.read, "objects_per_s": round(stats.read / wall, 1),
                      "cpu_s": round(cpu, 2), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                                                  / 1024, 1),
                      "reports": len(data.reports), "managed": len(data.managed), "problems": dict(data.problem_counts),
                      "managed_read": stats.managed_read, "bytes_read": stats.bytes_read, "stats": str(stats)}))
    return 0


def run_child(url: str, endpoint: Optional[str], concurrency: int, env: Dict[str, str]) -> Dict[str, Any]:
    cmd = [sys.executable, "-m", "tests.bench.fleet_sync", "--child", url, "--concurrency", str(concurrency)]
    if endpoint:
        cmd += ["--endpoint-url", endpoint]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def hermetic_env() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and "proxy" not in k.lower()}
    env.update(AWS_ACCESS_KEY_ID="AKIAIOSFODNN7EXAMPLE", AWS_SECRET_ACCESS_KEY="lab", AWS_EC2_METADATA_DISABLED="true",
               AWS_CONFIG_FILE="/nonexistent/aws-config", AWS_SHARED_CREDENTIALS_FILE="/nonexistent/aws-credentials",
               PYTHONPATH=str(REPO))
    return env


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--child", metavar="URL")
    parser.add_argument("--endpoint-url")
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.endpoint_url, args.concurrency)
    env = hermetic_env()
    os.environ.update(env)  # the writer's own boto3 client, in this process
    figures: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="vdt-sync-bench-") as tmp, MotoServer() as moto:
        figures.append(dict(figure="moto_get_rate", **moto_get_rate(moto, 2000, args.concurrency, size=9000)))
        client = moto.client(max_pool_connections=args.concurrency)
        client.create_bucket(Bucket="sync-bench")
        started = time.monotonic()
        written = write_layout(S3Dest(client, "sync-bench", "inventory"), fleet(args.instances), args.concurrency)
        write_s = time.monotonic() - started
        write_layout(Path(tmp) / "copy", fleet(args.instances))
        for name, url, endpoint in (("s3", "s3://sync-bench/inventory", moto.url),
                                    ("local", str(Path(tmp) / "copy"), None)):
            result = run_child(url, endpoint, args.concurrency, env)
            figures.append(dict(figure=f"sync_{name}_{args.instances}", **result))
        figures.append({"figure": "sync_write_s3", "objects": written.objects, "wall_s": round(write_s, 2)})
    for figure in figures:
        print(json.dumps(figure))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
