"""One exception root for our own trouble (exit code 3)."""
from __future__ import annotations


class VpceDoctorError(Exception):
    """Our own trouble: bad config, a missing prerequisite. Message is one line ending in a hint."""


class ConfigError(VpceDoctorError):
    """The config file is unreadable or invalid; the message names the file and key path."""
