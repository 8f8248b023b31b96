"""liteq benchmark tasks: ``python -m liteq worker tasks_liteq --processes 2 --threads 8``.

Environment: ``LITEQ_BROKER_URL`` (``sqlite:////abs/path.db``), ``BENCH_DURABLE=1`` for
``SqliteBroker(path, durable=True)``, ``BENCH_COUNTER_DIR`` for the recorder.
Default middleware, default settings otherwise.
"""

from __future__ import annotations

import os

import bench_recorder

import liteq

broker = liteq.SqliteBroker(url=os.environ["LITEQ_BROKER_URL"],
                            durable=os.environ.get("BENCH_DURABLE") == "1")
liteq.set_broker(broker)


@liteq.actor
def noop(i: int) -> None:
    bench_recorder.hit()


@liteq.actor
def latency(sent: float) -> None:
    bench_recorder.record_latency(sent)
