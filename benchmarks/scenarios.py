"""The DESIGN §7 scenarios, each on fresh queues of one system, returning its figures.

Each checks that exactly the expected number of tasks ran, so a figure is never inferred.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from benchmarks import bench_recorder
from benchmarks.pools import ScenarioError, cpu_seconds, wait_count, window_rate
from benchmarks.systems import System


class Skip(Exception):
    """A scenario does not apply, or its prerequisite is missing."""


def scenario_enqueue(system: System, n: int) -> dict[str, float]:
    system.fresh()
    out = system.produce("single", n, flush=True)
    return {"enqueue_single": n / out["elapsed"]}


def scenario_drain(system: System, n: int, window: int, durable: bool = False
                   ) -> dict[str, float]:
    """N queued (bulk for liteq on SQLite, one by one on servers and for peers, not
    timed), then the CLI drains."""
    system.fresh(durable=durable)
    if system.liteq_sqlite:
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
    if not system.liteq_sqlite:
        raise Skip("bulk enqueue is measured for liteq only (on SQLite)")
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
    if not system.liteq_sqlite:
        raise Skip("depth is measured for liteq only (on SQLite)")
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
