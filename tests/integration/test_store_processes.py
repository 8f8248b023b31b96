"""The SQLite broker across real processes: concurrency, kill -9, poison messages."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
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
        wait_for(lambda: broker.stats()["default"]["succeeded"] == 20000, timeout=120)
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
    assert broker.stats()["default"]["claimed"] == 10
    worker = liteq.Worker(broker, worker_threads=2, worker_timeout=100)
    worker.start()
    try:
        broker.join("default", timeout=30000)
    finally:
        worker.stop(timeout=5000)
    assert sorted(ran_numbers(tmp_path)) == list(range(10))
    assert broker.stats()["default"]["succeeded"] == 10


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


# --- lease renewal: a task longer than the lease -----------------------------------------

def declare_slow(broker: liteq.SqliteBroker, out_dir: str) -> liteq.Actor:
    @liteq.actor(broker=broker, actor_name="slow", max_retries=0)
    def slow(seconds: float) -> None:
        with open(os.path.join(out_dir, f"started-{os.getpid()}.txt"), "a") as f:
            f.write("started\n")
        time.sleep(seconds)

    return slow


def work_slowly_until(path: str, out_dir: str, stop, lease_ms: int) -> None:
    broker = liteq.SqliteBroker(path, lease_ms=lease_ms)
    declare_slow(broker, out_dir)
    worker = liteq.Worker(broker, worker_threads=2, worker_timeout=100)
    worker.start()
    stop.wait(120)
    worker.stop(timeout=20000)


def starts(out_dir) -> int:
    return sum(len(open(os.path.join(out_dir, name)).readlines())
               for name in os.listdir(out_dir) if name.startswith("started-"))


def test_a_task_longer_than_its_lease_runs_once(tmp_path):
    """Two worker processes, a 2 s task, a 500 ms lease: renewal keeps the lease valid,
    so the other process (reaping every lease_ms / 3) never runs a second copy."""
    path = str(tmp_path / "q.db")
    lease_ms = 500
    broker = liteq.SqliteBroker(path, lease_ms=lease_ms)
    slow = declare_slow(broker, str(tmp_path))
    stop = fork.Event()
    workers = [fork.Process(target=work_slowly_until, args=(path, str(tmp_path), stop, lease_ms))
               for _ in range(2)]
    try:
        for p in workers:
            p.start()
        wait_for(lambda: len(broker.workers()) == 2, timeout=30)
        slow.send(4 * lease_ms / 1000)

        def settled() -> bool:
            stats = broker.stats()["default"]
            waiting = stats["ready"] + stats["delayed"] + stats["claimed"]
            return stats["succeeded"] + stats["dead"] >= 1 and waiting == 0

        wait_for(settled, timeout=60)
    finally:
        stop.set()
        for p in workers:
            p.join(30)
            if p.is_alive():
                p.kill()
    assert starts(tmp_path) == 1
    stats = broker.stats()["default"]
    assert (stats["succeeded"], stats["dead"]) == (1, 0)


# --- requeued dead letters ---------------------------------------------------------------

def claim_one_and_report(path: str, conn) -> None:
    broker = liteq.SqliteBroker(path, max_deliveries=2)
    declare(broker)
    proxy = broker.consume("default").poll()
    conn.send(None if proxy is None else proxy.message_id)
    time.sleep(300)


def kill_until_dead_lettered(broker: liteq.SqliteBroker, path: str) -> list:
    """Claim in a child and kill -9 it (its leases released as the supervisor does)
    until the message is dead-lettered for too many deliveries."""
    def one_death() -> bool:
        parent_end, child_end = fork.Pipe()
        child = fork.Process(target=claim_one_and_report, args=(path, child_end))
        child.start()
        try:
            assert parent_end.poll(30)
            parent_end.recv()
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.join(10)
        broker.release_process(child.pid)
        return bool(broker.list_dead_letters())

    wait_for(one_death, timeout=60, interval=0)
    return broker.list_dead_letters()


def test_a_requeued_dead_letter_runs_again(tmp_path):
    """A dead letter of too many deliveries, requeued by ``liteq dlq requeue``, starts
    again with no deliveries counted: it runs instead of going straight back."""
    path = str(tmp_path / "q.db")
    broker = liteq.SqliteBroker(path, max_deliveries=2)
    record = declare(broker, str(tmp_path))
    record.send(7)
    [letter] = kill_until_dead_lettered(broker, path)
    assert letter.deliveries == 2 and letter.traceback is None
    env = dict(os.environ, LITEQ_BROKER_URL=f"sqlite:///{path}")
    proc = subprocess.run([sys.executable, "-m", "liteq", "dlq", "requeue", "--all"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    worker = liteq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        wait_for(lambda: broker.stats()["default"]["succeeded"] == 1 or broker.list_dead_letters(),
                 timeout=30)
    finally:
        worker.stop(timeout=5000)
    assert broker.list_dead_letters() == []
    assert ran_numbers(tmp_path) == [7]


def test_a_requeued_dead_letter_keeps_its_priority(tmp_path):
    """Requeued, a priority-5 dead letter is claimed before an older priority-0 message."""
    path = str(tmp_path / "q.db")
    broker = liteq.SqliteBroker(path, max_deliveries=2)
    record = declare(broker, str(tmp_path))
    urgent = record.send_with_options(args=(1,), priority=5)
    [letter] = kill_until_dead_lettered(broker, path)
    assert letter.priority == 5
    ordinary = record.send_with_options(args=(2,), priority=0)
    assert broker.requeue_dead_letters() == 1
    consumer = broker.consume("default")
    try:
        first = consumer.poll()
        second = consumer.poll()
    finally:
        consumer.close()
    assert [p and p.message_id for p in (first, second)] == [urgent.message_id,
                                                             ordinary.message_id]
