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
  to their queue and drops expired dead letters;
* liteq's own additions, which Dramatiq ignores: ``ns:__liteq__.notify.<q>`` (a
  one-element list pushed on enqueue, on which idle liteq consumers block instead of
  polling) and ``ns:__liteq__.wake.<uuid>`` (a consumer's private wake-up list).

Every change is one call of one Lua script (``_SCRIPT``, written for liteq): a list of
operations (enqueue, ack, nack, requeue, promote a due delayed message, fetch a batch
over several queues, maintenance) run atomically, so that a worker acknowledges what it
finished and claims its next batch in one round trip.
"""

from __future__ import annotations

import contextlib
import heapq
import ipaddress
import itertools
import random
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlsplit, urlunsplit

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry as RedisRetry
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "RedisBroker needs redis-py; install it with: pip install 'liteq[redis]'"
    ) from e

from .broker import Broker, Consumer, MessageProxy
from .common import current_millis, dq_name, q_name
from .errors import ConnectionFailed, DecodeError, QueueJoinTimeout, QueueNotFound
from .message import Message
from .middleware.middleware import Middleware

T = TypeVar("T")

#: Dramatiq's defaults.
DEFAULT_MAINTENANCE_CHANCE = 1000
MAINTENANCE_SCALE = 1_000_000
DEFAULT_HEARTBEAT_TIMEOUT = 60000
DEFAULT_DEAD_MESSAGE_TTL = 86400000 * 7

#: Delayed messages a consumer holds in memory at most (Dramatiq holds up to 65,535).
MAX_HELD_DELAYED = 10000
#: Longest single blocking call while idle (below redis-py's 5 s default socket timeout).
MAX_BLOCK = 1.0
#: Messages per script call in ``enqueue_many``.
ENQUEUE_CHUNK = 1000

_SCRIPT = r"""
-- liteq dispatch: KEYS[1] = namespace; ARGV = now, worker id ('' for none),
-- heartbeat timeout, dead message ttl, a reserved field, then a stream of operations
-- (E enqueue, A ack, N nack, R requeue, P promote, F fetch, M maintenance, C close,
-- X flush); returns (queue, id, body) triples for what F fetched.
local ns = KEYS[1]
local now = tonumber(ARGV[1])
local worker = ARGV[2]
local heartbeat_timeout = tonumber(ARGV[3])
local dead_ttl = tonumber(ARGV[4])
local heartbeats = ns .. ":__heartbeats__"
if worker ~= "" then
  redis.call("zadd", heartbeats, now, worker)
end

local function base(q)
  local tail = string.sub(q, -3)
  if tail == ".DQ" or tail == ".XQ" then return string.sub(q, 1, -4) end
  return q
end
local function acks_of(w, q) return ns .. ":__acks__." .. w .. "." .. q end
local function poke(q)
  local key = ns .. ":__liteq__.notify." .. base(q)
  if redis.call("llen", key) == 0 then redis.call("rpush", key, "1") end
end
local function glob_escape(s) return (string.gsub(s, "([%*%?%[%]\\])", "\\%1")) end

local function expire_dead(q)
  local xq = ns .. ":" .. base(q) .. ".XQ"
  local ids = redis.call("zrangebyscore", xq, 0, now - dead_ttl, "LIMIT", 0, 1000)
  for _, id in ipairs(ids) do
    redis.call("zrem", xq, id)
    redis.call("hdel", xq .. ".msgs", id)
  end
end

local function maintenance(queues)
  local dead = redis.call("zrangebyscore", heartbeats, 0, now - heartbeat_timeout)
  for _, w in ipairs(dead) do
    for _, q in ipairs(queues) do
      local key = acks_of(w, q)
      local ids = redis.call("smembers", key)
      local msgs = ns .. ":" .. q .. ".msgs"
      local moved = false
      for _, id in ipairs(ids) do
        if redis.call("hexists", msgs, id) == 1 then
          redis.call("rpush", ns .. ":" .. q, id)
          moved = true
        end
      end
      if #ids > 0 then redis.call("del", key) end
      if moved then poke(q) end
    end
    local left = redis.call("keys", glob_escape(ns .. ":__acks__." .. w) .. "*")
    if #left == 0 then redis.call("zrem", heartbeats, w) end
  end
  for _, q in ipairs(queues) do expire_dead(q) end
end

local out = {}
local i = 6
local n = #ARGV
while i <= n do
  local op = ARGV[i]
  if op == "E" then  -- enqueue: queue, id, body
    local key = ns .. ":" .. ARGV[i + 1]
    redis.call("hset", key .. ".msgs", ARGV[i + 2], ARGV[i + 3])
    redis.call("rpush", key, ARGV[i + 2])
    poke(ARGV[i + 1])
    i = i + 4
  elseif op == "A" then  -- ack: queue, id
    local q, id = ARGV[i + 1], ARGV[i + 2]
    if redis.call("srem", acks_of(worker, q), id) == 1 then
      redis.call("hdel", ns .. ":" .. q .. ".msgs", id)
    end
    i = i + 3
  elseif op == "N" then  -- nack (dead-letter): queue, id
    local q, id = ARGV[i + 1], ARGV[i + 2]
    if redis.call("srem", acks_of(worker, q), id) == 1 then
      local msgs = ns .. ":" .. q .. ".msgs"
      local body = redis.call("hget", msgs, id)
      if body then
        local xq = ns .. ":" .. base(q) .. ".XQ"
        redis.call("zadd", xq, now, id)
        redis.call("hset", xq .. ".msgs", id, body)
        redis.call("hdel", msgs, id)
      end
    end
    i = i + 3
  elseif op == "R" then  -- requeue: queue, id
    local q, id = ARGV[i + 1], ARGV[i + 2]
    if redis.call("srem", acks_of(worker, q), id) == 1
        and redis.call("hexists", ns .. ":" .. q .. ".msgs", id) == 1 then
      redis.call("rpush", ns .. ":" .. q, id)
      poke(q)
    end
    i = i + 3
  elseif op == "P" then  -- promote a due delayed message: dq, old id, q, new id, body
    local dq, old, q, id = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
    if redis.call("srem", acks_of(worker, dq), old) == 1
        and redis.call("hdel", ns .. ":" .. dq .. ".msgs", old) == 1 then
      local key = ns .. ":" .. q
      redis.call("hset", key .. ".msgs", id, ARGV[i + 5])
      redis.call("rpush", key, id)
      poke(q)
    end
    i = i + 6
  elseif op == "F" then  -- fetch: budget, count, queues...; round robin over the queues
    local budget = tonumber(ARGV[i + 1])
    local count = tonumber(ARGV[i + 2])
    local active = {}
    for j = 1, count do active[j] = ARGV[i + 2 + j] end
    while budget > 0 and #active > 0 do
      local still = {}
      for _, q in ipairs(active) do
        if budget > 0 then
          local key = ns .. ":" .. q
          local id = redis.call("lpop", key)
          if id then
            local body = redis.call("hget", key .. ".msgs", id)
            if body then
              redis.call("sadd", acks_of(worker, q), id)
              out[#out + 1] = q
              out[#out + 1] = id
              out[#out + 1] = body
              budget = budget - 1
            end
            still[#still + 1] = q
          end
        else
          still[#still + 1] = q
        end
      end
      active = still
    end
    -- Messages left behind: leave a token so that another idle consumer wakes up.
    for _, q in ipairs(active) do
      if redis.call("llen", ns .. ":" .. q) > 0 then poke(q) end
    end
    i = i + 3 + count
  elseif op == "M" then  -- maintenance: count, queues...
    local count = tonumber(ARGV[i + 1])
    local queues = {}
    for j = 1, count do queues[j] = ARGV[i + 1 + j] end
    maintenance(queues)
    i = i + 2 + count
  elseif op == "C" then  -- closing consumer: count, queues...; forget it if it holds nothing
    local count = tonumber(ARGV[i + 1])
    local holds = 0
    for j = 1, count do holds = holds + redis.call("scard", acks_of(worker, ARGV[i + 1 + j])) end
    if holds == 0 and worker ~= "" then redis.call("zrem", heartbeats, worker) end
    i = i + 2 + count
  elseif op == "X" then  -- flush: queue (its list, bodies and every worker's ack set)
    local q = ARGV[i + 1]
    redis.call("del", ns .. ":" .. q, ns .. ":" .. q .. ".msgs")
    for _, w in ipairs(redis.call("zrange", heartbeats, 0, -1)) do
      redis.call("del", acks_of(w, q))
    end
    i = i + 2
  else
    return redis.error_reply("liteq dispatch: unknown operation " .. tostring(op))
  end
end
return out
"""

_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def _is_local(host: str | None) -> bool:
    if not host:
        return True
    host = host.strip("[]").lower()
    if host in _LOCAL_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
    heartbeat older than ``heartbeat_timeout`` ms. Dead letters expire after
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
        self._secrets: list[str] = []
        self.client = client if client is not None else self._build_client(
            url, dict(connection_pool_kwargs or {}), redis_kwargs)
        kwargs = self.client.connection_pool.connection_kwargs
        for key in ("password", "username"):
            if kwargs.get(key):
                self._secrets.append(str(kwargs[key]))
        self._location = self._describe(kwargs)
        self._script = self.client.register_script(_SCRIPT)
        self._failures: dict[str, list[BaseException]] = {}
        self._priority_warned = False
        super().__init__(middleware)

    # -- connection -----------------------------------------------------------------------
    def _build_client(self, url: str | None, pool_kwargs: dict[str, Any],
                      redis_kwargs: dict[str, Any]) -> redis.Redis:
        # liteq retries itself (connection_attempts); redis-py's own retries would add
        # seconds of silent waiting to each attempt.
        options: dict[str, Any] = {"retry": RedisRetry(NoBackoff(), 0)}
        options.update(redis_kwargs)
        options.update(pool_kwargs)
        if url:
            parts = urlsplit(url)
            if parts.username and parts.password is None and parts.scheme != "unix":
                # redis://secret@host: the seed's form, a password without a user name.
                options["password"] = unquote(parts.username)
                netloc = parts.netloc.rsplit("@", 1)[1]
                url = urlunsplit(parts._replace(netloc=netloc))
                parts = urlsplit(url)
            has_password = parts.password is not None or bool(options.get("password"))
            host = None if parts.scheme == "unix" else parts.hostname
            if parts.password:
                self._secrets.append(unquote(parts.password))
            pool = redis.ConnectionPool.from_url(url, **options)
        else:
            has_password = bool(options.get("password")) or "credential_provider" in options
            host = None if options.get("unix_socket_path") else options.get("host", "localhost")
            pool = redis.ConnectionPool(**options)
        if not has_password and not _is_local(host):
            warnings.warn(
                f"RedisBroker: the Redis server {host!r} is not on this machine and no "
                "password is configured; anyone who can reach it can read and inject "
                "tasks. Give one, e.g. url='rediss://:PASSWORD@host:6379/0'.",
                RuntimeWarning, stacklevel=3,
            )
        return redis.Redis(connection_pool=pool)

    @staticmethod
    def _describe(kwargs: dict[str, Any]) -> str:
        if kwargs.get("path"):
            return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
        host = kwargs.get("host", "localhost")
        if ":" in str(host):
            host = f"[{host}]"
        return f"redis://{host}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"

    def __repr__(self) -> str:
        return f"RedisBroker({self._location!r}, namespace={self.namespace!r})"

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret:
                text = text.replace(secret, "***").replace(quote(secret, safe=""), "***")
        return text

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

        def run() -> list[Any]:
            return self._script(
                keys=[self.namespace],
                args=[current_millis(), worker, self.heartbeat_timeout,
                      self.dead_message_ttl, "0", *ops],
            )

        return self._retrying(run, what)

    def ping(self) -> None:
        """Check that the server answers (with retries); raises ConnectionFailed."""
        self._retrying(self.client.ping, "connect")

    def _key(self, queue_name: str) -> str:
        return f"{self.namespace}:{queue_name}"

    # -- enqueue ----------------------------------------------------------------------------
    def _prepare(self, message: Message, delay: int | None) -> tuple[Message, str, bytes]:
        message, eta, priority = self.prepare_message(message, delay)
        if priority and not self._priority_warned:
            self._priority_warned = True
            self.logger.warning(
                "Redis has no message priority: priority %r of %s (and any other) is "
                "ignored on %r; messages run in FIFO order", priority, message.actor_name,
                self)
        options = dict(message.options)
        options["redis_message_id"] = str(uuid.uuid4())
        queue = message.queue_name
        if eta > current_millis():
            queue = dq_name(queue)
        else:
            options.pop("eta", None)
        message = Message(message.queue_name, message.actor_name, message.args,
                          message.kwargs, options, message.message_id,
                          message.message_timestamp)
        self.emit_before("enqueue", message, delay)
        return message, queue, message.encode()

    def enqueue(self, message: Message, *, delay: int | None = None) -> Message:
        """Store ``message`` (on ``<q>.DQ`` with its ``eta`` when delayed); returns it."""
        message, queue, body = self._prepare(message, delay)
        self._call(["E", queue, message.options["redis_message_id"], body],
                   what=f"enqueue on {message.queue_name!r}", maintenance_queues=(queue,))
        self.emit_after("enqueue", message, delay)
        return message

    def enqueue_many(self, messages: Iterable[Message], *, delay: int | None = None
                     ) -> list[Message]:
        """Store many messages, ``ENQUEUE_CHUNK`` per atomic call."""
        prepared = [self._prepare(m, delay) for m in messages]
        for start in range(0, len(prepared), ENQUEUE_CHUNK):
            ops: list[Any] = []
            for message, queue, body in prepared[start:start + ENQUEUE_CHUNK]:
                ops += ["E", queue, message.options["redis_message_id"], body]
            self._call(ops, what="enqueue")
        sent = [m for m, _, _ in prepared]
        for m in sent:
            self.emit_after("enqueue", m, delay)
        return sent

    # -- consuming --------------------------------------------------------------------------
    def consume(self, queue_names: str | Iterable[str], *, prefetch: int = 1,
                timeout: int = 1000) -> RedisConsumer:
        """A consumer over ``queue_names`` (and their delay queues)."""
        names = [queue_names] if isinstance(queue_names, str) else list(queue_names)
        for name in names:
            if name not in self.queues:
                raise QueueNotFound(f"queue {name!r} is not declared on this broker")
        self.ping()
        return RedisConsumer(self, names, prefetch=prefetch, timeout=timeout)

    def record_failure(self, queue_name: str, exception: BaseException) -> None:
        """Remember a dead-lettered message's exception for ``join(fail_fast=True)``."""
        self._failures.setdefault(q_name(queue_name), []).append(exception)

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

    def join(self, queue_name: str, *, timeout: int | None = None,
             fail_fast: bool = False) -> None:
        """Wait until ``queue_name`` has no waiting, delayed or running messages.

        With ``fail_fast``, re-raise the exception of a message of this queue that a
        worker in this process dead-lettered.
        """
        if queue_name not in self.queues:
            raise QueueNotFound(f"queue {queue_name!r} is not declared on this broker")
        deadline = None if timeout is None else time.monotonic() + timeout / 1000
        pause = 0.001
        while self.qsize(queue_name):
            if fail_fast and self._failures.get(queue_name):
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise QueueJoinTimeout(f"queue {queue_name!r} did not drain within {timeout} ms")
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
        if fail_fast and self._failures.get(queue_name):
            raise self._failures[queue_name].pop(0)

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
    def dead_letters(self) -> list[Message]:
        """Every dead-lettered message of the declared queues that decodes, oldest first."""
        found: list[tuple[float, Message]] = []
        for name in sorted(self.queues):
            key = self._key(name) + ".XQ"

            def read(key: str = key) -> tuple[list[Any], list[Any]]:
                scored = self.client.zrange(key, 0, -1, withscores=True)
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


class RedisConsumer(Consumer):
    """Fetches from several queues in batches; holds delayed messages until their ETA.

    Not thread-safe except :meth:`wakeup`. An idle consumer blocks (``BLPOP``) on the
    notification lists its queues' enqueues push to and on its private wake-up list.
    """

    def __init__(self, broker: RedisBroker, queue_names: list[str], *, prefetch: int,
                 timeout: int) -> None:
        self.broker = broker
        self.queue_names = queue_names
        self.delay_names = [dq_name(q) for q in queue_names]
        self.prefetch = prefetch
        self.timeout = timeout
        self.worker_id = broker.broker_id
        ns = broker.namespace
        self._notify_keys = [f"{ns}:__liteq__.notify.{q}" for q in queue_names]
        self._wake_key = f"{ns}:__liteq__.wake.{uuid.uuid4()}"
        self._all_queues = [n for q in queue_names for n in (q, dq_name(q))]
        self._held: list[tuple[int, int, MessageProxy]] = []
        self._seq = itertools.count()
        self._bad: list[tuple[str, str]] = []
        self._rotation = 0
        self._hungry = True
        self._lock = threading.Lock()
        self._blocking = False
        self._woken = False
        self._closed = False

    # -- the round trip ---------------------------------------------------------------------
    def exchange(self, done: list[MessageProxy], want: int) -> list[MessageProxy]:
        """Ack/nack ``done``, move due delayed messages, fetch up to ``want``: one call."""
        ops: list[Any] = []
        broker = self.broker
        for proxy in done:
            queue, rid = proxy.handle
            if proxy.failed:
                ops += ["N", queue, rid]
                if proxy._exception is not None:
                    broker.record_failure(queue, proxy._exception)
            else:
                ops += ["A", queue, rid]
        for queue, rid in self._bad:
            ops += ["N", queue, rid]
        held = self._held
        now = current_millis()
        promoted = []
        while held and held[0][0] <= now:
            promoted.append(heapq.heappop(held))
            proxy = promoted[-1][2]
            dq, old = proxy.handle
            message = proxy._message
            options = dict(message.options)
            options.pop("eta", None)
            options["redis_message_id"] = rid = str(uuid.uuid4())
            moved = Message(q_name(message.queue_name), message.actor_name, message.args,
                            message.kwargs, options, message.message_id,
                            message.message_timestamp)
            ops += ["P", dq, old, q_name(dq), rid, moved.encode()]
        queues = self.queue_names
        if want > 0:
            k = self._rotation % len(queues)
            self._rotation += 1
            ops += ["F", want, len(queues), *queues[k:], *queues[:k]]
        room = MAX_HELD_DELAYED - len(held)
        if room > 0:
            ops += ["F", room, len(self.delay_names), *self.delay_names]
        try:
            found = broker._call(ops, self.worker_id, "exchange messages",
                                 maintenance_queues=self._all_queues)
        except Exception:
            for item in promoted:
                heapq.heappush(held, item)
            raise
        self._bad = []
        received = self._receive(found)
        self._hungry = want > 0 and len(received) < want
        return received

    def _receive(self, found: list[Any]) -> list[MessageProxy]:
        received = []
        for index in range(0, len(found), 3):
            queue = found[index].decode()
            rid = found[index + 1].decode()
            try:
                message = Message.decode(found[index + 2])
            except DecodeError as e:
                self.broker.logger.error("dead-lettering an undecodable message %s on %s: %s",
                                         rid, queue, e)
                self._bad.append((queue, rid))
                continue
            proxy = MessageProxy(message, handle=(queue, rid))
            if queue.endswith(".DQ"):
                eta = message.options.get("eta")
                if isinstance(eta, bool) or not isinstance(eta, (int, float)):
                    eta = 0
                heapq.heappush(self._held, (int(eta), next(self._seq), proxy))
            else:
                received.append(proxy)
        return received

    def poll(self) -> MessageProxy | None:
        got = self.exchange([], 1)
        return got[0] if got else None

    def ack(self, message: MessageProxy) -> None:
        self.broker._call(["A", *message.handle], self.worker_id, "acknowledge")

    def nack(self, message: MessageProxy) -> None:
        if message._exception is not None:
            self.broker.record_failure(message.handle[0], message._exception)
        self.broker._call(["N", *message.handle], self.worker_id, "dead-letter")

    def requeue(self, messages: Iterable[MessageProxy]) -> None:
        """Put fetched, unstarted messages back at the end of their queue."""
        ops: list[Any] = []
        for proxy in messages:
            ops += ["R", *proxy.handle]
        if ops:
            self.broker._call(ops, self.worker_id, "requeue")

    # -- waiting ----------------------------------------------------------------------------
    def wait(self, timeout: float) -> None:
        """Block until a message may be there, a delayed one is due, :meth:`wakeup`, or
        ``timeout`` seconds; never busy-polls."""
        if self._held:
            timeout = min(timeout, (self._held[0][0] - current_millis()) / 1000)
        if timeout <= 0:
            return
        with self._lock:
            if self._woken:
                self._woken = False
                return
            self._blocking = True
        client = self.broker.client
        keys = [*self._notify_keys, self._wake_key] if self._hungry else [self._wake_key]
        deadline = time.monotonic() + timeout
        chunk_cap = min(MAX_BLOCK, self.broker.heartbeat_timeout / 4000)
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                chunk = max(min(remaining, chunk_cap), 0.001)
                if client.blpop(keys, timeout=chunk) is not None:
                    return
                if remaining > chunk:
                    # A long wait: stay alive in the heartbeat set.
                    client.zadd(f"{self.broker.namespace}:__heartbeats__",
                                {self.worker_id: current_millis()})
        except (redis.ConnectionError, redis.TimeoutError) as e:
            self.broker.logger.warning("waiting on Redis at %s failed: %s",
                                       self.broker._location, self.broker._scrub(str(e)))
            time.sleep(min(max(deadline - time.monotonic(), 0), 0.5))
        finally:
            with self._lock:
                self._blocking = False
                self._woken = False

    def wakeup(self) -> None:
        """Make a concurrent :meth:`wait` return now (thread-safe)."""
        with self._lock:
            if self._woken:
                return
            self._woken = True
            if not self._blocking:
                return
        try:
            with self.broker.client.pipeline(transaction=False) as pipe:
                pipe.rpush(self._wake_key, "1")
                pipe.pexpire(self._wake_key, 60000)
                pipe.execute()
        except redis.RedisError as e:
            self.broker.logger.debug("could not wake a consumer: %s", e)

    def close(self) -> None:
        """Return held delayed messages to their delay queue and forget this consumer."""
        if self._closed:
            return
        self._closed = True
        ops: list[Any] = []
        for _, _, proxy in self._held:
            ops += ["R", *proxy.handle]
        self._held = []
        for queue, rid in self._bad:
            ops += ["N", queue, rid]
        self._bad = []
        ops += ["C", len(self._all_queues), *self._all_queues]
        try:
            self.broker._call(ops, self.worker_id, "close a consumer")
            self.broker.client.delete(self._wake_key)
        except Exception as e:
            self.broker.logger.warning("could not close a consumer cleanly: %s",
                                       self.broker._scrub(str(e)))
