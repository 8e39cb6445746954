"""One exception root for our own trouble (exit code 3)."""
from __future__ import annotations

import json
import reprlib
from typing import Any


class VpceDoctorError(Exception):
    """Our own trouble: bad config, a missing prerequisite. Message is one line ending in a hint."""


class ConfigError(VpceDoctorError):
    """The config file is unreadable or invalid; the message names the file and key path."""


def _bounded_repr() -> reprlib.Repr:
    r = reprlib.Repr()  # attributes, not keyword arguments: Python 3.9's Repr takes none
    r.maxlevel, r.maxdict, r.maxlist, r.maxtuple, r.maxset = 2, 4, 4, 4, 4
    r.maxstring, r.maxother, r.maxlong = 40, 40, 40
    return r


_REPR = _bounded_repr()


def show(value: Any, limit: int = 60) -> str:
    """A short, single-line, escaped rendering of a user/IMDS value for messages. Bounded in time
    and size whatever the value: a YAML alias bomb or a 1 MiB string costs no more than a small one."""
    if isinstance(value, str):
        text = json.dumps(value[: limit + 1])  # escapes control characters and quotes
    else:
        text = _REPR.repr(value)
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= limit else text[: limit - 3] + "..."
