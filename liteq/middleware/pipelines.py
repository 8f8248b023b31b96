"""Pipelines: when a message in a pipeline succeeds, enqueue the next one with its result."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..message import Message
from ..options import owned_by, resolve
from .middleware import Middleware

if TYPE_CHECKING:
    from ..broker import Broker, MessageProxy


class Pipelines(Middleware):
    """Enqueues ``Message(**options["pipe_target"])`` after a successful run.

    The result is appended to the next message's args unless ``pipe_ignore`` is set on
    that message or its actor. The next message's ``delay`` option delays it. Group
    completion (``group_completion_*`` options) is left to GroupCallbacks.
    """

    @property
    def actor_options(self) -> set[str]:
        return owned_by("Pipelines")

    def after_process_message(
        self, broker: Broker, message: MessageProxy, *, result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is not None or message.failed:
            return
        target = resolve("pipe_target", message.options)
        if target is None:
            return
        next_message: Message[Any] = Message(**target)
        next_actor = broker.get_actor(next_message.actor_name)
        ignore = resolve("pipe_ignore", next_message.options, next_actor.options)
        if not ignore:
            next_message = next_message.copy(args=(*next_message.args, result))
        broker.enqueue(next_message, delay=resolve("delay", next_message.options))
