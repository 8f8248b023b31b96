"""The middleware base class: every hook is a no-op, so subclasses override only what they use.

The broker dispatches a hook only to the middleware whose class overrides it, so an
unused hook costs nothing on the hot path. Every ``before_*`` hook goes through
``Broker.emit_before`` (the worker's too): a ``MiddlewareError`` (``SkipMessage``)
propagates, any other error is logged and the work goes on. An error of an ``after_*``
hook is logged and the work goes on (``emit_after``; the worker inlines that loop for
``after_process_message``), except for ``after_process_message`` of a failed message
(``WorkerThread._after_failure``): a hook that raises there dead-letters the message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import MiddlewareError, SkipMessage

if TYPE_CHECKING:
    # Type-only, and mutual by nature: hooks receive the broker that holds them.
    from ..broker import Broker

__all__ = ["HOOKS", "Middleware", "MiddlewareError", "SkipMessage"]

HOOKS = (
    "before_ack", "after_ack", "before_nack", "after_nack",
    "before_declare_actor", "after_declare_actor",
    "before_declare_queue", "after_declare_queue", "after_declare_delay_queue",
    "before_enqueue", "after_enqueue", "before_delay_message",
    "before_process_message", "after_process_message", "after_skip_message",
    "after_process_boot",
    "before_worker_boot", "after_worker_boot",
    "before_worker_shutdown", "after_worker_shutdown",
    "after_consumer_thread_boot", "before_consumer_thread_shutdown",
    "after_worker_thread_boot", "before_worker_thread_shutdown",
)


class Middleware:
    """Hooks into the life of brokers, workers and messages (Dramatiq's hook names)."""

    @property
    def actor_options(self) -> set[str]:
        """The actor options this middleware reads (also accepted as message options)."""
        return set()

    @property
    def message_options(self) -> set[str]:
        """Message options this middleware reads or writes beyond its ``actor_options``.

        Names of liteq's option table are validated by the table; others take any value.
        """
        return set()

    @property
    def forks(self) -> list[Any]:
        """Callables the CLI runs, each in a process of its own."""
        return []

    def implements(self, hook: str) -> bool:
        """True when this middleware's class overrides ``hook``."""
        return getattr(type(self), hook) is not getattr(Middleware, hook)

    def before_ack(self, broker: Broker, message: Any) -> None: ...
    def after_ack(self, broker: Broker, message: Any) -> None: ...
    def before_nack(self, broker: Broker, message: Any) -> None: ...
    def after_nack(self, broker: Broker, message: Any) -> None: ...
    def before_declare_actor(self, broker: Broker, actor: Any) -> None: ...
    def after_declare_actor(self, broker: Broker, actor: Any) -> None: ...
    def before_declare_queue(self, broker: Broker, queue_name: str) -> None: ...
    def after_declare_queue(self, broker: Broker, queue_name: str) -> None: ...
    def after_declare_delay_queue(self, broker: Broker, queue_name: str) -> None: ...
    def before_enqueue(self, broker: Broker, message: Any, delay: int | None) -> None: ...
    def after_enqueue(self, broker: Broker, message: Any, delay: int | None) -> None: ...
    def before_delay_message(self, broker: Broker, message: Any) -> None: ...
    def before_process_message(self, broker: Broker, message: Any) -> None: ...

    def after_process_message(
        self, broker: Broker, message: Any, *, result: Any = None,
        exception: BaseException | None = None,
    ) -> None: ...

    def after_skip_message(self, broker: Broker, message: Any) -> None: ...
    def after_process_boot(self, broker: Broker) -> None: ...
    def before_worker_boot(self, broker: Broker, worker: Any) -> None: ...
    def after_worker_boot(self, broker: Broker, worker: Any) -> None: ...
    def before_worker_shutdown(self, broker: Broker, worker: Any) -> None: ...
    def after_worker_shutdown(self, broker: Broker, worker: Any) -> None: ...
    def after_consumer_thread_boot(self, broker: Broker, thread: Any) -> None: ...
    def before_consumer_thread_shutdown(self, broker: Broker, thread: Any) -> None: ...
    def after_worker_thread_boot(self, broker: Broker, thread: Any) -> None: ...
    def before_worker_thread_shutdown(self, broker: Broker, thread: Any) -> None: ...
