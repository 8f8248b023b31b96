"""Smoke test of the benchmark suite: every liteq scenario runs and reports a number.

No timed assertions: the figures depend on the machine. Runs
``benchmarks/run.py --quick --systems liteq`` with a small N.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCENARIO_KEYS = [
    "enqueue_single", "enqueue_bulk", "e2e", "drain", "drain_steady", "durable_drain",
    "start_to_first", "latency_p50", "latency_p95", "latency_p99", "idle_cpu", "rss_start",
    "rss_after_n", "depth_shallow_rate", "depth_deep_rate", "depth_ratio",
]


@pytest.mark.slow
def test_quick_liteq_run_reports_every_scenario(tmp_path):
    out = tmp_path / "results.json"
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "run.py"), "--quick",
           "--systems", "liteq", "--n", "1000", "--depth", "20000", "--latency-count", "20",
           "--idle-seconds", "1", "--json", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())
    liteq = results["systems"]["liteq"]
    assert liteq["status"] == "ok", liteq
    assert liteq["errors"] == {}, liteq["errors"]
    metrics = liteq["metrics"]
    for key in SCENARIO_KEYS:
        value = metrics.get(key)
        assert isinstance(value, (int, float)) and value >= 0, (key, value)
    assert metrics["latency_count"] == 20
    assert set(liteq["targets"]) >= {"drain", "latency_p99", "idle_cpu"}
    assert "scenario" in done.stdout  # the table was printed
