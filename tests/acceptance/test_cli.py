"""The operations commands of ``liteq`` on real databases, run as real processes."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import running_worker

import liteq
from liteq.cli import mask_url
from liteq.store import SqliteBroker


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "q.db"


def run(db: Path, *args: str, input: str | None = None, env: dict | None = None
        ) -> subprocess.CompletedProcess:
    environment = dict(os.environ, LITEQ_BROKER_URL=f"sqlite:///{db}", **(env or {}))
    return subprocess.run([sys.executable, "-m", "liteq", *args], env=environment,
                          cwd=db.parent, capture_output=True, text=True, input=input,
                          timeout=60)


def run_json(db: Path, *args: str) -> object:
    proc = run(db, *args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def make_dead_letters(db: Path, failing: int = 3, ghosts: int = 0) -> None:
    """Dead letters made by a real worker: ``failing`` from an actor that raises,
    ``ghosts`` for an actor no worker knows (queue ``bulk``)."""
    broker = SqliteBroker(str(db))
    try:
        @liteq.actor(broker=broker, queue_name="failing", max_retries=0)
        def explode(n: int) -> None:
            raise ValueError(f"boom {n}")

        broker.declare_queue("bulk")
        for n in range(failing):
            explode.send(n)
        broker.enqueue_many([liteq.Message("bulk", "ghost", (n,), {}, {})
                             for n in range(ghosts)])
        with running_worker(broker):
            broker.join("failing", timeout=30000, fail_fast=False)
            broker.join("bulk", timeout=60000, fail_fast=False)
    finally:
        broker.close()


def test_help_explains_the_commands(db):
    proc = run(db, "--help")
    assert proc.returncode == 0
    for word in ("worker", "enqueue", "stats", "queues", "dlq", "purge", "LITEQ_BROKER_URL"):
        assert word in proc.stdout
    proc = run(db, "worker", "--help")
    for word in ("--processes", "--threads", "--queues", "--hard-time-limit", "--use-spawn",
                 "--max-tasks-per-child", "--shutdown-timeout", "SIGHUP"):
        assert word in proc.stdout
    assert run(db, "--version").stdout.strip().endswith(liteq.__version__)


def test_enqueue_queues_and_stats(db):
    sent = run_json(db, "enqueue", "add", "--args", "[1, 2]", "--kwargs", '{"z": 3}')
    assert sent["actor_name"] == "add" and sent["args"] == [1, 2] and sent["kwargs"] == {"z": 3}
    assert sent["queue_name"] == "default"
    proc = run(db, "enqueue", "add", "--args", "[3]", "--priority", "9")
    assert proc.returncode == 0 and "enqueued add(3)" in proc.stdout
    run_json(db, "enqueue", "later", "--queue", "slow", "--delay", "60000")

    queues = run_json(db, "queues")
    by_name = {q["queue"]: q for q in queues}
    assert by_name["default"]["ready"] == 2 and by_name["slow"]["delayed"] == 1

    stats = run_json(db, "stats")
    assert stats["queues"]["default"]["ready"] == 2
    assert stats["queues"]["slow"] == {"ready": 0, "delayed": 1, "claimed": 0, "running": 0,
                                       "dead": 0, "succeeded": 0, "failed": 0, "retried": 0,
                                       "dead_lettered": 0}
    assert stats["workers"] == []

    # The priority was stored: the priority-9 message is claimed first.
    broker = SqliteBroker(str(db), middleware=[])
    broker.declare_queue("default")
    try:
        consumer = broker.consume("default", prefetch=1)
        [first] = consumer.exchange([], 1)
        assert first.args == (3,)
        consumer.close()
    finally:
        broker.close()

    table = run(db, "stats")
    assert table.returncode == 0 and "default" in table.stdout and "Ready" in table.stdout
    assert "slow" in run(db, "queues").stdout


def test_enqueue_rejects_bad_input(db):
    proc = run(db, "enqueue", "add", "--args", '{"not": "a list"}')
    assert proc.returncode == 2 and "JSON array" in proc.stderr
    proc = run(db, "enqueue", "add", "--kwargs", "[1")
    assert proc.returncode == 2 and "not valid JSON" in proc.stderr
    proc = run(db, "enqueue", "add", "--queue", "bad queue!")
    assert proc.returncode == 2 and "invalid queue name" in proc.stderr


def test_dead_letter_commands(db):
    make_dead_letters(db, failing=3, ghosts=1200)
    letters = run_json(db, "dlq", "list")
    assert len(letters) == 1203
    failing = run_json(db, "dlq", "list", "--queue", "failing")
    assert [d["actor_name"] for d in failing] == ["explode"] * 3
    assert "ValueError: boom" in failing[0]["reason"]
    assert len(run_json(db, "dlq", "list", "--limit", "2")) == 2
    table = run(db, "dlq", "list", "--queue", "failing")
    assert table.returncode == 0 and "explode" in table.stdout

    one = run_json(db, "dlq", "show", str(failing[0]["id"]))
    assert one["message"]["actor_name"] == "explode"
    assert "ValueError" in one["traceback"]
    text = run(db, "dlq", "show", str(failing[0]["id"]))
    assert "reason:" in text.stdout and "traceback:" in text.stdout
    missing = run(db, "dlq", "show", "999999")
    assert missing.returncode == 1 and "no dead letter" in missing.stderr

    assert run_json(db, "dlq", "requeue", str(failing[0]["id"])) == {"requeued": 1}
    stats = run_json(db, "stats")["queues"]
    assert stats["failing"]["ready"] == 1 and stats["failing"]["dead"] == 2

    # Large requeue, with a progress bar on stderr.
    proc = run(db, "dlq", "requeue", "--queue", "bulk")
    assert proc.returncode == 0 and "requeued 1200" in proc.stdout
    stats = run_json(db, "stats")["queues"]
    assert stats["bulk"]["ready"] == 1200 and stats["bulk"]["dead"] == 0

    usage = run(db, "dlq", "requeue")
    assert usage.returncode == 2 and "--all" in usage.stderr

    refused = run(db, "dlq", "purge", "--all", input="n\n")
    assert refused.returncode == 1
    assert run_json(db, "stats")["queues"]["failing"]["dead"] == 2
    assert run_json(db, "dlq", "purge", "--all", "--yes") == {"purged": 2}
    assert run_json(db, "dlq", "list") == []


def test_purge_queue(db):
    for n in range(5):
        run(db, "enqueue", "job", "--args", f"[{n}]", "--queue", "jobs")
    run(db, "enqueue", "job", "--queue", "other")
    assert run_json(db, "purge", "jobs", "--yes") == {"queue": "jobs", "purged": 5}
    queues = {q["queue"]: q for q in run_json(db, "queues")}
    assert queues["jobs"]["ready"] == 0 and queues["other"]["ready"] == 1
    unknown = run(db, "purge", "nope", "--yes")
    assert unknown.returncode == 1 and "no queue named" in unknown.stderr


@pytest.mark.parametrize("kind", ["garbage", "other_app", "missing"])
def test_unusable_database_gives_one_clear_line(tmp_path, kind):
    path = tmp_path / "bad.db"
    if kind == "garbage":
        path.write_bytes(b"\x00garbage" * 1000)
    elif kind == "other_app":
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE t (x)")
        conn.execute("PRAGMA user_version = 3")
        conn.commit()
        conn.close()
    for command in (["stats"], ["queues"], ["dlq", "list"]):
        proc = run(path, *command)
        assert proc.returncode == 3, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("liteq: error:"), proc.stderr
        assert str(path) in lines[0]
    assert not (kind == "missing" and path.exists())


def test_credentials_are_never_printed(db):
    assert mask_url("redis://user:s3cret@example.com:6379/0") == \
        "redis://user:***@example.com:6379/0"
    assert mask_url("amqp://guest:pw@host/vhost") == "amqp://guest:***@host/vhost"
    assert mask_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    for args in (["stats", "--broker", "redis://bob:s3cret@127.0.0.1:1/0"],
                 ["queues", "--broker", "nats://bob:s3cret@127.0.0.1:1"]):
        proc = run(db, *args)
        assert proc.returncode != 0
        assert "s3cret" not in proc.stdout + proc.stderr
