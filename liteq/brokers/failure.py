"""Why a message failed, in the words every broker stores with its dead letters.

One function, so the SQLite dead-letter rows and the dead-lettered bodies on Redis and
RabbitMQ (``options["failure_reason"]``, ``options["traceback"]``,
``options["failed_at"]``) say the same thing.
"""

from __future__ import annotations

import traceback
from typing import Any

from ..broker import MessageProxy
from ..common import current_millis
from ..message import Message


def failure_reason(proxy: MessageProxy) -> tuple[str, str | None]:
    """A one-line reason and a traceback for a failed message."""
    exc = proxy._exception
    if exc is None:
        return "failed by middleware", proxy.options.get("traceback")
    reason = f"{type(exc).__name__}: {exc}"
    trace = proxy.options.get("traceback") or "".join(
        traceback.format_exception(type(exc), exc, exc.__traceback__, limit=30)
    )
    return reason, trace


def dead_letter_body(proxy: MessageProxy) -> bytes:
    """The body of a dead-lettered message: the message with why and when it failed in
    its options (unknown options, which Dramatiq's workers ignore)."""
    reason, trace = failure_reason(proxy)
    message: Message[Any] = proxy.message
    return message.copy(options={"failure_reason": reason, "traceback": trace,
                                 "failed_at": current_millis()}).encode()
