"""Control bytes from outside (IMDS, DNS, AWS answers, files the agent reads) never reach a terminal.

An answer that carries ``ESC[2J`` clears the operator's screen, ``\\r`` overwrites what the line
said ("CRITICAL" printed over by "OK"), and a bidi override (U+202E) shows text in another order
than the bytes hold. :func:`escape_controls` turns each such character into a visible escape
(``\\x1b``, ``\\r``, ``\\u202e``); printable text, non-Latin letters included, is kept as it is.

What is escaped: C0 controls (U+0000-U+001F) and DEL, C1 controls (U+0080-U+009F: 8-bit CSI
U+009B starts an escape sequence on many terminals too), the bidi embeddings, overrides and
isolates (U+202A-U+202E, U+2066-U+2069) and the line/paragraph separators (U+2028/U+2029).
Newline and tab are kept only where the caller says the text is multi-line (``keep="\\n\\t"``):
evidence such as a traceback, or a whole rendering whose lines we joined ourselves.
"""
from __future__ import annotations

import re
_UNSAFE = "\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_ALL = re.compile(f"[{_UNSAFE}]")
_MULTILINE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\r": "\\r", "\n": "\\n", "\t": "\\t"}


def _escape(match: "re.Match[str]") -> str:
    ch = match.group(0)
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape_controls(text: str, multiline: bool = False) -> str:
    """``text`` with every terminal control as a visible escape. ``multiline``: newline and tab
    stay (the caller prints the lines). Returns the caller's own object when nothing changed."""
    if not text:
        return text
    pattern = _MULTILINE if multiline else _ALL
    if pattern.search(text) is None:
        return text
    return pattern.sub(_escape, text)


def has_controls(text: str, multiline: bool = False) -> bool:
    """True when ``text`` holds a byte :func:`escape_controls` would escape (tests, assertions)."""
    return (_MULTILINE if multiline else _ALL).search(text) is not None

