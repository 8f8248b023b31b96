"""Counters that agree (issue 11, item 3): one known mix of attempts, the same numbers in
the inspector, ``stats --json``, ``dlq list/show`` and ``top``, on SQLite.

4 messages succeed at once, 1 succeeds after one retry, 1 is retried twice then
dead-lettered: succeeded 5, failed 1 + 3 = 4, retried 1 + 2 = 3, dead-lettered 1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers import running_worker, wait_for

import liteq
from liteq.ops.monitor import Monitor
from liteq.ops.top_render import render_text
from liteq.store import SqliteBroker

EXPECTED = {"ready": 0, "delayed": 0, "claimed": 0, "running": 0, "dead": 1, "succeeded": 5,
            "failed": 4, "retried": 3, "dead_lettered": 1}


def run(db: Path, *args: str) -> subprocess.CompletedProcess:
    environment = dict(os.environ, LITEQ_BROKER_URL=f"sqlite:///{db}", COLUMNS="160")
    return subprocess.run([sys.executable, "-m", "liteq", *args], env=environment,
                          cwd=db.parent, capture_output=True, text=True, timeout=60)


def test_every_view_counts_a_known_mix_of_attempts_alike(tmp_path):
    db = tmp_path / "q.db"
    broker = SqliteBroker(str(db))
    attempts: dict[str, int] = {}
    try:
        @liteq.actor(broker=broker, max_retries=0)
        def ok(n: int) -> None:
            pass

        @liteq.actor(broker=broker, max_retries=3, min_backoff=10, max_backoff=20)
        def flaky() -> None:
            attempts["flaky"] = attempts.get("flaky", 0) + 1
            if attempts["flaky"] == 1:
                raise ValueError("first attempt fails")

        @liteq.actor(broker=broker, max_retries=2, min_backoff=10, max_backoff=20)
        def doomed() -> None:
            raise RuntimeError("every attempt fails")

        for n in range(4):
            ok.send(n)
        flaky.send()
        doomed.send()
        with running_worker(broker) as worker:
            broker.join("default", timeout=30000, fail_fast=False)
            wait_for(lambda: [(w["succeeded"], w["failed"]) for w in broker.workers()]
                     == [(5, 4)], timeout=10)
            frame = Monitor(broker.inspector()).refresh()
            stats = run(db, "stats", "--json")
            assert worker.processed == 9
        assert broker.inspector().queues()["default"].asdict() == EXPECTED
    finally:
        broker.close()

    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["queues"]["default"] == EXPECTED

    listed = run(db, "dlq", "list")
    assert listed.returncode == 0, listed.stderr
    header = next(line for line in listed.stdout.splitlines() if "Queue" in line)
    assert "Deliveries" in header and "Retries" in header and "Tries" not in header
    [letter] = json.loads(run(db, "dlq", "list", "--json").stdout)
    # Dramatiq's options["retries"] counts the attempt that gave up too; this copy of the
    # message was received once.
    assert (letter["retries"], letter["deliveries"]) == (3, 1)
    assert letter["actor_name"] == "doomed"
    shown = run(db, "dlq", "show", letter["id"]).stdout
    assert "retries:     3" in shown and '"retries": 3' in shown
    assert "deliveries:  1" in shown

    # top: the header's totals and the worker row say the same as the counters.
    text = render_text(frame, 160, 40)
    assert "succeeded 5" in text and "failed 4" in text and "retried 3" in text
    assert "dead-lettered 1" in text
    assert [w.failed for w in frame.workers] == [4]
    assert [w.succeeded for w in frame.workers] == [5]


def test_a_dead_letter_id_that_is_no_row_number_is_refused_clearly(tmp_path):
    db = tmp_path / "q.db"
    SqliteBroker(str(db)).close()
    for args in (["dlq", "show", "abc"], ["dlq", "requeue", "12x"], ["dlq", "purge", "-y", "x"]):
        proc = run(db, *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "not a dead-letter id" in proc.stderr and "Traceback" not in proc.stderr
    proc = run(db, "dlq", "show", "12")
    assert proc.returncode == 1 and "no dead letter with id 12" in proc.stderr
