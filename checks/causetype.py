"""What one cause is: its stable code, the cause and fix texts, and the exact CLI command."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Cause:
    code: str
    cause: str  # what is most likely wrong (str.format with params)
    fix: str  # what to change (str.format with params)
    cli: Optional[str] = None  # exact AWS CLI command, when every {param} is known
    # The AWS resource the cause points at (checks/resources.py): a kind, or a fallback chain
    # "security-group|endpoint" (the first kind whose id can be built; the instance at the end).
    resource: str = "instance"
