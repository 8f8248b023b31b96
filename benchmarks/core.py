"""Core figures of the SQLite broker in one process: single and bulk enqueue, drain, pickup.

Usage: python benchmarks/core.py [N]
Prints a table; no-op tasks on a fresh file database with default settings.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import threading
import time

from rich.console import Console
from rich.table import Table

import liteq


def main(n: int = 20000) -> None:
    directory = tempfile.mkdtemp(prefix="liteq-bench-")
    broker = liteq.SqliteBroker(os.path.join(directory, "bench.db"))
    finished = threading.Event()
    count = [0]
    target = [n]

    @liteq.actor(broker=broker)
    def noop(i: int) -> None:
        count[0] += 1
        if count[0] >= target[0]:
            finished.set()

    rows = []
    start = time.perf_counter()
    for i in range(n):
        noop.send(i)
    rows.append(("enqueue, one .send() at a time", n / (time.perf_counter() - start), "msg/s"))

    messages = [noop.message(i) for i in range(n)]
    start = time.perf_counter()
    for chunk in range(0, n, 1000):
        broker.enqueue_many(messages[chunk:chunk + 1000])
    rows.append(("bulk enqueue, 1000 per transaction", n / (time.perf_counter() - start), "msg/s"))

    target[0] = 2 * n
    worker = liteq.Worker(broker, worker_threads=8)
    start = time.perf_counter()
    worker.start()
    finished.wait(300)
    rows.append(("drain, in-process Worker, 8 threads", 2 * n / (time.perf_counter() - start),
                 "task/s"))

    latencies = []
    for _ in range(200):
        finished.clear()
        target[0] = count[0] + 1
        sent = time.perf_counter()
        noop.send(0)
        finished.wait(5)
        latencies.append((time.perf_counter() - sent) * 1000)
        time.sleep(0.005)
    worker.stop()
    quantiles = statistics.quantiles(latencies, n=100)
    rows.append(("pickup latency p50, idle worker", quantiles[49], "ms"))
    rows.append(("pickup latency p99, idle worker", quantiles[98], "ms"))

    table = Table(title=f"liteq core, N={n}, {broker.path}")
    table.add_column("scenario")
    table.add_column("value", justify="right")
    table.add_column("unit")
    for name, value, unit in rows:
        table.add_row(name, f"{value:,.2f}" if unit == "ms" else f"{value:,.0f}", unit)
    Console().print(table)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
