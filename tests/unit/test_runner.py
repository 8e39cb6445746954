"""The runner: concurrency, blocking, crashes, timeouts and the deadline (plain functions as checks)."""
from __future__ import annotations

import threading
import time

from vpce_doctor.checks.model import Check, Facts, Finding, Settings, Status, outcome
from vpce_doctor.runner import Runner, select, would_run

FACTS = Facts(region="us-east-1", vpc_cidr="10.0.0.0/16", imds_state="ok")


def ok(cid: str, data: object = True):
    return lambda ctx: outcome(Finding(cid, Status.OK, "fine"), data=data)


def run(checks, deadline_s: float = 5.0, facts: Facts = FACTS, imds=None):
    return {f.id: f for f in Runner(checks, facts, Settings(), time.monotonic() + deadline_s, imds).run()}


def test_independent_checks_run_concurrently():
    barrier = threading.Barrier(2, timeout=3)

    def meet(cid):
        def fn(ctx):
            barrier.wait()  # only passes when both checks run at the same time
            return outcome(Finding(cid, Status.OK, "met"))
        return fn

    found = run([Check("a", meet("a")), Check("b", meet("b"))])
    assert found["a"].status == found["b"].status == Status.OK


def test_dependent_gets_data_and_blocked_dependent_takes_blockers_status():
    seen = {}

    def child(ctx):
        seen["data"] = ctx.data("parent")
        return outcome(Finding("child", Status.OK, "ok"))

    bad = lambda ctx: outcome(Finding("bad", Status.CRITICAL, "broken", cause_code="tcp_timeout",
                                      cause="it timed out", fix="open 443"))
    found = run([Check("parent", ok("parent", data={"x": 1})), Check("child", child, needs=("parent",)),
                 Check("bad", bad), Check("after_bad", ok("after_bad"), needs=("bad",))])
    assert seen["data"] == {"x": 1}
    blocked = found["after_bad"]
    assert blocked.blocked_by == "bad" and blocked.status == Status.CRITICAL
    assert blocked.cause_code == "tcp_timeout" and "blocked by bad" in blocked.cause


def test_exception_becomes_unknown_with_traceback():
    def boom(ctx):
        raise ValueError("kaboom")

    f = run([Check("boom", boom)])["boom"]
    assert f.status == Status.UNKNOWN and f.cause_code == "check_crashed"
    assert "kaboom" in f.summary and "Traceback" in f.evidence["traceback"]


def test_stuck_check_is_abandoned_at_its_timeout():
    release = threading.Event()

    def stuck(ctx):
        release.wait(30)
        return outcome(Finding("stuck", Status.OK, "late"))

    start = time.monotonic()
    found = run([Check("stuck", stuck, timeout_s=0.3), Check("quick", ok("quick"))])
    elapsed = time.monotonic() - start
    release.set()
    assert found["stuck"].status == Status.UNKNOWN and found["stuck"].cause_code == "check_timeout"
    assert found["quick"].status == Status.OK
    assert elapsed < 3


def test_global_deadline_bounds_everything():
    release = threading.Event()

    def stuck(ctx):
        release.wait(30)
        return outcome(Finding("s", Status.OK, "late"))

    start = time.monotonic()
    found = run([Check("s1", stuck, timeout_s=30), Check("s2", stuck, needs=("s1",), timeout_s=30)], deadline_s=0.4)
    elapsed = time.monotonic() - start
    release.set()
    assert found["s1"].status == Status.UNKNOWN
    assert found["s2"].blocked_by == "s1"
    assert elapsed < 3


def test_missing_fact_is_blocked_by_imds_with_its_cause():
    imds = Finding("imds", Status.CRITICAL, "IMDS disabled", cause_code="imds_disabled", cause="403", fix="enable it")

    def needs_cidr(ctx):
        ctx.facts.require("vpc_cidr")
        return outcome(Finding("x", Status.OK, "never"))

    f = run([Check("x", needs_cidr)], facts=Facts(imds_state="disabled"), imds=imds)["x"]
    assert f.blocked_by == "imds" and f.status == Status.CRITICAL and f.cause_code == "imds_disabled"


def test_bad_return_value_is_a_crash_not_a_hang():
    f = run([Check("bad", lambda ctx: None)])["bad"]  # type: ignore[arg-type,return-value]
    assert f.status == Status.UNKNOWN and f.cause_code == "check_crashed"


def test_select_pulls_in_dependencies():
    checks = [Check("resolver", ok("resolver")), Check("dns.ssm", ok("dns.ssm"), needs=("resolver",)),
              Check("egress.google.com", ok("e"))]
    assert [c.id for c in select(checks, ["dns"])] == ["resolver", "dns.ssm"]


def test_wanted_check_runs_first_and_its_missing_data_does_not_block():
    seen = {}

    def agent(ctx):
        seen["ran"], seen["data"] = ctx.ran("reach.ssm"), ctx.data("reach.ssm")
        seen["absent"] = ctx.ran("reach.kms")
        return outcome(Finding("ssm_agent", Status.WARNING, "not connected"))

    failed = lambda ctx: outcome(Finding("reach.ssm", Status.CRITICAL, "timeout", cause_code="tcp_timeout"))
    found = run([Check("ssm_agent", agent, wants=("reach.ssm", "reach.kms")), Check("reach.ssm", failed)])
    assert found["ssm_agent"].blocked_by is None and found["ssm_agent"].status == Status.WARNING
    assert seen == {"ran": True, "data": None, "absent": False}


def test_would_run_follows_only_and_overrides():
    """What the CLI asks before starting the isolation probe early: the same selectors as --only
    (id or dotted prefix) and checks.overrides (enabled: false)."""
    assert would_run("egress.google.com", None)
    assert would_run("egress.google.com", ["egress"]) and would_run("egress.google.com", ["dns", "egress.google.com"])
    assert not would_run("egress.google.com", ["dns.ssm"]) and not would_run("egress.google.com", ["egr"])
    assert not would_run("egress.google.com", None, [("egress", False, None)])
    assert would_run("egress.google.com", None, [("egress", True, "WARNING"), ("egress.example.com", False, None)])
