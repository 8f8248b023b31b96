"""Delivery promises of every broker (see brokers.py): requeue, stale acks, fail-fast join,
``enqueue_many`` and, where a broker offers it, enqueue inside the caller's transaction."""

from __future__ import annotations

import sqlite3
import time

import apsw
import pytest
from helpers import running_worker, wait_for

import liteq
from liteq.broker import Consumer, MessageProxy

from .brokers import ATOMIC_ENQUEUE_MANY, STALE_ACK_SAFE


def receive(consumer: Consumer, timeout: float = 20) -> MessageProxy:
    """The consumer's next message; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proxy = next(consumer)
        if proxy is not None:
            return proxy
    raise AssertionError(f"no message within {timeout}s")


def nothing_within(consumer: Consumer, seconds: float) -> bool:
    """True when the consumer receives nothing for ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if next(consumer) is not None:
            return False
    return True


def declare_job(broker: liteq.Broker) -> liteq.Actor:
    @liteq.actor(max_retries=0)
    def job(n):
        pass

    return job


# -- requeue -----------------------------------------------------------------------------
def test_a_requeued_message_is_delivered_again_and_finishes_once_acked(broker):
    job = declare_job(broker)
    sent = job.send(7)
    consumer = broker.consume("default", timeout=100)
    try:
        first = receive(consumer)
        assert first.message_id == sent.message_id
        consumer.requeue([first])
        again = receive(consumer)
        assert again.message_id == sent.message_id and again.args == (7,)
        with pytest.raises(liteq.QueueJoinTimeout):  # held, not finished
            broker.join("default", timeout=300)
        consumer.ack(again)
        broker.join("default", timeout=10000)
        assert nothing_within(consumer, 0.3)
    finally:
        consumer.close()
    assert broker.dead_letters == []


def test_requeue_of_nothing_is_harmless(broker):
    job = declare_job(broker)
    job.send(1)
    consumer = broker.consume("default", timeout=100)
    try:
        consumer.requeue([])
        consumer.ack(receive(consumer))
        broker.join("default", timeout=10000)
    finally:
        consumer.close()


# -- stale delivery handles --------------------------------------------------------------
@pytest.mark.parametrize("settle", ["ack", "nack"])
def test_a_stale_ack_or_nack_changes_nothing(broker, settle):
    """An earlier delivery's handle (given back, then delivered again) settles nothing."""
    if broker.contract_name not in STALE_ACK_SAFE:
        pytest.skip(f"{broker.contract_name} keeps no per-delivery token (brokers.py)")
    job = declare_job(broker)
    sent = job.send(1)
    consumer = broker.consume("default", timeout=100)
    try:
        stale = receive(consumer)
        consumer.requeue([stale])
        current = receive(consumer)
        assert current.message_id == sent.message_id
        stale.fail()
        getattr(consumer, settle)(stale)
        with pytest.raises(liteq.QueueJoinTimeout):  # the redelivery is still held
            broker.join("default", timeout=300)
        assert broker.dead_letters == []
        consumer.ack(current)
        broker.join("default", timeout=10000)
        assert nothing_within(consumer, 0.3)
    finally:
        consumer.close()
    assert broker.dead_letters == []


# -- fail-fast join ----------------------------------------------------------------------
def test_join_with_fail_fast_reraises_a_dead_lettered_messages_exception(broker):
    @liteq.actor(max_retries=0)
    def explode():
        raise ValueError("boom from the actor")

    @liteq.actor(queue_name="other", max_retries=0)
    def fine():
        pass

    explode.send()
    fine.send()
    with running_worker(broker, worker_threads=1):
        wait_for(lambda: len(broker.dead_letters) == 1, timeout=20)
        with pytest.raises(ValueError, match="boom from the actor"):
            broker.join("default", fail_fast=True, timeout=20000)
        broker.join("default", fail_fast=False, timeout=20000)  # no raise
        broker.join("default", timeout=20000)  # the contract brokers' default: no raise
        broker.join("other", fail_fast=True, timeout=20000)  # another queue's failure
    broker.flush_all()  # forgets the failures, as Dramatiq's does
    broker.join("default", fail_fast=True, timeout=5000)


# -- enqueue_many ------------------------------------------------------------------------
def enqueue_many(broker: liteq.Broker):
    method = getattr(broker, "enqueue_many", None)
    if method is None:
        pytest.skip(f"{broker.contract_name} has no enqueue_many yet (issue 10 item 4)")
    return method


def test_enqueue_many_sends_every_message_and_returns_what_workers_receive(broker):
    seen = []

    @liteq.actor
    def note(n):
        from liteq.middleware import CurrentMessage

        seen.append((n, CurrentMessage.get_current_message().message_id))

    broker.add_middleware(liteq.middleware.CurrentMessage())
    sent = enqueue_many(broker)([note.message(n) for n in range(50)])
    assert [m.args for m in sent] == [(n,) for n in range(50)]
    with running_worker(broker, worker_threads=2):
        broker.join("default", timeout=30000)
    assert sorted(seen) == sorted((m.args[0], m.message_id) for m in sent)


def test_enqueue_many_with_a_delay_holds_every_message(broker):
    ran = []

    @liteq.actor
    def note(n):
        ran.append(liteq.common.current_millis())

    sent_at = liteq.common.current_millis()
    enqueue_many(broker)([note.message(n) for n in range(3)], delay=300)
    with running_worker(broker, worker_threads=1):
        wait_for(lambda: len(ran) == 3, timeout=20)
    assert min(ran) >= sent_at + 300


def test_enqueue_many_of_nothing_sends_nothing(broker):
    declare_job(broker)
    assert list(enqueue_many(broker)([])) == []
    broker.join("default", timeout=5000)


def test_an_atomic_enqueue_many_with_one_bad_message_sends_none(broker):
    if broker.contract_name not in ATOMIC_ENQUEUE_MANY:
        pytest.skip(f"{broker.contract_name} sends a batch one message at a time")
    job = declare_job(broker)
    bad = job.message(3).copy(queue_name="undeclared")
    with pytest.raises(liteq.QueueNotFound):
        enqueue_many(broker)([job.message(1), job.message(2), bad])
    consumer = broker.consume("default", timeout=100)
    try:
        assert nothing_within(consumer, 0.3)
    finally:
        consumer.close()
    broker.join("default", timeout=5000)


# -- enqueue inside the caller's transaction ---------------------------------------------
def connect(kind: str, path: str):
    return apsw.Connection(path) if kind == "apsw" else sqlite3.connect(path, timeout=10)


@pytest.mark.parametrize("kind", ["apsw", "sqlite3"])
def test_a_send_in_the_callers_transaction_exists_only_if_it_commits(broker, kind):
    if not hasattr(broker, "transaction"):
        pytest.skip(f"{broker.contract_name} cannot write in the caller's transaction")
    ran = []

    @liteq.actor
    def process_order(order_id):
        ran.append(order_id)

    conn = connect(kind, broker.path)
    try:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
        with pytest.raises(RuntimeError), conn:
            conn.execute("INSERT INTO orders VALUES (1)")
            with broker.transaction(conn):
                process_order.send(1)
            raise RuntimeError("the order fails after the send")
        with conn:
            conn.execute("INSERT INTO orders VALUES (2)")
            with broker.transaction(conn):
                process_order.send(2)
            broker.enqueue(process_order.message(3), connection=conn)
        orders = [row[0] for row in conn.execute("SELECT id FROM orders")]
    finally:
        conn.close()
    assert orders == [2]
    with running_worker(broker, worker_threads=1):
        broker.join("default", timeout=20000)
    assert sorted(ran) == [2, 3]
