"""Fleet basics shared by the readers: the one error type and the type every managed instance has.
A fleet view that only lists what was published reads silence as health — and the instances whose
SSM path broke are exactly the ones that cannot publish — so coverage (managed instances,
AWS:InstanceInformation) is read alongside the findings."""
from __future__ import annotations

from collections.abc import Mapping

MAX_PAGES = 100_000  # a guard against a service that never stops paging
INSTANCE_INFORMATION = "AWS:InstanceInformation"


class FleetError(Exception):
    """The query failed; the message is one line ending in what to do."""


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError ("" for anything else)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, Mapping):
        return ""
    return str((response.get("Error") or {}).get("Code") or "")
