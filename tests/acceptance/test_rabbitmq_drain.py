"""``liteq worker -p 2 -t 8`` drains 20,000 messages from a real RabbitMQ, again and again.

A benchmark run once saw such a drain stop part-way (issue 8, item 8). Each run here
queues N no-op messages on a fresh queue, starts a real pool and requires every message
to run exactly once, failing as soon as the pool makes no progress for ``STALL`` s.
Two runs by default; ``LITEQ_SOAK=1`` makes it ten, ``LITEQ_DRAIN_RUNS=N`` N. A consumer
whose channel the server closed (a silent, permanent stall before) is checked on its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from contract.brokers import delete_queues
from helpers import wait_for
from pools import Pool

pytest.importorskip("pika")
from liteq.brokers.rabbitmq import RabbitmqBroker  # noqa: E402
from liteq.message import Message  # noqa: E402

N = 20000
#: Drains per test run: 2, 10 with LITEQ_SOAK=1, or LITEQ_DRAIN_RUNS (to hunt a rare stall).
RUNS = int(os.environ.get("LITEQ_DRAIN_RUNS")
           or (10 if os.environ.get("LITEQ_SOAK") == "1" else 2))
#: Seconds without a single task run that count as a stall.
STALL = 20.0
#: Whole-drain deadline (a loaded 2-core machine drains 20,000 in a few seconds).
DEADLINE = 180.0


def runs_recorded(directory: Path) -> list[int]:
    """Every recorded run (message argument), from every process's record file."""
    found: list[int] = []
    for path in directory.glob("ran-*"):
        found += [int(line) for line in path.read_bytes().split()]
    return found


def py_spy_dump(pool: Pool) -> str:
    """Where the pool's threads wait (``py-spy dump``, if installed), for a stall report."""
    binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not os.path.exists(binary):
        return "(py-spy is not installed)"
    dumps = []
    for pid in pool.children():
        done = subprocess.run([binary, "dump", "--pid", str(pid)], capture_output=True,
                              text=True, timeout=30)
        dumps.append(done.stdout + done.stderr)
    return "\n".join(dumps)


def enqueue(url: str, queue: str, n: int) -> None:
    broker = RabbitmqBroker(url=url, middleware=[])
    try:
        broker.declare_queue(queue)
        for i in range(n):
            broker.enqueue(Message(queue, "noop", (i,), {}, {}))
    finally:
        broker.close()


@pytest.mark.parametrize("run", range(RUNS))
def test_pool_drains_20000_without_stalling(run, rabbitmq_url, tmp_path):
    queue = f"drain{uuid.uuid4().hex[:10]}"
    records = tmp_path / "records"
    records.mkdir()
    enqueue(rabbitmq_url, queue, N)
    env = dict(os.environ, LITEQ_BROKER_URL=rabbitmq_url, LITEQ_TEST_QUEUE=queue,
               LITEQ_TEST_RECORD_DIR=str(records), PYTHONUNBUFFERED="1")
    pool = Pool(tmp_path, env, "--processes", "2", "--threads", "8",
                modules=("rabbitmq_drain_tasks",))
    try:
        started = time.monotonic()
        last_count, last_progress = -1, started
        while True:
            count = sum(p.stat().st_size for p in records.glob("ran-*"))
            now = time.monotonic()
            if count != last_count:
                last_count, last_progress = count, now
            if len(runs_recorded(records)) >= N:
                break
            assert pool.proc.poll() is None, f"the pool exited:\n{pool.output()[-3000:]}"
            if now - last_progress > STALL or now - started > DEADLINE:
                ran = len(runs_recorded(records))
                pytest.fail(f"stalled: {ran} of {N} ran, none in the last "
                            f"{now - last_progress:.0f} s (run {run})\n"
                            f"{pool.output()[-3000:]}\n{py_spy_dump(pool)}")
            time.sleep(0.05)
        pool.signal(15)
        assert pool.wait(60) == 0, pool.output()[-3000:]
    finally:
        pool.kill()
    ran = runs_recorded(records)
    assert len(ran) == N and set(ran) == set(range(N)), (
        f"{len(ran)} runs of {len(set(ran))} distinct messages for {N} sent")
    broker = RabbitmqBroker(url=rabbitmq_url, middleware=[])
    try:
        broker.declare_queue(queue)
        assert broker.get_queue_message_counts(queue) == (0, 0, 0)
    finally:
        broker.close()


def test_a_consumer_whose_channel_the_server_closed_reconnects(rabbitmq_url, caplog):
    """RabbitMQ closes a channel on a channel-level error (here an unknown delivery tag;
    also a delivery held past ``consumer_timeout``). Seen while waiting, pika says
    nothing; the consumer used to wait on its open connection forever."""
    queue = f"t_{uuid.uuid4().hex[:10]}"
    broker = RabbitmqBroker(url=rabbitmq_url, middleware=[])
    consumer = None
    try:
        broker.declare_queue(queue)
        consumer = broker.consume(queue, prefetch=4, timeout=100)
        consumer._channel.basic_ack(999_999)  # the server answers with Channel.Close (406)
        consumer.wait(0.5)
        for i in range(3):
            broker.enqueue(Message(queue, "noop", (i,), {}, {}))
        received: list = []

        def got_all() -> bool:
            received.extend(consumer.exchange([], 10))
            if len(received) < 3:
                consumer.wait(0.1)
            return len(received) >= 3

        wait_for(got_all, timeout=15)
        assert sorted(m.args[0] for m in received) == [0, 1, 2]
        consumer.exchange(received, 0)
        assert "unknown delivery tag" in caplog.text
    finally:
        if consumer is not None:
            consumer.close()
        broker.close()
        delete_queues(rabbitmq_url, [queue])
