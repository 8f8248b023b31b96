"""Dramatiq benchmark tasks: ``dramatiq tasks_dramatiq --processes 2 --threads 8``.

Environment: ``BENCH_BROKER_URL`` (``amqp://...`` for RabbitMQ, ``redis://...`` for
Redis), ``BENCH_COUNTER_DIR`` for the recorder. Default middleware and settings.
"""

from __future__ import annotations

import os

import bench_recorder
import dramatiq

_url = os.environ["BENCH_BROKER_URL"]
if _url.startswith("amqp"):
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    broker = RabbitmqBroker(url=_url)
else:
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(url=_url)
dramatiq.set_broker(broker)


@dramatiq.actor
def noop(i: int) -> None:
    bench_recorder.hit()


@dramatiq.actor
def latency(sent: float) -> None:
    bench_recorder.record_latency(sent)
