"""One exception root for our own trouble (exit code 3)."""
from __future__ import annotations

import json
from typing import Any


class VpceDoctorError(Exception):
    """Our own trouble: bad config, a missing prerequisite. Message is one line ending in a hint."""


class ConfigError(VpceDoctorError):
    """The config file is unreadable or invalid; the message names the file and key path."""


def show(value: Any, limit: int = 60) -> str:
    """A short, single-line rendering of a user/IMDS value for messages."""
    text = json.dumps(value, default=str) if isinstance(value, str) else repr(value)
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= limit else text[: limit - 3] + "..."
