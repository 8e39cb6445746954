"""One run of every check: what ``vpce-doctor check`` and each daemon cycle do (both import it
from here, so neither imports the other)."""
from __future__ import annotations

import time
from typing import List, Optional, Sequence

from .checks import build
from .checks.awsclient import drop_connections
from .config import Config
from .errors import VpceDoctorError
from .imds import gather_facts, imds_finding
from .report import Report, verdicts
from .runner import Runner, select, unknown_selectors


def run_check(config: Config, only: Optional[Sequence[str]] = None) -> Report:
    """Facts first (bounded), then every check concurrently until the deadline."""
    started_at = time.time()
    start = time.monotonic()
    deadline = start + config.deadline_s
    facts = gather_facts(config.imds, config.fact_overrides, budget_s=min(2.5, config.deadline_s / 3))
    imds = imds_finding(facts, time.monotonic() - start)
    checks = build(config.settings)
    notes: List[str] = []
    if only:
        unknown = unknown_selectors(checks, only)
        if unknown:
            raise VpceDoctorError(f"--only: no check matches {', '.join(unknown)}; "
                                  f"known ids: imds, {', '.join(c.id for c in checks)}")
        checks = select(checks, only)
        notes.append(f"only these checks ran: {', '.join(['imds'] + [c.id for c in checks])}")
    try:
        findings = [imds] + Runner(checks, facts, config.settings, deadline, imds).run()
    finally:
        drop_connections()  # kept AWS clients: the next run dials afresh
    return Report(tuple(findings), facts, verdicts(findings), started_at, time.monotonic() - start,
                  notes=tuple(notes))
