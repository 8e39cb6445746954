"""Publishers: put a finished Report where operators look (SSM inventory, the SSM agent's custom
inventory file, CloudWatch, a local HTTP endpoint, a last-report file). See docs/publishing.md.

The registry of publishers lives here, so that ``base`` (what every publisher shares) imports none.
"""
from __future__ import annotations

import logging
from typing import Callable, Dict, List, Optional

from .base import Publisher, PublishResult, Unavailable, one_line
from .settings import PublishSettings

__all__ = ["Publisher", "PublishResult", "PublishSettings", "build_publishers"]

log = logging.getLogger("vpce_doctor.publishers")


def build_publishers(settings: PublishSettings, state_dir: str, ca_bundle: Optional[str]) -> List[Publisher]:
    """One publisher per name in ``settings.publishers``, in that order. Never raises: a publisher
    that cannot be built reports why on each publish (so the daemon runs, and says so)."""
    # Imported here, not with the package: the config (publishers.settings) loads on every
    # `vpce-doctor check`, which publishes nothing.
    from . import cloudwatch, http, inventory, inventory_file, last_report

    factories: Dict[str, Callable[[], Publisher]] = {
        "last_report": lambda: last_report.LastReportPublisher(settings, state_dir),
        "inventory": lambda: inventory.InventoryPublisher(settings, ca_bundle),
        "inventory_file": lambda: inventory_file.InventoryFilePublisher(settings),
        "cloudwatch": lambda: cloudwatch.CloudWatchPublisher(settings, ca_bundle),
        "http": lambda: http.HttpPublisher(settings),
    }
    built: List[Publisher] = []
    for name in settings.publishers:
        factory = factories.get(name)
        if factory is None:
            built.append(Unavailable(name, f"unknown publisher {name!r}; expected one of {', '.join(factories)}"))
            continue
        try:
            built.append(factory())
        except Exception as exc:  # noqa: BLE001 - never let a publisher take the daemon down
            log.warning("publisher %s could not start: %s", name, one_line(exc))
            built.append(Unavailable(name, f"could not start: {exc.__class__.__name__}: {exc}"))
    return built
