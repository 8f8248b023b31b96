"""``liteq worker``: the supervised process pool, on real processes, files and signals."""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from helpers import wait_for
from pools import FIXTURES, enqueue, queue_idle, record_count, records, stats

from liteq.store import SqliteBroker

PREFETCH = 32  # the Worker's default with 8 threads (4 x threads)


# ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_kill_9_of_children_loses_nothing_and_children_are_replaced(tmp_path, pools):
    total = 10_000
    enqueue(tmp_path, "record", [(n,) for n in range(total)], sleep_ms=3)
    pool = pools("--processes", "2", "--threads", "8")
    first = set(pool.wait_ready(2))
    killed = []
    for threshold in (1500, 4000, 6500):
        wait_for(lambda t=threshold: record_count(tmp_path) >= t, timeout=60)
        victim = pool.children()[len(killed) % 2]
        os.kill(victim, signal.SIGKILL)
        killed.append(victim)
        # Replaced: two live children again, the victim not among them.
        wait_for(lambda v=victim: len(pool.children()) == 2 and v not in pool.children(),
                 timeout=30)
    assert record_count(tmp_path) < total, "the run ended before the third kill"
    wait_for(lambda: len({n for n, _ in records(tmp_path)}) == total, timeout=120)
    wait_for(lambda: queue_idle(tmp_path), timeout=30)

    runs = collections.Counter(n for n, _ in records(tmp_path))
    assert set(runs) == {str(n) for n in range(total)}
    duplicates = sum(runs.values()) - total
    assert duplicates <= 3 * PREFETCH, duplicates
    assert stats(tmp_path)["default"]["dead"] == 0
    now = set(pool.children())
    assert len(now) == 2 and not (now & set(killed))
    assert len(pool.seen_children | first) >= 5  # 2 original + 3 replacements
    # The registry shows the live children, not the dead ones.
    broker = SqliteBroker(str(tmp_path / "q.db"), middleware=[])
    try:
        wait_for(lambda: {w["pid"] for w in broker.workers()} == now, timeout=10)
    finally:
        broker.close()
    pool.signal(signal.SIGTERM)
    assert pool.wait(30) == 0


@pytest.mark.slow
def test_sigterm_during_load_exits_0_and_runs_each_task_once(tmp_path, pools):
    total = 3000
    enqueue(tmp_path, "record", [(n,) for n in range(total)], sleep_ms=5)
    pool = pools("-p", "2", "-t", "8", "--shutdown-timeout", "20000")
    pool.wait_ready(2)
    wait_for(lambda: record_count(tmp_path) >= 500, timeout=60)
    started = time.monotonic()
    pool.signal(signal.SIGTERM)
    assert pool.wait(25) == 0
    assert time.monotonic() - started < 20
    ran = collections.Counter(n for n, _ in records(tmp_path))
    assert max(ran.values()) == 1, "a task ran twice"
    s = stats(tmp_path)["default"]
    assert s["claimed"] == 0 and s["dead"] == 0
    assert s["ready"] + len(ran) == total, (s, len(ran))  # prefetched ones were returned
    assert "received SIGTERM" in pool.output()

    # A second pool finishes the rest: every task exactly once overall.
    pool2 = pools("-p", "2")
    wait_for(lambda: record_count(tmp_path) >= total, timeout=60)
    wait_for(lambda: queue_idle(tmp_path), timeout=30)
    ran = collections.Counter(n for n, _ in records(tmp_path))
    assert set(ran) == {str(n) for n in range(total)} and max(ran.values()) == 1
    pool2.signal(signal.SIGINT)  # SIGINT is a graceful stop too
    assert pool2.wait(30) == 0


@pytest.mark.slow
def test_hard_time_limit_kills_a_child_stuck_in_c_and_dead_letters_the_message(
        tmp_path, pools):
    pool = pools("-p", "1", "--hard-time-limit", modules=("pool_tasks:broker",),
                 extra_env={"LITEQ_TEST_MAX_DELIVERIES": "2"})
    first = pool.wait_ready(1)[0]
    enqueue(tmp_path, "stuck", [(1,)], queue="stuck")

    def dead_letters() -> list:
        broker = SqliteBroker(str(tmp_path / "q.db"), middleware=[])
        try:
            return broker.list_dead_letters("stuck")
        finally:
            broker.close()

    wait_for(lambda: dead_letters(), timeout=60)
    [letter] = dead_letters()
    assert letter.actor_name == "stuck"
    assert "delivered 2 times" in letter.reason
    runs = [pid for n, pid in records(tmp_path) if n == "stuck-1"]
    assert len(runs) == 2 and len(set(runs)) == 2 and first in runs  # each run in a new child
    out = pool.output()
    assert out.count("overran its time limit") == 2, out
    assert pool.proc.poll() is None
    # The replacement child works.
    live = pool.wait_ready(1)
    assert first not in live
    enqueue(tmp_path, "record", [(7,)])
    wait_for(lambda: ("7", live[0]) in records(tmp_path), timeout=30)
    assert stats(tmp_path)["stuck"]["claimed"] == 0
    pool.signal(signal.SIGTERM)
    assert pool.wait(30) == 0


def test_import_error_exits_2_naming_the_module_and_the_error(tmp_path, env):
    for module, words in (("no_such_tasks_module", ["no_such_tasks_module", "No module named"]),
                          ("broken_tasks", ["broken_tasks", "liteq_missing_dependency"])):
        proc = subprocess.run(
            [sys.executable, "-m", "liteq", "worker", module, "-p", "2", "--path",
             str(FIXTURES)], env=env, cwd=tmp_path, capture_output=True, text=True,
            timeout=60)
        assert proc.returncode == 2, proc.stderr
        for word in words:
            assert word in proc.stderr


def test_bad_arguments_exit_2(tmp_path, env):
    proc = subprocess.run([sys.executable, "-m", "liteq", "worker", "pool_tasks", "-p", "0"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--processes" in proc.stderr


@pytest.mark.parametrize("kind", ["garbage", "other_app", "directory"])
def test_unusable_database_exits_3_with_a_clear_message(tmp_path, env, kind):
    path = tmp_path / "bad.db"
    if kind == "garbage":
        path.write_bytes(b"this is not a database at all\n" * 200)
    elif kind == "other_app":
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
        conn.execute("PRAGMA user_version = 7")
        conn.commit()
        conn.close()
    else:
        path.mkdir()
    env = dict(env, LITEQ_BROKER_URL=f"sqlite:///{path}")
    proc = subprocess.run(
        [sys.executable, "-m", "liteq", "worker", "noop_tasks", "-p", "1", "--path",
         str(FIXTURES)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert str(path) in proc.stderr
    assert "Traceback" not in proc.stderr
    if kind == "other_app":
        assert "another application" in proc.stderr


def test_pid_file(tmp_path, env, pools):
    pid_file = tmp_path / "liteq.pid"
    base = [sys.executable, "-m", "liteq", "worker", "noop_tasks", "-p", "1", "--path",
            str(FIXTURES), "--pid-file", str(pid_file)]
    pid_file.write_text(f"{os.getpid()}\n")  # a live process
    proc = subprocess.run(base, env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 4 and "running" in proc.stderr
    pid_file.write_text("not a pid\n")
    proc = subprocess.run(base, env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 4 and "does not contain a pid" in proc.stderr

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    pid_file.write_text(f"{gone.pid}\n")  # stale: replaced
    pool = pools("-p", "1", "--pid-file", str(pid_file), modules=("noop_tasks",))
    pool.wait_ready(1)
    assert pid_file.read_text().strip() == str(pool.proc.pid)
    pool.signal(signal.SIGTERM)
    assert pool.wait(30) == 0
    assert not pid_file.exists()


@pytest.mark.slow
def test_max_tasks_per_child_recycles_processes(tmp_path, pools):
    total = 400
    enqueue(tmp_path, "record", [(n,) for n in range(total)])
    pool = pools("-p", "1", "--max-tasks-per-child", "100")
    wait_for(lambda: record_count(tmp_path) >= total, timeout=60)
    wait_for(lambda: queue_idle(tmp_path), timeout=30)
    rows = records(tmp_path)
    ran = collections.Counter(n for n, _ in rows)
    assert set(ran) == {str(n) for n in range(total)} and max(ran.values()) == 1
    per_pid = collections.Counter(pid for _, pid in rows)
    assert len(per_pid) >= 3, per_pid
    assert "recycled" in pool.output()
    pool.signal(signal.SIGTERM)
    assert pool.wait(30) == 0


def _has_inotify(pid: int) -> bool:
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            if "inotify" in os.readlink(fd):
                return True
        except OSError:
            pass
    return False


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["spawn", "poll"])
def test_portable_paths_run_tasks(tmp_path, pools, mode):
    total = 300
    enqueue(tmp_path, "record", [(n,) for n in range(total)])
    if mode == "spawn":
        pool = pools("-p", "2", "--use-spawn")
    else:
        pool = pools("-p", "2", extra_env={"LITEQ_WAKEUP": "poll"})
    children = pool.wait_ready(2)
    wait_for(lambda: record_count(tmp_path) >= total, timeout=60)
    for pid in children:
        cmdline = " ".join(psutil.Process(pid).cmdline())
        if mode == "spawn":
            assert "spawn_main" in cmdline
        else:
            assert "spawn_main" not in cmdline
            assert not _has_inotify(pid)
    # An idle pool picks up a new message.
    enqueue(tmp_path, "record", [("late",)])
    wait_for(lambda: any(n == "late" for n, _ in records(tmp_path)), timeout=10)
    ran = collections.Counter(n for n, _ in records(tmp_path))
    assert len(ran) == total + 1 and max(ran.values()) == 1
    pool.signal(signal.SIGTERM)
    assert pool.wait(30) == 0


@pytest.mark.slow
def test_sighup_and_watch_restart_the_children(tmp_path, pools):
    watched = tmp_path / "src"
    watched.mkdir()
    (watched / "mod.py").write_text("X = 1\n")
    pool = pools("-p", "1", "--watch", str(watched))
    [first] = pool.wait_ready(1)
    pool.signal(signal.SIGHUP)
    wait_for(lambda: pool.children() and first not in pool.children(), timeout=30)
    [second] = pool.wait_ready(1)
    enqueue(tmp_path, "record", [(1,)])
    wait_for(lambda: ("1", second) in records(tmp_path), timeout=30)

    stat = (watched / "mod.py").stat()
    os.utime(watched / "mod.py", ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    wait_for(lambda: pool.children() and second not in pool.children(), timeout=30)
    [third] = pool.wait_ready(1)
    enqueue(tmp_path, "record", [(2,)])
    wait_for(lambda: ("2", third) in records(tmp_path), timeout=30)
    assert "code changed" in pool.output()
    pool.signal(signal.SIGTERM)
    assert pool.wait(30) == 0


@pytest.mark.slow
def test_second_signal_kills_at_once_and_releases_the_message(tmp_path, pools):
    pool = pools("-p", "1")
    [child] = pool.wait_ready(1)
    enqueue(tmp_path, "record", [(1,)], sleep_ms=60000)
    wait_for(lambda: stats(tmp_path)["default"]["claimed"] == 1, timeout=30)
    pool.signal(signal.SIGINT)
    wait_for(lambda: "received SIGINT" in pool.output(), timeout=10)
    started = time.monotonic()
    pool.signal(signal.SIGTERM)
    assert pool.wait(10) == 1
    assert time.monotonic() - started < 5
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == "zombie"
    s = stats(tmp_path)["default"]
    assert s["claimed"] == 0 and s["ready"] == 1  # released at once, not after the lease


LOG_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+\] \[PID \d+\] \[[\w-]+\] \[[\w.]+\] "
                      r"\[(DEBUG|INFO|WARNING|ERROR|CRITICAL)\] ")


@pytest.mark.slow
def test_log_file_verbose_queues_and_registry(tmp_path, pools):
    log_file = tmp_path / "worker.log"
    log_file.write_text("")
    pool = pools("-p", "1", "-v", "--log-file", str(log_file), "-Q", "default,failing")
    enqueue(tmp_path, "record", [(1,)])
    enqueue(tmp_path, "fail", [(1,)], queue="failing")
    enqueue(tmp_path, "stuck", [(1,)], queue="stuck")
    wait_for(lambda: records(tmp_path) and stats(tmp_path)["failing"]["dead"] == 1,
             timeout=30)
    [child] = pool.children()

    def log_text() -> str:
        return log_file.read_text()

    wait_for(lambda: "actor fail failed" in log_text(), timeout=10)
    lines = log_text().splitlines()
    assert all(LOG_LINE.match(line) for line in lines if line.startswith("[")), lines
    assert f"[PID {pool.proc.pid}]" in log_text() and f"[PID {child}]" in log_text()
    assert sum("actor fail failed on message" in line for line in lines) == 1
    assert any("[liteq.task] [DEBUG] running record(1)" in line for line in lines)
    assert "[PID" not in pool.output()  # everything went to the log file
    assert stats(tmp_path)["stuck"]["ready"] == 1  # -Q: that queue is not consumed

    cli_env = dict(os.environ, LITEQ_BROKER_URL=f"sqlite:///{tmp_path / 'q.db'}")

    def registry() -> list[dict]:
        proc = subprocess.run([sys.executable, "-m", "liteq", "stats", "--json"],
                              env=cli_env, capture_output=True, text=True, timeout=60)
        return json.loads(proc.stdout)["workers"]

    # processed counts reach the registry with the next heartbeat (once a second)
    wait_for(lambda: registry()[0]["processed"] >= 2, timeout=15, interval=0.2)
    [worker] = registry()
    assert worker["pid"] == child and worker["state"] == "alive"
    assert worker["queues"] == ["default", "failing"]
    pool.signal(signal.SIGTERM)
    assert pool.wait(30) == 0
