"""The last report as JSON (the same document as ``check --format json``), replaced atomically so
a reader — or a restart after SIGKILL — always finds a complete report."""
from __future__ import annotations

import os

from ..atomic import write_atomic
from ..render import render_json
from ..report import Report
from .base import BoundedPublisher, Outcome
from .settings import PublishSettings

FILE_NAME = "last-report.json"
TIMEOUT_S = 5.0  # a local write; bounded anyway in case the disk stalls


class LastReportPublisher(BoundedPublisher):
    name = "last_report"

    def __init__(self, settings: PublishSettings, state_dir: str) -> None:
        super().__init__(TIMEOUT_S)
        self.path = settings.last_report_path or os.path.join(state_dir, FILE_NAME)

    def _publish(self, report: Report) -> Outcome:
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(directory, mode=0o755, exist_ok=True)
            write_atomic(self.path, render_json(report) + "\n", mode=0o644)
        except OSError as exc:
            return False, f"cannot write {self.path}: {exc.strerror or exc}"
        return True, f"wrote {self.path} ({report.status.name})"
