"""liteq beside its peers: the DESIGN §7 scenarios, real worker CLIs, one table.

    .venv/bin/python benchmarks/run.py [--quick] [--systems liteq,dramatiq-rabbitmq,...]
                                       [--n N] [--repeat R] [--json out.json]

Systems: ``liteq`` (SQLite file, ``python -m liteq worker tasks_liteq --processes 2
--threads 8``), ``dramatiq-rabbitmq`` and ``dramatiq-redis`` (``dramatiq tasks_dramatiq
--processes 2 --threads 8``), ``huey-sqlite`` (``huey_consumer tasks_huey.huey -w 8``,
threads). A peer runs only when its package imports and its server starts; servers are
started here on free ports of 127.0.0.1 (``benchmarks/servers.py``) and stopped after.

Scenarios (no-op tasks, default settings; each in fresh queues):

* enqueue one ``send()`` at a time, N messages, one producer process alone;
* bulk enqueue (liteq ``enqueue_many``, 1000 per call, message building included);
* drain N queued messages with the worker CLI, timed from launching the CLI to the
  last task (and first task to last task); RSS of each worker process after it;
* enqueue while the pool drains: N sends into an idle, running pool, from the first
  send to the last task;
* ``durable=True`` drain (liteq; Huey's SQLite storage is synchronous=FULL already);
* idle pool: launch to first task (one message queued), RSS at start, CPU of all the
  pool's processes over 5 s, then pickup latency of 200 messages sent 20 ms apart
  (send to task start);
* depth (liteq): 1,000,000 queued (100,000 with --quick), rate of the first 20,000
  (or N) against the same window of a shallow N queue; without --quick the pool
  then drains all of it and RSS is sampled across the 1,000,000 tasks.

Completion is counted, not inferred: every task records itself (``bench_recorder``)
and each scenario checks that exactly N ran. Results go to
``benchmarks/results/bench-<time>.json`` (and ``--json``). Throughput figures are
medians of ``--repeat`` runs (3, or 1 with --quick).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import json
import math
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

import bench_recorder  # noqa: E402

from benchmarks import servers  # noqa: E402

PY = sys.executable
ALL_SYSTEMS = ["liteq", "dramatiq-rabbitmq", "dramatiq-redis", "huey-sqlite"]
console = Console(width=None if sys.stdout.isatty() else 170)


class ScenarioError(RuntimeError):
    """A scenario could not produce its figure (the message says why)."""


class Skip(Exception):
    """A scenario does not apply, or its prerequisite is missing."""


# ---------------------------------------------------------------------------------------
# What is reported, and the targets of DESIGN §7
# ---------------------------------------------------------------------------------------
#: key, label, unit, target (op, value) for liteq or None, higher_is_better
METRICS: list[tuple[str, str, str, tuple[str, float] | None, bool]] = [
    ("enqueue_single", "enqueue, one send() at a time", "msg/s", (">=", 40000), True),
    ("enqueue_bulk", "bulk enqueue, enqueue_many x1000", "msg/s", (">=", 150000), True),
    ("e2e", "enqueue while the pool drains (end to end)", "msg/s", (">=", 25000), True),
    ("drain", "drain N, worker CLI 2x8, launch to last task", "task/s", (">=", 50000), True),
    ("drain_steady", "drain N, first to last task", "task/s", None, True),
    ("durable_drain", "drain N, durable (sync FULL), launch to last", "task/s",
     (">=", 15000), True),
    ("start_to_first", "worker launch to first task", "s", ("<=", 0.3), False),
    ("latency_p50", "idle pickup latency p50", "ms", ("<=", 1.0), False),
    ("latency_p95", "idle pickup latency p95", "ms", None, False),
    ("latency_p99", "idle pickup latency p99", "ms", ("<=", 5.0), False),
    ("idle_cpu", "CPU of the idle pool (all processes)", "% core", ("<=", 1.0), False),
    ("rss_start", "RSS per worker process, at start", "MB", ("<=", 50), False),
    ("rss_after_n", "RSS per worker process, after N tasks", "MB", ("<=", 50), False),
    ("rss_after_depth", "RSS per worker process, after the deep drain", "MB", ("<=", 50),
     False),
    ("rss_growth_depth", "RSS growth across the deep drain", "MB", ("<=", 5), False),
    ("depth_shallow_rate", "drain first W of a shallow queue (N)", "task/s", None, True),
    ("depth_deep_rate", "drain first W of a deep queue", "task/s", None, True),
    ("depth_ratio", "deep / shallow drain rate", "x", (">=", 0.85), True),
]
REPEATED = ("enqueue_single", "enqueue_bulk", "e2e", "drain", "drain_steady", "durable_drain",
            "rss_after_n", "depth_shallow_rate")


def target_met(key: str, value: float | None) -> bool | None:
    for k, _label, _unit, target, _hib in METRICS:
        if k == key and target is not None and value is not None:
            op, limit = target
            return value >= limit if op == ">=" else value <= limit
    return None


# ---------------------------------------------------------------------------------------
# A worker pool started through its real command line
# ---------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------
# One system under test
# ---------------------------------------------------------------------------------------
class System:
    """How to produce to, run workers of, and reset one system."""

    def __init__(self, name: str, workdir: str, url: str | None, threads: int = 8,
                 processes: int = 2) -> None:
        self.name = name
        self.workdir = workdir
        self.url = url
        self.kind = name.split("-")[0]
        self.threads = threads
        self.processes = processes
        self.generation = 0
        self.durable = False
        self.logs = os.path.join(workdir, "logs")
        os.makedirs(self.logs, exist_ok=True)

    # -- state --------------------------------------------------------------------------
    def fresh(self, durable: bool = False) -> None:
        """New, empty queues: a new database file (SQLite systems) or a flush (Dramatiq)."""
        self.generation += 1
        self.durable = durable

    @property
    def db_path(self) -> str:
        return os.path.join(self.workdir, f"{self.kind}-{self.generation}.db")

    def env(self, counter_dir: str | None = None) -> dict[str, str]:
        env = dict(os.environ)
        # A caller's PYTHONPATH comes before the checkout, so that another liteq source
        # tree (e.g. an exported commit) can be measured with the same suite.
        env["PYTHONPATH"] = os.pathsep.join(
            [HERE] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []) + [ROOT])
        env.pop("BENCH_COUNTER_DIR", None)
        if counter_dir:
            env["BENCH_COUNTER_DIR"] = counter_dir
        if self.kind == "liteq":
            env["LITEQ_BROKER_URL"] = "sqlite:///" + self.db_path
            env["BENCH_DURABLE"] = "1" if self.durable else "0"
        elif self.kind == "dramatiq":
            env["BENCH_BROKER_URL"] = self.url or ""
        elif self.kind == "huey":
            env["BENCH_HUEY_DB"] = self.db_path
        return env

    # -- producing ------------------------------------------------------------------------
    def produce(self, mode: str, n: int, *, flush: bool = False, interval: float = 0.02,
                batch: int = 1000) -> dict[str, float]:
        cmd = [PY, os.path.join(HERE, "producer.py"), self.kind, mode, "--n", str(n),
               "--batch", str(batch), "--interval", str(interval)]
        if flush:
            cmd.append("--flush")
        timeout = 120 + n / 400 + (n * interval if mode == "latency" else 0)
        try:
            done = subprocess.run(cmd, env=self.env(), cwd=HERE, capture_output=True,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise ScenarioError(f"producer ({mode}, n={n}) took over {timeout:.0f} s") from e
        if done.returncode != 0:
            raise ScenarioError(f"producer ({mode}) failed: {done.stderr[-1500:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    # -- workers --------------------------------------------------------------------------
    def worker_cmd(self) -> list[str]:
        p, t = str(self.processes), str(self.threads)
        if self.kind == "liteq":
            prefix = os.environ.get("BENCH_LITEQ_CMD")
            base = shlex.split(prefix) if prefix else [PY, "-m", "liteq"]
            return [*base, "worker", "tasks_liteq", "--processes", p, "--threads", t]
        if self.kind == "dramatiq":
            return [PY, "-m", "dramatiq", "tasks_dramatiq", "--processes", p, "--threads", t]
        return [PY, "-m", "huey.bin.huey_consumer", "tasks_huey.huey", "-w", t,
                "-k", "thread"]

    def start_pool(self, counter_dir: str, label: str) -> Pool:
        log = os.path.join(self.logs, f"{label}-{self.generation}.log")
        return Pool(self.worker_cmd(), self.env(counter_dir), log)

    def counter_dir(self) -> str:
        return tempfile.mkdtemp(prefix="count-", dir=self.workdir)


def liteq_cli_problem() -> str | None:
    """Why ``python -m liteq worker`` cannot be used here, or None."""
    if os.environ.get("BENCH_LITEQ_CMD"):
        return None
    if importlib.util.find_spec("liteq") is None:
        return "liteq is not importable"
    if importlib.util.find_spec("liteq.cli") is None:
        return "liteq.cli (the `liteq worker` command) does not exist yet"
    return None


# ---------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------
def scenario_enqueue(system: System, n: int) -> dict[str, float]:
    system.fresh()
    out = system.produce("single", n, flush=True)
    return {"enqueue_single": n / out["elapsed"]}


def scenario_drain(system: System, n: int, window: int, durable: bool = False
                   ) -> dict[str, float]:
    """N queued (bulk for liteq, one by one for peers, not timed), then the CLI drains."""
    system.fresh(durable=durable)
    if system.kind == "liteq":
        system.produce("bulk", n)
    else:
        system.produce("single", n, flush=True)
    counters = system.counter_dir()
    pool = system.start_pool(counters, "durable" if durable else "drain")
    try:
        counts = wait_count(counters, n, 60 + n / 300, pool)
        rss = pool.rss_mb()
    finally:
        pool.stop()
    first = min(c["first"] for c in counts if c["count"])
    last = max(c["last"] for c in counts)
    prefix = "durable_" if durable else ""
    result = {f"{prefix}drain": n / (last - pool.t0),
              f"{prefix}drain_steady": (n - 1) / (last - first) if last > first else None,
              f"{prefix}drain_start_to_first": first - pool.t0}
    if not durable:
        result["rss_after_n"] = max(rss) if rss else None
        result["depth_shallow_rate"] = window_rate(counts, window)
    return result


def scenario_e2e(system: System, n: int) -> dict[str, float]:
    """An idle running pool; one producer sends N one at a time; first send to last task."""
    system.fresh()
    system.produce("single", 1, flush=True)
    counters = system.counter_dir()
    pool = system.start_pool(counters, "e2e")
    try:
        wait_count(counters, 1, 60, pool)
        out = system.produce("single", n)
        counts = wait_count(counters, n + 1, 60 + n / 300, pool)
    finally:
        pool.stop()
    last = max(c["last"] for c in counts)
    return {"e2e": n / (last - out["start"]), "e2e_producer_rate": n / out["elapsed"]}


def scenario_bulk(system: System, n: int) -> dict[str, float]:
    if system.kind != "liteq":
        raise Skip("bulk enqueue is measured for liteq only")
    system.fresh()
    out = system.produce("bulk", n, batch=1000)
    return {"enqueue_bulk": n / out["elapsed"]}


def scenario_idle(system: System, latency_count: int, idle_seconds: float
                  ) -> dict[str, Any]:
    """Launch to first task, RSS at start, idle CPU, then pickup latency."""
    system.fresh()
    system.produce("single", 1, flush=True)
    counters = system.counter_dir()
    pool = system.start_pool(counters, "idle")
    try:
        counts = wait_count(counters, 1, 60, pool)
        start_to_first = counts[0]["first"] - pool.t0
        time.sleep(1.0)
        pool.check_alive()
        rss_start = pool.rss_mb()
        procs = pool.processes()
        before = cpu_seconds(procs)
        t = time.monotonic()
        time.sleep(idle_seconds)
        after = cpu_seconds(procs)
        elapsed = time.monotonic() - t
        busy = sum(after[pid] - before[pid] for pid in after if pid in before)
        pool.check_alive()
        system.produce("latency", latency_count, interval=0.02)
        deadline = time.monotonic() + 60
        while len(delays := bench_recorder.read_latencies(counters)) < latency_count:
            pool.check_alive()
            if time.monotonic() > deadline:
                raise ScenarioError(f"only {len(delays)} of {latency_count} latency "
                                    "messages ran within 60 s")
            time.sleep(0.05)
    finally:
        pool.stop()
    q = statistics.quantiles(delays, n=100, method="inclusive")
    return {"start_to_first": start_to_first, "rss_start": max(rss_start),
            "worker_processes": len(rss_start), "idle_cpu": 100 * busy / elapsed,
            "latency_p50": q[49], "latency_p95": q[94], "latency_p99": q[98],
            "latency_max": max(delays), "latency_count": len(delays)}


def scenario_depth(system: System, depth: int, window: int, full: bool
                   ) -> dict[str, Any]:
    """``depth`` queued: rate of the first ``window``; with ``full``, drain it all (RSS)."""
    if system.kind != "liteq":
        raise Skip("depth is measured for liteq only")
    system.fresh()
    out = system.produce("bulk", depth, batch=1000)
    counters = system.counter_dir()
    pool = system.start_pool(counters, "depth")
    result: dict[str, Any] = {"depth": depth, "depth_enqueue_bulk": depth / out["elapsed"]}
    try:
        counts = wait_count(counters, window + 4 * 100, 120, pool, at_least=True)
        result["depth_deep_rate"] = window_rate(counts, window)
        if full:
            samples = []
            deadline = time.monotonic() + 900
            total = 0
            while total < depth:
                pool.check_alive()
                if time.monotonic() > deadline:
                    raise ScenarioError(f"deep drain: only {total} of {depth} in 900 s")
                total = sum(c["count"] for c in bench_recorder.read_counts(counters))
                samples.append((total, max(pool.rss_mb() or [0.0])))
                time.sleep(1.0)
            counts = wait_count(counters, depth, 60, pool)
            last = max(c["last"] for c in counts)
            rss_end = max(pool.rss_mb() or [0.0])
            baseline = next((rss for done, rss in samples if done >= window), samples[0][1])
            result.update(
                depth_full_drain=depth / (last - pool.t0),
                rss_after_depth=rss_end, rss_growth_depth=rss_end - baseline,
                rss_depth_samples=samples[:: max(1, len(samples) // 40)],
            )
    finally:
        pool.stop()
    return result


# ---------------------------------------------------------------------------------------
# Running systems
# ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def system_server(name: str) -> Iterator[str | None]:
    if name == "dramatiq-rabbitmq":
        with servers.rabbitmq_server() as url:
            yield url
    elif name == "dramatiq-redis":
        with servers.redis_server() as url:
            yield url
    else:
        yield None


def availability(name: str) -> str | None:
    """Why ``name`` cannot run here, or None."""
    def missing(*modules: str) -> list[str]:
        return [m for m in modules if importlib.util.find_spec(m) is None]

    if name == "liteq":
        return None if not missing("liteq") else "liteq is not importable"
    if name == "dramatiq-rabbitmq":
        if m := missing("dramatiq", "pika"):
            return (f"{', '.join(m)} not installed: .venv/bin/pip install "
                    "'dramatiq[rabbitmq,redis]' (or benchmarks/setup.sh)")
        if not servers.rabbitmq_available():
            return f"rabbitmq-server is not installed: {servers.INSTALL_HINT}"
    if name == "dramatiq-redis":
        if m := missing("dramatiq", "redis"):
            return (f"{', '.join(m)} not installed: .venv/bin/pip install "
                    "'dramatiq[rabbitmq,redis]' (or benchmarks/setup.sh)")
        if not servers.redis_available():
            return f"redis-server is not installed: {servers.INSTALL_HINT}"
    if name == "huey-sqlite" and missing("huey"):
        return "huey is not installed: .venv/bin/pip install huey (or benchmarks/setup.sh)"
    return None


def run_system(name: str, args: argparse.Namespace, workdir: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"status": "ok", "metrics": {}, "errors": {}, "skipped": {},
                             "runs": []}
    reason = availability(name)
    if reason:
        return {"status": "skipped", "reason": reason}
    # The window of the depth comparison: the first 20,000 (or N) tasks, less a margin of
    # two milestone steps per process so that a shallow queue of N also reaches it.
    n = args.n
    window = min(n, 20000) - 2 * 100 * 2
    console.print(f"[bold]{name}[/bold]: starting")
    started = time.monotonic()
    try:
        with system_server(name) as url:
            system = System(name, os.path.join(workdir, name), url)
            os.makedirs(system.workdir, exist_ok=True)
            cli_problem = liteq_cli_problem() if name == "liteq" else None

            def attempt(label: str, fn: Callable[[], dict[str, Any]], needs_pool: bool,
                        into: dict[str, Any]) -> None:
                if needs_pool and cli_problem:
                    entry["skipped"][label] = cli_problem
                    return
                t = time.monotonic()
                try:
                    into.update({k: v for k, v in fn().items()})
                    console.print(f"  {label}: done in {time.monotonic() - t:.1f} s")
                except Skip as e:
                    entry["skipped"][label] = str(e)
                except (ScenarioError, servers.ServerUnavailable, OSError, ValueError) as e:
                    entry["errors"][label] = f"{type(e).__name__}: {e}"
                    console.print(f"  [red]{label} failed[/red]: {e}")
                    if args.verbose:
                        traceback.print_exc()

            for r in range(args.repeat):
                run: dict[str, Any] = {}
                attempt("enqueue", lambda: scenario_enqueue(system, n), False, run)
                attempt("bulk", lambda: scenario_bulk(system, n), False, run)
                attempt("drain", lambda: scenario_drain(system, n, window), True, run)
                attempt("e2e", lambda: scenario_e2e(system, n), True, run)
                if name == "liteq":
                    attempt("durable", lambda: scenario_drain(system, n, window, True),
                            True, run)
                entry["runs"].append(run)
                console.print(f"  run {r + 1}/{args.repeat} done")
            metrics = entry["metrics"]
            keys = {k for run in entry["runs"] for k in run}
            for key in sorted(keys):
                values = [run[key] for run in entry["runs"] if run.get(key) is not None]
                if values:
                    metrics[key] = statistics.median(values)
            if name == "huey-sqlite" and "drain" in metrics:
                # Huey's SqliteStorage leaves synchronous at SQLite's FULL default.
                metrics["durable_drain"] = metrics["drain"]
                entry["notes"] = "durable_drain is the regular drain (Huey SQLite is FULL)"
            attempt("idle", lambda: scenario_idle(system, args.latency_count,
                                                  args.idle_seconds), True, metrics)
            if name == "liteq" and args.depth:
                attempt("depth", lambda: scenario_depth(system, args.depth, window,
                                                         full=not args.quick), True, metrics)
            if metrics.get("depth_deep_rate") and metrics.get("depth_shallow_rate"):
                metrics["depth_ratio"] = (metrics["depth_deep_rate"]
                                          / metrics["depth_shallow_rate"])
    except servers.ServerUnavailable as e:
        return {"status": "skipped", "reason": str(e)}
    entry["seconds"] = time.monotonic() - started
    if name == "liteq":
        entry["targets"] = {k: target_met(k, entry["metrics"].get(k))
                            for k, *_ in METRICS if target_met(k, 0) is not None}
    return entry


# ---------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------
def fmt(value: Any, unit: str) -> str:
    if value is None:
        return "—"
    if unit in ("msg/s", "task/s"):
        return f"{value:,.0f}"
    if unit == "MB":
        return f"{value:,.1f}"
    if unit in ("ms", "s", "x", "% core"):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    return str(value)


def render(results: dict[str, Any], title: str) -> Table:
    systems = results["systems"]
    names = list(systems)
    table = Table(title=title, title_justify="left")
    table.add_column("scenario")
    table.add_column("unit")
    table.add_column("target")
    for name in names:
        table.add_column(name, justify="right")
    table.add_column("liteq vs best peer", justify="right")
    for key, label, unit, target, higher in METRICS:
        cells = []
        peer_values = []
        for name in names:
            entry = systems[name]
            value = entry.get("metrics", {}).get(key) if entry.get("status") == "ok" else None
            text = fmt(value, unit)
            if name == "liteq":
                met = target_met(key, value)
                if met is True:
                    text = f"[green]{text} ✓[/green]"
                elif met is False:
                    text = f"[red]{text} ✗[/red]"
            elif value is not None:
                peer_values.append(value)
            cells.append(text)
        liteq_value = systems.get("liteq", {}).get("metrics", {}).get(key)
        ratio = "—"
        if liteq_value is not None and peer_values and unit not in ("x",):
            best = max(peer_values) if higher else min(peer_values)
            if best and liteq_value:
                ratio = f"{(liteq_value / best if higher else best / liteq_value):.2f}x"
        target_text = f"{target[0].replace('>=', '≥').replace('<=', '≤')} {target[1]:g}" \
            if target else ""
        if all(c == "—" for c in cells):
            continue
        table.add_row(label, unit, target_text, *cells, ratio)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="N=5000, one run, depth 100,000 without the full drain")
    parser.add_argument("--systems", default=",".join(ALL_SYSTEMS),
                        help=f"comma-separated subset of {','.join(ALL_SYSTEMS)}")
    parser.add_argument("--n", type=int, default=None,
                        help="messages per scenario (default 20000, 5000 with --quick)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="runs of the throughput scenarios, median reported "
                             "(default 3, 1 with --quick)")
    parser.add_argument("--depth", type=int, default=None,
                        help="queued messages in the depth scenario (default 1,000,000, "
                             "100,000 with --quick; 0 skips it)")
    parser.add_argument("--latency-count", type=int, default=200)
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    args.n = args.n or (5000 if args.quick else 20000)
    args.repeat = args.repeat or (1 if args.quick else 3)
    if args.depth is None:
        args.depth = 100_000 if args.quick else 1_000_000
    if args.n < 1000:
        parser.error("--n must be at least 1000 (the depth window needs it)")
    names = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in names if s not in ALL_SYSTEMS]
    if unknown:
        parser.error(f"unknown system(s) {unknown}; choose from {ALL_SYSTEMS}")

    workdir = tempfile.mkdtemp(prefix="liteq-bench-")
    command = " ".join(shlex.quote(a) for a in [os.path.relpath(PY, ROOT), "benchmarks/run.py",
                                                *(sys.argv[1:] if argv is None else argv)])
    results: dict[str, Any] = {
        "meta": {
            "command": command,
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "host": platform.node(), "python": platform.python_version(),
            "cpus": os.cpu_count(), "platform": platform.platform(),
            "n": args.n, "repeat": args.repeat, "depth": args.depth, "quick": args.quick,
            "latency_count": args.latency_count, "idle_seconds": args.idle_seconds,
            "versions": versions(),
            "liteq_source": liteq_source(),
        },
        "systems": {},
    }
    t = time.monotonic()
    try:
        for name in names:
            results["systems"][name] = run_system(name, args, workdir)
            if results["systems"][name]["status"] == "skipped":
                console.print(f"[yellow]{name} skipped[/yellow]: "
                              f"{results['systems'][name]['reason']}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["meta"]["seconds"] = time.monotonic() - t

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    out_paths = [os.path.join(HERE, "results", f"bench-{stamp}.json")]
    if args.json:
        out_paths.append(args.json)
    for path in out_paths:
        with open(path, "w") as f:
            json.dump(results, f, indent=2, default=str)
    title = (f"liteq benchmarks: N={args.n}, repeat={args.repeat}, depth={args.depth:,}, "
             f"{os.cpu_count()} CPUs, {results['meta']['seconds']:.0f} s")
    console.print(render(results, title))
    for name, entry in results["systems"].items():
        for label, text in entry.get("errors", {}).items():
            console.print(f"[red]{name} {label}[/red]: {text}")
        for label, text in entry.get("skipped", {}).items():
            if "liteq only" not in text:
                console.print(f"[yellow]{name} {label} skipped[/yellow]: {text}")
    console.print(f"command: {command}")
    console.print(f"results: {', '.join(out_paths)}")
    return 0


def liteq_source() -> dict[str, str | None]:
    """Which liteq the worker processes import, and the checkout's commit."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []) + [ROOT]))
    found: dict[str, str | None] = {"path": None, "commit": None, "dirty": None}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        found["path"] = subprocess.run(
            [PY, "-c", "import liteq, os; print(os.path.dirname(liteq.__file__))"],
            env=env, cwd=HERE, capture_output=True, text=True, timeout=30).stdout.strip()
        found["commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
            timeout=10).stdout.strip() or None
        found["dirty"] = subprocess.run(
            ["git", "status", "--porcelain", "liteq"], cwd=ROOT, capture_output=True,
            text=True, timeout=10).stdout.strip() or None
    return found


def versions() -> dict[str, str | None]:
    from importlib import metadata

    found: dict[str, str | None] = {}
    for package in ("liteq", "apsw", "dramatiq", "huey", "pika", "redis"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


if __name__ == "__main__":
    sys.exit(main())
