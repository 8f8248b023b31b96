"""The Redis broker seen by the operations tools (:class:`~liteq.brokers.inspect.Inspector`).

Everything is read from Dramatiq's key layout plus liteq's own keys, in a few pipelined
round trips whatever the number of messages (lengths and cardinalities, never the
messages themselves):

- **queues**: those liteq producers wrote to (``__liteq__.queues``), those consumed by a
  registered worker, and those with keys in the namespace (Dramatiq's producers write
  no list of queues): a whole ``SCAN`` first, then one bounded ``SCAN`` step per
  refresh of a long-lived inspector (``liteq top``);
- **ready** = ``LLEN q``; **delayed** = ``LLEN q.DQ`` + the delayed messages consumers
  fetched and hold until their ETA (the ack sets ``__acks__.<worker>.q.DQ``);
  **claimed** = the ack sets ``__acks__.<worker>.q`` of the workers in the heartbeat set;
  **running** = the ``running_queues`` of the registry entries not stale; **dead** =
  ``ZCARD q.XQ``;
- **succeeded / failed / retried / dead_lettered**: ``__liteq__.counts.<q>``, which the
  script adds to as liteq consumers acknowledge (Dramatiq workers do not count);
- **workers**: ``__liteq__.workers`` (worker id → its JSON entry, published with the
  heartbeats of liteq consumers; Dramatiq workers publish none), alive while their
  worker id is in ``__heartbeats__``.

A dead letter's :attr:`~liteq.brokers.inspect.DeadLetter.id` is its Redis message id
(the member of ``q.XQ``); its reason and traceback are the options
:func:`liteq.brokers.failure.dead_letter_body` wrote into its body, its time of death
its score in ``q.XQ`` (Dramatiq workers set it too).
"""

from __future__ import annotations

import heapq
import json
import re
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ...common import current_millis, validate_queue_name
from ...errors import DecodeError, InvalidQueueName
from ...message import Message
from ..failure import requeued_body
from ..inspect import STALE_AFTER_MS, DeadLetter, Inspector, Progress, QueueCounts

if TYPE_CHECKING:
    from .broker import RedisBroker

#: Keys one refresh's SCAN call looks at (a pass over a big database spans refreshes).
SCAN_STEP = 2000
#: Seconds the queue names and queue heads one call read are reused by the calls that
#: follow it in the same refresh (``liteq top`` reads the counts, then the extras).
REUSE = 1.0
#: Dead letters moved or deleted per script call.
BATCH = 500
COUNTERS = ("succeeded", "failed", "retried", "dead_lettered")
#: The options a dead-lettered body gained (liteq.brokers.failure), dropped on requeue.
DEATH_OPTIONS = ("failure_reason", "failed_at")
#: The reason of a dead letter whose body carries none (a Dramatiq worker's).
NO_REASON = "no reason recorded (dead-lettered by a worker that does not write one)"
_SPECIAL = ("__acks__.", "__heartbeats__", "__liteq__.")
_COUNTS = "__liteq__.counts."


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisInspector(Inspector):
    """Counts, workers and dead letters of a :class:`RedisBroker`, through its client."""

    def __init__(self, broker: RedisBroker) -> None:
        self.broker = broker
        self.client = broker.client
        self.ns = broker.namespace
        self.url = broker._location
        #: SCAN state: the cursor of the pass under way (None before the first, whole
        #: scan), the queues of the last complete pass and of the one under way.
        self._cursor: int | None = None
        self._found: set[str] = set()
        self._pass: set[str] = set()
        #: What the last calls read, for the calls of the same refresh (see REUSE):
        #: (when, queue names) and (when, queue -> head id, queue -> when it was due).
        self._names: tuple[float, list[str]] = (-REUSE, [])
        self._heads: tuple[float, dict[str, bytes | None], dict[str, int] | None] = (
            -REUSE, {}, None)

    def _key(self, name: str) -> str:
        return f"{self.ns}:{name}"

    def _read(self, fn: Any, what: str) -> Any:
        return self.broker._retrying(fn, what)

    # -- queues -------------------------------------------------------------------------
    def _queue_of(self, key: bytes | str) -> str | None:
        """The queue a key of the namespace belongs to, or None for liteq's own keys
        and keys that name no queue."""
        name = _text(key)[len(self.ns) + 1:]
        if name.startswith(_COUNTS):
            return name[len(_COUNTS):]
        if name.startswith(_SPECIAL):
            return None
        name = name.removesuffix(".msgs")
        name = name[:-3] if name.endswith((".DQ", ".XQ")) else name
        try:
            return validate_queue_name(name)
        except InvalidQueueName:  # another tool's key
            return None

    def _scan(self, full: bool = False) -> set[str]:
        """Queues with keys in the namespace: a whole SCAN the first time (or when
        ``full``), then one ``SCAN_STEP`` of a new pass per call, so that a refresh costs
        one bounded call however many other keys the database holds."""
        match = _glob_escape(self.ns + ":") + "*"
        if full or self._cursor is None:
            keys = self._read(lambda: list(self.client.scan_iter(match=match,
                                                                  count=SCAN_STEP * 5)),
                              "list the queues")
            self._found = {q for q in map(self._queue_of, keys) if q is not None}
            self._pass, self._cursor = set(), 0
            return set(self._found)
        cursor, keys = self._read(
            lambda: self.client.scan(self._cursor or 0, match=match, count=SCAN_STEP),
            "list the queues")
        self._pass.update(q for q in map(self._queue_of, keys) if q is not None)
        if cursor == 0:
            self._found, self._pass = self._pass, set()
        self._cursor = cursor
        return self._found | self._pass

    def _overview(self, full_scan: bool = False, names: bool = True
                  ) -> tuple[dict[str, float], list[dict[str, Any]], list[str]]:
        """The heartbeats, the live registry entries and (unless not ``names``) every
        known queue name."""
        def read() -> list[Any]:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.zrange(self._key("__heartbeats__"), 0, -1, withscores=True)
                pipe.hgetall(self._key("__liteq__.workers"))
                pipe.smembers(self._key("__liteq__.queues"))
                return pipe.execute()

        scored, registry, known = self._read(read, "read the workers and queues")
        beats = {_text(w): score for w, score in scored}
        entries = self._entries(beats, registry)
        if not names:
            return beats, entries, []
        found = self._scan(full_scan) | {_text(q) for q in known} | set(self.broker.queues)
        for entry in entries:
            found.update(q for q in entry.get("queues", ()) if isinstance(q, str))
        self._names = (time.monotonic(), sorted(found))
        return beats, entries, self._names[1]

    def _recent_names(self) -> list[str]:
        """The queue names of the last overview if it is from this refresh, else anew."""
        at, names = self._names
        if time.monotonic() - at < REUSE:
            return names
        return self._overview()[2]

    def _entries(self, beats: dict[str, float], registry: dict[bytes, bytes]
                 ) -> list[dict[str, Any]]:
        """The registry entries of workers still in the heartbeat set (the others are
        deleted: their worker is gone)."""
        entries, gone = [], []
        for worker, data in registry.items():
            wid = _text(worker)
            if wid not in beats:
                gone.append(wid)
                continue
            try:
                entry = json.loads(data)
            except ValueError:
                continue
            entry["heartbeat_at"] = max(int(beats[wid]), int(entry.get("heartbeat_at") or 0))
            for field, default in (("threads", 0), ("running", []), ("running_queues", {}),
                                   ("processed", 0), ("succeeded", 0), ("failed", 0),
                                   ("activity", {})):
                entry.setdefault(field, default)
            entries.append(entry)
        if gone:
            self._read(lambda: self.client.hdel(self._key("__liteq__.workers"), *gone),
                       "forget gone workers")
        return entries

    def queues(self) -> dict[str, QueueCounts]:
        beats, entries, names = self._overview()
        if not names:
            return {}
        key, workers = self._key, list(beats)

        def read() -> list[Any]:
            with self.client.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.lindex(key(name), 0)
                    pipe.llen(key(name))
                    pipe.llen(key(name + ".DQ"))
                    pipe.zcard(key(name + ".XQ"))
                    pipe.hmget(key("__liteq__.counts." + name), list(COUNTERS))
                    for w in workers:
                        pipe.scard(key(f"__acks__.{w}.{name}"))
                        pipe.scard(key(f"__acks__.{w}.{name}.DQ"))
                return pipe.execute()

        found = iter(self._read(read, "count the queues"))
        fresh = current_millis() - STALE_AFTER_MS
        running: dict[str, int] = {}
        for entry in entries:
            if entry["heartbeat_at"] >= fresh and isinstance(entry["running_queues"], dict):
                for name, n in entry["running_queues"].items():
                    running[name] = running.get(name, 0) + int(n)
        result, heads = {}, {}
        for name in names:
            heads[name] = next(found)
            ready, delayed, dead, counters = next(found), next(found), next(found), next(found)
            claimed = held = 0
            for _ in workers:
                claimed += next(found)
                held += next(found)
            totals = [int(v) if v is not None else 0 for v in counters]
            result[name] = QueueCounts(ready, delayed + held, claimed, running.get(name, 0),
                                       dead, *totals)
        self._heads = (time.monotonic(), heads, None)
        return result

    def workers(self) -> list[dict[str, Any]]:
        _, entries, _ = self._overview(names=False)
        return sorted(entries, key=lambda e: (str(e.get("host")), e.get("pid") or 0,
                                              str(e.get("owner"))))

    def oldest_ready(self, queue_name: str) -> int | None:
        """When the message at the head of ``queue_name`` became due: its ETA, its last
        retry's time, or its creation, whichever is latest. After :meth:`queues`, the
        heads of every queue are read at once (one round trip per refresh)."""
        at, heads, due = self._heads
        if time.monotonic() - at >= REUSE or queue_name not in heads:
            heads = {queue_name: self._read(lambda: self.client.lindex(self._key(queue_name), 0),
                                            f"read the head of {queue_name!r}")}
            due = None
        if due is None:
            due = self._due(heads)
            if heads is self._heads[1]:
                self._heads = (at, heads, due)
        return due.get(queue_name)

    def _due(self, heads: dict[str, bytes | None]) -> dict[str, int]:
        """When each queue's head message (by its id in ``heads``) became due."""
        named = [(name, rid) for name, rid in heads.items() if rid is not None]

        def read() -> list[Any]:
            with self.client.pipeline(transaction=False) as pipe:
                for name, rid in named:
                    pipe.hget(self._key(name + ".msgs"), rid)
                return pipe.execute()

        bodies = self._read(read, "read the heads of the queues") if named else []
        due = {}
        for (name, _), body in zip(named, bodies, strict=True):
            try:
                message = Message.decode(body) if body is not None else None
            except DecodeError:
                message = None
            if message is None:
                continue
            times = [message.message_timestamp]
            for option in ("eta", "requeue_timestamp"):
                value = message.options.get(option)
                if isinstance(value, int) and not isinstance(value, bool):
                    times.append(value)
            due[name] = max(times)
        return due

    # -- dead letters ---------------------------------------------------------------------
    def _dead_queues(self, queue_name: str | None, rescan: bool = False) -> list[str]:
        """``[queue_name]``, else every known queue (scanned afresh when ``rescan``: a
        dead letter to change may be newer than the last scan)."""
        if queue_name is not None:
            return [queue_name]
        return self._overview(full_scan=True)[2] if rescan else self._recent_names()

    def _letters(self, pairs: list[tuple[str, str, float]]) -> list[DeadLetter]:
        """Dead letters of ``(queue, id, score)``, bodies read in one pipeline."""
        def read() -> list[Any]:
            with self.client.pipeline(transaction=False) as pipe:
                for queue, rid, _ in pairs:
                    pipe.hget(self._key(queue + ".XQ.msgs"), rid)
                return pipe.execute()

        bodies = self._read(read, "read dead letters") if pairs else []
        letters = []
        for (queue, rid, score), body in zip(pairs, bodies, strict=True):
            if body is not None:
                letters.append(_letter(queue, rid, score, body))
        return letters

    def _scored(self, queues: list[str], limit: int | None, newest: bool
                ) -> list[tuple[str, str, float]]:
        """``(queue, id, died at)`` of the dead letters of ``queues``, oldest (or newest)
        first, at most ``limit``."""
        stop = -1 if limit is None else limit - 1

        def read() -> list[Any]:
            with self.client.pipeline(transaction=False) as pipe:
                for queue in queues:
                    pipe.zrange(self._key(queue + ".XQ"), 0, stop, desc=newest,
                                withscores=True)
                return pipe.execute()

        runs = self._read(read, "list dead letters") if queues else []
        merged = heapq.merge(
            *([(score, queue, _text(rid)) for rid, score in run]
              for queue, run in zip(queues, runs, strict=True)),
            reverse=newest)
        pairs = [(queue, rid, score) for score, queue, rid in merged]
        return pairs if limit is None else pairs[:limit]

    def dead_letters(self, queue_name: str | None = None, limit: int | None = None
                     ) -> list[DeadLetter]:
        return self._letters(self._scored(self._dead_queues(queue_name), limit, False))

    def recent_dead(self, limit: int) -> list[DeadLetter]:
        return self._letters(self._scored(self._dead_queues(None), limit, True))

    def _locate(self, ids: Iterable[str]) -> list[tuple[str, str, float]]:
        """``(queue, id, died at)`` of the dead letters among ``ids``, wherever they are;
        an id that is no Redis message id may be a message's own id (from a log line):
        those are looked for in the bodies."""
        ids = list(dict.fromkeys(ids))
        queues = self._dead_queues(None, rescan=True)

        def read() -> list[Any]:
            with self.client.pipeline(transaction=False) as pipe:
                for rid in ids:
                    for queue in queues:
                        pipe.zscore(self._key(queue + ".XQ"), rid)
                return pipe.execute()

        scores = iter(self._read(read, "find dead letters") if ids and queues else [])
        found, missing = [], set()
        for rid in ids:
            hits = [(queue, rid, score) for queue in queues
                    if (score := next(scores)) is not None]
            found += hits
            if not hits:
                missing.add(rid)
        return found + self._by_message_id(missing, queues) if missing else found

    def _by_message_id(self, wanted: set[str], queues: list[str]
                       ) -> list[tuple[str, str, float]]:
        """The dead letters of ``queues`` whose message id is in ``wanted`` (reads every
        dead body, in batches: only for ids ``dlq list`` did not print)."""
        found = []
        for queue in queues:
            xq = self._key(queue + ".XQ")
            pairs = self._read(lambda xq=xq: list(self.client.hscan_iter(xq + ".msgs",
                                                                         count=1000)),
                               "search dead letters")
            for rid, body in pairs:
                try:
                    message_id = Message.decode(body).message_id
                except DecodeError:
                    continue
                if message_id in wanted:
                    score = self._read(lambda xq=xq, rid=rid: self.client.zscore(xq, rid),
                                       "search dead letters")
                    if score is not None:
                        found.append((queue, _text(rid), score))
        return found

    def dead_letter(self, dead_id: str) -> DeadLetter | None:
        letters = self._letters(self._locate([dead_id])[:1])
        return letters[0] if letters else None

    def _targets(self, ids: list[str] | None, queue_name: str | None
                 ) -> list[tuple[str, str, float]]:
        if ids is not None:
            return self._locate(ids)
        return self._scored(self._dead_queues(queue_name, rescan=True), None, False)

    def requeue_dead(self, ids: list[str] | None = None, *, queue_name: str | None = None,
                     progress: Progress | None = None) -> int:
        """Move dead letters back to the end of their queue as ready messages that start
        afresh (:func:`liteq.brokers.failure.requeued_body`)."""
        def ops(batch: list[tuple[str, str, float]]) -> list[Any]:
            out: list[Any] = []
            for letter in self._letters(batch):
                out += ["Q", letter.queue, letter.id, requeued_body(letter.body)]
            return out

        return self._in_batches(self._targets(ids, queue_name), ops, progress,
                                "requeue dead letters")

    def purge_dead(self, ids: list[str] | None = None, *, queue_name: str | None = None,
                   progress: Progress | None = None) -> int:
        def ops(batch: list[tuple[str, str, float]]) -> list[Any]:
            return [x for queue, rid, _ in batch for x in ("D", queue, rid)]

        return self._in_batches(self._targets(ids, queue_name), ops, progress,
                                "delete dead letters")

    def _in_batches(self, targets: list[tuple[str, str, float]], ops: Any,
                    progress: Progress | None, what: str) -> int:
        done = 0
        for start in range(0, len(targets), BATCH):
            batch = ops(targets[start:start + BATCH])
            if batch:
                done += sum(int(n) for n in self.broker._call(batch, what=what))
            if progress:
                progress(min(start + BATCH, len(targets)))
        return done

    def purge(self, queue_name: str) -> int:
        found = self.broker._call(["X", queue_name, "X", queue_name + ".DQ"],
                                  what=f"purge {queue_name!r}")
        return sum(int(n) for n in found)


def _letter(queue: str, rid: str, score: float, body: bytes) -> DeadLetter:
    """A dead letter of ``queue`` from its id, its score in ``q.XQ`` (when it died: also
    set by Dramatiq workers) and its body (an undecodable body's reason says why)."""
    message: Message[Any] | None
    try:
        message = Message.decode(body)
    except DecodeError as e:
        message, reason, trace = None, f"undecodable: {e}", None
    else:
        found, trace = message.options.get("failure_reason"), message.options.get("traceback")
        reason = found if isinstance(found, str) else NO_REASON
    return DeadLetter(
        id=rid, queue=queue,
        message_id=message.message_id if message is not None else rid,
        actor_name=message.actor_name if message is not None else None,
        priority=0, body=body, reason=reason,
        traceback=trace if isinstance(trace, str) else None, deliveries=None,
        failed_at=int(score))
