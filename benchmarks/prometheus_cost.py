"""The drain rate of liteq's worker CLI with and without ``--prometheus``: its hot-path cost.

    .venv/bin/python benchmarks/prometheus_cost.py [-n 20000] [--pairs 6]

Drains as benchmarks/run.py's drain scenario does (N no-op tasks queued in a fresh
SQLite file, ``liteq worker tasks_liteq --processes 2 --threads 8``, every task
counted), in pairs: plain then ``--prometheus 127.0.0.1:0``, then the other way round,
so that a drifting machine load hits both alike. Reports the drain rate (first to last
task) and the worker processes' CPU time per task (user + system, start-up included),
which a loaded machine disturbs less than the rate.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.pools import cpu_seconds, wait_count  # noqa: E402
from benchmarks.systems import System  # noqa: E402


class PrometheusSystem(System):
    """liteq on SQLite whose worker CLI serves Prometheus metrics (port 0: any free one)."""

    def worker_cmd(self) -> list[str]:
        return [*super().worker_cmd(), "--prometheus", "127.0.0.1:0"]


def drain(system: System, n: int) -> tuple[float, float]:
    """(tasks per second from the first to the last task, CPU µs per task)."""
    system.fresh()
    system.produce("bulk", n)
    counters = system.counter_dir()
    pool = system.start_pool(counters, "drain")
    try:
        counts = wait_count(counters, n, 60 + n / 300, pool)
        cpu = sum(cpu_seconds(pool.workers()).values())
    finally:
        pool.stop()
    first = min(c["first"] for c in counts if c["count"])
    last = max(c["last"] for c in counts)
    return (n - 1) / (last - first), cpu / n * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=20000, help="tasks per drain")
    parser.add_argument("--pairs", type=int, default=6, help="plain/--prometheus pairs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="liteq-prom-cost-") as workdir:
        systems = {"plain": System("liteq", f"{workdir}/plain", None),
                   "prometheus": PrometheusSystem("liteq", f"{workdir}/prom", None)}
        rates: dict[str, list[float]] = {"plain": [], "prometheus": []}
        cpus: dict[str, list[float]] = {"plain": [], "prometheus": []}
        ratios = []
        for pair in range(args.pairs):
            order = ["plain", "prometheus"] if pair % 2 == 0 else ["prometheus", "plain"]
            for name in order:
                rate, cpu = drain(systems[name], args.n)
                rates[name].append(rate)
                cpus[name].append(cpu)
            ratios.append(rates["prometheus"][-1] / rates["plain"][-1])
            print(f"pair {pair + 1}: plain {rates['plain'][-1]:,.0f}/s "
                  f"{cpus['plain'][-1]:.0f} µs CPU/task; --prometheus "
                  f"{rates['prometheus'][-1]:,.0f}/s {cpus['prometheus'][-1]:.0f} µs CPU/task",
                  flush=True)
    median = statistics.median
    print(f"medians over {args.pairs} pairs of {args.n} no-op tasks (2 processes x 8 threads): "
          f"plain {median(rates['plain']):,.0f} tasks/s, {median(cpus['plain']):.0f} µs "
          f"CPU/task; --prometheus {median(rates['prometheus']):,.0f} tasks/s, "
          f"{median(cpus['prometheus']):.0f} µs CPU/task; rate ratio per pair "
          f"{min(ratios):.2f}..{max(ratios):.2f} (median {median(ratios):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
