"""Why a message was given up on, in one wording for every broker.

SQLite keeps the reason and traceback in columns beside the body; Redis and RabbitMQ
have nowhere but the body, so theirs carries them as options (Dramatiq ignores options
it does not know, so its workers still read these bodies): ``traceback`` (as Dramatiq's
Retries writes it), :data:`REASON` and :data:`DIED_AT`.
"""

from __future__ import annotations

import dataclasses
import traceback
from typing import TYPE_CHECKING, Any

from ..common import current_millis
from ..errors import DecodeError
from ..message import Message

if TYPE_CHECKING:
    from ..broker import MessageProxy

#: The option of a dead-lettered body that says why it died (one line).
REASON = "dead_letter_reason"
#: The option of a dead-lettered body that says when it died (epoch ms).
DIED_AT = "dead_lettered_at"
#: The reason shown for a dead letter whose body carries none (a Dramatiq worker's).
NO_REASON = "no reason recorded (dead-lettered by a worker that does not write one)"


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


def dead_body(proxy: MessageProxy, sent: bytes | None = None) -> bytes:
    """The body to dead-letter a failed ``proxy`` with: the message as it was sent
    (``sent``, its body as enqueued, whose ``retries`` middleware have not changed since;
    else the message in hand) plus its traceback, reason and time of death as options."""
    reason, trace = failure_reason(proxy)
    message = proxy._message if sent is None else Message.decode(sent)
    options: dict[str, Any] = dict(message.options)
    if trace is not None:
        options["traceback"] = trace
    options[REASON] = reason
    options[DIED_AT] = current_millis()
    return dataclasses.replace(message, options=options).encode()


def revived_body(body: bytes) -> bytes:
    """``body`` without the options :func:`dead_body` added, to enqueue it again (an
    undecodable body is returned unchanged)."""
    try:
        message = Message.decode(body)
    except DecodeError:
        return body
    if REASON not in message.options and DIED_AT not in message.options:
        return body
    options = {k: v for k, v in message.options.items() if k not in (REASON, DIED_AT)}
    return dataclasses.replace(message, options=options).encode()


def read_dead(body: bytes) -> tuple[Message[Any] | None, str, str | None, int | None]:
    """``(message or None, reason, traceback, died_at)`` of a dead-lettered body; an
    undecodable body's reason says why it does not decode."""
    try:
        message = Message.decode(body)
    except DecodeError as e:
        return None, f"undecodable: {e}", None, None
    options = message.options
    reason = options.get(REASON)
    trace = options.get("traceback")
    died_at = options.get(DIED_AT)
    return (message, reason if isinstance(reason, str) else NO_REASON,
            trace if isinstance(trace, str) else None,
            died_at if isinstance(died_at, int) and not isinstance(died_at, bool) else None)
