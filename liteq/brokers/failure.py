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
from ..errors import DecodeError
from ..message import Message
from ..support.text import exception_text


def failure_reason(proxy: MessageProxy) -> tuple[str, str | None]:
    """A one-line reason and a traceback for a failed message."""
    exc = proxy._exception
    if exc is None:
        return "failed by middleware", proxy.options.get("traceback")
    reason = exception_text(exc)
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


#: Options a requeued dead letter goes back without: it starts afresh, with its whole
#: retry budget and no trace of the failure (its id, priority and arguments stay).
RESET_ON_REQUEUE = ("eta", "retries", "traceback", "requeue_timestamp", "failure_reason",
                    "failed_at")


def requeued_body(body: bytes, queue_name: str | None = None) -> bytes:
    """The body a dead letter is requeued with on every broker (``liteq dlq requeue``):
    the message without :data:`RESET_ON_REQUEUE` (on ``queue_name`` when given); an
    undecodable body goes back as it was."""
    try:
        message: Message[Any] = Message.decode(body)
    except DecodeError:
        return body
    options = {k: v for k, v in message.options.items() if k not in RESET_ON_REQUEUE}
    if options == message.options and queue_name in (None, message.queue_name):
        return body
    return Message(queue_name or message.queue_name, message.actor_name, message.args,
                   message.kwargs, options, message.message_id,
                   message.message_timestamp).encode()
