"""Text from messages, errors and the database, shown without letting it drive the terminal."""

from __future__ import annotations

import re

#: What must never reach a terminal from stored text: C0 and C1 control characters
#: (ESC starts escape sequences, BEL ends window titles, CR overwrites a line), DEL,
#: line separators and the bidirectional overrides that reorder what is shown.
_UNSAFE = "\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_UNSAFE_LINE = re.compile(f"[\t\n{_UNSAFE}]")
_UNSAFE_BLOCK = re.compile(f"[{_UNSAFE}]")


def _shown(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(value: object, *, multiline: bool = False) -> str:
    """``str(value)`` with every control character shown as an escape (``\\x1b``).

    For anything that comes from a message, an error or the database: it is then
    printed as stored, and no escape sequence in it reaches the terminal. Tabs and
    newlines are kept only when ``multiline`` (tracebacks).
    """
    pattern = _UNSAFE_BLOCK if multiline else _UNSAFE_LINE
    return pattern.sub(_shown, str(value))


def exception_text(exc: BaseException) -> str:
    """``Type: message``, or just ``Type`` when the exception has no message (no dangling
    ``": "`` for ``KeyError()`` or ``raise TimeoutError``)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
