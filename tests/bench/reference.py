"""The CPU reference every CPU figure is also given against, measured in the same run: a fresh
interpreter importing boto3, dnspython and PyYAML and making one client. Machines differ; the
ratio of a figure to this reference is what compares across them.

    python -m tests.bench.reference [--python .venv39/bin/python]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

CODE = "import boto3, dns.resolver, yaml; boto3.client('s3', region_name='us-east-1')"
RUNS = 3


def python_of(agent: str) -> str:
    """The interpreter beside an agent command (``.venv39/bin/vpce-doctor`` → ``.venv39/bin/python``)."""
    found = shutil.which(agent) or agent
    candidate = Path(found).parent / "python"
    return str(candidate) if candidate.exists() else sys.executable


def reference_cpu_s(python: Optional[str] = None, runs: int = RUNS) -> float:
    """Median user+system CPU seconds of the reference program (a child process, so getrusage of the
    children counts exactly its CPU)."""
    samples: List[float] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    for _ in range(runs):
        proc = subprocess.Popen([python or sys.executable, "-c", CODE], env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status
        if proc.returncode != 0:
            raise RuntimeError(f"the reference program failed with {proc.returncode}")
        samples.append(usage.ru_utime + usage.ru_stime)
    return statistics.median(samples)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.reference", description=__doc__.split("\n\n")[0])
    p.add_argument("--python", default=sys.executable)
    args = p.parse_args(argv)
    print(json.dumps({"figure": "reference_cpu_s", "value": round(reference_cpu_s(args.python), 4),
                      "python": args.python, "program": CODE}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
