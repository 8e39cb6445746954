"""Fix advice (issue 14): CLI commands filled from what the instance knows; placeholders only for
what nobody knows; one fix per root cause."""
from __future__ import annotations

import contextvars

from vpce_doctor.checks import workers
from vpce_doctor.checks.causes import KNOWN_IDS, explain, known_ids
from vpce_doctor.checks.model import Facts


FACTS = Facts(region="us-east-1", vpc_id="vpc-0123456789abcdef0", subnet_id="subnet-0123456789abcdef0",
              instance_id="i-0123456789abcdef0", vpc_cidr="10.0.0.0/16", subnet_cidr="10.0.1.0/24",
              instance_profile_arn="arn:aws:iam::123456789012:instance-profile/SSMInstanceProfile",
              credentials={"state": "ok", "role": "SSMInstanceRole"})


def test_cli_is_filled_from_the_instance_facts_without_the_ec2_api() -> None:
    def inside_a_check() -> str:
        KNOWN_IDS.set(known_ids(FACTS))
        return str(explain("s3_no_gateway_route", ip="198.51.100.10")["fix"])

    fix = contextvars.copy_context().run(inside_a_check)
    assert "--vpc-id vpc-0123456789abcdef0" in fix and "com.amazonaws.us-east-1.s3" in fix
    assert "--route-table-ids <route-table-id>" in fix  # nobody here knows the route table


def test_what_nobody_knows_is_a_named_placeholder() -> None:
    fix = str(contextvars.Context().run(lambda: explain("s3_no_gateway_route", ip="x")["fix"]))
    assert "CLI: aws ec2 create-vpc-endpoint --vpc-id <vpc-id>" in fix and "{" not in fix


def test_a_checks_own_threads_see_the_known_ids() -> None:
    def probe() -> object:
        return KNOWN_IDS.get().get("vpc_id")

    def check() -> object:
        KNOWN_IDS.set(known_ids(FACTS))
        return workers.run(probe).result(timeout=5)  # a per-address probe in the check's own thread

    assert contextvars.copy_context().run(check) == "vpc-0123456789abcdef0"


def test_a_security_group_is_never_guessed() -> None:
    assert "sg_id" not in known_ids(FACTS)  # a fix's sg_id may be the endpoint's group, not ours
