"""The SQLite broker checked step by step against a model of the queue (Hypothesis stateful).

Random sends (several queues, priorities, delays, ETAs), batch sends, claims and settles
by several consumers, unstarted returns, consumer crashes (leases left to lapse, or
released as the supervisor does), dead-letter requeues and purges, and a clock that only
moves when the machine says so. After every step the model and the database must agree:
every sent message is ready, delayed, leased, acknowledged or dead-lettered exactly
once; no message is claimed while another lease on it is valid; a claim takes the
ready messages of a queue in order (larger priority, then earlier ETA, then first
sent); a consumer's leases are renewed at least every third of their length and every
lease written lasts ``lease_ms`` from the clock at its commit; the per-queue counters
equal the rows.

Where the broker may legitimately do either of two things (maintenance it runs on its
own schedule: renewing, reaping), the model accepts both and follows what the database
shows. Deliveries are checked as an upper bound (claims minus unstarted returns), so
that counting fewer of them, as the suspect design of issue 8 does, stays valid.
``LockWaitMachine`` adds exchanges that wait for another connection's write lock.
``LITEQ_SOAK=1`` runs many more and longer examples.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import shutil
import sys
import tempfile
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from liteq import Message, MessageProxy, SqliteBroker, common
from liteq.brokers.sqlite import counts, lease, schema
from liteq.brokers.sqlite.lease import owner_prefix

SOAK = os.environ.get("LITEQ_SOAK") == "1"
QUEUES = ("a", "b")
LEASE_MS = 1000
MAX_DELIVERIES = 2
#: How far below ``now + lease_ms`` a freshly written lease expiry may be.
MARGIN_MS = 50
START_MS = 1_700_000_000_000
#: Fake process ids of the simulated consumers: above any real pid (pid_max <= 2**22).
FIRST_PID = 10_000_000


# --- the adapter: the only place that knows liteq internals ---------------------------------

class FakeClock:
    """Wall-clock milliseconds and a monotonic clock that move only when told."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def millis(self) -> int:
        return self.ms

    def monotonic(self) -> float:
        return self.ms / 1000


class FakeTime:
    """Stands in for the ``time`` module inside brokers/sqlite/lease.py (maintenance scheduling)."""

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock

    def monotonic(self) -> float:
        return self._clock.monotonic()

    def time(self) -> float:
        return self._clock.ms / 1000

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@dataclasses.dataclass(frozen=True)
class Row:
    """A live row of ``liteq_messages``."""

    id: int
    queue: str
    state: int
    priority: int
    eta: int
    deliveries: int
    token: int | None
    expires: int | None
    suspect: bool = False


@dataclasses.dataclass(frozen=True)
class DeadRow:
    id: int
    queue: str
    priority: int


class Harness:
    """The broker under test on a fake clock, driven through its public surface.

    Uses of liteq internals are confined here so that a rewrite of ``liteq.brokers.sqlite.lease``
    touches only this class: the clock patches, the lease owner name that places a
    consumer in its own (fake) process, the change flag a worker's ``wait()`` sets,
    the lease handle of a proxy, and raw reads of the tables.
    """

    def __init__(self, path: str, clock: FakeClock) -> None:
        self.clock = clock
        self._undo: list[tuple[object, str, object]] = []
        original = common.current_millis
        for name, module in list(sys.modules.items()):
            if name.startswith("liteq") and getattr(module, "current_millis", None) is original:
                self._patch(module, "current_millis", clock.millis)
        self._patch(lease, "time", FakeTime(clock))
        self.broker = SqliteBroker(path, middleware=[], lease_ms=LEASE_MS,
                                   max_deliveries=MAX_DELIVERIES, batch_window_ms=0)
        for name in QUEUES:
            self.broker.declare_queue(name)

    def _patch(self, obj: object, attr: str, value: object) -> None:
        self._undo.append((obj, attr, getattr(obj, attr)))
        setattr(obj, attr, value)

    def consumer(self, queues: list[str], prefetch: int, pid: int) -> Any:
        consumer = self.broker.consume(queues, prefetch=prefetch)
        consumer.owner = owner_prefix(pid) + "0"  # as if it were the consumer of process pid
        return consumer

    def exchange(self, consumer: Any, done: list[MessageProxy], want: int,
                 lock_wait_ms: int = 0) -> list[MessageProxy]:
        """``consumer.exchange``; with ``lock_wait_ms``, each of its write transactions
        first waits that long for a write lock held by another connection."""
        consumer._dirty = True  # what its wait() sets when another process commits
        consumer._hold_until = 0.0  # past its claim batching window (fake time stands still)
        if not lock_wait_ms:
            return consumer.exchange(done, want)
        db = self.broker.db
        write = db.write

        def write_after_waiting(fn: Any, *args: Any) -> Any:
            self.clock.ms += lock_wait_ms
            return write(fn, *args)

        db.write = write_after_waiting  # type: ignore[method-assign]
        try:
            return consumer.exchange(done, want)
        finally:
            del db.write

    @staticmethod
    def lease_of(proxy: MessageProxy) -> tuple[int, int]:
        """(row id, lease token) of a claimed message."""
        return proxy.handle[0], proxy.handle[1]

    def crash(self, consumer: Any, pid: int, release: bool) -> None:
        """The consumer's process dies; with ``release`` the supervisor frees its rows."""
        consumer.waiter.close()
        if release:
            info = self.broker.release_info()
            importlib.import_module(info["module"]).release(info, pid)

    def rows(self) -> dict[str, list[Row]]:
        result: dict[str, list[Row]] = {}
        for mid, *fields in self.broker.db.read(
                "SELECT message_id, id, queue, state, priority, eta, deliveries, lease_token,"
                " lease_expires_at, suspect FROM liteq_messages WHERE state != ?",
                (schema.TOMBSTONE,)):
            result.setdefault(mid, []).append(Row(*fields))
        return result

    def dead(self) -> dict[str, list[DeadRow]]:
        result: dict[str, list[DeadRow]] = {}
        for mid, *fields in self.broker.db.read(
                "SELECT message_id, id, queue, priority FROM liteq_dead_letters"):
            result.setdefault(mid, []).append(DeadRow(*fields))
        return result

    def brute_counts(self) -> dict[str, tuple[int, int, int]]:
        """(ready, delayed, leased) per queue, counted from the rows."""
        result: dict[str, list[int]] = {}
        index = {schema.READY: 0, schema.DELAYED: 1, schema.LEASED: 2}
        for queue, state, n in self.broker.db.read(
                "SELECT queue, state, count(*) FROM liteq_messages WHERE state != ?"
                " GROUP BY queue, state", (schema.TOMBSTONE,)):
            result.setdefault(queue, [0, 0, 0])[index[state]] = n
        return {q: tuple(v) for q, v in result.items() if any(v)}

    def reported_counts(self) -> dict[str, tuple[int, int, int]]:
        return {q: (v["ready"], v["delayed"], v["claimed"])
                for q, v in self.broker.stats().items()
                if v["ready"] or v["delayed"] or v["claimed"]}

    def fold_and_read_counters(self) -> dict[str, tuple[int, int]]:
        """Fold the new rows into the counters, then read the counters alone."""
        self.broker.db.write(counts.fold)
        return {q: (r, d) for q, r, d in self.broker.db.read(
            "SELECT queue, ready, delayed FROM liteq_queues") if r or d}

    def close(self, consumers: list[Any]) -> None:
        for consumer in consumers:
            consumer.waiter.close()
        self.broker.close()
        for obj, attr, value in reversed(self._undo):
            setattr(obj, attr, value)


# --- the model ------------------------------------------------------------------------------

READY, DELAYED, LEASED, ACKED, DEAD, PURGED = (
    "ready", "delayed", "leased", "acked", "dead", "purged")


@dataclasses.dataclass
class Msg:
    """What the model knows of one sent message."""

    mid: str
    queue: str
    priority: int
    eta: int
    seq: int  # send order; a requeued dead letter is sent anew
    state: str
    holder: int | None = None  # consumer id of a leased message
    token: int | None = None
    expires: int | None = None
    claims: int = 0  # claims minus unstarted returns: an upper bound of the deliveries
    suspect: bool = False  # released from a dead process
    dead_id: int | None = None

    @property
    def order(self) -> tuple[int, int, int]:
        return (-self.priority, self.eta, self.seq)


@dataclasses.dataclass
class Cons:
    """A simulated worker process's consumer and the proxies it holds."""

    id: int
    pid: int
    queues: list[str]
    consumer: Any
    held: list[MessageProxy] = dataclasses.field(default_factory=list)


def fresh_expiry(expires: int | None, now: int) -> bool:
    """A lease written at ``now`` lasts about ``lease_ms``."""
    return expires is not None and now + LEASE_MS - MARGIN_MS <= expires <= now + LEASE_MS


class ExchangeView:
    """One consumer's exchange as the database shows it afterwards: each message's move
    is checked against what the exchange was allowed to do, and the model follows it."""

    def __init__(self, cons: Cons, now: int, want: int, rows: dict[str, list[Row]],
                 dead: dict[str, list[DeadRow]]) -> None:
        self.cons, self.now, self.want, self.rows, self.dead = cons, now, want, rows, dead
        self.settling: dict[str, dict[int, bool]] = {}  # message id: {token: failed}
        self.claimed: dict[str, tuple[int, int]] = {}  # message id: (row id, token) received
        self.pool: list[Msg] = []  # messages of the consumer's queues ready at the claim
        self.taken: set[str] = set()  # those the claim took (delivered or dead-lettered)
        self.ambiguous = False  # a nack or a dead letter at claim: can't tell which

    def follow(self, m: Msg) -> None:
        found = self.rows.get(m.mid, [])
        assert len(found) <= 1, f"{m.mid} has {len(found)} rows: {found}"
        row = found[0] if found else None
        if row is not None and row.suspect:
            m.suspect = True  # reaped or released: claimed alone, ahead of the others
        letters = self.dead.get(m.mid, [])
        where = f"{m.mid[:8]} ({m.state}, consumer {self.cons.id} exchanging at {self.now})"
        if m.state in (ACKED, PURGED, DEAD):
            return  # the invariant checks that they did not move
        if m.state == READY:
            assert self._claimable(m, row, letters), f"{where}: became {row} / {letters}"
        elif m.state == DELAYED:
            if row is not None and row.state == schema.DELAYED:
                assert m.eta > self.now or not self.want, f"{where}: due, not promoted"
                return
            assert m.eta <= self.now and self.want and self._claimable(m, row, letters), (
                f"{where}: eta {m.eta} became {row} / {letters}")
        else:
            self._follow_lease(m, row, letters, where)

    def _follow_lease(self, m: Msg, row: Row | None, letters: list[DeadRow], where: str
                      ) -> None:
        assert m.expires is not None and m.token is not None
        valid = m.expires >= self.now
        settle = self.settling.get(m.mid, {}).get(m.token)
        if settle is not None and row is None:
            event("settled with the current token")
            if settle and letters:
                self.ambiguous = self.ambiguous or self._exhausted(m, letters)
                m.state, m.dead_id = DEAD, letters[0].id
                return
            if not settle and not letters:
                m.state = ACKED
                return
        assert settle is None or not valid, (
            f"{where}: settled with its valid token ({'nack' if settle else 'ack'})"
            f" but now {row} / {letters}")
        if row is not None and row.state == schema.LEASED and row.token == m.token:
            # Renewal runs at least every third of a lease: a lease of this consumer
            # written that long ago and still safely valid is renewed.
            mine = m.holder == self.cons.id and settle is None
            renew_due = mine and (m.expires - LEASE_MS + LEASE_MS // 3 + 2 <= self.now
                                  <= m.expires - MARGIN_MS)
            assert not renew_due or fresh_expiry(row.expires, self.now), (
                f"{where}: lease until {m.expires} not renewed")
            if row.expires != m.expires:
                event("a lease renewed")
                assert mine and fresh_expiry(row.expires, self.now), (
                    f"{where}: lease of consumer {m.holder} until {m.expires} "
                    f"changed to {row.expires}")
                m.expires = row.expires
            return
        assert not valid, (
            f"{where}: leased by consumer {m.holder} until {m.expires} (valid), "
            f"but now {row} / {letters}"
            + (" -- delivered again while that lease was valid" if self._new_lease(m, row)
               else ""))
        assert self._claimable(m, row, letters), (
            f"{where}: lapsed lease became {row} / {letters}")

    def _new_lease(self, m: Msg, row: Row | None) -> bool:
        lease = self.claimed.get(m.mid)
        return (row is not None and row.state == schema.LEASED and lease is not None
                and (row.id, row.token) == lease)

    @staticmethod
    def _exhausted(m: Msg, letters: list[DeadRow]) -> bool:
        return bool(letters) and m.claims >= MAX_DELIVERIES

    def _claimable(self, m: Msg, row: Row | None, letters: list[DeadRow]) -> bool:
        """The message was claimable at the claim: left ready, or taken by the claim."""
        mine = m.queue in self.cons.queues and self.want > 0
        if row is not None and row.state == schema.READY:
            if mine:
                self.pool.append(m)
            _ready(m)
            return True
        if mine and row is not None and self._new_lease(m, row):
            assert fresh_expiry(row.expires, self.now), f"{m.mid} claimed until {row}"
            self.pool.append(m)
            self.taken.add(m.mid)
            if m.state == LEASED:
                event("a lapsed lease claimed again")
            elif m.suspect:
                event("a released message claimed again")
            m.state, m.holder, m.token, m.expires = LEASED, self.cons.id, row.token, row.expires
            m.claims += 1
            return True
        if mine and row is None and self._exhausted(m, letters):
            event("dead-lettered at claim after too many deliveries")
            self.pool.append(m)
            self.taken.add(m.mid)
            m.state, m.dead_id = DEAD, letters[0].id
            return True
        return False


def _ready(m: Msg) -> None:
    m.state, m.holder, m.token, m.expires = READY, None, None, None


class BrokerMachine(RuleBasedStateMachine):
    """Random operations on one broker file; after each, the model and the file agree."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="liteq-model-")
        self.clock = FakeClock(START_MS)
        self.h = Harness(os.path.join(self.dir, "liteq.db"), self.clock)
        self.msgs: dict[str, Msg] = {}
        self.live: dict[int, Cons] = {}
        self.seq = 0
        self.next_id = 0

    def teardown(self) -> None:
        try:
            self.h.close([c.consumer for c in self.live.values()])
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- sending ---------------------------------------------------------------------------
    def _message(self, queue: str, priority: int | None, eta_offset: int | None) -> Message:
        options: dict[str, Any] = {}
        if priority is not None:
            options["priority"] = priority
        if eta_offset is not None:
            options["eta"] = self.clock.ms + eta_offset
        return Message(queue, "task", (), {}, options)

    def _sent(self, message: Message, delay: int | None) -> None:
        now = self.clock.ms
        if delay is not None:
            eta = now + delay
        else:
            eta = message.options.get("eta", now)
        self.seq += 1
        self.msgs[message.message_id] = Msg(
            message.message_id, message.queue_name, message.options.get("priority", 0), eta,
            self.seq, DELAYED if eta > now else READY)

    timings = st.one_of(
        st.tuples(st.none(), st.none()),
        st.tuples(st.integers(0, 3000), st.none()),  # delay
        st.tuples(st.none(), st.integers(-2000, 3000)),  # explicit ETA, maybe past
    )

    @rule(queue=st.sampled_from(QUEUES), priority=st.none() | st.integers(-2, 3),
          timing=timings)
    def send(self, queue: str, priority: int | None, timing: tuple) -> None:
        delay, eta_offset = timing
        message = self._message(queue, priority, eta_offset)
        self.h.broker.enqueue(message, delay=delay)
        self._sent(message, delay)

    @rule(specs=st.lists(st.tuples(st.sampled_from(QUEUES), st.none() | st.integers(-2, 3),
                                   st.none() | st.integers(-2000, 3000)),
                         min_size=1, max_size=5),
          delay=st.none() | st.integers(0, 3000))
    def send_many(self, specs: list[tuple], delay: int | None) -> None:
        messages = [self._message(q, p, e) for q, p, e in specs]
        self.h.broker.enqueue_many(messages, delay=delay)
        for message in messages:
            self._sent(message, delay)

    # -- consumers -------------------------------------------------------------------------
    consumer_queues = st.lists(st.sampled_from(QUEUES), min_size=1, max_size=3, unique=True)

    @initialize(queues=consumer_queues)
    def two_consumers(self, queues: list[str]) -> None:
        self.start_consumer(list(QUEUES), 4)
        self.start_consumer(queues, 2)

    @precondition(lambda self: len(self.live) < 4)
    @rule(queues=consumer_queues, prefetch=st.integers(1, 8))
    def start_consumer(self, queues: list[str], prefetch: int) -> None:
        self.next_id += 1
        pid = FIRST_PID + self.next_id
        consumer = self.h.consumer(queues, prefetch, pid)
        self.live[self.next_id] = Cons(self.next_id, pid, queues, consumer)

    def _pick(self, data: st.DataObject) -> Cons:
        return self.live[data.draw(st.sampled_from(sorted(self.live)), label="consumer")]

    @precondition(lambda self: self.live)
    @rule(data=st.data(), want=st.integers(0, 6), poll=st.booleans())
    def exchange(self, data: st.DataObject, want: int, poll: bool) -> None:
        """Settle some held messages (acked, or failed: dead-lettered) and claim up to want."""
        cons = self._pick(data)
        picked = data.draw(st.lists(st.sampled_from(range(len(cons.held))), unique=True)
                           if cons.held else st.just([]), label="settle")
        done = [cons.held[i] for i in picked]
        for proxy in done:
            if data.draw(st.booleans(), label=f"fail {proxy.message_id[:8]}"):
                proxy.fail()
        if poll and not done:
            want = 1
            proxy = cons.consumer.poll()  # the one-message interface
            received = [proxy] if proxy is not None else []
        else:
            received = self.h.exchange(cons.consumer, done, want)
        cons.held = [p for p in cons.held if all(p is not d for d in done)] + received
        self._after_exchange(cons, done, want, received)

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def worker_rounds(self, data: st.DataObject) -> None:
        """Every live consumer finishes what it holds (some fail) and claims a full batch."""
        for cons in list(self.live.values()):
            done = cons.held
            for proxy in done:
                if data.draw(st.integers(0, 9), label="fail") == 0:
                    proxy.fail()
            want = cons.consumer.prefetch
            received = self.h.exchange(cons.consumer, done, want)
            cons.held = received
            self._after_exchange(cons, done, want, received)

    @precondition(lambda self: any(c.held for c in self.live.values()))
    @rule(data=st.data())
    def return_unstarted(self, data: st.DataObject) -> None:
        """Give held messages back unstarted (a worker shutting down), by id and token."""
        cons = self.live[data.draw(st.sampled_from(
            sorted(i for i, c in self.live.items() if c.held)), label="consumer")]
        picked = data.draw(st.lists(st.sampled_from(range(len(cons.held))), min_size=1,
                                    unique=True), label="return")
        returned = [cons.held[i] for i in picked]
        cons.consumer.requeue(returned)
        cons.held = [p for p in cons.held if all(p is not r for r in returned)]
        now, rows = self.clock.ms, self.h.rows()
        for proxy in returned:
            m = self.msgs[proxy.message_id]
            _, token = self.h.lease_of(proxy)
            if m.state != LEASED or m.token != token:
                continue  # a stale token: nothing may change (the invariant checks it)
            row = self._one_row(m, rows)
            if row is not None and row.state == schema.READY:
                _ready(m)
                m.claims -= 1
            elif m.expires is not None and m.expires >= now:
                raise AssertionError(f"{m.mid} returned with its valid token stayed {row}")

    @precondition(lambda self: self.live)
    @rule(data=st.data(), release=st.booleans())
    def crash(self, data: st.DataObject, release: bool) -> None:
        """A worker process dies holding its messages; maybe the supervisor releases them."""
        cons = self._pick(data)
        del self.live[cons.id]
        self.h.crash(cons.consumer, cons.pid, release)
        if release:
            event("a crashed consumer's messages released")
            for m in self.msgs.values():
                if m.state == LEASED and m.holder == cons.id:
                    _ready(m)
                    m.suspect = True

    # -- time, dead letters, counters -----------------------------------------------------
    @rule(ms=st.one_of(st.integers(0, 3000), st.sampled_from(
        [1, LEASE_MS // 3, LEASE_MS // 3 + 1, LEASE_MS - 1, LEASE_MS, LEASE_MS + 1])))
    def advance_clock(self, ms: int) -> None:
        self.clock.ms += ms

    @precondition(lambda self: any(m.state == DEAD for m in self.msgs.values()))
    @rule(data=st.data(), by_queue=st.booleans())
    def requeue_dead_letters(self, data: st.DataObject, by_queue: bool) -> None:
        dead = [m for m in self.msgs.values() if m.state == DEAD]
        if by_queue:
            queue = data.draw(st.sampled_from(sorted({m.queue for m in dead})), label="queue")
            chosen = sorted((m for m in dead if m.queue == queue), key=lambda m: m.dead_id)
            moved = self.h.broker.requeue_dead_letters(queue=queue)
        else:
            chosen = data.draw(st.permutations(dead), label="dead")[:data.draw(
                st.integers(1, len(dead)), label="how many")]
            moved = self.h.broker.requeue_dead_letters([m.dead_id for m in chosen])
        assert moved == len(chosen)
        event("dead letters requeued")
        for m in chosen:
            self.seq += 1
            m.seq, m.eta, m.claims, m.dead_id, m.suspect = self.seq, self.clock.ms, 0, None, False
            _ready(m)

    @precondition(lambda self: any(m.state == DEAD for m in self.msgs.values()))
    @rule(data=st.data())
    def purge_dead_letters(self, data: st.DataObject) -> None:
        dead = [m for m in self.msgs.values() if m.state == DEAD]
        chosen = data.draw(st.lists(st.sampled_from(dead), min_size=1, unique_by=lambda m: m.mid),
                           label="purge")
        assert self.h.broker.purge_dead_letters([m.dead_id for m in chosen]) == len(chosen)
        for m in chosen:
            m.state, m.dead_id = PURGED, None

    @rule()
    def fold_counters(self) -> None:
        """After a fold, the counters alone (no uncounted tail) equal the rows."""
        counters = self.h.fold_and_read_counters()
        rows = {q: (r, d) for q, (r, d, _) in self.h.brute_counts().items() if r or d}
        assert counters == rows

    # -- invariants -----------------------------------------------------------------------
    @invariant()
    def database_matches_model(self) -> None:
        rows, dead = self.h.rows(), self.h.dead()
        unknown = (set(rows) | set(dead)) - set(self.msgs)
        assert not unknown, f"rows of messages never sent: {unknown}"
        for m in self.msgs.values():
            found, letters = rows.get(m.mid, []), dead.get(m.mid, [])
            where = f"{m.mid[:8]} ({m.state} in the model)"
            assert len(found) + len(letters) == (0 if m.state in (ACKED, PURGED) else 1), (
                f"{where}: rows {found}, dead letters {letters}")
            if m.state == DEAD:
                assert letters[0].id == m.dead_id and letters[0].queue == m.queue, where
                assert letters[0].priority == m.priority, f"{where}: priority lost"
            elif m.state in (READY, DELAYED, LEASED):
                row = found[0]
                state = {READY: schema.READY, DELAYED: schema.DELAYED, LEASED: schema.LEASED}
                assert row.state == state[m.state], f"{where}: row {row}"
                assert (row.queue, row.priority, row.eta) == (m.queue, m.priority, m.eta), (
                    f"{where}: row {row}")
                assert row.deliveries <= m.claims, f"{where}: {row.deliveries} deliveries " \
                    f"counted for {m.claims} claims"
                if m.state == LEASED:
                    assert (row.token, row.expires) == (m.token, m.expires), f"{where}: {row}"

    @invariant()
    def counters_equal_rows(self) -> None:
        assert self.h.reported_counts() == self.h.brute_counts()

    # -- following an exchange ----------------------------------------------------------------
    @staticmethod
    def _one_row(m: Msg, rows: dict[str, list[Row]]) -> Row | None:
        found = rows.get(m.mid, [])
        assert len(found) <= 1, f"{m.mid} has {len(found)} rows: {found}"
        return found[0] if found else None

    def _after_exchange(self, cons: Cons, done: list[MessageProxy], want: int,
                        received: list[MessageProxy]) -> None:
        """Move the model along what the exchange may have done, checking that it did
        nothing else: settle ``done``, maybe renew and reap, promote, claim in order."""
        view = ExchangeView(cons, self.clock.ms, want, self.h.rows(), self.h.dead())
        for proxy in done:
            view.settling.setdefault(proxy.message_id, {})[self.h.lease_of(proxy)[1]] = (
                proxy.failed)
        for proxy in received:
            assert proxy.message_id in self.msgs, f"received a message never sent: {proxy}"
            assert proxy.message_id not in view.claimed, f"{proxy.message_id} claimed twice"
            assert proxy.queue_name == self.msgs[proxy.message_id].queue, f"{proxy} moved queue"
            view.claimed[proxy.message_id] = self.h.lease_of(proxy)
        assert len(view.claimed) <= want, f"claimed {len(view.claimed)}, asked for {want}"
        for m in self.msgs.values():
            view.follow(m)
        self._check_claim_order(cons, want, view.pool, view.taken, view.ambiguous)
        unexplained = set(view.claimed) - view.taken
        assert not unexplained, f"received {unexplained} without a matching lease row"

    def _check_claim_order(self, cons: Cons, want: int, pool: list[Msg], taken: set[str],
                           ambiguous: bool) -> None:
        """Per queue the claim took a head of the ready messages in claim order; it took
        as many as it was asked for, or all. Released (suspect) messages may be held back."""
        for queue in cons.queues:
            plain = sorted((m for m in pool if m.queue == queue and not m.suspect),
                           key=lambda m: m.order)
            flags = [m.mid in taken for m in plain]
            assert flags == sorted(flags, reverse=True), (
                f"queue {queue}: claim order broken; ready at the claim (best first): "
                + ", ".join(f"{m.mid[:8]} p={m.priority} eta={m.eta} seq={m.seq}"
                            f"{' TAKEN' if m.mid in taken else ''}" for m in plain))
        # While the file holds suspects of its queues, a consumer claims one only alone and
        # nothing beside one it holds (even a lost one it has not handed back yet).
        suspects = (cons.consumer._solo is not None
                    or any(row.suspect and row.queue in cons.queues
                           for rows in self.h.rows().values() for row in rows))
        if not ambiguous and not suspects and not any(m.suspect for m in pool):
            assert len(taken) == min(want, len(pool)), (
                f"consumer {cons.id} asked for {want}, {len(pool)} were ready, "
                f"{len(taken)} claimed")


class LockWaitMachine(BrokerMachine):
    """The same, with exchanges whose write transaction waits for another connection's
    lock: leases written then must still last ``lease_ms`` from their commit."""

    @precondition(lambda self: self.live)
    @rule(data=st.data(), want=st.integers(0, 6),
          wait=st.integers(MARGIN_MS + 1, 2 * LEASE_MS))
    def exchange_after_lock_wait(self, data: st.DataObject, want: int, wait: int) -> None:
        cons = self._pick(data)
        done = list(cons.held)
        received = self.h.exchange(cons.consumer, done, want, lock_wait_ms=wait)
        cons.held = received
        self._after_exchange(cons, done, want, received)


BrokerMachine.TestCase.settings = settings(
    max_examples=3000 if SOAK else 300,
    stateful_step_count=120 if SOAK else 50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestBrokerModel = pytest.mark.timeout(3 * 3600 if SOAK else 300)(BrokerMachine.TestCase)

LockWaitMachine.TestCase.settings = settings(
    BrokerMachine.TestCase.settings, max_examples=1000 if SOAK else 100)
# Issue 8 item 4: lease times come from the clock read inside the transaction that writes
# them (it failed while they came from a clock read before waiting for the write lock).
TestLeaseTimesAfterALockWait = pytest.mark.timeout(3 * 3600 if SOAK else 300)(
    LockWaitMachine.TestCase)
