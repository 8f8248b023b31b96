"""liteq benchmark tasks: ``python -m liteq worker tasks_liteq --processes 2 --threads 8``.

Environment: ``LITEQ_BROKER_URL`` (``sqlite:////abs/path.db``, or ``redis://…`` /
``amqp://…`` for liteq's Redis and RabbitMQ brokers, built with
``liteq.broker_from_url``), ``BENCH_DURABLE=1`` for ``SqliteBroker(path, durable=True)``,
``BENCH_QUEUE`` (queue of both actors, ``default`` unless set: server runs use a fresh
name per scenario), ``BENCH_REDIS_NAMESPACE`` (Redis key prefix, so liteq's keys never
meet Dramatiq's on the shared server), ``BENCH_COUNTER_DIR`` for the recorder,
``BENCH_LITEQ_SOURCE`` (a baseline's liteq tree: importing this module fails unless
liteq came from there). Default middleware, default settings otherwise.
"""

from __future__ import annotations

import os

import bench_recorder

import liteq

_source = os.environ.get("BENCH_LITEQ_SOURCE")
if _source:
    _root, _file = os.path.realpath(_source), os.path.realpath(liteq.__file__)
    if os.path.commonpath([_root, _file]) != _root:
        raise ImportError(f"liteq was imported from {_file!r}, not from "
                          f"BENCH_LITEQ_SOURCE={_source!r}")

_url = os.environ["LITEQ_BROKER_URL"]
_scheme = _url.split(":", 1)[0].lower()
if _scheme == "sqlite":
    broker = liteq.SqliteBroker(url=_url, durable=os.environ.get("BENCH_DURABLE") == "1")
else:
    _kwargs = {}
    if _scheme in ("redis", "rediss", "unix") and os.environ.get("BENCH_REDIS_NAMESPACE"):
        _kwargs["namespace"] = os.environ["BENCH_REDIS_NAMESPACE"]
    broker = liteq.broker_from_url(_url, **_kwargs)
liteq.set_broker(broker)
_queue = os.environ.get("BENCH_QUEUE") or "default"


@liteq.actor(queue_name=_queue)
def noop(i: int) -> None:
    bench_recorder.hit()


@liteq.actor(queue_name=_queue)
def latency(sent: float) -> None:
    bench_recorder.record_latency(sent)
