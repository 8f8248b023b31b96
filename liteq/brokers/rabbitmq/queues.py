"""Dramatiq's RabbitMQ queue layout (``Q``, ``Q.DQ``, ``Q.XQ``) and how they are declared.

The arguments must match Dramatiq's exactly, or whichever side declares second fails.
"""

from __future__ import annotations

import os
from typing import Any

import pika.exceptions

from ...common import dq_name, xq_name
from ...errors import BrokerError

#: Milliseconds a dead letter is kept in ``Q.XQ``; the same variable and default as
#: Dramatiq's, because both sides must declare the queue with the same value.
DEAD_MESSAGE_TTL = int(os.environ.get("dramatiq_dead_message_ttl", 86400000 * 7))


def queue_arguments(queue_name: str, max_priority: int | None) -> dict[str, Any]:
    """The arguments ``Q`` and ``Q.DQ`` are declared with (the same as Dramatiq's)."""
    arguments: dict[str, Any] = {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": xq_name(queue_name),
    }
    if max_priority:
        arguments["x-max-priority"] = max_priority
    return arguments


def declare_queues(channel: Any, name: str, arguments: dict[str, Any],
                   location: str) -> tuple[int, int, int]:
    """Declare ``Q`` and ``Q.DQ`` with ``arguments`` and ``Q.XQ``; their ready-message counts.

    ``name`` is the canonical ``Q``. A queue that exists with other arguments (for
    example another ``max_priority``) raises :class:`BrokerError`.
    """
    try:
        q = channel.queue_declare(queue=name, durable=True, arguments=arguments)
        dq = channel.queue_declare(queue=dq_name(name), durable=True, arguments=arguments)
        xq = channel.queue_declare(queue=xq_name(name), durable=True,
                                   arguments={"x-message-ttl": DEAD_MESSAGE_TTL})
    except pika.exceptions.ChannelClosedByBroker as e:
        if e.reply_code == 406:
            raise BrokerError(
                f"queue {name!r} exists on RabbitMQ at {location} with other "
                f"arguments than {arguments} (for {name} and {dq_name(name)}) and "
                f"{{'x-message-ttl': {DEAD_MESSAGE_TTL}}} (for {xq_name(name)}): was it "
                f"declared with another max_priority? ({e.reply_text})") from None
        raise
    return (q.method.message_count, dq.method.message_count, xq.method.message_count)


def holds_any(channel: Any, queue_name: str) -> bool:
    """Whether ``Q`` or ``Q.DQ`` has a message, counting publishes still in flight.

    ``queue.declare`` answers with a count that can miss messages published just
    before (RabbitMQ's queue process serves that request ahead of pending
    deliveries); ``basic.get`` is served in order, so it is the barrier. A message
    it returns is rejected at once with ``requeue=True`` (back at its place, marked
    redelivered).
    """
    for name in (queue_name, dq_name(queue_name)):
        method, _, _ = channel.basic_get(name, auto_ack=False)
        if method is not None:
            channel.basic_reject(method.delivery_tag, requeue=True)
            return True
    return False
