"""The broker contract (``Broker``, ``Consumer``, ``MessageProxy``) and the process-wide broker.

No broker is named here: ``liteq.brokers.registry`` builds the default one."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from . import options as opts
from .common import (
    current_millis,
    dq_name,
    q_name,
    validate_delay,
    validate_queue_name,
)
from .errors import (
    ActorNotFound,
    InvalidOption,
    MiddlewareError,
    QueueJoinTimeout,
    QueueNotFound,
)
from .message import Message
from .middleware.middleware import HOOKS, Middleware

if TYPE_CHECKING:
    # Type-only, and mutual by nature: a broker holds actors, an actor names its broker;
    # a result backend reads messages. Never imported at run time.
    from .actors import Actor
    from .results.backend import ResultBackend

logger = logging.getLogger("liteq.broker")


class MessageProxy:
    """A received message plus its delivery state (failure, exception, broker handle)."""

    __slots__ = ("_message", "_exception", "failed", "handle", "lease_until", "options",
                 "actor_name", "queue_name", "message_id", "args", "kwargs",
                 "message_timestamp")

    def __init__(self, message: Message[Any], handle: Any = None) -> None:
        self._message = message
        self._exception: BaseException | None = None
        self.failed = False
        self.handle = handle
        #: Wall-clock ms until which the broker's lease on it can be trusted; a worker
        #: never starts a message past it (brokers without leases leave it infinite).
        self.lease_until: float = math.inf
        # The fields every hook reads, copied once rather than found by __getattr__.
        self.options = message.options
        self.actor_name = message.actor_name
        self.queue_name = message.queue_name
        self.message_id = message.message_id
        self.args = message.args
        self.kwargs = message.kwargs
        self.message_timestamp = message.message_timestamp

    def fail(self) -> None:
        """Mark the message failed: it will be nacked (dead-lettered), not acked."""
        self.failed = True

    def stuff_exception(self, exception: BaseException) -> None:
        self._exception = exception

    def clear_exception(self) -> None:
        self._exception = None

    @property
    def message(self) -> Message[Any]:
        return self._message

    def __getattr__(self, name: str) -> Any:
        return getattr(self._message, name)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MessageProxy):
            other = other._message
        return self._message == other

    def __hash__(self) -> int:
        return hash(self._message.message_id)

    def __str__(self) -> str:
        return str(self._message)

    def __repr__(self) -> str:
        return f"MessageProxy({self._message!r})"


class Consumer:
    """Receives messages from some queues of a broker.

    The worker drives consumers through :meth:`exchange`, which acknowledges finished
    messages and claims new ones in one round trip; brokers that cannot do both at
    once inherit the per-message fallback below. ``__next__``/``ack``/``nack`` give
    the iterator interface Dramatiq users know.
    """

    def exchange(self, done: list[MessageProxy], want: int) -> list[MessageProxy]:
        """Ack or nack (``proxy.failed``) every message in ``done``, then claim up to ``want``."""
        for proxy in done:
            if proxy.failed:
                self.nack(proxy)
            else:
                self.ack(proxy)
        received: list[MessageProxy] = []
        while len(received) < want:
            claimed = self.poll()
            if claimed is None:
                break
            received.append(claimed)
        return received

    def poll(self) -> MessageProxy | None:
        """Claim one message without waiting, or return None."""
        raise NotImplementedError

    def wait(self, timeout: float) -> None:
        """Block up to ``timeout`` seconds or until a message may be available."""
        raise NotImplementedError

    def wakeup(self) -> None:
        """Make a concurrent :meth:`wait` return now (thread-safe)."""
        raise NotImplementedError

    def ack(self, message: MessageProxy) -> None:
        raise NotImplementedError

    def nack(self, message: MessageProxy) -> None:
        raise NotImplementedError

    def requeue(self, messages: Iterable[MessageProxy]) -> None:
        """Return claimed-but-unstarted messages to their queue."""

    def add_queue(self, queue_name: str) -> None:
        """Also consume ``queue_name``, declared after this consumer started.

        Called from any thread: the consumer's own thread takes it up on its next round
        trip (brokers whose client is not thread-safe must not touch it here).
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release the consumer's resources."""

    def __iter__(self) -> Iterator[MessageProxy | None]:
        return self

    def __next__(self) -> MessageProxy | None:
        proxy = self.poll()
        if proxy is None:
            self.wait(self.timeout / 1000)
            proxy = self.poll()
        return proxy

    timeout: int = 1000


class BatchConsumer(Consumer):
    """A consumer whose broker settles and claims in batches (``exchange``); the
    one-message interface is built on it."""

    def poll(self) -> MessageProxy | None:
        received = self.exchange([], 1)
        return received[0] if received else None

    def ack(self, message: MessageProxy) -> None:
        self.exchange([message], 0)

    def nack(self, message: MessageProxy) -> None:
        message.fail()
        self.exchange([message], 0)


class Broker:
    """Carries messages between actors and workers; subclasses store them somewhere."""

    def __init__(self, middleware: list[Middleware] | None = None) -> None:
        from .middleware import default_middleware

        self.logger = logging.getLogger(f"liteq.{type(self).__name__}")
        self.actors: dict[str, Actor[..., Any]] = {}
        self.queues: dict[str, Any] = {}
        self.delay_queues: set[str] = set()
        self.actor_options: set[str] = set()
        #: Option name -> its table entry, or None for a custom middleware's (any value).
        self.message_options: dict[str, opts.Option | None] = opts.send_options()
        self.middleware: list[Middleware] = []
        self._failures: dict[str, list[BaseException]] = {}
        self._hooks: dict[str, list[Any]] = {hook: [] for hook in HOOKS}
        if middleware is None:
            middleware = [m() for m in default_middleware]
        for m in middleware:
            self.add_middleware(m)

    def add_middleware(
        self, middleware: Middleware, *, before: type | None = None, after: type | None = None
    ) -> None:
        """Add ``middleware``, optionally right before or after an existing middleware class."""
        if before and after:
            raise ValueError("give either before or after, not both")
        ref = before or after
        if ref is not None:
            positions = [i for i, m in enumerate(self.middleware) if isinstance(m, ref)]
            if not positions:
                raise ValueError(f"middleware {ref.__name__} is not on this broker")
            index = positions[0] if before else positions[-1] + 1
            self.middleware.insert(index, middleware)
        else:
            self.middleware.append(middleware)
        if sum(type(m) is type(middleware) for m in self.middleware) > 1:
            self.logger.warning("middleware %s was added twice", type(middleware).__name__)
        self.actor_options |= middleware.actor_options
        for name in middleware.actor_options | middleware.message_options:
            if name not in opts.OPTIONS:
                self.message_options[name] = None
        self._rebuild_hooks()
        for actor_name in self.actors:
            middleware.after_declare_actor(self, self.actors[actor_name])
        for queue_name in self.queues:
            middleware.after_declare_queue(self, queue_name)
        for queue_name in self.delay_queues:
            middleware.after_declare_delay_queue(self, queue_name)

    def remove_middleware(self, middleware: Middleware) -> None:
        """Take ``middleware`` off this broker (its hooks stop being called)."""
        self.middleware.remove(middleware)
        self._rebuild_hooks()

    def _rebuild_hooks(self) -> None:
        for hook in HOOKS:
            fns = [getattr(m, hook) for m in self.middleware if m.implements(hook)]
            self._hooks[hook] = fns[::-1] if hook.startswith("after_") else fns

    def hooks(self, name: str) -> list[Any]:
        """The bound methods to call for hook ``name``, in calling order."""
        return self._hooks[name]

    def emit_before(self, signal: str, *args: Any, **kwargs: Any) -> None:
        """Call ``before_<signal>`` in order; MiddlewareError propagates, others are logged."""
        for fn in self._hooks["before_" + signal]:
            try:
                fn(self, *args, **kwargs)
            except MiddlewareError:
                raise
            except Exception:
                self.logger.critical("middleware hook before_%s failed", signal, exc_info=True)

    def emit_after(self, signal: str, *args: Any, **kwargs: Any) -> None:
        """Call ``after_<signal>`` in reverse order; errors are logged and swallowed."""
        for fn in self._hooks["after_" + signal]:
            try:
                fn(self, *args, **kwargs)
            except Exception:
                self.logger.critical("middleware hook after_%s failed", signal, exc_info=True)

    def declare_actor(self, actor: Actor[..., Any]) -> None:
        """Register ``actor`` and declare its queue (replacing an actor of the same name, as
        Dramatiq's does: ``Actor`` itself refuses a duplicate name)."""
        opts.check_actor(actor.options, self.actor_options)
        self.emit_before("declare_actor", actor)
        self.declare_queue(actor.queue_name)
        self.actors[actor.actor_name] = actor
        self.emit_after("declare_actor", actor)

    def declare_queue(self, queue_name: str) -> None:
        """Make ``queue_name`` known (idempotent); brokers create storage in ``_create_queue``."""
        if queue_name in self.queues:
            return
        validate_queue_name(queue_name)
        self.emit_before("declare_queue", queue_name)
        self.queues[queue_name] = self._create_queue(queue_name)
        self.emit_after("declare_queue", queue_name)
        delay_name = dq_name(queue_name)
        if delay_name not in self.delay_queues:
            self.delay_queues.add(delay_name)
            self.emit_after("declare_delay_queue", delay_name)

    def _create_queue(self, queue_name: str) -> Any:
        return None

    #: Whether :meth:`enqueue_many` writes a whole batch at once (all or nothing).
    atomic_batches = False
    #: What :meth:`consume` uses when not given a ``prefetch`` or a ``timeout`` (ms).
    default_prefetch = 1
    default_timeout = 1000

    def enqueue(self, message: Message[Any], *, delay: int | None = None,
                **options: Any) -> Message[Any]:
        """Send ``message`` (after ``delay`` ms); returns the message workers will receive.

        The one template of every broker: validate (:meth:`prepare_message`), the
        ``before_enqueue`` hooks, the broker's :meth:`_write`, the ``after_enqueue``
        hooks. ``options`` are the broker's own (the SQLite broker's ``connection``).
        """
        message, eta, priority = self.prepare_message(message, delay)
        self.emit_before("enqueue", message, delay)
        if options:
            self._write(message, eta, priority, delay, **options)
        else:  # the hot path: a plain call, no keyword dict to unpack
            self._write(message, eta, priority, delay)
        self.emit_after("enqueue", message, delay)
        return message

    def _write(self, message: Message[Any], eta: int, priority: int, delay: int | None
               ) -> None:
        """Store one prepared message: the primitive each broker supplies.

        A broker with options of its own adds them as keyword parameters (the SQLite
        broker's ``connection``); :meth:`enqueue` passes its ``options`` through.
        """
        raise NotImplementedError

    def enqueue_many(self, messages: Iterable[Message[Any]], *, delay: int | None = None
                     ) -> list[Message[Any]]:
        """Send ``messages``; returns them as workers will receive them.

        By default one :meth:`enqueue` per message, not atomic: an error leaves the
        messages before it sent. A broker with ``atomic_batches`` writes them all in
        :meth:`_write_batch`, or none.
        """
        if not self.atomic_batches:
            return [self.enqueue(m, delay=delay) for m in messages]
        prepared = []
        for m in messages:
            message, eta, priority = self.prepare_message(m, delay)
            self.emit_before("enqueue", message, delay)
            prepared.append((message, eta, priority))
        self._write_batch(prepared)
        sent = [m for m, _, _ in prepared]
        for m in sent:
            self.emit_after("enqueue", m, delay)
        return sent

    def _write_batch(self, prepared: list[tuple[Message[Any], int, int]]) -> None:
        """Store prepared ``(message, eta, priority)`` triples at once (``atomic_batches``)."""
        raise NotImplementedError

    def prepare_message(self, message: Message[Any], delay: int | None
                        ) -> tuple[Message[Any], int, int]:
        """Validate ``message``; return it (with ``eta`` if delayed), its ETA and priority.

        Raises ``InvalidOption`` before anything is written: bad delay, kwargs or option
        value (by the option table; names it does not know pass, as a message from another
        producer may carry them); ``QueueNotFound`` for an undeclared queue.
        """
        if message.queue_name not in self.queues:
            raise QueueNotFound(f"queue {message.queue_name!r} is not declared on this broker")
        if type(message.kwargs) is not dict:
            raise InvalidOption(f"kwargs must be a dict, got {opts.show(message.kwargs)}")
        delay = validate_delay(delay)
        options = message.options
        if type(options) is not dict:
            raise InvalidOption(f"options must be a dict, got {opts.show(options)}")
        if options:
            opts.check_values(options)
        if delay is not None:
            message = message.copy(options={"eta": current_millis() + delay})
            options = message.options
        eta = options.get("eta")
        if eta is None:
            eta = current_millis()
        priority = options.get("priority")
        if priority is None:
            actor = self.actors.get(message.actor_name)
            priority = actor.priority if actor is not None else 0
        return message, eta, priority

    def consume(self, queue_names: str | Iterable[str], *, prefetch: int | None = None,
                timeout: int | None = None) -> Consumer:
        """A consumer of ``queue_names``, each declared on this broker (else ``QueueNotFound``).

        ``prefetch`` and ``timeout`` (ms) default to ``default_prefetch``/``default_timeout``.
        """
        names = [queue_names] if isinstance(queue_names, str) else list(queue_names)
        for name in names:
            if name not in self.queues:
                raise QueueNotFound(f"queue {name!r} is not declared on this broker")
        return self._consume(
            names, prefetch=self.default_prefetch if prefetch is None else prefetch,
            timeout=self.default_timeout if timeout is None else timeout)

    def _consume(self, queue_names: list[str], *, prefetch: int, timeout: int) -> Consumer:
        """Build the consumer of declared ``queue_names``: the primitive each broker supplies."""
        raise NotImplementedError

    def get_actor(self, actor_name: str) -> Actor[..., Any]:
        try:
            return self.actors[actor_name]
        except KeyError:
            raise ActorNotFound(f"actor {actor_name!r} is not declared on this broker") from None

    def get_declared_actors(self) -> set[str]:
        return set(self.actors)

    def get_declared_queues(self) -> set[str]:
        return set(self.queues)

    def get_declared_delay_queues(self) -> set[str]:
        return set(self.delay_queues)

    def default_result_backend(self) -> ResultBackend | None:
        """The result backend ``Results()`` uses when given none: None unless the broker's
        own storage can hold results (the SQLite broker's file can)."""
        return None

    def get_results_backend(self) -> ResultBackend:
        """The backend of this broker's ``Results`` middleware (RuntimeError without one)."""
        from .results import Results

        for m in self.middleware:
            if isinstance(m, Results):
                return m.backend
        raise RuntimeError("this broker has no Results middleware")

    def flush(self, queue_name: str) -> None:
        raise NotImplementedError

    def flush_all(self) -> None:
        raise NotImplementedError

    def record_failure(self, queue_name: str, exception: BaseException) -> None:
        """Remember a dead-lettered message's exception for ``join`` to re-raise."""
        self._failures.setdefault(q_name(queue_name), []).append(exception)

    def _queue_busy(self, queue_name: str) -> bool:
        """True while ``queue_name`` has ready, delayed or running messages."""
        raise NotImplementedError

    #: Whether ``join`` re-raises dead-lettered messages' exceptions when not told.
    fail_fast_default = False

    def join(self, queue_name: str, *, timeout: int | None = None,
             fail_fast: bool | None = None) -> None:
        """Wait until ``queue_name`` has no ready, delayed or running messages.

        Then, with ``fail_fast`` (default: ``fail_fast_default``), re-raise the exception
        of the first message of this queue that a worker in this process dead-lettered
        (as Dramatiq does, until ``flush_all``).
        """
        self._join(queue_name, timeout=timeout,
                   fail_fast=self.fail_fast_default if fail_fast is None else fail_fast)

    def _join(self, queue_name: str, *, timeout: int | None, fail_fast: bool,
              quiet_looks: int = 1, interval: float = 0.05) -> None:
        """The join loop every broker shares: poll ``_queue_busy`` (backing off from 1 ms
        to ``interval`` s) until it says idle ``quiet_looks`` times in a row."""
        if queue_name not in self.queues:
            raise QueueNotFound(f"queue {queue_name!r} is not declared on this broker")
        deadline = None if timeout is None else time.monotonic() + timeout / 1000
        pause, quiet = 0.001, 0
        while True:
            quiet = quiet + 1 if not self._queue_busy(queue_name) else 0
            if quiet >= quiet_looks:
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise QueueJoinTimeout(f"queue {queue_name!r} did not drain within {timeout} ms")
            time.sleep(pause)
            pause = min(pause * 2, interval)
        if fail_fast:
            failure = self._first_failure(queue_name)
            if failure is not None:
                raise failure

    def _first_failure(self, queue_name: str) -> BaseException | None:
        """The exception of the first message of ``queue_name`` dead-lettered here."""
        failures = self._failures.get(queue_name)
        return failures[0] if failures else None

    @property
    def dead_letters(self) -> list[Message[Any]]:
        raise NotImplementedError

    def close(self) -> None:
        """Release connections; the broker is unusable afterwards."""


_lock = threading.Lock()
_broker: Broker | None = None


def get_broker() -> Broker:
    """The process-wide broker; built from ``LITEQ_BROKER_URL`` or ``./liteq.db`` on first use."""
    global _broker
    if _broker is None:
        with _lock:
            if _broker is None:
                # The contract's one look at the implementations, at call time only:
                # the scheme -> broker table picks the default (liteq/brokers/registry.py).
                from .brokers.registry import default_broker

                _broker = default_broker()
    return _broker


def set_broker(broker: Broker) -> None:
    """Make ``broker`` the process-wide default broker."""
    global _broker
    _broker = broker
