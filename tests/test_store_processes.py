"""The SQLite broker across real processes: concurrency, kill -9, poison messages."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest
from helpers import wait_for

import liteq

fork = multiprocessing.get_context("fork")


def declare(broker: liteq.SqliteBroker, out_dir: str | None = None) -> liteq.Actor:
    @liteq.actor(broker=broker, actor_name="record")
    def record(n: int) -> None:
        with open(os.path.join(out_dir, f"ran-{os.getpid()}.txt"), "a") as f:
            f.write(f"{n}\n")

    return record


def consume_until(path: str, out_dir: str, stop, **broker_kwargs) -> None:
    broker = liteq.SqliteBroker(path, **broker_kwargs)
    declare(broker, out_dir)
    worker = liteq.Worker(broker, worker_threads=4, worker_timeout=100)
    worker.start()
    stop.wait(300)
    worker.stop(timeout=10000)


def produce(path: str, start: int, count: int) -> None:
    broker = liteq.SqliteBroker(path)
    record = declare(broker)
    for n in range(start, start + count):
        record.send(n)


def ran_numbers(out_dir) -> list[int]:
    numbers = []
    for name in os.listdir(out_dir):
        if name.startswith("ran-"):
            with open(os.path.join(out_dir, name)) as f:
                numbers += [int(line) for line in f]
    return numbers


@pytest.mark.slow
def test_four_producers_two_consumers_each_message_exactly_once(tmp_path):
    path = str(tmp_path / "q.db")
    broker = liteq.SqliteBroker(path)
    declare(broker)
    stop = fork.Event()
    consumers = [fork.Process(target=consume_until, args=(path, str(tmp_path), stop))
                 for _ in range(2)]
    producers = [fork.Process(target=produce, args=(path, i * 5000, 5000)) for i in range(4)]
    try:
        for p in consumers + producers:
            p.start()
        for p in producers:
            p.join(120)
            assert p.exitcode == 0
        wait_for(lambda: broker.stats()["default"]["done"] == 20000, timeout=120)
    finally:
        stop.set()
        for p in consumers + producers:
            p.join(30)
            if p.is_alive():
                p.kill()
    numbers = ran_numbers(tmp_path)
    assert len(numbers) == 20000
    assert sorted(numbers) == list(range(20000))
    assert broker.stats()["default"]["ready"] == 0


def claim_and_hang(path: str, conn) -> None:
    broker = liteq.SqliteBroker(path, lease_ms=500)
    declare(broker)
    consumer = broker.consume("default")
    claimed = consumer.exchange([], 10)
    conn.send([p.message_id for p in claimed])
    time.sleep(300)


def test_messages_of_a_killed_consumer_run_again_after_the_lease_lapses(tmp_path):
    path = str(tmp_path / "q.db")
    broker = liteq.SqliteBroker(path, lease_ms=500)
    record = declare(broker, str(tmp_path))
    sent = [record.send(n).message_id for n in range(10)]
    parent_end, child_end = fork.Pipe()
    child = fork.Process(target=claim_and_hang, args=(path, child_end))
    child.start()
    try:
        assert parent_end.poll(30)
        assert sorted(parent_end.recv()) == sorted(sent)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
    assert broker.stats()["default"]["running"] == 10
    worker = liteq.Worker(broker, worker_threads=2, worker_timeout=100)
    worker.start()
    try:
        broker.join("default", timeout=30000)
    finally:
        worker.stop(timeout=5000)
    assert sorted(ran_numbers(tmp_path)) == list(range(10))
    assert broker.stats()["default"]["done"] == 10


def run_worker_forever(path: str) -> None:
    broker = liteq.SqliteBroker(path, max_deliveries=3)

    @liteq.actor(broker=broker)
    def crash() -> None:
        os._exit(3)

    worker = liteq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    time.sleep(300)


def test_a_message_that_kills_its_worker_every_time_is_dead_lettered(tmp_path):
    path = str(tmp_path / "q.db")
    broker = liteq.SqliteBroker(path, max_deliveries=3)

    @liteq.actor(broker=broker)
    def crash() -> None:
        os._exit(3)

    crash.send()
    deaths = 0
    for _ in range(6):
        child = fork.Process(target=run_worker_forever, args=(path,))
        child.start()
        try:
            wait_for(lambda c=child: not c.is_alive() or broker.list_dead_letters(), timeout=30)
        finally:
            if child.is_alive():
                os.kill(child.pid, signal.SIGKILL)
            child.join(10)
        if child.exitcode == 3:
            deaths += 1
            assert broker.release_process(child.pid) == 1
        if broker.list_dead_letters():
            break
    [letter] = broker.list_dead_letters()
    # The first death is in a batch (it counts nothing but makes the message a suspect);
    # then each death while it runs alone counts a delivery.
    assert deaths == 4
    assert "delivered 3 times" in letter.reason
    assert letter.deliveries == 3
    assert broker.db.read("SELECT count(*) FROM liteq_messages WHERE state != 3")[0][0] == 0
