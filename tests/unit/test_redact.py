"""The one redaction (checks/redact.py): every secret form it must remove, and the ordinary text
it must keep (a redaction that eats ARNs, paths or messages would make the diagnosis useless)."""
from __future__ import annotations

import json

import pytest

from vpce_doctor.checks.redact import MASK, redact, redact_value

KEY_ID = "ASIAEXAMPLEFAKEKEY12"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYFAKEKEY9x1"
TOKEN = "IQoJb3JpZ2luX2VjEFAKEtokenVALUEfakeFAKEfake0123456789abcdefABCDEFzz"
PASSWORD = "s3cr3t-Pa55"


@pytest.mark.parametrize("text", [
    f"HTTPS_PROXY=user:{PASSWORD}@proxy.internal:3128",          # no scheme: botocore and curl accept it
    f"proxy user:{PASSWORD}@10.0.0.5:3128 refused",
    f"http://user:{PASSWORD}@proxy:3128/",
    f"https://us%40r:{PASSWORD}@proxy:3128",
    f"socks5h://u:{PASSWORD}@[fd00::1]:1080",
    f"user:p@{PASSWORD}@proxy:3128",                              # an @ inside the password
    f"'https_proxy': 'admin:{PASSWORD}@proxy:8080'",
])
def test_proxy_passwords_are_removed(text: str) -> None:
    out = redact(text)
    assert PASSWORD not in out
    assert "proxy" in out or "10.0.0.5" in out or "fd00::1" in out  # where it went stays visible


@pytest.mark.parametrize("text", [
    f"https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={KEY_ID}%2F20261203%2Fus-east-1"
    f"%2Fs3%2Faws4_request&X-Amz-Security-Token={TOKEN}&X-Amz-Signature=0123456789abcdef0123456789abcdef",
    f"Authorization: AWS4-HMAC-SHA256 Credential={KEY_ID}/20261203/us-east-1/ssm/aws4_request, "
    f"SignedHeaders=host;x-amz-date, Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    f"x-amz-security-token:{TOKEN}\nhost:ssm.us-east-1.amazonaws.com",
    json.dumps({"Code": "Success", "AccessKeyId": KEY_ID, "SecretAccessKey": SECRET, "Token": TOKEN}),
    f"aws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\naws_session_token = {TOKEN}",
    f"{{'AccessKeyId': '{KEY_ID}', 'SessionToken': '{TOKEN}'}}",
    f"X-aws-ec2-metadata-token: {TOKEN}",
    f"key {KEY_ID} and {SECRET} in prose",
])
def test_aws_credentials_are_removed(text: str) -> None:
    out = redact(text)
    for secret in (KEY_ID, SECRET, TOKEN, "0123456789abcdef0123456789abcdef"):
        assert secret not in out, out


@pytest.mark.parametrize("text", [
    "dns.ssm: ssm.us-east-1.amazonaws.com -> 10.0.1.21, 10.0.2.22 (private, in 10.0.0.0/16)",
    "User: arn:aws:sts::123456789012:assumed-role/vpce-lab-role/i-0123456789abcdef0 is not authorized to "
    "perform: ssm:ListInstanceAssociations on resource: arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0",
    "IMDSv2 token: 403 Forbidden (IMDS disabled)",
    "Signature expired: 20261203T061500Z is now earlier than 20261203T062000Z (20261203T062500Z - 5 min.)",
    "log group /aws/ssm/SessionManagerLogs/production-servers-encrypted-2026 not found",
    "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "fd00:ec2::254 and ec2-user@host and ssm:GetDocument",
    "arn:aws:iam::123456789012:role/team@example/vpce-lab-role",
])
def test_ordinary_text_is_kept(text: str) -> None:
    assert redact(text) == text


def test_redact_is_idempotent_and_keeps_unchanged_objects() -> None:
    text = f"http://u:{PASSWORD}@p:1 {KEY_ID}"
    once = redact(text)
    assert redact(once) == once
    clean = {"a": ["x", ("y", 1)], "b": {"c": "d"}}
    assert redact_value(clean) is clean


def test_nested_evidence_and_secret_named_keys() -> None:
    evidence = {"proxy": {"HTTPS_PROXY": f"u:{PASSWORD}@proxy:3128"}, "creds": {"Token": "short"},
                "answers": [f"see {KEY_ID}"], (1, 2): ("t", f"http://a:{PASSWORD}@b")}
    out = redact_value(evidence)
    dumped = repr(out)
    assert PASSWORD not in dumped and KEY_ID not in dumped and "short" not in dumped
    assert out["proxy"]["HTTPS_PROXY"] == "***@proxy:3128"
    assert out["creds"]["Token"] == MASK


def test_a_resource_data_sync_key_is_not_a_secret() -> None:
    """`fleet --from-sync` names objects by their key: the partitions make a long mixed-case run."""
    key = ("s3://b/inventory/Custom:VpceDoctor/accountid=111111111111/region=ap-southeast-2/"
           "resourcetype=ManagedInstanceInventory/i-03b05e392a6ea1c0d.json")
    assert redact(key) == key
    # Only well-formed partitions count: a secret with "accountid=" glued on is still masked.
    assert "AAAAbbbbCCCC1234dddEEEE5678ffffGGGG9999" not in redact("t AQoDYXdzEJr/accountid=AAAAbbbbCCCC1234dddEEEE5678ffffGGGG9999")
