"""Daemon logging: one line per event on stderr, as text or as one JSON object per line.

journald stores each line as one entry. When stderr *is* the journal (``$JOURNAL_STREAM`` names
its device and inode, systemd.exec(5)), text lines carry a ``<N>`` syslog priority prefix so the
journal records the level, and no timestamp (journald adds its own). Multi-line content (a
traceback, a message with newlines) never spans lines: text keeps the exception's last line,
JSON carries the whole traceback in a field.

Structured fields go in ``extra={...}``: JSON output includes them as keys; text shows the message.

Every line passes the one redaction (checks/redact.py, which also escapes terminal controls), and
the AWS and HTTP libraries never log below INFO: botocore's DEBUG output holds signatures, session
tokens and request bodies.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import traceback
from typing import Any, Dict, Mapping, Optional, TextIO

from .checks.redact import redact, redact_value
from .checks.textsafe import escape_controls

FORMATS = ("text", "json")

# Attributes every LogRecord has; anything else came from extra={...}.
_STANDARD = set(vars(logging.LogRecord("n", logging.INFO, "p", 1, "m", None, None))) | {"message", "asctime"}
_SYSLOG_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def _flat(text: str) -> str:
    """One line, and no terminal control from an answer (ESC, CR, bidi overrides) raw."""
    return escape_controls(text)


def _utc(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


class TextFormatter(logging.Formatter):
    def __init__(self, journal: bool = False) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            text += " | " + "".join(traceback.format_exception_only(*record.exc_info[:2])).strip()
        text = _flat(redact(text))
        if self.journal:
            return f"<{_SYSLOG_PRIORITY.get(record.levelno, 6)}>{text}"
        return f"{_utc(record.created)} {text}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: Dict[str, Any] = {"time": _utc(record.created), "level": record.levelname, "logger": record.name,
                               "message": record.getMessage()}
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            doc["exception"] = "".join(traceback.format_exception_only(*record.exc_info[:2])).strip()
            doc["traceback"] = "".join(traceback.format_exception(*record.exc_info))
        return json.dumps(redact_value(doc), default=lambda o: redact(str(o)), ensure_ascii=False)


def stream_is_journal(stream: TextIO, environ: Optional[Mapping[str, str]] = None) -> bool:
    """True when ``stream`` is the journal connection systemd set up (``JOURNAL_STREAM=dev:ino``)."""
    env = os.environ if environ is None else environ
    value = env.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in value.split(":", 1))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


_HANDLER_NAME = "vpce-doctor-daemon"
# Libraries whose DEBUG lines carry credentials, signatures or request bodies.
QUIET_LIBRARIES = ("botocore", "boto3", "s3transfer", "urllib3", "dns", "asyncio")


def cap_library_levels(verbose: bool) -> None:
    """INFO at most for the chatty libraries (WARNING unless verbose), whatever the root level."""
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record comes (main() may be called again with
    another stderr, as tests do), not the stream of the first call."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure_cli(verbose: int, stream: Optional[TextIO] = None) -> None:
    """Logging for one-shot commands: warnings only, or our DEBUG lines with ``-vv``."""
    handler = logging.StreamHandler(stream) if stream is not None else _CurrentStderr()
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(TextFormatter(journal=False))
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == _HANDLER_NAME or type(old) in (logging.StreamHandler, _CurrentStderr):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("vpce_doctor").setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)
    cap_library_levels(verbose > 1)
    _route_stray_output()


def _thread_exception(args: Any) -> None:
    """An exception that escaped a thread: one redacted log line (JSON keeps the traceback), never
    the interpreter's multi-line dump on stderr."""
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("vpce_doctor").error("thread %s died: %s: %s", name, args.exc_type.__name__, args.exc_value,
                                           exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


def _route_stray_output() -> None:
    # Python warnings and dying threads go through the same formatter (and redaction) as the rest.
    logging.captureWarnings(True)
    threading.excepthook = _thread_exception


def configure(fmt: str = "text", stream: Optional[TextIO] = None, level: int = logging.INFO) -> None:
    """Route every log record (ours at ``level``, libraries' at WARNING) through one handler.
    Idempotent: calling it again (a reload that changes the format) replaces the handler."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}; expected one of {', '.join(FORMATS)}")
    out = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(out)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(journal=stream_is_journal(out)))
    root = logging.getLogger()
    for old in list(root.handlers):  # our previous handler, or basicConfig's plain StreamHandler
        if old.get_name() == _HANDLER_NAME or type(old) is logging.StreamHandler:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)  # botocore & co. are chatty at INFO
    logging.getLogger("vpce_doctor").setLevel(level)
    cap_library_levels(level <= logging.DEBUG)
    _route_stray_output()
