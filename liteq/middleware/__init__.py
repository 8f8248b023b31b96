"""Middleware: one per module, each hooking only where it needs to."""

from ..errors import (
    Interrupt,
    MiddlewareError,
    Shutdown,
    SkipMessage,
    TimeLimitExceeded,
)
from ..options import OPTIONS
from .age_limit import AgeLimit
from .asyncio import AsyncIO
from .callbacks import Callbacks
from .current_message import CurrentMessage
from .group_callbacks import GroupCallbacks
from .middleware import Middleware
from .pipelines import Pipelines
from .retries import Retries
from .shutdown import ShutdownNotifications
from .threading import raise_thread_exception
from .time_limit import TimeLimit

#: The stack every broker gets unless given its own list (Dramatiq's order).
default_middleware = [AgeLimit, TimeLimit, ShutdownNotifications, Callbacks, Pipelines, Retries]


def known_option_owners() -> dict[str, str]:
    """Map each actor option of liteq's option table to the middleware that reads it."""
    return {o.name: o.owner for o in OPTIONS.values() if o.on_actor}


__all__ = [
    "AgeLimit", "AsyncIO", "Callbacks", "CurrentMessage", "GroupCallbacks", "Interrupt",
    "Middleware", "MiddlewareError", "Pipelines", "Retries", "Shutdown",
    "ShutdownNotifications", "SkipMessage", "TimeLimit", "TimeLimitExceeded",
    "default_middleware", "known_option_owners", "raise_thread_exception",
]
