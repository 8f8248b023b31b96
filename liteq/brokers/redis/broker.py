"""The Redis broker: Dramatiq's Redis data layout, so Dramatiq and liteq workers can share it.

Keys (``ns`` is the namespace, ``q`` a queue, ``id`` the ``redis_message_id`` option):

* ``ns:q`` list of ids waiting, ``ns:q.msgs`` hash id → encoded message (waiting and
  running messages; a message leaves it when acknowledged);
* ``ns:q.DQ`` / ``ns:q.DQ.msgs``: the delay queue, same shape; its messages carry
  ``options.eta`` and are held in the consumer's memory until then, then moved to ``q``;
* ``ns:q.XQ`` sorted set of dead ids scored by the time they died, ``ns:q.XQ.msgs``
  their bodies; they expire after ``dead_message_ttl``;
* ``ns:__acks__.<worker id>.<queue>``: ids a worker fetched and has not acknowledged;
* ``ns:__heartbeats__``: worker ids scored by their last call. Maintenance (run on a
  ``maintenance_chance`` in a million calls, and by :meth:`RedisBroker.maintenance`)
  returns the unacknowledged messages of workers silent for ``heartbeat_timeout`` ms
  to their queue and drops expired dead letters. ``liteq worker``'s supervisor does not
  wait for that: when a worker process dies it requeues that process's messages at
  once (:meth:`RedisBroker.release_info`, :func:`release`,
  :meth:`RedisBroker.release_workers`);
* liteq's own additions, which Dramatiq ignores: ``ns:__liteq__.notify.<q>`` (a
  one-element list pushed on enqueue, on which idle liteq consumers block instead of
  polling), ``ns:__liteq__.wake.<uuid>`` (a consumer's private wake-up list),
  ``ns:__liteq__.counts.<q>`` (lifetime counters of acks and nacks),
  ``ns:__liteq__.workers`` (the worker registry), ``ns:__liteq__.queues`` (the queues
  liteq enqueued on) and ``ns:__liteq__.dead_clock`` (orders dead letters that died in
  the same millisecond), read by
  :mod:`liteq.brokers.redis.inspect`. A dead-lettered body carries its traceback,
  reason and time of failure as options (:mod:`liteq.brokers.failure`).

Every change is one call of one Lua script (``script.lua``, run by
:mod:`liteq.brokers.redis.script`): a list of operations (enqueue, ack, nack, requeue,
promote a due delayed message, fetch a batch over several queues, maintenance, release
dead workers) run atomically, so that a worker acknowledges what it finished and claims
its next batch in one round trip. The consumer is in
:mod:`liteq.brokers.redis.consumer`, client building and credential scrubbing in
:mod:`liteq.brokers.redis.connection`.
"""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

try:
    import redis
    import redis.connection
    from redis.backoff import NoBackoff
    from redis.retry import Retry as RedisRetry
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "RedisBroker needs redis-py; install it with: pip install 'liteq[redis]'"
    ) from e

from ...broker import Broker
from ...common import current_millis, dq_name
from ...errors import ConnectionFailed, DecodeError
from ...message import Message
from ...middleware.middleware import Middleware
from ...urls import Secret, hide
from . import script as redis_script
from .connection import build_client, describe
from .consumer import RedisConsumer
from .inspect import RedisInspector

T = TypeVar("T")

#: Dramatiq's defaults.
DEFAULT_MAINTENANCE_CHANCE = 1000
MAINTENANCE_SCALE = 1_000_000
DEFAULT_HEARTBEAT_TIMEOUT = 60000
DEFAULT_DEAD_MESSAGE_TTL = 86400000 * 7

#: Messages per script call in ``enqueue_many``.
ENQUEUE_CHUNK = 1000


class RedisBroker(Broker):
    """A broker on a Redis server, laid out as Dramatiq's ``RedisBroker`` lays it out.

    ``RedisBroker(host="localhost", port=6379, db=0)`` or
    ``RedisBroker(url="redis://:password@localhost:6379/0", namespace="dramatiq",
    connection_pool_kwargs={"max_connections": 20})``; ``client`` (a ``redis.Redis``)
    takes precedence over ``url``, which takes precedence over keywords such as
    ``host``/``port``/``db``/``password`` (passed to ``redis.Redis``). A URL whose only
    credential is written before the ``@`` (``redis://secret@host``, as in the
    seed) uses it as the password. With the same ``namespace`` as a Dramatiq
    ``RedisBroker``, Dramatiq and liteq workers share queues: a message either side
    sends, the other runs.

    **No priority on Redis**: Redis has no broker-level priority, so liteq's
    ``priority`` (actor or message option) is ignored here, with a warning the first
    time a message with a non-zero priority is sent. Messages run in FIFO order.

    Delivery is at least once: messages a worker fetched and did not acknowledge go
    back to their queue when it stops, or, if it dies, when maintenance finds its
    heartbeat older than ``heartbeat_timeout`` ms (at once when it was a process of
    ``liteq worker``, whose supervisor releases them). Dead letters expire after
    ``dead_message_ttl`` ms (7 days). Calls that fail to reach the server are retried
    ``connection_attempts`` times with a growing pause, then raise
    :class:`~liteq.errors.ConnectionFailed`; error messages and ``repr`` never show
    credentials. A URL without a password on a host that is not this machine draws a
    ``RuntimeWarning``.
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        middleware: list[Middleware] | None = None,
        namespace: str = "dramatiq",
        maintenance_chance: int = DEFAULT_MAINTENANCE_CHANCE,
        heartbeat_timeout: int = DEFAULT_HEARTBEAT_TIMEOUT,
        dead_message_ttl: int = DEFAULT_DEAD_MESSAGE_TTL,
        client: redis.Redis | None = None,
        connection_pool_kwargs: dict[str, Any] | None = None,
        connection_attempts: int = 5,
        **redis_kwargs: Any,
    ) -> None:
        if heartbeat_timeout < 100:
            raise ValueError(f"heartbeat_timeout must be at least 100 ms, got {heartbeat_timeout}")
        if connection_attempts < 1:
            raise ValueError(f"connection_attempts must be at least 1, got {connection_attempts}")
        if not 0 <= maintenance_chance <= MAINTENANCE_SCALE:
            raise ValueError(f"maintenance_chance is out of {MAINTENANCE_SCALE}, "
                             f"got {maintenance_chance}")
        self.namespace = namespace
        self.maintenance_chance = maintenance_chance
        self.heartbeat_timeout = heartbeat_timeout
        self.dead_message_ttl = dead_message_ttl
        self.connection_attempts = connection_attempts
        self.broker_id = str(uuid.uuid4())
        if client is None:
            client, self._secrets = build_client(
                url, dict(connection_pool_kwargs or {}), redis_kwargs)
        else:
            self._secrets = []
        self.client = client
        kwargs = self.client.connection_pool.connection_kwargs
        for key in ("password", "username"):
            if kwargs.get(key):
                self._secrets.append(str(kwargs[key]))
        self._location = describe(kwargs)
        self._script = self.client.register_script(redis_script.SCRIPT)
        self._priority_warned = False
        super().__init__(middleware)

    # -- connection -----------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"RedisBroker({self._location!r}, namespace={self.namespace!r})"

    def _scrub(self, text: str) -> str:
        return hide(text, self._secrets)

    def _retrying(self, fn: Callable[[], T], what: str) -> T:
        """Run ``fn``; on a connection error retry with backoff, then ConnectionFailed."""
        pause = 0.05
        for attempt in range(1, self.connection_attempts + 1):
            try:
                return fn()
            except redis.AuthenticationError as e:
                raise ConnectionFailed(
                    f"Redis at {self._location} refused the credentials while trying to "
                    f"{what}: {self._scrub(str(e))}") from None
            except (redis.ConnectionError, redis.TimeoutError) as e:
                if attempt == self.connection_attempts:
                    raise ConnectionFailed(
                        f"cannot {what}: Redis at {self._location} is unreachable after "
                        f"{attempt} attempt(s): {self._scrub(str(e))}") from None
                self.logger.warning("Redis at %s unreachable (%s); retrying in %.2fs",
                                    self._location, self._scrub(str(e)), pause)
                time.sleep(pause)
                pause = min(pause * 2, 2.0)
        raise AssertionError("unreachable")  # pragma: no cover

    def _call(self, ops: list[Any], worker: str = "", what: str = "reach the server",
              maintenance_queues: Iterable[str] = ()) -> list[Any]:
        """One atomic script call running ``ops``; returns what fetches found."""
        if self.maintenance_chance and random.randint(1, MAINTENANCE_SCALE) <= \
                self.maintenance_chance:
            queues = list(maintenance_queues)
            if queues:
                ops = [*ops, "M", len(queues), *queues]
        return self._retrying(
            lambda: redis_script.run(self._script, self.namespace, worker,
                                     self.heartbeat_timeout, self.dead_message_ttl, ops),
            what)

    def ping(self) -> None:
        """Check that the server answers (with retries); raises ConnectionFailed."""
        self._retrying(self.client.ping, "connect")

    def _key(self, queue_name: str) -> str:
        return f"{self.namespace}:{queue_name}"

    # -- enqueue ----------------------------------------------------------------------------
    #: ``enqueue_many`` writes ``ENQUEUE_CHUNK`` messages per atomic script call.
    atomic_batches = True

    def prepare_message(self, message: Message[Any], delay: int | None
                        ) -> tuple[Message[Any], int, int]:
        """The base checks, then Dramatiq's ``redis_message_id``; ``eta`` is kept only on a
        message that goes to the delay queue."""
        message, eta, priority = super().prepare_message(message, delay)
        if priority and not self._priority_warned:
            self._priority_warned = True
            self.logger.warning(
                "Redis has no message priority: priority %r of %s (and any other) is "
                "ignored on %r; messages run in FIFO order", priority, message.actor_name,
                self)
        options = dict(message.options)
        options["redis_message_id"] = str(uuid.uuid4())
        if eta <= current_millis():
            options.pop("eta", None)
        message = Message(message.queue_name, message.actor_name, message.args,
                          message.kwargs, options, message.message_id,
                          message.message_timestamp)
        return message, eta, priority

    @staticmethod
    def _enqueue_op(message: Message[Any]) -> list[Any]:
        """The script's enqueue operation: on ``<q>.DQ`` when the message kept an ``eta``."""
        queue = message.queue_name
        if "eta" in message.options:
            queue = dq_name(queue)
        return ["E", queue, message.options["redis_message_id"], message.encode()]

    def _write(self, message: Message[Any], eta: int, priority: int, delay: int | None) -> None:
        op = self._enqueue_op(message)
        self._call(op, what=f"enqueue on {message.queue_name!r}", maintenance_queues=(op[1],))

    def _write_batch(self, prepared: list[tuple[Message[Any], int, int]]) -> None:
        for start in range(0, len(prepared), ENQUEUE_CHUNK):
            ops: list[Any] = []
            for message, _, _ in prepared[start:start + ENQUEUE_CHUNK]:
                ops += self._enqueue_op(message)
            self._call(ops, what="enqueue")

    # -- consuming --------------------------------------------------------------------------
    def _consume(self, queue_names: list[str], *, prefetch: int, timeout: int) -> RedisConsumer:
        """A consumer over ``queue_names`` (and their delay queues)."""
        self.ping()
        return RedisConsumer(self, queue_names, prefetch=prefetch, timeout=timeout)

    def release_workers(self, worker_ids: Iterable[str]) -> int:
        """Requeue now the unacknowledged messages of workers known to be dead (on every
        queue, delay queues included) and drop their heartbeats; returns how many."""
        ids = list(worker_ids)
        if not ids:
            return 0
        found = self._call(["W", len(ids), *ids], what="release the messages of dead workers")
        return int(found[0]) if found else 0

    def release_info(self) -> dict[str, Any]:
        """What ``liteq worker``'s supervisor needs to release this process's messages
        when it dies (see :func:`release`): picklable, and its ``repr`` shows no secret."""
        pool = self.client.connection_pool
        kwargs = {key: Secret(value) if key in _SECRET_KEYS and isinstance(value, str)
                  else value
                  for key, value in pool.connection_kwargs.items()
                  if value is None or isinstance(value, (str, int, float, bool))}
        cls = pool.connection_class
        return {"module": __name__, "namespace": self.namespace,
                "connection_class": f"{cls.__module__}.{cls.__qualname__}",
                "connection_kwargs": kwargs, "worker_ids": [self.broker_id]}

    def maintenance(self, queue_names: Iterable[str] | None = None) -> None:
        """Requeue the messages of dead workers and expire dead letters now."""
        names = list(queue_names) if queue_names is not None else sorted(self.queues)
        queues = [n for q in names for n in (q, dq_name(q))]
        if queues:
            self._call(["M", len(queues), *queues], what="run maintenance")

    # -- joining, flushing, inspecting ----------------------------------------------------------
    def qsize(self, queue_name: str) -> int:
        """Messages of ``queue_name`` waiting, delayed or running."""
        key = self._key(queue_name)

        def count() -> int:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.hlen(key + ".msgs")
                pipe.hlen(key + ".DQ.msgs")
                return sum(pipe.execute())

        return self._retrying(count, f"count {queue_name!r}")

    def inspector(self) -> RedisInspector:
        """Counts, workers and dead letters for the operations tools."""
        return RedisInspector(self)

    def _queue_busy(self, queue_name: str) -> bool:
        return bool(self.qsize(queue_name))

    # Dramatiq's RedisBroker.join signature (``interval``), not the base class's
    def join(self, queue_name: str, *, interval: int = 100,  # type: ignore[override]
             timeout: int | None = None, fail_fast: bool = False) -> None:
        """Wait until ``queue_name`` and its delay queue are empty (Dramatiq's signature:
        polled every ``interval`` ms at most; liteq adds ``fail_fast``)."""
        self._join(queue_name, timeout=timeout, fail_fast=fail_fast, interval=interval / 1000)

    def flush(self, queue_name: str) -> None:
        """Delete every waiting, delayed and running message of ``queue_name``."""
        self._call(["X", queue_name, "X", dq_name(queue_name)], what=f"flush {queue_name!r}")

    def flush_all(self) -> None:
        """Flush every declared queue and delete their dead letters."""
        for name in list(self.queues):
            self.flush(name)
        keys = [k for name in self.queues
                for k in (self._key(name) + ".XQ", self._key(name) + ".XQ.msgs")]
        if keys:
            self._retrying(lambda: self.client.delete(*keys), "delete dead letters")
        self._failures.clear()

    @property
    def dead_letters(self) -> list[Message[Any]]:
        """Every dead-lettered message of the declared queues that decodes, oldest first."""
        found: list[tuple[float, Message[Any]]] = []
        for name in sorted(self.queues):
            key = self._key(name) + ".XQ"

            def read(key: str = key) -> tuple[list[Any], list[Any]]:
                # redis-py types zrange as a union over its options; withscores: pairs
                scored = cast("list[tuple[bytes, float]]",
                              self.client.zrange(key, 0, -1, withscores=True))
                bodies = self.client.hmget(key + ".msgs", [i for i, _ in scored]) \
                    if scored else []
                return scored, bodies

            scored, bodies = self._retrying(read, "read dead letters")
            for (_, score), body in zip(scored, bodies, strict=True):
                if body is None:
                    continue
                with contextlib.suppress(DecodeError):
                    found.append((score, Message.decode(body)))
        found.sort(key=lambda pair: pair[0])
        return [m for _, m in found]

    def close(self) -> None:
        """Disconnect from the server."""
        with contextlib.suppress(Exception):
            self.client.close()


_SECRET_KEYS = ("password", "username")

#: Seconds the supervisor waits on the server when releasing a dead child's messages.
RELEASE_TIMEOUT = 5.0


def release(info: dict[str, Any], pid: int, running: Iterable[str] | None = None,
            overran: Iterable[str] = ()) -> int:
    """Requeue the messages held by dead process ``pid``, described by ``info`` (its
    broker's :meth:`RedisBroker.release_info`); returns how many. Errors name no secret.
    Redis keeps neither suspects nor delivery counts: ``running`` and ``overran`` (what
    the process was running, what a hard time limit killed it for) are not used."""
    broker = _open_for_supervisor(info)
    try:
        return broker.release_workers(info["worker_ids"])
    finally:
        broker.close()


def inspect_queues(info: dict[str, Any]) -> dict[str, Any]:
    """The counts of every queue (``Inspector.queues()``) of the server and namespace of
    ``info``, for the supervisor's Prometheus queue gauges."""
    broker = _open_for_supervisor(info)
    try:
        return dict(broker.inspector().queues())
    finally:
        broker.close()


def _open_for_supervisor(info: dict[str, Any]) -> RedisBroker:
    """A broker on the server of ``info`` with short timeouts and no retries (the
    supervisor must not hang on a server that is gone)."""
    module, _, name = info["connection_class"].rpartition(".")
    if module != "redis.connection":
        raise ValueError(f"unexpected Redis connection class {info['connection_class']!r}")
    kwargs: dict[str, Any] = {key: str(value) if isinstance(value, Secret) else value
              for key, value in info["connection_kwargs"].items()}
    for key in ("socket_timeout", "socket_connect_timeout"):
        kwargs[key] = min(kwargs.get(key) or RELEASE_TIMEOUT, RELEASE_TIMEOUT)
    kwargs["retry"] = RedisRetry(NoBackoff(), 0)
    pool = redis.ConnectionPool(connection_class=getattr(redis.connection, name), **kwargs)
    return RedisBroker(client=redis.Redis(connection_pool=pool), middleware=[],
                       namespace=info["namespace"], maintenance_chance=0,
                       connection_attempts=2)
