"""The examples in ``examples/`` run as real programs and do what their docstrings say.

Each example runs in a subprocess with ``LITEQ_BROKER_URL`` on a database in
``tmp_path`` and ``LITEQ_EXAMPLE_SPEED=100``. Examples that need RabbitMQ or Redis
use the session's private servers (the ``rabbitmq_url`` and ``redis_url`` fixtures)
and are skipped when the server or the client library is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import pytest

from liteq import SqliteBroker

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
WORKFLOW = EXAMPLES / "workflow"
SPEED = 100

#: Variables of the developer's shell that would point an example somewhere else.
_FOREIGN = ("LITEQ_BROKER_URL", "REDIS_URL", "REDIS_HOST", "REDIS_PORT", "RABBITMQ_URL",
            "RABBITMQ_HOST", "RABBITMQ_PORT", "LITEQ_EXAMPLE_SPEED",
            "LITEQ_EXAMPLE_REPORT_DIR", "SUNA_STATE_DB")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "liteq.db"


@pytest.fixture
def env(tmp_path: Path, db: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN}
    env.update(
        LITEQ_BROKER_URL=f"sqlite:///{db}",
        LITEQ_EXAMPLE_SPEED=str(SPEED),
        LITEQ_EXAMPLE_REPORT_DIR=str(tmp_path),
        SUNA_STATE_DB=str(tmp_path / "suna_state.db"),
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        COLUMNS="200",
    )
    return env


def run_example(script: Path, env: dict[str, str], cwd: Path, *args: str,
                timeout: float = 60) -> str:
    """Run ``script`` to completion; fail with its output unless it exits 0."""
    proc = subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{script.name} exited with {proc.returncode}\n"
        f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    )
    return proc.stdout


def queue_stats(db: Path) -> dict[str, dict[str, int]]:
    broker = SqliteBroker(str(db))
    try:
        return broker.stats()
    finally:
        broker.close()


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def assert_in_order(text: str, *parts: str) -> None:
    """Each of ``parts`` occurs in ``text``, each after the previous one."""
    position = -1
    for part in parts:
        found = text.find(part, position + 1)
        assert found > position, f"{part!r} missing or out of order in:\n{text}"
        position = found


# -- single-file examples -------------------------------------------------------------

def test_actor_basics(env: dict[str, str], tmp_path: Path, db: Path) -> None:
    out = run_example(EXAMPLES / "actor_basics.py", env, tmp_path)
    assert out.count("Sending email to user@example.com") == 2
    assert_in_order(out, "-- synchronous call --", "Sending email to user@example.com",
                    "-- .send() returned at once", "-- a worker runs the message --",
                    "Sending email to user@example.com", "-- done --")
    assert queue_stats(db)["default"]["succeeded"] == 1


def test_actor_options(env: dict[str, str], tmp_path: Path, db: Path) -> None:
    out = run_example(EXAMPLES / "actor_options.py", env, tmp_path)
    assert "queue='high_priority' priority=10" in out
    assert "'max_retries': 3" in out and "'time_limit': 300000" in out
    assert_in_order(out, "Processing video 42 (attempt 1)", "Processing video 42 (attempt 2)",
                    "Video 42 processed", "video 42 took 2 attempts")
    stats = queue_stats(db)["high_priority"]
    assert stats["dead"] == 0 and stats["ready"] == stats["delayed"] == 0


def test_send_with_options_priority_and_delay(env: dict[str, str], tmp_path: Path) -> None:
    out = run_example(EXAMPLES / "send_with_options.py", env, tmp_path)
    # urgent_task was sent last but has priority 100; the delayed order runs at the end.
    assert_in_order(out, "Running urgent_task", "Running routine_task 0",
                    "Running routine_task 1", "Running routine_task 2",
                    "Processing order 1001", "all done")
    match = re.search(r"Processing order 1001, ([\d.]+)s after it was sent", out)
    assert match, out
    delay = 60 / SPEED
    assert float(match.group(1)) >= delay - 0.01, out


def test_results_prints_8(env: dict[str, str], tmp_path: Path) -> None:
    out = run_example(EXAMPLES / "results.py", env, tmp_path)
    assert out.split() == ["8"]


def test_results_redis(env: dict[str, str], tmp_path: Path, redis_url: str) -> None:
    if importlib.util.find_spec("redis") is None:
        pytest.skip("results_redis.py needs redis-py (pip install 'liteq[redis]')")
    env["REDIS_URL"] = redis_url
    out = run_example(EXAMPLES / "results_redis.py", env, tmp_path)
    assert out.split() == ["8"]


def test_brokers_sqlite(env: dict[str, str], tmp_path: Path, db: Path) -> None:
    out = run_example(EXAMPLES / "brokers_sqlite.py", env, tmp_path)
    assert_in_order(out, "charge_card 7: attempt 1", "charge_card 7: attempt 2",
                    "notify_customer: order 7 charged 19.99")
    stats = queue_stats(db)["default"]
    assert stats["dead"] == 0 and stats["ready"] == stats["delayed"] == stats["claimed"] == 0


def _rabbitmq_env(url: str) -> dict[str, str]:
    parsed = urlparse(url)
    return {"RABBITMQ_URL": url, "RABBITMQ_HOST": parsed.hostname or "localhost",
            "RABBITMQ_PORT": str(parsed.port or 5672)}


def _redis_env(url: str) -> dict[str, str]:
    parsed = urlparse(url)
    return {"REDIS_URL": url, "REDIS_HOST": parsed.hostname or "localhost",
            "REDIS_PORT": str(parsed.port or 6379)}


def test_brokers_rabbitmq(env: dict[str, str], tmp_path: Path, rabbitmq_url: str) -> None:
    if importlib.util.find_spec("pika") is None:
        pytest.skip("brokers_rabbitmq.py needs pika (pip install 'liteq[rabbitmq]')")
    env.update(_rabbitmq_env(rabbitmq_url))
    out = run_example(EXAMPLES / "brokers_rabbitmq.py", env, tmp_path)
    assert "Hello RabbitMQ from RabbitmqBroker" in out


def test_brokers_redis(env: dict[str, str], tmp_path: Path, redis_url: str) -> None:
    if importlib.util.find_spec("redis") is None:
        pytest.skip("brokers_redis.py needs redis-py (pip install 'liteq[redis]')")
    env.update(_redis_env(redis_url))
    out = run_example(EXAMPLES / "brokers_redis.py", env, tmp_path)
    assert "Hello Redis from RedisBroker" in out


def test_restaurant_vip_first(env: dict[str, str], tmp_path: Path) -> None:
    out = run_example(EXAMPLES / "restaurant.py", env, tmp_path)
    assert "tickets waiting: 3" in out
    assert_in_order(out, "cooking linguine vongole for table 1",
                    "cooking spaghetti carbonara for table None",
                    "cooking penne arrabbiata for table 4", "all orders served")


# -- multi-module examples ------------------------------------------------------------

def test_workflow(env: dict[str, str], tmp_path: Path, db: Path) -> None:
    out = run_example(WORKFLOW / "app.py", env, tmp_path)
    assert "request handled" in out
    queued = queue_stats(db)
    assert queued["emails"]["ready"] == 1
    assert queued["orders"]["delayed"] == 1
    assert queued["default"]["ready"] == 1

    def drained() -> bool:
        stats = queue_stats(db)
        return all(stats[q]["ready"] + stats[q]["delayed"] + stats[q]["claimed"] == 0
                   for q in ("emails", "orders", "default"))

    log_path = tmp_path / "worker.log"
    # The documented way: `liteq worker tasks` from the workflow directory.
    with open(log_path, "w") as log:
        worker = subprocess.Popen([sys.executable, "-m", "liteq", "worker", "tasks"],
                                  cwd=WORKFLOW, env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: drained() or worker.poll() is not None, 30,
                     "the worker to drain the queues")
            assert worker.poll() is None, "the worker exited early"
        finally:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
            try:
                code = worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                code = worker.wait()
    output = log_path.read_text()
    assert code == 0, output
    assert drained()
    for line in ("Sending email to customer@example.com", "Email sent to customer@example.com",
                 "Processing order 12345", "Order 12345 completed",
                 "Generating sales report", "Report generated"):
        assert line in output, output
    report = json.loads((tmp_path / "report-sales-2024-01.json").read_text())
    assert report["type"] == "sales" and report["days"] == 31
    stats = queue_stats(db)
    assert stats["emails"]["succeeded"] == 1 and stats["default"]["succeeded"] == 1
    assert stats["orders"]["dead"] == 0


def test_suna(env: dict[str, str], tmp_path: Path) -> None:
    out = run_example(EXAMPLES / "suna" / "main.py", env, tmp_path)
    assert "agent run run-1 on thread thread-1 completed" in out
    assert_in_order(out, "workflow exec-1 step 1: fetch issue",
                    "workflow exec-1 step 2: write patch",
                    "workflow exec-1 step 3: open pull request", "workflow exec-1 completed")
    assert "health:worker -> 'healthy'" in out
    # The local stand-in for redis.set(key, "healthy", ex=60) is a SQLite table.
    conn = sqlite3.connect(tmp_path / "suna_state.db")
    try:
        rows = dict((k, (v, exp)) for k, v, exp in conn.execute("SELECT * FROM kv"))
    finally:
        conn.close()
    value, expires_at = rows["health:worker"]
    assert value == "healthy" and 0 < expires_at - time.time() <= 60
    assert rows["agent_run:run-1:status"][0] == "completed"
    assert rows["agent_run:run-1:response"][0].strip() == "[gpt-4o] You said: what can liteq do?"


def test_demo(env: dict[str, str], tmp_path: Path) -> None:
    started = time.monotonic()
    out = run_example(EXAMPLES / "demo.py", env, tmp_path, timeout=90)
    assert time.monotonic() - started < 60
    means = {int(p): float(m) for p, m in
             re.findall(r"priority (\d+): \d+ tasks, mean start position ([\d.]+)", out)}
    assert set(means) == {0, 100}, out
    assert means[100] < means[0], out
    assert re.search(r"numbers\W+0\W+0\W+0\W+0\W+0\W+32\W+0\b", out), out
    for queue in ("emails", "orders", "default"):
        assert re.search(rf"{queue}\W+0\W+0\W+0\W+0\W+0\W+[1-9]", out), out
    assert "Email sent to customer@example.com" in out
    database = re.search(r"broker: (\S+liteq\.db)", out)
    assert database, out
    assert not Path(database.group(1)).exists(), "the demo left its database behind"


def test_message_lifecycle(env: dict[str, str], tmp_path: Path, db: Path) -> None:
    out = run_example(EXAMPLES / "message_lifecycle.py", env, tmp_path)
    assert re.search(r"message_id=[0-9a-f-]{36} message_timestamp=\d{13}", out), out
    assert '"actor_name":"send_email"' in out.replace(" ", ""), out
    assert_in_order(out, "Sending email to user@example.com",
                    "result: email to user@example.com sent")
    assert queue_stats(db)["default"]["succeeded"] == 1
