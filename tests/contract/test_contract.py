"""What every broker promises, run unchanged over each of them (see brokers.py)."""

from __future__ import annotations

import threading
import time

import pytest
from helpers import running_worker, wait_for

import liteq
from liteq.common import current_millis
from liteq.results import Results
from liteq.results.backends import StubBackend

from .brokers import PRIORITY_ORDERED


def test_a_sent_message_runs_once_and_equals_what_the_worker_received(broker):
    received = []

    @liteq.actor(max_retries=0)
    def add(x, y):
        from liteq.middleware import CurrentMessage

        received.append((x + y, CurrentMessage.get_current_message()))

    broker.add_middleware(liteq.middleware.CurrentMessage())
    sent = add.send(1, 2)
    with running_worker(broker, worker_threads=2):
        broker.join("default", timeout=20000)
    [(total, message)] = received
    assert total == 3
    assert message.message_id == sent.message_id
    assert message.args == sent.args and message.actor_name == "add"


def test_many_messages_all_run(broker):
    seen = set()
    lock = threading.Lock()

    @liteq.actor
    def note(n):
        with lock:
            seen.add(n)

    for n in range(300):
        note.send(n)
    with running_worker(broker, worker_threads=4):
        broker.join("default", timeout=30000)
    assert seen == set(range(300))


def test_a_delayed_message_waits_for_its_eta(broker):
    ran = {}

    @liteq.actor
    def stamp():
        ran["at"] = current_millis()

    sent_at = current_millis()
    stamp.send_with_options(delay=300)
    with running_worker(broker, worker_threads=1):
        wait_for(lambda: "at" in ran, timeout=20)
    assert ran["at"] >= sent_at + 300


def test_higher_priority_runs_first(broker):
    if broker.contract_name not in PRIORITY_ORDERED:
        pytest.skip(f"{broker.contract_name} does not order by priority")
    order = []

    @liteq.actor
    def job(name):
        order.append(name)

    for n in range(5):
        job.send_with_options(args=(f"low{n}",), priority=0)
    job.send_with_options(args=("high",), priority=10)
    with running_worker(broker, worker_threads=1):
        broker.join("default", timeout=20000)
    assert order[0] == "high"
    assert sorted(order) == sorted(["high"] + [f"low{n}" for n in range(5)])


def test_exhausted_retries_end_in_dead_letters(broker):
    attempts = []

    @liteq.actor(max_retries=2, min_backoff=10, max_backoff=20)
    def flaky():
        attempts.append(1)
        raise RuntimeError("always")

    flaky.send()
    with running_worker(broker, worker_threads=1):
        broker.join("default", timeout=30000)
        wait_for(lambda: len(broker.dead_letters) == 1, timeout=20)
    assert len(attempts) == 3


def test_results_come_back(broker):
    backend = StubBackend()
    broker.add_middleware(Results(backend=backend))

    @liteq.actor(store_results=True)
    def calculate(x, y):
        return x + y

    with running_worker(broker, worker_threads=1):
        message = calculate.send(5, 3)
        assert backend.get_result(message, block=True, timeout=20000) == 8


def test_join_times_out_on_a_queue_nobody_drains(broker):
    @liteq.actor
    def idle():
        pass

    idle.send()
    started = time.monotonic()
    with pytest.raises(liteq.QueueJoinTimeout):
        broker.join("default", timeout=200)
    assert time.monotonic() - started < 10


def test_flush_drops_waiting_messages(broker):
    ran = []

    @liteq.actor
    def job():
        ran.append(1)

    for _ in range(5):
        job.send()
    broker.flush("default")
    broker.join("default", timeout=5000)
    with running_worker(broker, worker_threads=1):
        broker.join("default", timeout=5000)
    assert ran == []
