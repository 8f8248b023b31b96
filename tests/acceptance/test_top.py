"""``liteq top``: the data model, the layout, and the real command in a real terminal."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from helpers import running_worker, wait_for
from pools import kill_processes
from rich.cells import cell_len

import liteq
from liteq.ops.monitor import HISTORY, Monitor
from liteq.ops.top_render import render_text
from liteq.store import SqliteBroker

FIXTURES = Path(__file__).parents[1] / "fixtures"
TOP = [sys.executable, "-m", "liteq", "top"]
COUNTS = ("ready", "delayed", "claimed", "running", "dead", "succeeded", "failed", "retried",
          "dead_lettered")


def run_cli(db: Path, *args: str, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess:
    environment = dict(os.environ, LITEQ_BROKER_URL=f"sqlite:///{db}", **(env or {}))
    return subprocess.run([sys.executable, "-m", "liteq", *args], env=environment,
                          cwd=db.parent, capture_output=True, text=True, timeout=60)


# ---------------------------------------------------------------------------------------
# the data model and the layout, on hand-made snapshots
# ---------------------------------------------------------------------------------------
class FakeInspector:
    url = "sqlite:////srv/app/liteq.db"


def counts(**figures: int | None) -> dict[str, int | None]:
    return dict.fromkeys(COUNTS, 0) | figures


def fake_snapshot(at: int, k: int, workers: int = 3) -> dict:
    """The shape of ``liteq stats --json`` after ``k`` seconds of steady work."""
    return {
        "broker": "sqlite:////srv/app/liteq.db", "at": at,
        "queues": {
            "default": counts(ready=123456, delayed=12, claimed=40, running=16, dead=3,
                              succeeded=10000 + 500 * k, failed=20 + 2 * k, retried=20 + 2 * k),
            "emails": counts(succeeded=7),
            "reports_with_a_long_name": counts(ready=2_000_000, delayed=1, claimed=2, running=2,
                                               dead=140, succeeded=30 * k),
        },
        "workers": [{
            "owner": f"h:{4242 + i}:x", "pid": 4242 + i, "host": "elsewhere",
            "queues": ["default", "emails"], "threads": 8, "started_at": at - 3_600_000,
            "heartbeat_at": at - 300, "heartbeat_age_ms": 300,
            "state": ("alive", "stale", "dead")[i % 3], "running": ["record"] * 3 + ["mail"],
            "processed": 100012, "succeeded": 100000, "failed": 12,
            "activity": {
                "run_time": {"default": {"p50": 0.002 * (i + 1), "p95": 0.05 * (i + 1),
                                         "n": 100}},
                "failures": [{"at": at - 1000 * j, "actor": "explode",
                              "message_id": f"m{i}-{j}",
                              "error": f"ValueError: task {j} failed on purpose"}
                             for j in range(4)],
            },
        } for i in range(workers)],
    }


EXTRA = {"oldest_ready_age_ms": {"default": 12_000, "reports_with_a_long_name": 18_000_000},
         "recent_dead": [{"id": 9, "queue": "default", "message_id": "m0-0", "actor": "explode",
                          "error": "ValueError: dead on purpose", "at": 0}]}


def monitor_after(seconds: int, workers: int = 3) -> tuple[Monitor, object]:
    monitor = Monitor(FakeInspector())
    frame = None
    for k in range(seconds + 1):
        snap = fake_snapshot(1_000_000 + 1000 * k, k, workers)
        extra = dict(EXTRA, recent_dead=[dict(EXTRA["recent_dead"][0], at=snap["at"])])
        frame = monitor.update(snap, extra)
    return monitor, frame


def test_rates_and_history_come_from_successive_snapshots():
    monitor = Monitor(FakeInspector())
    first = monitor.update(fake_snapshot(1_000_000, 0), EXTRA)
    assert all(q.succeeded_rate is None and q.history == [] for q in first.queues)
    _, frame = monitor_after(HISTORY + 15)
    default = next(q for q in frame.queues if q.name == "default")
    assert default.succeeded_rate == pytest.approx(500)
    assert default.failed_rate == pytest.approx(2)
    assert len(default.history) == HISTORY  # a minute at the default interval
    assert frame.total_rate("succeeded_rate") == pytest.approx(530)
    assert default.oldest_ms == 12_000
    # p50: mean weighted by samples over the workers not dead; p95: their maximum.
    assert default.p50 == pytest.approx(0.003)
    assert default.p95 == pytest.approx(0.1)
    # Newest failures first; a message that was dead-lettered is shown once, as dead.
    assert frame.failures[0].kind == "dead" and frame.failures[0].actor == "explode"
    assert [f.kind for f in frame.failures].count("dead") == 1
    assert len(frame.failures) == 10


def lines_of(text: str) -> list[str]:
    return text.rstrip("\n").split("\n")


def test_a_frame_fits_80x24_and_uses_more_room_when_there_is_some():
    _, frame = monitor_after(30)
    small = render_text(frame, 80, 24)
    lines = lines_of(small)
    assert len(lines) <= 23, small  # the last line stays free: no scrolling
    assert max(cell_len(line) for line in lines) <= 80, small
    header = next(line for line in lines if line.startswith("Queue"))
    assert header.split() == ["Queue", "Ready", "Delay", "Run", "Dead", "Succ/s", "Fail/s",
                              "Trend", "Oldest", "p50", "p95"]
    for needle in ("default", "emails", "reports_with", "4242", "stale", "dead",
                   "ValueError", "500", "/srv/app/liteq.db", "more failures"):
        assert needle in small, (needle, small)
    assert "▁" in small or "█" in small  # sparklines

    big = render_text(frame, 160, 60)
    assert max(cell_len(line) for line in lines_of(big)) <= 160
    assert "reports_with_a_long_name" in big
    assert "more failures" not in big
    assert big.count("ValueError") == 10
    assert len(next(line for line in lines_of(big) if line.startswith("default"))) > 100


def test_narrow_and_short_terminals_drop_columns_and_rows():
    _, frame = monitor_after(5, workers=12)
    narrow = render_text(frame, 44, 24)
    lines = lines_of(narrow)
    assert max(cell_len(line) for line in lines) <= 44, narrow
    assert len(lines) <= 23
    header = next(line for line in lines if line.startswith("Queue")).split()
    assert header[:2] == ["Queue", "Ready"] and "Succ/s" in header and "p95" not in header
    assert "more workers" in narrow  # 12 workers do not fit: the rest are counted
    tiny = render_text(frame, 30, 12)
    assert max(cell_len(line) for line in lines_of(tiny)) <= 30
    assert len(lines_of(tiny)) <= 12


# ---------------------------------------------------------------------------------------
# real databases
# ---------------------------------------------------------------------------------------
def test_refresh_reads_while_another_connection_holds_the_write_lock(tmp_path):
    db = tmp_path / "q.db"
    broker = SqliteBroker(str(db), middleware=[])
    try:
        broker.declare_queue("default")
        broker.enqueue_many([liteq.Message("default", "task", (n,), {}, {})
                             for n in range(100)])
        writer = sqlite3.connect(db, isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")  # holds the write lock for the whole refresh
        try:
            monitor = Monitor(broker.inspector())
            started = time.monotonic()
            frame = monitor.refresh()
            text = render_text(frame, 100, 30)
            assert time.monotonic() - started < 1.0  # never waited for the lock
        finally:
            writer.execute("ROLLBACK")
            writer.close()
        assert frame.queues[0].ready == 100 and frame.queues[0].oldest_ms is not None
        assert "default" in text
    finally:
        broker.close()


def test_json_is_the_stats_snapshot_with_the_figures_of_the_work_done(tmp_path):
    db = tmp_path / "q.db"
    broker = SqliteBroker(str(db))
    try:
        @liteq.actor(broker=broker)
        def fine(n: int) -> None:
            pass

        @liteq.actor(broker=broker, queue_name="failing", max_retries=0)
        def explode(n: int) -> None:
            raise ValueError(f"boom {n}")

        broker.declare_queue("idle")
        for n in range(40):
            fine.send(n)
        for n in range(7):
            explode.send(n)
        broker.enqueue_many([liteq.Message("idle", "nobody", (n,), {}, {}) for n in range(25)])
        broker.enqueue_many([liteq.Message("idle", "nobody", (n,), {}, {}) for n in range(5)],
                            delay=3_600_000)
        with running_worker(broker, queues=["default", "failing"]):
            broker.join("default", timeout=30000)
            broker.join("failing", timeout=30000, fail_fast=False)
            wait_for(lambda: [(w["processed"], w["failed"]) for w in broker.workers()]
                     == [(47, 7)], timeout=10)
            top = run_cli(db, "top", "--json")
            stats = run_cli(db, "stats", "--json")
        assert top.returncode == 0, top.stderr
        assert stats.returncode == 0, stats.stderr
        data, same = json.loads(top.stdout), json.loads(stats.stdout)
    finally:
        broker.close()

    assert set(data) == set(same) == {"broker", "queues", "workers", "storage", "at"}
    assert data["broker"] == same["broker"] == f"sqlite:///{db}"
    assert data["queues"] == same["queues"]
    expected = {
        "default": counts(succeeded=40),
        "failing": counts(dead=7, failed=7, dead_lettered=7),
        "idle": counts(ready=25, delayed=5),
    }
    assert {name: {k: counts[k] for k in COUNTS} for name, counts in data["queues"].items()
            } == expected
    (worker,) = data["workers"]
    assert worker["pid"] == os.getpid() and worker["state"] == "alive"
    assert sorted(worker["queues"]) == ["default", "failing"]
    assert (worker["processed"], worker["succeeded"], worker["failed"]) == (47, 40, 7)
    assert data["storage"]["path"] == str(db) and data["storage"]["file_bytes"] > 0
    assert worker["activity"]["run_time"]["default"]["n"] == 40
    assert {f["actor"] for f in worker["activity"]["failures"]} == {"explode"}
    moving = {"heartbeat_at", "heartbeat_age_ms"}
    assert ([{k: v for k, v in w.items() if k not in moving} for w in data["workers"]]
            == [{k: v for k, v in w.items() if k not in moving} for w in same["workers"]])


def test_once_prints_one_frame_at_80_columns(tmp_path):
    db = tmp_path / "q.db"
    broker = SqliteBroker(str(db), middleware=[])
    try:
        for name in ("default", "emails"):
            broker.declare_queue(name)
        broker.enqueue_many([liteq.Message("default", "task", (n,), {}, {})
                             for n in range(300)])
        broker.enqueue_many([liteq.Message("emails", "send", (n,), {}, {}) for n in range(3)],
                            delay=60_000)
    finally:
        broker.close()
    proc = run_cli(db, "top", "--once", "--interval", "0.1",
                   env={"COLUMNS": "80", "LINES": "24", "TERM": "dumb"})
    assert proc.returncode == 0, proc.stderr
    lines = lines_of(proc.stdout)
    assert max(cell_len(line) for line in lines) <= 80, proc.stdout
    header = next(line for line in lines if line.startswith("Queue")).split()
    assert header[:3] == ["Queue", "Ready", "Delay"] and "Succ/s" in header, proc.stdout
    default = next(line for line in lines if line.startswith("default")).split()
    emails = next(line for line in lines if line.startswith("emails")).split()
    assert default[1:3] == ["300", "0"] and emails[1:3] == ["0", "3"]
    assert "no workers" in proc.stdout and str(db) in proc.stdout


def test_top_refuses_a_missing_database(tmp_path):
    proc = run_cli(tmp_path / "missing.db", "top", "--once")
    assert proc.returncode == 3
    assert "no liteq database" in proc.stderr


# ---------------------------------------------------------------------------------------
# a real terminal (tmux) against a real pool
# ---------------------------------------------------------------------------------------
class Tmux:
    """A private tmux server (its own socket) running one command in a 120x40 pane."""

    def __init__(self, tmp_path: Path, command: str, width: int = 120, height: int = 40
                 ) -> None:
        self.socket = str(tmp_path / f"tmux-{time.monotonic_ns()}.sock")
        self.tmux("new-session", "-d", "-x", str(width), "-y", str(height), command)
        self.server_pid = int(self.tmux("display-message", "-p", "#{pid}").strip())
        self.pane_pid = int(self.tmux("display-message", "-p", "#{pane_pid}").strip())

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", self.socket, *args], capture_output=True,
                              text=True, timeout=10, check=True).stdout

    def screen(self) -> str:
        try:
            return self.tmux("capture-pane", "-p")
        except subprocess.CalledProcessError:  # the pane (and server) ended
            return ""

    def send(self, *keys: str) -> None:
        self.tmux("send-keys", *keys)

    def kill(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True,
                       timeout=10)
        for pid in (self.pane_pid, self.server_pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def wait_screen(term: Tmux, predicate, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        screen = term.screen()
        if predicate(screen):
            return screen
        if time.monotonic() > deadline:
            raise AssertionError(f"the screen never showed what was expected:\n{screen}")
        time.sleep(0.1)


def column(screen: str, header_start: str, row_start: str, name: str) -> str | None:
    """The cell under ``name`` in the row starting with ``row_start`` (None if absent)."""
    lines = [line.lstrip() for line in screen.splitlines()]
    header = next((line.split() for line in lines if line.startswith(header_start + " ")),
                  None)
    row = next((line.split() for line in lines if line.startswith(row_start + " ")), None)
    if header is None or row is None or name not in header:
        return None
    index = header.index(name)
    return row[index] if index < len(row) else None


def shows_workers(screen: str, pids: list[int]) -> bool:
    """True when each process of ``pids`` has its worker row on the screen."""
    lines = [line.lstrip() for line in screen.splitlines()]
    return all(any(line.startswith(f"{pid} ") for line in lines) for pid in pids)


def top_in_tmux(tmp_path: Path, *args: str, env: str = "") -> Tmux:
    """``liteq top --interval 0.5 ARGS`` in a tmux pane of its own, run in ``tmp_path``
    with ``env`` (``NAME=value ...``); its exit code is written to ``top.rc`` there."""
    q = shlex.quote
    command = (f"cd {q(str(tmp_path))}; env {env} {' '.join(map(q, [*TOP, *args]))}"
               " --interval 0.5; echo $? > top.rc")
    return Tmux(tmp_path, f"bash -c {q(command)}")


def top_process(term: Tmux) -> psutil.Process:
    """The ``liteq top`` process under the pane's shell."""
    found: list[psutil.Process] = []

    def find() -> bool:
        found.clear()
        for proc in psutil.Process(term.pane_pid).children(recursive=True):
            try:
                if any(arg.endswith("top") for arg in proc.cmdline()[1:]):
                    found.append(proc)
            except psutil.Error:  # a short-lived child (stty) gone or a zombie
                pass
        return bool(found)

    wait_for(find, timeout=10)
    return found[0]


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc`` and every process below it, and reap it."""
    try:
        pids = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        pids = []
    kill_processes([proc.pid, *pids], proc)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (apt-get install tmux)")
def test_top_in_a_real_terminal_against_a_busy_pool(tmp_path):
    db = tmp_path / "q.db"
    url = f"sqlite:///{db}"
    env = dict(os.environ, LITEQ_BROKER_URL=url, PYTHONUNBUFFERED="1")
    broker = SqliteBroker(str(db), middleware=[])
    for name in ("default", "failing"):
        broker.declare_queue(name)
    log = open(tmp_path / "pool.log", "wb")  # noqa: SIM115 - closed in finally
    pool = subprocess.Popen([sys.executable, "-m", "liteq", "worker", "pool_tasks", "--path",
                             str(FIXTURES), "--processes", "2"],
                            env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    stop = threading.Event()

    def feed() -> None:  # a steady stream: ~400 tasks/s and a failure every 0.5 s
        n = 0
        while not stop.is_set():
            broker.enqueue_many([liteq.Message("default", "record", (n + i,), {"sleep_ms": 2},
                                               {}) for i in range(20)])
            if n % 200 == 0:
                broker.enqueue(liteq.Message("failing", "fail", (n,), {}, {}))
            n += 20
            stop.wait(0.05)

    feeder = threading.Thread(target=feed, daemon=True)
    terms: list[Tmux] = []
    tops: list[psutil.Process] = []

    def start_top(name: str) -> Tmux:
        q = shlex.quote
        command = (f"cd {q(str(tmp_path))}; stty -g > {name}.before; "
                   f"env LITEQ_BROKER_URL={q(url)} {' '.join(map(q, TOP))} --interval 0.5; "
                   f"echo $? > {name}.rc; stty -g > {name}.tmp; mv {name}.tmp {name}.after")
        term = Tmux(tmp_path, f"bash -c {q(command)}")
        terms.append(term)
        tops.append(top_process(term))
        return term

    def ended_cleanly(name: str) -> None:
        rc = tmp_path / f"{name}.rc"
        wait_for(lambda: (tmp_path / f"{name}.after").exists(), timeout=10)
        assert rc.read_text().strip() == "0"
        wait_for(lambda: not tops[-1].is_running()
                 or tops[-1].status() == psutil.STATUS_ZOMBIE, timeout=10)
        # The terminal's settings are back to what they were before liteq top started.
        assert (tmp_path / f"{name}.before").read_text() == \
            (tmp_path / f"{name}.after").read_text()

    try:
        wait_for(lambda: len(broker.workers()) == 2, timeout=30)
        pids = sorted(w["pid"] for w in broker.workers())
        feeder.start()

        term = start_top("first")

        def busy(screen: str) -> bool:
            rate = column(screen, "Queue", "default", "Succ/s")
            return (rate not in (None, "0", "-")
                    and shows_workers(screen, pids)
                    and column(screen, "Queue", "failing", "Dead") not in (None, "0")
                    and "ValueError: task" in screen)

        screen = wait_screen(term, busy, timeout=30)
        assert "default" in screen and "failing" in screen and str(db) in screen
        succeeded_rate = column(screen, "Queue", "default", "Succ/s")
        assert float(succeeded_rate.replace(",", "")) > 0  # type: ignore[union-attr]
        for pid in pids:  # every worker process, with its CPU and RSS from psutil
            cpu = column(screen, "PID", str(pid), "CPU%")
            assert cpu is not None and cpu != "-", screen
        term.send("q")
        ended_cleanly("first")

        # Ctrl-C quits just as cleanly.
        term = start_top("second")
        wait_screen(term, lambda s: "Succ/s" in s, timeout=30)
        term.send("C-c")
        ended_cleanly("second")
    finally:
        stop.set()
        if feeder.is_alive():
            feeder.join(10)
        for top in tops:
            try:
                top.kill()
            except psutil.NoSuchProcess:
                pass
        for term in terms:
            term.kill()
        kill_tree(pool)
        log.close()
        broker.close()


def test_busy_counts_the_threads_running_a_task_not_all_threads(tmp_path):
    """A real worker with 4 threads, exactly 2 held in tasks: stats and top say 2 of 4."""
    db, gate = tmp_path / "q.db", tmp_path / "gate"
    env = dict(os.environ, LITEQ_BROKER_URL=f"sqlite:///{db}", LITEQ_TEST_GATE=str(gate))
    broker = SqliteBroker(str(db), middleware=[])
    broker.declare_queue("default")
    broker.enqueue_many([liteq.Message("default", "gated", (), {}, {}) for _ in range(2)])
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115 - closed in finally
    worker = subprocess.Popen([sys.executable, "-m", "liteq", "worker", "gated_tasks",
                               "--path", str(FIXTURES), "-p", "1", "-t", "4"],
                              env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: [len(w["running"]) for w in broker.workers()] == [2], timeout=30)
        stats = run_cli(db, "stats", "--json")
        top = run_cli(db, "top", "--once", "--interval", "0",
                      env={"COLUMNS": "200", "LINES": "50", "TERM": "dumb"})
    finally:
        gate.touch()
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            kill_tree(worker)
        log.close()
        broker.close()
    assert stats.returncode == 0, stats.stderr
    (entry,) = json.loads(stats.stdout)["workers"]
    assert entry["threads"] == 4 and entry["running"] == ["gated", "gated"]
    assert top.returncode == 0, top.stderr
    assert column(top.stdout, "PID", str(entry["pid"]), "Busy") == "2/4", top.stdout
    assert "2/4 busy" in top.stdout
