"""instance.public_ip / instance.profile from facts (the SSM agent: test_ssmagent.py)."""
from __future__ import annotations


import pytest

from vpce_doctor.checks import instance
from vpce_doctor.checks.model import Facts, MissingFact, Settings, Status

try:
    from tests.unit.moto_fixture import by_id, run_check
except ImportError:  # tests/unit on sys.path
    from moto_fixture import by_id, run_check  # type: ignore

OK_FACTS = Facts(region="us-east-1", instance_id="i-0vdt", subnet_id="subnet-0a", vpc_cidr="10.0.0.0/16",
                 vpc_cidrs=("10.0.0.0/16",), imds_state="ok",
                 instance_profile_arn="arn:aws:iam::123456789012:instance-profile/SSMInstanceProfile")
NO_IMDS = Facts(region="us-east-1", imds_state="timeout", imds_cause_code="imds_hop_limit")


def check(cid: str, settings: Settings = Settings()):
    return by_id(instance.checks(settings))[cid]


def finding(cid: str, facts: Facts, settings: Settings = Settings()):
    return run_check(check(cid, settings), facts, settings).findings[0]


# --- public IP / profile ------------------------------------------------------------------------------

def test_public_ip_none_is_ok():
    f = finding("instance.public_ip", OK_FACTS)
    assert f.status == Status.OK and f.evidence["public_ipv4"] is None


def test_public_ip_assigned_warns_with_cli():
    f = finding("instance.public_ip", Facts(**{**OK_FACTS.__dict__, "public_ipv4": "203.0.113.50"}))
    assert f.status == Status.WARNING and f.cause_code == "public_ip_assigned" and "203.0.113.50" in f.cause
    assert "modify-subnet-attribute --subnet-id subnet-0a --no-map-public-ip-on-launch" in f.fix


def test_public_ip_unknown_without_imds():
    with pytest.raises(MissingFact) as info:
        finding("instance.public_ip", NO_IMDS)
    assert info.value.name == "public_ipv4"
    # Set in the config: None is then a real answer.
    f = finding("instance.public_ip", Facts(**{**NO_IMDS.__dict__, "sources": {"public_ipv4": "config"}}))
    assert f.status == Status.OK and f.evidence["source"] == "config"


def test_profile_attached():
    f = finding("instance.profile", OK_FACTS)
    assert f.status == Status.OK and "SSMInstanceProfile" in f.summary


def test_no_profile_is_critical_with_cli():
    f = finding("instance.profile", Facts(**{**OK_FACTS.__dict__, "instance_profile_arn": None}))
    assert f.status == Status.CRITICAL and f.cause_code == "no_instance_profile"
    assert "associate-iam-instance-profile --instance-id i-0vdt" in f.fix


def test_profile_unknown_without_imds():
    with pytest.raises(MissingFact):
        finding("instance.profile", NO_IMDS)
