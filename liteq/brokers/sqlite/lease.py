"""The SQLite consumer: batched claims under a lease, batched acks, heartbeats and reaping.

Every round trip is one ``BEGIN IMMEDIATE`` transaction on the process's single
write connection that settles finished messages, does due maintenance (renew this
consumer's leases, return lapsed leases of others to the queue) and claims the next
batch. Every lease time is computed from the clock read inside the transaction that
writes it, so waiting for the write lock never shortens a lease. A claimed row carries
a lease token: an ack or nack holding a stale token changes nothing, and a worker
thread does not start a message whose lease it may no longer hold (``lease_until``).

A batch claim counts no delivery. Rows a dead or hung worker was running come back as
suspects (see ``liteq.brokers.sqlite.schema``): this consumer claims a suspect only when it holds no
other lease, runs it alone, and counts that delivery, so a message that kills its
process is dead-lettered after ``max_deliveries`` solo deaths and nothing else is.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import apsw

from ... import lease_log
from ...broker import BatchConsumer, MessageProxy
from ...common import current_millis
from ...errors import DecodeError
from ...message import Message
from ..failure import failure_reason
from . import counts
from . import schema as q
from .counts import Tally
from .wakeup import Waiter

if TYPE_CHECKING:
    # Type-only, and mutual by nature: the broker builds its consumers, which use it.
    from .broker import SqliteBroker

#: A claimed row: (id, lease token, encoded message, queue name).
ClaimedRow = tuple[int, int, bytes, str]

HOST = socket.gethostname()
#: Seconds between two heartbeats of a consumer in the worker registry.
HEARTBEAT_INTERVAL = 1.0


#: Seconds between two looks for suspects while a consumer has seen none.
SUSPECT_CHECK = 0.05


def lease_margin(lease_ms: int) -> int:
    """How long before its lease expires a worker stops trusting it (ms): covers the
    time between the check and the start, and a commit that waited on a checkpoint."""
    return min(max(50, lease_ms // 10), 2000)


def owner_prefix(pid: int, host: str = HOST) -> str:
    """The prefix of the lease owner names of every consumer in process ``pid``."""
    return f"{host}:{pid}:"


class SqliteConsumer(BatchConsumer):
    """Claims from ``queue_names`` of a SQLite broker; one per worker process."""

    def __init__(self, broker: SqliteBroker, queue_names: list[str], *, prefetch: int,
                 timeout: int) -> None:
        self.broker = broker
        self.db = broker.db
        self.queue_names = queue_names
        self.prefetch = prefetch
        self.timeout = timeout
        self.owner = owner_prefix(os.getpid()) + secrets.token_hex(4)
        self.lease_ms = broker.lease_ms
        self.margin = lease_margin(broker.lease_ms)
        #: The leases this consumer holds, by row id: claimed, not yet settled or returned.
        self.held: dict[int, MessageProxy] = {}
        #: The row id of a suspect held alone; nothing else is claimed meanwhile.
        self._solo: int | None = None
        #: When to look for suspects next (monotonic); at every claim while there are some.
        self._suspects_at = 0.0
        self._rotation = 0
        self._dirty = True
        self._snapshot: tuple[int, int] = (-1, -1)
        self._next_eta: int | None = None
        self._renew_at = 0.0
        self._reap_at = 0.0
        self._expire_at = 0.0
        self._beat_at = 0.0
        self._hold_until = 0.0
        self.started_at = current_millis()
        #: What the worker registry publishes (``Worker.describe``); set by the worker.
        self.describe: Callable[[], dict[str, Any]] = dict
        self.waiter = Waiter(broker.path, self._changed)

    # -- waiting --------------------------------------------------------------------
    def _version(self, conn: apsw.Connection) -> tuple[int, int]:
        # apsw types fetchone() as Optional; a PRAGMA always returns its one row
        return (conn.execute("PRAGMA data_version").fetchone()[0],  # type: ignore[index]
                self.db.local_enqueues)

    def _changed(self) -> bool:
        with self.db.lock:
            return self._version(self.db.conn) != self._snapshot

    def wait(self, timeout: float) -> None:
        now = time.monotonic()
        if self._dirty and now < self._hold_until:
            self.waiter.sleep(min(timeout, self._hold_until - now))
            return
        timeout = min(timeout, max(0.0, self._maintenance_at() - now))
        if self._next_eta is not None:
            timeout = min(timeout, max(0.0, (self._next_eta - current_millis()) / 1000))
        if self.waiter.wait(timeout) == "change":
            self._dirty = True

    def wakeup(self) -> None:
        self.waiter.wakeup()

    def _maintenance_at(self) -> float:
        renew = self._renew_at if self.held else float("inf")
        return min(renew, self._reap_at, self._expire_at, self._beat_at)

    # -- the round trip ---------------------------------------------------------------
    def exchange(self, done: list[MessageProxy], want: int) -> list[MessageProxy]:
        due = self._next_eta is not None and self._next_eta <= current_millis()
        claim = want > 0 and (self._dirty or due) and time.monotonic() >= self._hold_until
        if not done and not claim and time.monotonic() < self._maintenance_at():
            return []
        trip = self.db.write(self._round_trip, done, want if claim else 0)
        if done:
            self._forget([proxy.handle[0] for proxy in done])
        if trip.renewed is not None:
            self._renewed(trip.renewed, trip.now_ms)
        if done:
            self._record_failures(done)
        received = self._decode(trip.rows, trip.now_ms)
        if trip.solo and received:
            self._solo = received[0].handle[0]
        return received

    def _round_trip(self, conn: apsw.Connection, done: list[MessageProxy], want: int
                    ) -> _Trip:
        # Read inside the transaction: after the write lock was granted, on every retry.
        trip = _Trip(current_millis())
        if time.monotonic() >= self._beat_at:
            counts.fold(conn)
        tally = Tally(counts.watermark(conn))
        if done:
            self._settle(conn, done, trip.now_ms, tally.watermark)
        trip.renewed = self._maintain(conn, trip.now_ms, tally, done)
        if want:
            self._claim(conn, trip, want, tally, done)
        tally.apply(conn)
        return trip

    def _claim(self, conn: apsw.Connection, trip: _Trip, want: int, tally: Tally,
               done: list[MessageProxy]) -> None:
        now_ms = trip.now_ms
        self._snapshot = self._version(conn)
        tally.moved(conn.execute(q.PROMOTE_DUE, (now_ms,)).fetchall(), ready=1, delayed=-1)
        token = secrets.randbits(62)
        expires = now_ms + self.lease_ms
        if self._solo is not None and all(p.handle[0] != self._solo for p in done):
            self._dirty = True  # its suspect still runs alone
            return
        suspect = None
        if time.monotonic() >= self._suspects_at:
            # A few queries per claim: done only every SUSPECT_CHECK seconds while there
            # are none (the claim query skips suspects meanwhile).
            suspect = self._first_suspect(conn, now_ms, tally)
            self._suspects_at = 0.0 if suspect is not None else (
                time.monotonic() + SUSPECT_CHECK)
        if suspect is not None:
            # A suspect runs alone: claim nothing more until this process holds no lease.
            self._dirty = True
            settled = {p.handle[0] for p in done}
            if all(row_id in settled for row_id in self.held):  # it holds nothing else
                row_id, body, name = suspect
                conn.execute(q.SOLO_LEASE, (token, expires, self.owner, row_id))
                tally.move(row_id, name, ready=-1)
                trip.rows, trip.solo = [(row_id, token, body, name)], True
            return
        rows: list[ClaimedRow] = []
        names = self.queue_names
        start = self._rotation = (self._rotation + 1) % max(len(names), 1)
        for name in names[start:] + names[:start]:
            if len(rows) >= want:
                break
            claimed: list[tuple[Any, ...]] = conn.execute(
                q.CLAIM, (name, want - len(rows))).fetchall()
            rows += [(row_id, token, body, name) for row_id, body in claimed]
            tally.moved_from(name, claimed, ready=-1)
        self._dirty = len(rows) >= want
        if not self._dirty:
            # apsw types fetchone() as Optional; an aggregate (MIN) always returns one row
            self._next_eta = conn.execute(q.NEXT_ETA).fetchone()[0]  # type: ignore[index]
            self._hold_until = time.monotonic() + self.broker.batch_window_ms / 1000
        conn.executemany(q.LEASE, [(token, expires, self.owner, row[0]) for row in rows])
        trip.rows = rows

    def _first_suspect(self, conn: apsw.Connection, now_ms: int, tally: Tally
                       ) -> tuple[int, bytes, str] | None:
        """The first suspect of this consumer's queues; exhausted ones are dead-lettered."""
        for name in self.queue_names:
            suspects: list[tuple[Any, ...]] = conn.execute(q.CLAIM_SUSPECTS, (name,)).fetchall()
            for row_id, body, deliveries, priority in suspects:
                if deliveries < self.broker.max_deliveries:
                    return row_id, body, name
                tally.move(row_id, name, ready=-1)
                self._dead_letter_row(
                    conn, tally.watermark, row_id, name, body, priority, deliveries, now_ms,
                    f"delivered {deliveries} times without being acknowledged: its worker "
                    "died or hung every time it ran it alone")
        return None

    def _settle(self, conn: apsw.Connection, done: list[MessageProxy], now_ms: int,
                mark: int) -> None:
        """Ack or dead-letter ``done`` and count each attempt (see liteq.brokers.inspect):
        nacked = failed and dead-lettered; acked after raising = failed and retried."""
        per_queue: dict[str, list[int]] = {}
        execute = conn.execute
        for proxy in done:
            row_id, token, name = proxy.handle
            if proxy.failed:
                reason, trace = failure_reason(proxy)
                execute(q.DEAD_LETTER_LEASED, (
                    proxy._message.actor_name, proxy._message.encode(), reason, trace,
                    int(row_id != self._solo), now_ms, row_id, token,
                ))
            if counts.remove_leased(conn, mark, row_id, token):
                tally = per_queue.setdefault(name, [0, 0, 0, 0])
                if proxy.failed:
                    tally[1] += 1
                    tally[3] += 1
                elif proxy._exception is not None:
                    tally[1] += 1
                    tally[2] += 1
                else:
                    tally[0] += 1
        conn.executemany(q.COUNT_SETTLED, [(*tally, name) for name, tally in per_queue.items()])

    def _maintain(self, conn: apsw.Connection, now_ms: int, tally: Tally,
                  done: list[MessageProxy]) -> list[int] | None:
        """Due maintenance; returns the row ids whose lease was renewed, if it renewed."""
        now = time.monotonic()
        renewed = None
        if self.held and now >= self._renew_at:
            settled = {p.handle[0] for p in done}
            ids = [row_id for row_id in self.held if row_id not in settled]
            renewed = [row[0] for row in conn.execute(
                q.RENEW_LEASES, (now_ms + self.lease_ms, self.owner, json.dumps(ids)))]
            self._renew_at = now + self.lease_ms / 3000
        if now >= self._reap_at:
            lapsed = conn.execute(q.REAP_LAPSED, (now_ms,)).fetchall()
            if lapsed:
                self._suspects_at = 0.0
                tally.moved(lapsed, ready=1)
                self._dirty = True
            self._reap_at = now + min(self.lease_ms / 3000, 5.0)
        if now >= self._beat_at:
            info = self.describe()
            conn.execute(q.HEARTBEAT, (
                self.owner, os.getpid(), HOST, json.dumps(self.queue_names),
                info.get("threads", 0), self.started_at, now_ms,
                json.dumps(info.get("running", [])), json.dumps(info.get("running_queues", {})),
                info.get("processed", 0), info.get("succeeded", 0), info.get("failed", 0),
                json.dumps(info.get("activity", {})),
            ))
            self._beat_at = now + HEARTBEAT_INTERVAL
        if now >= self._expire_at:
            conn.execute(q.EXPIRE_DEAD, (now_ms - self.broker.dead_letter_ttl,))
            self._expire_at = now + 3600
        return renewed

    def _renewed(self, renewed: list[int], now_ms: int) -> None:
        """Trust the renewed leases until ``now_ms`` + lease − margin; the others of
        ``held`` were reaped (this process was stopped or starved): never start them."""
        until = now_ms + self.lease_ms - self.margin
        kept = set(renewed)
        for row_id, proxy in self.held.items():
            proxy.lease_until = until if row_id in kept else 0
        if lease_log.enabled:
            lease_log.leases([p for i, p in self.held.items() if i in kept],
                             now_ms + self.lease_ms)

    def _forget(self, row_ids: list[int]) -> None:
        """This consumer no longer holds rows ``row_ids`` (settled or handed back)."""
        pop = self.held.pop
        for row_id in row_ids:
            pop(row_id, None)
        if self._solo is not None and self._solo not in self.held:
            self._solo = None

    def _dead_letter_row(self, conn: apsw.Connection, mark: int, row_id: int, name: str,
                         body: bytes, priority: int, deliveries: int, now_ms: int,
                         reason: str) -> None:
        try:
            message = Message.decode(body)
            message_id, actor_name = message.message_id, message.actor_name
        except DecodeError:
            message_id, actor_name = "", None
        conn.execute(q.DEAD_LETTER_BODY, (name, message_id, actor_name, priority, body,
                                          reason, None, deliveries, now_ms))
        conn.execute(q.COUNT_SETTLED, (0, 0, 0, 1, name))
        counts.remove(conn, mark, row_id)

    def _decode(self, rows: list[ClaimedRow], now_ms: int) -> list[MessageProxy]:
        """Proxies of claimed rows, trusted until ``now_ms`` + lease − margin."""
        proxies, bad = [], []
        decode = Message.decode
        held = self.held
        until = now_ms + self.lease_ms - self.margin
        for row_id, token, body, name in rows:
            try:
                proxy = MessageProxy(decode(body), (row_id, token, name))
            except DecodeError as e:
                bad.append((row_id, token, body, name, str(e)))
                continue
            proxy.lease_until = until
            held[row_id] = proxy
            proxies.append(proxy)
        if bad:
            self.db.write(self._dead_letter_undecodable, bad, current_millis())
        if lease_log.enabled and proxies:
            lease_log.leases(proxies, now_ms + self.lease_ms)
        return proxies

    def _dead_letter_undecodable(self, conn: apsw.Connection,
                                 bad: list[tuple[int, int, bytes, str, str]],
                                 now_ms: int) -> None:
        mark = counts.watermark(conn)
        for row_id, token, body, name, error in bad:
            self.broker.logger.error("dead-lettering an undecodable message on %s: %s",
                                     name, error)
            conn.execute(q.DEAD_LETTER_BODY, (name, "", None, 0, body,
                                              f"undecodable: {error}", None, 1, now_ms))
            if counts.remove_leased(conn, mark, row_id, token):
                conn.execute(q.COUNT_SETTLED, (0, 0, 0, 1, name))

    def _record_failures(self, done: list[MessageProxy]) -> None:
        for proxy in done:
            if proxy.failed and proxy._exception is not None:
                self.broker.record_failure(proxy.handle[2], proxy._exception)

    def add_queue(self, queue_name: str) -> None:
        if queue_name not in self.queue_names:
            self.queue_names = [*self.queue_names, queue_name]
            self._dirty = True
            self.wakeup()

    # -- the one-message interface (``next(consumer)``, ``ack``, ``nack``) -----------------
    def poll(self) -> MessageProxy | None:
        self._dirty = True
        return super().poll()

    # -- shutdown ---------------------------------------------------------------------
    def requeue(self, messages: Iterable[MessageProxy]) -> None:
        """Give unstarted messages back at once, without counting a delivery."""
        params = [(p.handle[0], p.handle[1]) for p in messages]
        if params:
            try:
                self.db.write(return_unstarted, params)
            finally:
                # Given back or not, no longer renewed: if the write failed they lapse.
                self._forget([row_id for row_id, _ in params])

    def close(self) -> None:
        """Leave the worker registry and release the wake-up resources."""
        self.db.write(lambda conn: conn.execute(q.UNREGISTER, (self.owner,)))
        self.waiter.close()


class _Trip:
    """What one round trip did: its clock, the rows it claimed, the leases it renewed."""

    __slots__ = ("now_ms", "rows", "renewed", "solo")

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms
        self.rows: list[ClaimedRow] = []
        self.renewed: list[int] | None = None
        self.solo = False


def return_unstarted(conn: apsw.Connection, params: list[tuple[int, int]]) -> None:
    """Make leased rows (id, token) ready again; a suspect gives back its delivery."""
    tally = Tally(counts.watermark(conn))
    for row_id, token in params:
        tally.moved(conn.execute(q.RETURN_UNSTARTED, (row_id, token)).fetchall(), ready=1)
    tally.apply(conn)
