"""CurrentMessage: lets actor code ask which message it is processing (e.g. for its id)."""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Any

from .middleware import Middleware

if TYPE_CHECKING:
    from ..broker import Broker, MessageProxy

_current: contextvars.ContextVar[MessageProxy | None] = contextvars.ContextVar(
    "liteq_current_message", default=None
)


class CurrentMessage(Middleware):
    """Keeps the message being processed in a context variable.

    Async actors see it too: ``run_coroutine_threadsafe`` schedules the task from the
    worker thread, so the task starts with a copy of that thread's context.
    """

    @classmethod
    def get_current_message(cls) -> MessageProxy | None:
        """The message being processed by this thread or task, or None outside an actor."""
        return _current.get()

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        _current.set(message)

    def after_process_message(
        self, broker: Broker, message: MessageProxy, *, result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        _current.set(None)

    after_skip_message = after_process_message
