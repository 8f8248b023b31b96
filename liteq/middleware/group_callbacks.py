"""GroupCallbacks: enqueue a group's completion callbacks once its last member succeeds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..message import Message
from ..options import resolve
from .middleware import Middleware

if TYPE_CHECKING:
    from ..broker import Broker, MessageProxy


class GroupCallbacks(Middleware):
    """Counts group members down on a shared barrier; the last one enqueues the callbacks.

    ``group.run`` creates the barrier (keyed by ``group_completion_uuid``) with one party
    per member, in ``rate_limiter_backend`` so that every worker process sees it.
    """

    def __init__(self, rate_limiter_backend: Any, *, barrier_ttl: int = 86400000) -> None:
        self.rate_limiter_backend = rate_limiter_backend
        self.barrier_ttl = barrier_ttl

    def after_process_message(
        self, broker: Broker, message: MessageProxy, *, result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is not None or message.failed:
            return
        group_id = resolve("group_completion_uuid", message.options)
        callbacks = resolve("group_completion_callbacks", message.options)
        if not (group_id and callbacks):
            return
        from ..rate_limits import Barrier

        barrier = Barrier(self.rate_limiter_backend, group_id, ttl=self.barrier_ttl)
        if barrier.wait(block=False):
            for data in callbacks:
                broker.enqueue(Message(**data))
