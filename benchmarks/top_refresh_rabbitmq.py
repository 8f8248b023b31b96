"""Cost of one ``liteq top`` refresh on RabbitMQ (snapshot + extras + render) at depth.

Usage: .venv/bin/python benchmarks/top_refresh_rabbitmq.py [MESSAGES] [--url AMQP_URL]
       [--dead N] [--rounds R]

Without ``--url`` a private RabbitMQ node is started (benchmarks/servers.py). Publishes
MESSAGES ready messages (default 100,000) over three queues, 100 delayed ones and
``--dead`` dead letters, then times R refreshes of a :class:`liteq.ops.monitor.Monitor`
rendered at 120x40 through one inspector, as ``liteq top`` does. The queues are deleted
at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import pika  # noqa: E402

from benchmarks import servers  # noqa: E402
from benchmarks.top_refresh import print_times, time_refreshes  # noqa: E402
from liteq import Message  # noqa: E402
from liteq.brokers.rabbitmq import RabbitmqBroker  # noqa: E402

QUEUES = ("bench_default", "bench_emails", "bench_reports")


@contextlib.contextmanager
def server(url: str | None) -> Iterator[str]:
    if url:
        yield url
    else:
        with servers.rabbitmq_server() as started:
            yield started


def fill(broker: RabbitmqBroker, total: int, dead: int) -> None:
    """Publish ``total`` ready messages, 100 delayed ones and ``dead`` dead letters."""
    for name in QUEUES:
        broker.declare_queue(name)
        broker.get_queue_message_counts(name)  # declares Q, Q.DQ and Q.XQ
    channel = broker._channel()
    props = pika.BasicProperties(delivery_mode=2)
    for i in range(total):
        queue = QUEUES[i % len(QUEUES)]
        channel.basic_publish("", queue, Message(queue, "task", [i], {}, {}).encode(), props)
    for _ in range(100):
        broker.enqueue(Message(QUEUES[0], "later", [], {}, {}), delay=3_600_000)
    for i in range(dead):
        body = Message(QUEUES[0], "task", [i], {}, {"failure_reason": "ValueError: bench",
                                                     "failed_at": int(time.time() * 1000)})
        channel.basic_publish("", f"{QUEUES[0]}.XQ", body.encode(), props)
    broker.get_queue_message_counts(QUEUES[0])  # a round trip: everything was routed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("messages", nargs="?", type=int, default=100_000)
    parser.add_argument("--url", help="an existing server (default: start a private one)")
    parser.add_argument("--dead", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with server(args.url) as url:
        broker = RabbitmqBroker(url=url, middleware=[])
        try:
            t0 = time.perf_counter()
            fill(broker, args.messages, args.dead)
            print(f"published {args.messages:,} messages in {time.perf_counter() - t0:.1f}s")
            inspector = broker.inspector()
            parts, snap, text = time_refreshes(inspector, args.rounds)
            queued = sum((c["ready"] or 0) + (c["delayed"] or 0)
                         for name, c in snap["queues"].items() if name in QUEUES)
            print(f"queued: {queued:,}; dead letters: {args.dead}; "
                  f"workers in the registry: {len(snap['workers'])}")
            print_times(parts, args.rounds, text)
            inspector.close()
        finally:
            channel = broker._channel()
            for name in QUEUES:
                for suffix in ("", ".DQ", ".XQ"):
                    channel.queue_delete(name + suffix)
            broker.close()


if __name__ == "__main__":
    main()
