"""The lab's AWS side refuses the instance as AWS does, seen from the instance itself: credentials from
IMDS, a signed ListInstanceAssociations through the ssm endpoint's Private DNS name, AWS's clock in
the Date header and a signature outside AWS's five minutes. Needs root, ip, nft and dnsmasq, and the
real AWS layer (skipped otherwise)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from email.utils import parsedate_to_datetime
from typing import Any, Dict, Iterator

import pytest

from tests.lab import lab as labmod
from tests.lab.processes import REPO_ROOT
from tests.lab.scenario import parse
from tests.lab.test_lab import AWS, needs_lab

LAB = "tauthz"
OFFSET_S = 120  # within SigV4's five minutes: calls go through, the Date header shows AWS's clock

# Runs on the instance (tests.lab exec): IMDSv2 credentials, then two signed SSM calls with botocore.
PROBE = r"""
import datetime, json, os, urllib.request
import botocore.auth
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.httpsession import URLLib3Session

def imds(path, token=None, method="GET"):
    headers = {"X-aws-ec2-metadata-token": token} if token else {"X-aws-ec2-metadata-token-ttl-seconds": "60"}
    req = urllib.request.Request("http://169.254.169.254/latest/" + path, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=5) as reply:
        return reply.read().decode()

token = imds("api/token", method="PUT")
iid = imds("meta-data/instance-id", token)
role = imds("meta-data/iam/security-credentials/", token).strip()
c = json.loads(imds("meta-data/iam/security-credentials/" + role, token))

def call(operation, payload, skew_s=0):
    at = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) + datetime.timedelta(seconds=skew_s)
    if hasattr(botocore.auth, "get_current_datetime"):
        botocore.auth.get_current_datetime = lambda: at
    else:  # botocore 1.31 (AL2023) signs with datetime.datetime.utcnow()
        class Clock(datetime.datetime):
            @classmethod
            def utcnow(cls):
                return at
        botocore.auth.datetime = type("m", (), {"datetime": Clock, "timedelta": datetime.timedelta})
    req = AWSRequest(method="POST", url="https://ssm.us-east-1.amazonaws.com/", data=json.dumps(payload).encode(),
                     headers={"X-Amz-Target": "AmazonSSM." + operation, "Content-Type": "application/x-amz-json-1.1"})
    SigV4Auth(Credentials(c["AccessKeyId"], c["SecretAccessKey"], c["Token"]), "ssm", "us-east-1").add_auth(req)
    session = URLLib3Session(verify=os.environ["AWS_CA_BUNDLE"], timeout=10)
    try:
        r = session.send(req.prepare())
        return {"status": r.status_code, "date": r.headers.get("Date"), "body": json.loads(r.content)}
    finally:
        session.close()

print(json.dumps({"instance_id": iid, "role": role, "expiration": c["Expiration"],
                  "denied": call("ListInstanceAssociations", {"InstanceId": iid, "MaxResults": 1}),
                  "skewed": call("GetDocument", {"Name": "SSM-SessionManagerRunShell"}, skew_s=-400)}))
"""


@pytest.fixture(scope="module")
def refused() -> Iterator[labmod.Lab]:
    sc = parse({"instance": {"profile": {"denied_actions": ["ssm:ListInstanceAssociations"]}},
                "aws_clock_offset_s": OFFSET_S}, "refused.yaml", "refused")
    lab = labmod.up(sc, LAB, aws=AWS)
    try:
        yield lab
    finally:
        labmod.down(LAB)


@needs_lab
@pytest.mark.skipif(AWS != "real", reason="the stub AWS layer has no API")
def test_the_instance_is_refused_as_aws_refuses_it(refused: labmod.Lab) -> None:
    out = subprocess.run([sys.executable, "-m", "tests.lab", "exec", "--name", LAB, "--", "python", "-c", PROBE],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    seen: Dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    iid, role = seen["instance_id"], seen["role"]
    denied = seen["denied"]
    assert (denied["status"], denied["body"]["__type"]) == (400, "AccessDeniedException")
    assert denied["body"]["message"] == (
        f"User: arn:aws:sts::123456789012:assumed-role/{role}/{iid} is not authorized to perform: "
        f"ssm:ListInstanceAssociations on resource: arn:aws:ec2:us-east-1:123456789012:instance/{iid} because no "
        "identity-based policy allows the ssm:ListInstanceAssociations action")
    # AWS's clock is the host's + OFFSET_S; a request signed 400 s behind the host is 520 s behind AWS.
    aws_now = parsedate_to_datetime(denied["date"]).timestamp()
    assert abs(aws_now - (time.time() + OFFSET_S)) < 15
    skewed = seen["skewed"]
    assert (skewed["status"], skewed["body"]["__type"]) == (400, "InvalidSignatureException")
    assert skewed["body"]["message"].startswith("Signature expired: ")
    assert skewed["body"]["message"].endswith(" - 5 min.)")
