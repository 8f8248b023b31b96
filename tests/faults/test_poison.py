"""A message that kills its worker process is dead-lettered alone: the messages claimed
with it (running beside it or only prefetched) run normally.

Real ``liteq worker`` pools and ``os._exit`` in a task; on the SQLite broker.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import signal
import time

import pytest
from helpers import wait_for
from pools import enqueue, queue_idle, records

import liteq
from liteq.store import SqliteBroker

fork = multiprocessing.get_context("fork")


def dead_letters(tmp_path) -> list:
    broker = SqliteBroker(str(tmp_path / "q.db"), middleware=[])
    try:
        return broker.list_dead_letters()
    finally:
        broker.close()


def innocents_ran(tmp_path) -> collections.Counter:
    return collections.Counter(n for n, _ in records(tmp_path) if not n.startswith("poison"))


@pytest.mark.slow
@pytest.mark.parametrize("prefetch, innocents", [(32, 40), (256, 256)])
def test_a_poison_message_is_dead_lettered_alone(tmp_path, pools, prefetch, innocents):
    """1 process x 8 threads: the poison message is claimed with its neighbours (up to
    ``prefetch``, 200 ms each); after its deaths only it is dead-lettered, every
    neighbour runs, and the recovery ends within a minute."""
    enqueue(tmp_path, "poison", [(0,)])
    enqueue(tmp_path, "record", [(n,) for n in range(innocents)], sleep_ms=200)
    started = time.monotonic()
    pool = pools("-p", "1", "-t", "8", "--prefetch", str(prefetch),
                 extra_env={"LITEQ_TEST_MAX_DELIVERIES": "3"})
    wait_for(lambda: len(innocents_ran(tmp_path)) == innocents and dead_letters(tmp_path),
             timeout=60)
    elapsed = time.monotonic() - started
    wait_for(lambda: queue_idle(tmp_path), timeout=30)
    [letter] = dead_letters(tmp_path)
    assert letter.actor_name == "poison", letter
    assert "delivered 3 times" in letter.reason
    poison_runs = [n for n, _ in records(tmp_path) if n.startswith("poison")]
    # One death in the first batch, then three alone.
    assert len(poison_runs) == 4, poison_runs
    ran = innocents_ran(tmp_path)
    assert set(ran) == {str(n) for n in range(innocents)}
    # Only the (up to 7) neighbours that were running when it died run a second time.
    assert sum(ran.values()) - innocents <= 7, ran
    print(f"{innocents} innocents x 200 ms behind a poison message (prefetch {prefetch}): "
          f"all ran and the poison was dead-lettered {elapsed:.1f}s after the pool started")
    pool.signal(signal.SIGTERM)
    assert pool.wait(30) == 0


def _embedded_worker(path: str) -> None:
    """A ``Worker`` in a process of its own, no supervisor: its death is found out only
    when its leases lapse."""
    broker = liteq.SqliteBroker(path, max_deliveries=2, lease_ms=300)

    @liteq.actor(broker=broker, max_retries=0)
    def poison() -> None:
        os._exit(13)

    @liteq.actor(broker=broker, max_retries=0)
    def innocent(n: int) -> None:
        with open(path + ".ran", "a") as f:
            f.write(f"{n}\n")

    worker = liteq.Worker(broker, worker_threads=4, worker_timeout=50, prefetch=16)
    worker.start()
    time.sleep(120)


def test_without_a_supervisor_lapsed_leases_make_suspects_and_only_the_poison_dies(
        tmp_path):
    """An embedded worker killed by a poison message: nobody knows what it was running,
    so every lapsed lease becomes a suspect; each runs alone and only the poison is
    dead-lettered."""
    path = str(tmp_path / "q.db")
    broker = liteq.SqliteBroker(path, max_deliveries=2, lease_ms=300)
    broker.declare_queue("default")
    broker.enqueue(liteq.Message("default", "poison", (), {}, {}))
    broker.enqueue_many([liteq.Message("default", "innocent", (n,), {}, {})
                         for n in range(12)])

    def ran() -> list[str]:
        try:
            with open(path + ".ran") as f:
                return f.read().split()
        except FileNotFoundError:
            return []

    deaths = 0
    deadline = time.monotonic() + 60
    while not (broker.list_dead_letters() and len(set(ran())) == 12):
        assert time.monotonic() < deadline, (deaths, ran(), broker.list_dead_letters())
        child = fork.Process(target=_embedded_worker, args=(path,))
        child.start()
        try:
            wait_for(lambda c=child: not c.is_alive()
                     or (broker.list_dead_letters() and len(set(ran())) == 12), timeout=30)
        finally:
            if child.is_alive():
                os.kill(child.pid, signal.SIGKILL)
            child.join(10)
        deaths += child.exitcode == 13
    [letter] = broker.list_dead_letters()
    assert letter.actor_name == "poison"
    assert sorted(set(ran()), key=int) == [str(n) for n in range(12)]
    assert deaths == 3  # one in a batch, then max_deliveries (2) alone
    broker.close()
