"""``liteq worker`` reads Dramatiq's command line: ``-Q a b``, and Dramatiq's flag names,
each doing what Dramatiq's does (real pools on real SQLite files, tests/pools.py)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import click
import psutil
import pytest
from helpers import wait_for
from pools import FIXTURES, enqueue, stats

import liteq
from liteq.cli import worker_command
from liteq.ops.worker_args import RULE, regroup
from liteq.process.reload import Watcher

TAKES_VALUE = {"-p", "--processes", "-t", "--threads", "--log-file", "-i", "-x", "-f"}
LOG_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+\] \[PID \d+\] ", re.MULTILINE)


def parse(*args: str) -> dict:
    """The parameters ``liteq worker ARGS`` would run with (nothing is started)."""
    with worker_command.make_context("worker", list(args)) as ctx:
        return ctx.params


def run_worker(tmp_path: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "liteq", "worker", *args], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)


def send(tmp_path: Path, queue: str, n: int) -> None:
    broker = liteq.SqliteBroker(str(tmp_path / "q.db"), middleware=[])
    try:
        broker.declare_queue(queue)
        broker.enqueue(liteq.Message(queue, f"on_{queue}", (n,), {}, {}))
    finally:
        broker.close()


def recorded(tmp_path: Path) -> list[str]:
    path = tmp_path / "record.txt"
    return path.read_text().splitlines() if path.exists() else []


def fork_lines(path: Path) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    return [(word, int(pid)) for word, pid in
            (line.split() for line in path.read_text().splitlines())]


def wait_workers_ready(pool, processes: int) -> None:
    """Like ``pool.wait_ready``, where fork processes are children of the pool too."""
    wait_for(lambda: pool.output().count("worker process ready") >= processes, timeout=30)


# -- the -Q rule ------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "expected"), [
    (["tasks", "-Q", "slow", "default"], ["tasks", "-Q", "slow", "-Q", "default"]),
    (["tasks", "--queues", "a", "b", "-p", "2", "more"],
     ["tasks", "-Q", "a", "-Q", "b", "-p", "2", "more"]),
    (["tasks", "-Q", "a", "-Q", "b,c"], ["tasks", "-Q", "a", "-Q", "b,c"]),
    (["tasks", "-Qa", "b"], ["tasks", "-Qa", "b"]),  # an attached value is one word
    (["tasks", "--queues=a", "b"], ["tasks", "--queues=a", "b"]),
    (["tasks", "-vQ", "a", "b"], ["tasks", "-v", "-Q", "a", "-Q", "b"]),
    (["tasks", "-p", "-Q", "x"], ["tasks", "-p", "-Q", "x"]),  # -p's value is not -Q
    (["tasks", "--log-file", "-Q", "a"], ["tasks", "--log-file", "-Q", "a"]),
    (["tasks", "-P", "src", "lib", "-Q", "a"], ["tasks", "-P", "src", "-P", "lib", "-Q", "a"]),
    (["-Q", "a", "--", "tasks"], ["-Q", "a", "--", "tasks"]),
])
def test_regroup_spells_every_list_word_with_its_option(args, expected):
    assert regroup(args, TAKES_VALUE.__contains__) == expected


def test_the_rule_reads_queues_after_the_modules():
    params = parse("tasks", "more", "-Q", "slow", "default", "-p", "2")
    assert params["modules"] == ("tasks", "more")
    assert params["queues"] == ("slow", "default") and params["processes"] == 2
    assert parse("tasks", "-Q", "a", "-Q", "b,c")["queues"] == ("a", "b,c")
    src, lib = str(FIXTURES), str(FIXTURES.parent)
    assert parse("tasks", "-P", src, lib)["paths"] == (src, lib)
    with pytest.raises(click.UsageError, match="here -Q took a, tasks") as error:
        parse("-Q", "a", "tasks")
    assert RULE in str(error.value)
    with pytest.raises(click.UsageError, match="-Q needs at least one word"):
        parse("tasks", "-Q", "-p", "2")


def test_modules_after_queues_exit_2_naming_the_rule(tmp_path, env):
    proc = run_worker(tmp_path, env, "-Q", "alpha", "flag_tasks", "--path", str(FIXTURES))
    assert proc.returncode == 2
    assert "here -Q took alpha, flag_tasks" in proc.stderr and RULE in proc.stderr


@pytest.mark.slow
def test_queues_a_b_consumes_only_those_queues_and_imports_no_module_named_so(tmp_path,
                                                                                pools):
    # A module named like a queue, in the working directory: it must not be imported.
    (tmp_path / "prio.py").write_text("open('prio-imported', 'w').close()\n")
    for queue in ("alpha", "prio", "other"):
        send(tmp_path, queue, 1)
    pool = pools("-p", "1", "--queues", "alpha", "prio", modules=("flag_tasks",))
    pool.wait_ready(1)
    wait_for(lambda: {"alpha 1", "prio 1"} <= set(recorded(tmp_path)), timeout=30)
    assert "queues alpha, prio" in pool.output()
    assert not (tmp_path / "prio-imported").exists()
    pool.signal(signal.SIGTERM)
    assert pool.wait(30) == 0
    assert "other 1" not in recorded(tmp_path)


# -- --worker-shutdown-timeout -----------------------------------------------------------
def test_worker_shutdown_timeout_is_the_shutdown_timeout():
    assert parse("tasks", "--worker-shutdown-timeout", "1500")["shutdown_timeout"] == 1500
    assert parse("tasks", "--shutdown-timeout", "20")["shutdown_timeout"] == 20


@pytest.mark.slow
def test_worker_shutdown_timeout_bounds_the_stop(tmp_path, pools):
    pool = pools("-p", "1", "--worker-shutdown-timeout", "200")
    pool.wait_ready(1)
    enqueue(tmp_path, "record", [(1,)], sleep_ms=120000)
    wait_for(lambda: stats(tmp_path)["default"]["claimed"] == 1, timeout=30)
    pool.signal(signal.SIGTERM)
    pool.wait(15)  # the default (600000 ms) would wait ten minutes
    assert "within 200 ms" in pool.output()


# -- --watch-use-polling, -i/--watch-include, -x/--watch-exclude --------------------------
def _touch(path: Path, seconds: int) -> None:
    path.touch()
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 1_000_000_000))


@pytest.mark.parametrize("use_polling", [True, False])
def test_watcher_includes_and_excludes_patterns(tmp_path, use_polling):
    for name in ("mod.py", "skip_me.py", "page.html", "notes.txt"):
        (tmp_path / name).write_text("x")
    watcher = Watcher([str(tmp_path)], include=["*.html"], exclude=["skip_*.py"],
                      use_polling=use_polling)
    assert watcher.polling is use_polling or not sys.platform.startswith("linux")
    for name in ("skip_me.py", "notes.txt", "page.html", "mod.py"):
        _touch(tmp_path / name, 5)
    assert watcher.changes(0 if use_polling else 5) == [str(tmp_path / "mod.py"),
                                                        str(tmp_path / "page.html")]
    _touch(tmp_path / "skip_me.py", 10)
    _touch(tmp_path / "notes.txt", 10)
    assert watcher.changes(0 if use_polling else 0.2) == []
    (tmp_path / "sub").mkdir()  # a new directory is watched too
    (tmp_path / "sub" / "new.py").write_text("x")
    assert watcher.changes(0 if use_polling else 5) == [str(tmp_path / "sub" / "new.py")]


@pytest.mark.slow
def test_watch_use_polling_and_include_reload_the_pool(tmp_path, pools):
    watched = tmp_path / "src"
    watched.mkdir()
    (watched / "template.html").write_text("<p>")
    (watched / "skip_me.py").write_text("X = 1\n")
    pool = pools("-p", "1", "--watch", str(watched), "--watch-use-polling",
                 "-i", "*.html", "-x", "skip_*.py")
    [first] = pool.wait_ready(1)
    assert "(polling once a second)" in pool.output()
    _touch(watched / "skip_me.py", 5)
    _touch(watched / "template.html", 5)
    wait_for(lambda: pool.children() and first not in pool.children(), timeout=30)
    pool.wait_ready(1)
    reloads = [line for line in pool.output().splitlines() if "code changed" in line]
    assert len(reloads) == 1 and "template.html" in reloads[0]
    assert "skip_me" not in reloads[0]
    pool.signal(signal.SIGTERM)
    assert pool.wait(30) == 0


def test_watch_options_without_watch_exit_2(tmp_path, env):
    proc = run_worker(tmp_path, env, "flag_tasks", "--watch-use-polling")
    assert proc.returncode == 2 and "need --watch DIR" in proc.stderr


# -- --skip-logging ---------------------------------------------------------------------
@pytest.mark.slow
def test_skip_logging_leaves_logging_to_the_module(tmp_path, pools):
    own = tmp_path / "own.log"
    extra = {"LITEQ_TEST_OWN_LOG": str(own)}
    pool = pools("-p", "1", "--skip-logging", modules=("flag_tasks",), extra_env=extra)
    wait_for(lambda: own.exists() and "worker process ready" in own.read_text(), timeout=30)
    pool.signal(signal.SIGTERM)
    assert pool.wait(30) == 0
    assert not LOG_LINE.search(pool.output()), pool.output()
    assert "OWN liteq.pool: worker process ready" in own.read_text()

    own.unlink()
    pool = pools("-p", "1", modules=("flag_tasks",), extra_env=extra)  # liteq's logging
    pool.wait_ready(1)
    pool.signal(signal.SIGTERM)
    assert pool.wait(30) == 0
    assert LOG_LINE.search(pool.output())


def test_skip_logging_with_log_file_exits_2(tmp_path, env):
    proc = run_worker(tmp_path, env, "flag_tasks", "--skip-logging", "--log-file", "x.log")
    assert proc.returncode == 2 and "give one of them" in proc.stderr


# -- --fork-function and middleware forks ---------------------------------------------------
@pytest.mark.slow
def test_fork_function_runs_beside_the_workers_and_stops_with_the_pool(tmp_path, pools):
    forks = tmp_path / "forks.txt"
    pool = pools("-p", "1", "-f", "fork_functions:serve", "--fork-function",
                 "fork_functions:finish", extra_env={"LITEQ_TEST_FORK_FILE": str(forks)})
    wait_workers_ready(pool, 1)
    wait_for(lambda: {w for w, _ in fork_lines(forks)} == {"started", "finished"},
             timeout=30)
    [serving] = [pid for word, pid in fork_lines(forks) if word == "started"]
    assert psutil.Process(serving).ppid() == pool.proc.pid
    output = pool.output()
    # Dramatiq's order: the fork processes start once the workers are ready.
    assert output.index("worker processes are ready") < output.index("started fork process")
    wait_for(lambda: "fork_functions:finish exited with code 7" in pool.output(), timeout=30)

    pool.signal(signal.SIGHUP)  # a reload restarts them (also one that ended) with fresh code
    wait_for(lambda: [w for w, _ in fork_lines(forks)].count("started") == 2
             and [w for w, _ in fork_lines(forks)].count("finished") == 2, timeout=30)
    [renewed] = [pid for word, pid in fork_lines(forks) if word == "started" and pid != serving]
    pool.signal(signal.SIGTERM)
    assert pool.wait(30) == 0
    assert ("stopped", serving) in fork_lines(forks) and ("stopped", renewed) in fork_lines(forks)
    assert not psutil.pid_exists(renewed) or psutil.Process(renewed).status() == "zombie"


@pytest.mark.slow
def test_middleware_forks_run_in_a_fork_process(tmp_path, pools):
    forks = tmp_path / "forks.txt"
    pool = pools("-p", "2", modules=("flag_tasks",),
                 extra_env={"LITEQ_TEST_FORK_FILE": str(forks),
                            "LITEQ_TEST_MIDDLEWARE_FORK": "1"})
    wait_workers_ready(pool, 2)
    wait_for(lambda: fork_lines(forks), timeout=30)
    [(word, pid)] = fork_lines(forks)  # one, though both worker processes report it
    assert word == "started" and psutil.Process(pid).ppid() == pool.proc.pid
    pool.signal(signal.SIGTERM)
    assert pool.wait(30) == 0
    assert fork_lines(forks)[-1] == ("stopped", pid)


def test_fork_function_that_cannot_be_imported_stops_the_pool(tmp_path, env):
    proc = run_worker(tmp_path, env, "flag_tasks", "--path", str(FIXTURES), "-p", "1",
                      "-f", "fork_functions:nope")
    assert proc.returncode == 2
    assert "--fork-function fork_functions:nope: module 'fork_functions' has no attribute " \
           "'nope'" in proc.stderr
    proc = run_worker(tmp_path, env, "flag_tasks", "-f", "fork_functions")
    assert proc.returncode == 2 and "expected MODULE:FUNCTION" in proc.stderr


# -- --worker-fork-timeout ----------------------------------------------------------------
@pytest.mark.slow
def test_worker_fork_timeout_starts_forks_before_slow_workers_are_ready(tmp_path, pools):
    forks, gate = tmp_path / "forks.txt", tmp_path / "gate"
    pool = pools("-p", "1", "-f", "fork_functions:serve", "--worker-fork-timeout", "300",
                 modules=("flag_tasks",),
                 extra_env={"LITEQ_TEST_FORK_FILE": str(forks), "LITEQ_TEST_GATE": str(gate)})
    wait_for(lambda: fork_lines(forks), timeout=30)
    assert "worker process ready" not in pool.output()  # the import is still held
    assert "not all ready after --worker-fork-timeout 300 ms" in pool.output()
    gate.touch()
    wait_workers_ready(pool, 1)
    pool.signal(signal.SIGTERM)
    assert pool.wait(30) == 0


def test_worker_fork_timeout_takes_dramatiqs_range(tmp_path, env):
    assert parse("tasks", "--worker-fork-timeout", "10")["worker_fork_timeout"] == 10
    for bad in ("5", "1800001", "soon"):
        proc = run_worker(tmp_path, env, "tasks", "--worker-fork-timeout", bad)
        assert proc.returncode == 2 and "--worker-fork-timeout" in proc.stderr


def test_every_dramatiq_flag_is_a_liteq_worker_flag(tmp_path):
    from dramatiq.cli import make_argument_parser

    dramatiq_flags = {flag for action in make_argument_parser()._actions
                      for flag in action.option_strings}
    liteq_flags = {flag for param in worker_command.params if isinstance(param, click.Option)
                   for flag in param.opts + param.secondary_opts} | {"-h", "--help"}
    assert dramatiq_flags - liteq_flags == set()
    assert {"--worker-shutdown-timeout", "--watch-use-polling", "--watch-include",
            "--skip-logging", "--fork-function", "--worker-fork-timeout"} <= dramatiq_flags
    proc = subprocess.run([sys.executable, "-m", "liteq", "worker", "--help"],
                          capture_output=True, text=True, timeout=60)
    for flag in dramatiq_flags - {"-h", "--help"}:
        assert re.search(rf"(^|[ ,]){re.escape(flag)}\b", proc.stdout), flag


def test_a_path_that_is_no_directory_exits_2(tmp_path, env):
    proc = run_worker(tmp_path, env, "flag_tasks", "-P", str(FIXTURES), "more_tasks")
    assert proc.returncode == 2 and "'more_tasks' does not exist" in proc.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
def test_watcher_polls_when_inotify_cannot_watch_every_directory(tmp_path, monkeypatch):
    import liteq.process.reload

    class Exhausted:  # inotify_add_watch failing as at fs.inotify.max_user_watches
        def __init__(self, libc):
            self.inotify_init1 = libc.inotify_init1

        def inotify_add_watch(self, fd, path, mask):
            return -1

    libc = liteq.process.reload._inotify()
    monkeypatch.setattr(liteq.process.reload, "_inotify", lambda: Exhausted(libc))
    (tmp_path / "mod.py").write_text("x")
    watcher = Watcher([str(tmp_path)])
    assert watcher.polling
    _touch(tmp_path / "mod.py", 5)
    assert watcher.changes(0) == [str(tmp_path / "mod.py")]


@pytest.mark.slow
def test_a_fork_process_that_ignores_sigterm_is_killed_after_the_workers_stop(tmp_path,
                                                                              pools):
    forks = tmp_path / "forks.txt"
    pool = pools("-p", "1", "-f", "fork_functions:stubborn",
                 extra_env={"LITEQ_TEST_FORK_FILE": str(forks)})
    wait_for(lambda: fork_lines(forks), timeout=30)
    [(_, pid)] = fork_lines(forks)
    pool.signal(signal.SIGTERM)
    assert pool.wait(30) == 0
    assert ("ignored", pid) in fork_lines(forks)
    assert "did not stop on SIGTERM; killing them" in pool.output()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
