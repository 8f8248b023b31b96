"""Running ``liteq worker`` pools in tests: a supervisor as a real process, the record
file its tasks append to (tests/fixtures/pool_tasks.py), and reads of its SQLite file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import psutil
from helpers import wait_for

import liteq
from liteq.store import SqliteBroker

FIXTURES = Path(__file__).parent / "fixtures"


class Pool:
    """A ``python -m liteq worker`` supervisor started by a test; killed by PID at the end."""

    def __init__(self, tmp_path: Path, env: dict[str, str], *args: str,
                 modules: tuple[str, ...] = ("pool_tasks",)) -> None:
        self.log_path = tmp_path / f"pool-{time.monotonic_ns()}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in kill()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "liteq", "worker", *modules, "--path", str(FIXTURES),
             *args],
            env=env, cwd=tmp_path, stdout=self.log, stderr=subprocess.STDOUT,
        )
        self.ps = psutil.Process(self.proc.pid)
        self.seen_children: set[int] = set()

    def children(self) -> list[int]:
        pids = []
        try:
            children = self.ps.children()
        except psutil.NoSuchProcess:
            return []
        for child in children:
            try:
                if child.status() == psutil.STATUS_ZOMBIE:
                    continue
                if "resource_tracker" in " ".join(child.cmdline()):  # spawn's helper
                    continue
            except psutil.NoSuchProcess:
                continue
            pids.append(child.pid)
        self.seen_children.update(pids)
        return pids

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, processes: int, timeout: float = 30) -> list[int]:
        wait_for(lambda: len(self.children()) == processes
                 and self.output().count("worker process ready") >= processes,
                 timeout=timeout)
        return self.children()

    def signal(self, signum: int) -> None:
        os.kill(self.proc.pid, signum)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the supervisor and every child it has (by PID)."""
        try:
            pids = [c.pid for c in self.ps.children(recursive=True)]
        except psutil.NoSuchProcess:
            pids = []
        kill_processes([self.proc.pid, *pids, *self.seen_children], self.proc)
        self.log.close()


def kill_processes(pids: Iterable[int], proc: subprocess.Popen) -> None:
    """SIGKILL ``pids`` (by PID; gone ones are skipped) and reap ``proc``."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass


def open_broker(tmp_path: Path) -> SqliteBroker:
    broker = SqliteBroker(str(tmp_path / "q.db"), middleware=[])
    for name in ("default", "stuck", "failing"):
        broker.declare_queue(name)
    return broker


def enqueue(tmp_path: Path, actor: str, args_list: list[tuple], queue: str = "default",
            **kwargs: object) -> list[str]:
    broker = open_broker(tmp_path)
    try:
        sent = broker.enqueue_many(
            [liteq.Message(queue, actor, args, dict(kwargs), {}) for args in args_list])
        return [m.message_id for m in sent]
    finally:
        broker.close()


def records(tmp_path: Path) -> list[tuple[str, int]]:
    path = tmp_path / "record.txt"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        n, pid = line.split()
        rows.append((n, int(pid)))
    return rows


def record_count(tmp_path: Path) -> int:
    path = tmp_path / "record.txt"
    return path.read_bytes().count(b"\n") if path.exists() else 0


def stats(tmp_path: Path) -> dict:
    broker = SqliteBroker(str(tmp_path / "q.db"), middleware=[])
    try:
        return broker.stats()
    finally:
        broker.close()


def queue_idle(tmp_path: Path, queue: str = "default") -> bool:
    s = stats(tmp_path).get(queue, {})
    return not (s.get("ready") or s.get("delayed") or s.get("claimed"))
