"""Actors: functions that run in the background when you ``.send()`` them."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any, Generic, ParamSpec, Protocol, TypeVar, overload

from .broker import Broker, get_broker
from .common import validate_delay, validate_priority, validate_queue_name
from .errors import ActorAlreadyRegistered, InvalidOption
from .message import Message
from .options import check_send, show

P = ParamSpec("P")
R = TypeVar("R")

class Actor(Generic[P, R]):
    """A function bound to a broker and a queue; ``send`` enqueues, calling runs it here."""

    def __init__(
        self,
        fn: Callable[P, R] | Callable[P, Awaitable[R]],
        *,
        broker: Broker,
        actor_name: str,
        queue_name: str,
        priority: int,
        options: dict[str, Any],
    ) -> None:
        if actor_name in broker.actors:
            raise ActorAlreadyRegistered(f"An actor named {actor_name!r} is already registered.")
        self.logger = logging.getLogger(f"{fn.__module__ or '_'}.{actor_name}")
        self.fn = fn
        self.is_async = asyncio.iscoroutinefunction(fn)
        self.broker = broker
        self.actor_name = actor_name
        self.queue_name = validate_queue_name(queue_name)
        self.priority = validate_priority(priority)
        self.options = options
        functools.update_wrapper(self, fn)
        broker.declare_actor(self)

    def message(self, *args: P.args, **kwargs: P.kwargs) -> Message[R]:
        """Build a message for this actor without enqueueing it."""
        return self.message_with_options(args=args, kwargs=kwargs)

    def message_with_options(
        self, *, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> Message[R]:
        """Build a message with per-message options (callbacks given as actors become names).

        Raises ``InvalidOption`` for an option name the broker does not know (a typo), a
        bad option value, ``args`` that are not a list or tuple, or ``kwargs`` that are not
        a mapping with str keys.
        """
        if type(args) is not tuple and (isinstance(args, (str, bytes)) or not isinstance(
                args, (list, tuple))):
            raise InvalidOption(f"args must be a tuple or a list, got {show(args)}")
        if kwargs is None:
            kwargs = {}
        elif type(kwargs) is not dict or kwargs and not all(type(k) is str for k in kwargs):
            if not isinstance(kwargs, Mapping) or not all(type(k) is str for k in kwargs):
                raise InvalidOption(
                    f"kwargs must be a mapping of str to values, got {show(kwargs)}")
            kwargs = dict(kwargs)
        if options:
            for name in ("on_success", "on_failure", "on_retry_exhausted"):
                target = options.get(name)
                if isinstance(target, Actor):
                    options[name] = target.actor_name
            check_send(options, self.broker.message_options)
        return Message(self.queue_name, self.actor_name, args, kwargs, options)

    def send(self, *args: P.args, **kwargs: P.kwargs) -> Message[R]:
        """Enqueue a call of this actor; returns the message the worker will receive."""
        return self.broker.enqueue(self.message_with_options(args=args, kwargs=kwargs))

    def send_with_options(
        self,
        *,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        delay: int | timedelta | None = None,
        **options: Any,
    ) -> Message[R]:
        """Enqueue with options such as ``delay`` (ms) and ``priority`` (larger runs first)."""
        delay = validate_delay(delay)
        message = self.message_with_options(args=args, kwargs=kwargs, **options)
        return self.broker.enqueue(message, delay=delay)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function synchronously in this thread (coroutines run to completion)."""
        start = time.perf_counter()
        try:
            if self.is_async:
                from .asyncio import run_coroutine

                return run_coroutine(self.fn(*args, **kwargs))  # type: ignore[arg-type]
            return self.fn(*args, **kwargs)  # type: ignore[return-value]
        finally:
            self.logger.debug("completed in %.02fms", (time.perf_counter() - start) * 1000)

    def __repr__(self) -> str:
        return (
            f"Actor({self.fn!r}, queue_name={self.queue_name!r}, "
            f"actor_name={self.actor_name!r})"
        )

    def __str__(self) -> str:
        return f"Actor({self.actor_name})"


class ActorDecorator(Protocol):
    """What ``actor(**options)`` returns: the decorator of a ``def`` or ``async def``."""

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]]) -> Actor[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R]) -> Actor[P, R]: ...


# An ``async def`` actor's messages carry what its coroutine returns, not the coroutine.
@overload
def actor(fn: Callable[P, Awaitable[R]], **kw: Any) -> Actor[P, R]: ...
@overload
def actor(fn: Callable[P, R], **kw: Any) -> Actor[P, R]: ...
@overload
def actor(fn: None = None, **kw: Any) -> ActorDecorator: ...


def actor(
    fn: Callable[..., Any] | None = None,
    *,
    actor_class: type[Actor[Any, Any]] = Actor,
    actor_name: str | None = None,
    queue_name: str = "default",
    priority: int = 0,
    broker: Broker | None = None,
    **options: Any,
) -> Any:
    """Turn a function (``def`` or ``async def``) into an actor, bare or with options.

    ``priority``: a larger number runs first (unlike Dramatiq, where lower runs first),
    enforced by the broker's claim order within a queue.
    """

    def decorator(fn: Callable[..., Any]) -> Actor[Any, Any]:
        return actor_class(
            fn,
            actor_name=actor_name or fn.__name__,
            queue_name=queue_name,
            priority=priority,
            broker=broker or get_broker(),
            options=options,
        )

    if fn is None:
        return decorator
    return decorator(fn)
