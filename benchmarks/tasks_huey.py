"""Huey benchmark tasks: ``huey_consumer tasks_huey.huey -w 8`` (threads).

Environment: ``BENCH_HUEY_DB`` (the SQLite file; Huey's defaults otherwise, which
means ``synchronous=FULL``), ``BENCH_COUNTER_DIR`` for the recorder.
"""

from __future__ import annotations

import os

import bench_recorder
from huey import SqliteHuey

huey = SqliteHuey("bench", filename=os.environ["BENCH_HUEY_DB"])


@huey.task()
def noop(i: int) -> None:
    bench_recorder.hit()


@huey.task()
def latency(sent: float) -> None:
    bench_recorder.record_latency(sent)
