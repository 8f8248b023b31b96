"""Cost of one ``liteq top`` refresh (snapshot + extras + render to a string) at depth.

Usage: .venv/bin/python benchmarks/top_refresh.py [MESSAGES] [--db PATH | --redis]

Fills a temporary database with MESSAGES ready messages (default 1,000,000; 1,000
per ``enqueue_many``) on three queues, plus a few delayed ones and dead letters,
then times refreshes of a :class:`liteq.ops.monitor.Monitor` rendered at 120x40.
``--redis`` does the same on a private Redis server started for the run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from liteq import Broker, Message  # noqa: E402
from liteq.ops.monitor import Monitor, extras  # noqa: E402
from liteq.ops.snapshot import snapshot  # noqa: E402
from liteq.ops.top_render import render_text  # noqa: E402
from liteq.store import SqliteBroker  # noqa: E402


def fill(broker: Broker, total: int) -> None:
    queues = ("default", "emails", "reports")
    for name in queues:
        broker.declare_queue(name)
    chunk = 1000
    for start in range(0, total, chunk):
        queue = queues[(start // chunk) % len(queues)]
        broker.enqueue_many(
            Message(queue_name=queue, actor_name="task", args=(i,), kwargs={}, options={})
            for i in range(start, min(total, start + chunk)))
    broker.enqueue_many((Message(queue_name="default", actor_name="later", args=(), kwargs={},
                                 options={}) for _ in range(100)), delay=3600_000)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("messages", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--db", help="reuse (or create) this database file")
    parser.add_argument("--redis", action="store_true",
                        help="on a private Redis server instead of a SQLite file")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        broker: Broker
        if args.redis:
            from benchmarks.servers import redis_server
            from liteq.brokers.redis import RedisBroker

            path = stack.enter_context(redis_server())
            broker = RedisBroker(url=path, middleware=[])
            fresh = True
        else:
            path = args.db or os.path.join(tempfile.mkdtemp(prefix="liteq-top-"), "q.db")
            fresh = not os.path.exists(path)
            broker = SqliteBroker(path, middleware=[])
        measure(broker, path, fresh, args.messages, args.rounds)
        broker.close()


def measure(broker: Broker, path: str, fresh: bool, messages: int, rounds: int) -> None:
    if fresh:
        t0 = time.perf_counter()
        fill(broker, messages)
        print(f"filled {messages:,} messages in {time.perf_counter() - t0:.1f}s: {path}")
    inspector = broker.inspector()  # type: ignore[attr-defined]
    parts, _, text = time_refreshes(inspector, rounds)
    counts = inspector.queues().values()
    print(f"queued: {sum((c.ready or 0) + (c.delayed or 0) for c in counts):,}")
    print_times(parts, rounds, text)


def time_refreshes(inspector: Any, rounds: int
                   ) -> tuple[dict[str, list[float]], dict[str, Any], str]:
    """Time ``rounds`` refreshes of ``liteq top`` through ``inspector``: ms per part
    (snapshot, extras, render, total), the last snapshot and the last frame's text."""
    monitor = Monitor(inspector)
    monitor.refresh()
    parts: dict[str, list[float]] = {"snapshot": [], "extras": [], "render": [], "total": []}
    snap: dict[str, Any] = {}
    text = ""
    for _ in range(rounds):
        t0 = time.perf_counter()
        snap = snapshot(inspector)
        t1 = time.perf_counter()
        extra = extras(inspector, snap)
        t2 = time.perf_counter()
        text = render_text(monitor.update(snap, extra), 120, 40)
        t3 = time.perf_counter()
        for key, value in (("snapshot", t1 - t0), ("extras", t2 - t1), ("render", t3 - t2),
                           ("total", t3 - t0)):
            parts[key].append(value * 1000)
    return parts, snap, text


def print_times(parts: dict[str, list[float]], rounds: int, text: str) -> None:
    for key, values in parts.items():
        print(f"{key:9s} median {statistics.median(values):7.1f} ms   "
              f"max {max(values):7.1f} ms   ({rounds} refreshes)")
    print(text)


if __name__ == "__main__":
    main()
