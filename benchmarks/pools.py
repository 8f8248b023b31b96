"""A worker CLI run as a pool of processes, and how to read what its tasks recorded.

Kept apart from the systems so that every scenario measures pools the same way.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import time

import psutil

from benchmarks import bench_recorder

#: The benchmarks directory (workers' cwd and PYTHONPATH), the checkout, the interpreter.
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PY = sys.executable


class ScenarioError(RuntimeError):
    """A scenario could not produce its figure (the message says why)."""


class Pool:
    """A worker CLI launched in its own session; knows its processes; stopped for sure."""

    def __init__(self, cmd: list[str], env: dict[str, str], log_path: str) -> None:
        self.cmd = cmd
        self.log_path = log_path
        self._log = open(log_path, "ab")  # closed in stop()
        self.t0 = time.time()
        self.proc = subprocess.Popen(cmd, env=env, cwd=HERE, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.root = psutil.Process(self.proc.pid)

    def processes(self) -> list[psutil.Process]:
        with contextlib.suppress(psutil.Error):
            return [self.root, *self.root.children(recursive=True)]
        return []

    def workers(self) -> list[psutil.Process]:
        """The processes that run tasks: the children, or the CLI process itself."""
        with contextlib.suppress(psutil.Error):
            children = self.root.children(recursive=True)
            return children or [self.root]
        return []

    def rss_mb(self) -> list[float]:
        sizes = []
        for p in self.workers():
            with contextlib.suppress(psutil.Error):
                sizes.append(p.memory_info().rss / 2**20)
        return sizes

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise ScenarioError(f"worker CLI exited with code {self.proc.returncode}: "
                                f"{' '.join(self.cmd)}\n{self.log_tail()}")

    def log_tail(self, size: int = 1500) -> str:
        self._log.flush()
        with open(self.log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            return f.read().decode("utf-8", "replace")

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        # Anything left in the session we created (a stuck child) is killed.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self._log.close()


def cpu_seconds(procs: list[psutil.Process]) -> dict[int, float]:
    result = {}
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            result[p.pid] = t.user + t.system
    return result


def wait_count(directory: str, target: int, timeout: float, pool: Pool | None,
               at_least: bool = False) -> list[dict]:
    """Poll the recorder files until ``target`` tasks ran; returns the per-process files.

    Unless ``at_least``, also checks (after a short settle) that exactly ``target`` ran.
    """
    deadline = time.monotonic() + timeout
    while True:
        counts = bench_recorder.read_counts(directory)
        total = sum(c["count"] for c in counts)
        if total >= target:
            break
        if pool is not None:
            pool.check_alive()
        if time.monotonic() > deadline:
            raise ScenarioError(f"only {total} of {target} tasks ran within {timeout:.0f} s")
        time.sleep(0.01)
    if not at_least:
        time.sleep(0.1)  # a duplicate run would show up by now
        counts = bench_recorder.read_counts(directory)
        total = sum(c["count"] for c in counts)
        if total != target:
            raise ScenarioError(f"{total} task runs recorded for {target} messages")
    return counts


def window_rate(counts: list[dict], window: int) -> float | None:
    """Tasks per second from the first task until about ``window`` tasks had run.

    Uses the per-process milestones (a time every ``milestone`` tasks of a process):
    merged and sorted, the k-th one is when the pool had run at least k*milestone.
    """
    started = [c for c in counts if c["count"]]
    if not started:
        return None
    step = started[0]["milestone"]
    first = min(c["first"] for c in started)
    merged = sorted(t for c in started for t in c["milestones"])
    k = math.ceil(window / step)
    if step <= 0 or len(merged) < k or merged[k - 1] <= first:
        return None
    return (k * step - 1) / (merged[k - 1] - first)
