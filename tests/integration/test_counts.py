"""The ready/delayed counters of brokers/sqlite/counts.py agree with the rows, whatever happens."""

from __future__ import annotations

import os
import random

import apsw

import liteq
from liteq.brokers.sqlite import schema


def brute_counts(broker: liteq.SqliteBroker) -> dict[str, dict[str, int]]:
    names = {schema.READY: "ready", schema.DELAYED: "delayed", schema.LEASED: "claimed"}
    result: dict[str, dict[str, int]] = {}
    for queue, state, count in broker.db.read(
            "SELECT queue, state, count(*) FROM liteq_messages WHERE state != ?"
            " GROUP BY queue, state", (schema.TOMBSTONE,)):
        result.setdefault(queue, {"ready": 0, "delayed": 0, "claimed": 0})[names[state]] = count
    return result


def reported_counts(broker: liteq.SqliteBroker) -> dict[str, dict[str, int]]:
    return {queue: {k: v[k] for k in ("ready", "delayed", "claimed")}
            for queue, v in broker.stats().items()
            if v["ready"] or v["delayed"] or v["claimed"]}


def test_counts_match_the_rows_through_random_operations(db_path):
    broker = liteq.SqliteBroker(db_path, lease_ms=100, max_deliveries=2)

    @liteq.actor(broker=broker)
    def a(n):
        pass

    @liteq.actor(broker=broker, queue_name="other")
    def b(n):
        pass

    rng = random.Random(11)
    consumers = [broker.consume(["default", "other"]) for _ in range(2)]
    held: list[list] = [[], []]
    app = apsw.Connection(db_path)
    app.set_busy_timeout(5000)
    for step in range(400):
        op = rng.randrange(12)
        actor = rng.choice([a, b])
        if op <= 2:
            actor.send_with_options(args=(step,), delay=rng.choice([None, None, 0, 30, 5000]),
                                    priority=rng.randint(0, 3))
        elif op == 3:
            broker.enqueue_many([actor.message(i) for i in range(rng.randint(1, 30))],
                                delay=rng.choice([None, 20]))
        elif op == 4:
            with app, broker.transaction(app):
                actor.send(step)
        elif op in (5, 6, 7):
            i = rng.randrange(2)
            consumer = consumers[i]
            done = held[i][: rng.randint(0, len(held[i]))]
            for proxy in done:
                if rng.random() < 0.2:
                    proxy.fail()
            held[i] = held[i][len(done):]
            consumer._dirty = True
            consumer._hold_until = 0
            if rng.random() < 0.3:
                consumer._beat_at = 0
            if rng.random() < 0.3:
                consumer._reap_at = 0
            held[i] += consumer.exchange(done, rng.randint(0, 20))
        elif op == 8:
            i = rng.randrange(2)
            consumers[i].requeue(held[i])
            held[i] = []
        elif op == 9 and rng.random() < 0.3:
            broker.flush(rng.choice(["default", "other"]))
        elif op == 10:
            broker.requeue_dead_letters(queue=rng.choice(["default", "other"]))
        elif op == 11 and rng.random() < 0.2:
            broker.release_process(os.getpid())
            held = [[], []]
        assert reported_counts(broker) == brute_counts(broker), f"after step {step} (op {op})"
    watermark = broker.db.read(schema.WATERMARK)[0][0]
    assert watermark > 0, "the consumers never folded the new rows in"
