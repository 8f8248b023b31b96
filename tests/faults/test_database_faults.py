"""Database faults end ``liteq worker`` with a named error and exit code 3 within seconds
(corrupted pages, a read-only directory or file, a clash with the application's own
``liteq_*`` tables, a value over SQLite's maximum length) and never touch a file they
refuse; a full disk is retried with backoff until space returns.

Real ``liteq worker`` processes on real files; the read-only directory and the full
disk need root (a read-only bind mount, a size-limited tmpfs) and are skipped,
saying why, elsewhere.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import apsw
import psutil
import pytest
from helpers import wait_for
from pools import kill_processes

import liteq
from liteq.errors import DatabaseFull, SchemaClash
from liteq.store import SqliteBroker

HERE = Path(__file__).parent
PAGE = 4096


class WorkerProcess:
    """A ``python -m liteq worker fault_tasks`` started by a test, stdout and stderr apart."""

    def __init__(self, tmp_path: Path, url: str, *args: str, env: dict[str, str]) -> None:
        name = f"worker-{time.monotonic_ns()}"
        self.out_path, self.err_path = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
        self.out, self.err = open(self.out_path, "wb"), open(self.err_path, "wb")  # noqa: SIM115
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "liteq", "worker", "fault_tasks", "--path", str(HERE),
             "--processes", "1", "--threads", "2", *args],
            env=dict(env, LITEQ_BROKER_URL=url), cwd=tmp_path, stdout=self.out,
            stderr=self.err)
        self.pids = {self.proc.pid}

    def stderr(self) -> str:
        self.err.flush()
        return self.err_path.read_text(errors="replace")

    def stdout(self) -> str:
        self.out.flush()
        return self.out_path.read_text(errors="replace")

    def wait(self, timeout: float) -> tuple[int, float]:
        """The exit code and the seconds since start (fails the test on a timeout)."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"liteq worker still running after {timeout}s:\n{self.stderr()[-3000:]}")
        return code, time.monotonic() - self.started

    def alive(self) -> bool:
        try:
            self.pids.update(c.pid for c in psutil.Process(self.proc.pid).children())
        except psutil.NoSuchProcess:
            pass
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the supervisor and every child seen (by PID)."""
        self.alive()
        kill_processes(self.pids, self.proc)
        self.out.close()
        self.err.close()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, LITEQ_TEST_RECORD=str(tmp_path / "record.txt"),
                PYTHONUNBUFFERED="1")


@pytest.fixture
def workers(tmp_path: Path, env: dict[str, str]) -> Iterator:
    started: list[WorkerProcess] = []

    def start(path: Path, *args: str, extra_env: dict[str, str] | None = None
              ) -> WorkerProcess:
        worker = WorkerProcess(tmp_path, f"sqlite:///{path}", *args,
                               env=dict(env, **(extra_env or {})))
        started.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.kill()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_queue(path: Path, messages: int = 0, *, wal: bool = True) -> None:
    """A liteq database at ``path`` holding ``messages`` ``record`` messages, closed."""
    broker = SqliteBroker(str(path), middleware=[])
    broker.declare_queue("default")
    if messages:
        broker.enqueue_many([liteq.Message("default", "record", (n,), {}, {})
                             for n in range(messages)])
    broker.close()
    if not wal:
        conn = apsw.Connection(str(path))
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.close()


def recorded(tmp_path: Path) -> set[int]:
    path = tmp_path / "record.txt"
    if not path.exists():
        return set()
    return {int(line.split()[0]) for line in path.read_text().splitlines()}


# -- corruption ---------------------------------------------------------------------------
def corrupt_message_pages(path: Path) -> None:
    """Overwrite with garbage every page of ``liteq_messages`` and its indexes (found
    with the dbstat table), leaving the pages a worker reads at boot intact."""
    conn = sqlite3.connect(path)
    try:
        pages = [p for (p,) in conn.execute(
            "SELECT pageno FROM dbstat WHERE name LIKE 'liteq_messages%'")]
    finally:
        conn.close()
    assert len(pages) > 10
    with open(path, "r+b") as f:
        for page in pages:
            f.seek((page - 1) * PAGE)
            f.write(os.urandom(PAGE))


def test_corrupted_pages_stop_the_whole_pool_with_exit_3(tmp_path, workers):
    path = tmp_path / "q.db"
    make_queue(path, 3000)
    corrupt_message_pages(path)
    worker = workers(path, "--processes", "2")
    code, elapsed = worker.wait(30)
    err = worker.stderr()
    assert code == 3, err
    assert elapsed < 10, (elapsed, err)
    assert "DatabaseCorrupt" in err and "is corrupt" in err, err
    assert "worker process ready" in err  # it failed after boot, in the consumer
    assert "retrying in" not in err and "Traceback" not in err, err
    assert "restarting it" not in err, err


# -- read-only ----------------------------------------------------------------------------
def lock_down(source: Path, view: Path) -> None:
    """Make ``view`` a read-only view of ``source``: for root (whom permissions do not
    stop) a read-only bind mount; for others, ``source`` itself without write permission."""
    if source == view:
        for p in source.iterdir():
            p.chmod(0o444)
        source.chmod(0o555)
        return
    for cmd in (["mount", "--bind", str(source), str(view)],
                ["mount", "-o", "remount,ro,bind", str(view)]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            if cmd[1] == "-o":
                subprocess.run(["umount", str(view)])
            pytest.skip(f"running as root and cannot make a read-only bind mount "
                        f"({' '.join(cmd)}: {proc.stderr.strip()})")


@pytest.mark.parametrize("wal", [True, False], ids=["wal-file", "rollback-journal-file"])
def test_a_read_only_directory_stops_the_worker_with_exit_3(tmp_path, workers, wal):
    source = tmp_path / "rw"
    view = tmp_path / "ro" if os.geteuid() == 0 else source
    source.mkdir()
    view.mkdir(exist_ok=True)
    make_queue(source / "q.db", 5, wal=wal)
    before = digest(source / "q.db")
    lock_down(source, view)
    try:
        assert not os.access(view / "q.db", os.W_OK)
        worker = workers(view / "q.db")
        code, elapsed = worker.wait(30)
        err = worker.stderr()
    finally:
        if source != view:
            subprocess.run(["umount", str(view)], check=True)
        else:
            source.chmod(0o755)
            for p in source.iterdir():
                p.chmod(0o644)
    assert code == 3, err
    assert elapsed < 10, (elapsed, err)
    assert "DatabaseReadOnly" in err and "read-only" in err, err
    assert "Traceback" not in err, err
    assert digest(source / "q.db") == before


def test_an_immutable_file_stops_the_worker_with_exit_3(tmp_path, workers):
    """``chattr +i``: a read-only file in a writable directory, even for root."""
    path = tmp_path / "q.db"
    make_queue(path, 5, wal=False)
    if shutil.which("chattr") is None:
        pytest.skip("no chattr(1) to make the file immutable")
    proc = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot make the file immutable: {proc.stderr.strip()}")
    try:
        worker = workers(path)
        code, elapsed = worker.wait(30)
        err = worker.stderr()
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)
    assert code == 3, err
    assert elapsed < 10, (elapsed, err)
    assert "DatabaseReadOnly" in err, err


# -- the adoption rule -------------------------------------------------------------------
def applications_file(path: Path, table: str) -> None:
    """An application's own database: application_id 0, user_version 0, its tables."""
    conn = sqlite3.connect(path)
    conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, text TEXT)")
    conn.execute(f"INSERT INTO {table} (text) VALUES ('the application''s row')")
    conn.commit()
    conn.close()


def test_a_clash_with_the_applications_liteq_messages_table_exits_3_untouched(
        tmp_path, workers):
    path = tmp_path / "app.db"
    applications_file(path, "liteq_messages")
    before, listing = digest(path), sorted(os.listdir(tmp_path))
    worker = workers(path)
    code, elapsed = worker.wait(30)
    err = worker.stderr()
    assert code == 3, err
    assert elapsed < 10, (elapsed, err)
    assert "SchemaClash" in err and "liteq_messages" in err, err
    assert "Traceback" not in err, err
    assert digest(path) == before
    assert not (tmp_path / "app.db-wal").exists() and not (tmp_path / "app.db-shm").exists()
    assert {"app.db-wal", "app.db-shm"}.isdisjoint(os.listdir(tmp_path))
    assert set(listing) <= set(os.listdir(tmp_path))


@pytest.mark.parametrize("table", ["liteq_results", "LITEQ_custom"])
def test_any_liteq_table_in_an_unversioned_file_is_refused_untouched(tmp_path, table):
    path = tmp_path / "app.db"
    applications_file(path, table)
    before = digest(path)
    with pytest.raises(SchemaClash, match="refusing to adopt"):
        SqliteBroker(str(path))
    assert digest(path) == before


def test_an_applications_own_file_without_liteq_tables_is_adopted(tmp_path):
    path = tmp_path / "app.db"
    applications_file(path, "orders")
    broker = SqliteBroker(str(path), middleware=[])
    broker.declare_queue("default")
    broker.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT text FROM orders").fetchall() == [("the application's row",)]
    assert conn.execute("SELECT count(*) FROM liteq_messages").fetchone() == (0,)
    conn.close()
    SqliteBroker(str(path), middleware=[]).close()  # and reopened as liteq's


# -- a full disk ----------------------------------------------------------------------------
def fill(directory: Path) -> Path:
    """Write a file in ``directory`` until the file system is full."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (1 << 16, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs (needs root, or CAP_SYS_ADMIN, and mount(8))."""
    if os.geteuid() != 0:
        pytest.skip("a full disk needs a size-limited tmpfs, which only root can mount")
    disk = tmp_path / "disk"
    disk.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs: {proc.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def test_a_full_disk_is_retried_with_backoff_and_work_goes_on_when_space_returns(
        tmp_path, workers, small_disk):
    path = small_disk / "q.db"
    make_queue(path)
    # Messages queued before the disk fills; this connection stays open so that the
    # -wal and -shm files exist (a worker cannot create them on a full disk).
    keeper = SqliteBroker(str(path), middleware=[])
    keeper.declare_queue("default")
    keeper.enqueue_many([liteq.Message("default", "record", (n,), {}, {}) for n in range(50)])
    filler = fill(small_disk)
    worker = workers(path)
    wait_for(lambda: worker.stderr().count("DatabaseFull") >= 2, timeout=20)
    assert worker.alive()
    assert recorded(tmp_path) == set()
    filler.unlink()
    wait_for(lambda: recorded(tmp_path) == set(range(50)), timeout=30)
    err = worker.stderr()
    lines = [line for line in err.splitlines() if "DatabaseFull" in line]
    assert all("disk is full" in line and "retrying in" in line for line in lines), err
    assert "Traceback" not in err, err
    assert "accepts writes again" in err, err
    keeper.close()
    worker.proc.send_signal(signal.SIGTERM)
    code, _ = worker.wait(30)
    assert code == 0, worker.stderr()


def test_a_full_database_in_process_is_retried_until_max_page_count_rises(
        sqlite_broker, caplog):
    """The cheaper variant: ``PRAGMA max_page_count`` makes SQLite report a full disk."""
    ran = []

    @liteq.actor(max_retries=0)
    def job(n):
        ran.append(n)

    sqlite_broker.enqueue_many([job.message(n) for n in range(400)])
    db = sqlite_broker.db
    with db.lock:
        pages = db.conn.execute("PRAGMA page_count").fetchone()[0]
        db.conn.execute(f"PRAGMA max_page_count = {pages}")
    worker = liteq.Worker(sqlite_broker, worker_threads=1, prefetch=400, worker_timeout=100)
    with caplog.at_level("INFO", logger="liteq.worker"):
        worker.start()
        try:
            wait_for(lambda: sum("DatabaseFull" in r.getMessage() for r in caplog.records) >= 2,
                     timeout=10)
            assert ran == [] and worker.fatal is None
            with db.lock:
                db.conn.execute("PRAGMA max_page_count = 1073741823")
            wait_for(lambda: len(ran) == 400, timeout=20)
        finally:
            worker.stop(timeout=5000)
    full = [r for r in caplog.records if "DatabaseFull" in r.getMessage()]
    assert all(r.levelname == "WARNING" and r.exc_info is None for r in full)
    assert isinstance(DatabaseFull("x"), liteq.errors.DatabaseUnavailable)


# -- a value over SQLite's maximum length in a worker --------------------------------------
def test_a_value_over_sqlites_maximum_length_stops_the_worker_with_exit_3(tmp_path, workers):
    """A failure whose traceback is longer than SQLITE_LIMIT_LENGTH cannot be stored as a
    dead letter: MessageTooLarge, not a retry loop. Only the child that claimed it meets
    the error: its exit code 3 also stops its healthy sibling, instead of a restart."""
    path = tmp_path / "q.db"
    broker = SqliteBroker(str(path), middleware=[])
    broker.declare_queue("default")
    broker.enqueue(liteq.Message("default", "fail_loudly", (20000,), {}, {}))
    broker.close()
    worker = workers(path, "--processes", "2", extra_env={"LITEQ_TEST_MAX_LENGTH": "5000"})
    code, elapsed = worker.wait(30)
    err = worker.stderr()
    assert code == 3, err
    assert elapsed < 10, (elapsed, err)
    assert err.count("worker process ready") == 2, err
    assert "MessageTooLarge: cannot write database" in err, err
    assert "retrying in" not in err and "restarting it" not in err, err


def test_a_worker_booting_on_a_full_disk_is_restarted_until_space_returns(
        tmp_path, workers, small_disk):
    filler = fill(small_disk)
    path = small_disk / "q.db"
    worker = workers(path)
    wait_for(lambda: worker.stderr().count("restarting it in") >= 2, timeout=20)
    assert worker.alive()
    err = worker.stderr()
    assert "DatabaseFull" in err and "Traceback" not in err, err
    filler.unlink()
    wait_for(lambda: "all 1 worker processes are ready" in worker.stderr(), timeout=30)
    broker = SqliteBroker(str(path), middleware=[])
    broker.declare_queue("default")
    broker.enqueue_many([liteq.Message("default", "record", (n,), {}, {}) for n in range(10)])
    broker.close()
    wait_for(lambda: recorded(tmp_path) == set(range(10)), timeout=30)
    worker.proc.send_signal(signal.SIGTERM)
    code, _ = worker.wait(30)
    assert code == 0, worker.stderr()
