"""Smoke test of the benchmark suite: every liteq scenario runs and reports a number.

No timed assertions: the figures depend on the machine. Runs
``benchmarks/run.py --quick --systems liteq`` with a small N.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

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


def _worktrees() -> str:
    return subprocess.run(["git", "worktree", "list", "--porcelain"], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout


@pytest.mark.slow
def test_baseline_head_runs_beside_the_working_tree(tmp_path):
    """``--baseline HEAD``: both columns have figures, the baseline's liteq came from its
    own worktree (producers and workers refuse any other), and the worktree is gone."""
    out = tmp_path / "results.json"
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "run.py"), "--baseline", "HEAD",
           "--systems", "liteq", "--scenarios", "send,drain", "-n", "1000", "--repeat", "2",
           "--json", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert list(results["systems"]) == ["liteq", "liteq@HEAD"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()
    source = results["meta"]["baseline"]
    assert source["commit"] == head
    worktree = source["worktree"]
    assert not worktree.startswith(ROOT)
    for key in ("liteq_file", "cli_file"):
        assert source[key].startswith(os.path.join(worktree, "liteq") + os.sep), source
    for name, entry in results["systems"].items():
        assert entry["status"] == "ok", (name, entry)
        assert entry["errors"] == {}, (name, entry["errors"])
        assert len(entry["runs"]) == 2
        for key in ("enqueue_single", "drain", "drain_steady"):
            value = entry["metrics"].get(key)
            assert isinstance(value, (int, float)) and value > 0, (name, key, value)
        assert "e2e" not in entry["metrics"] and "latency_p50" not in entry["metrics"]
    assert results["systems"]["liteq@HEAD"]["source"] == source
    assert "liteq vs liteq@HEAD" in done.stdout
    # The ratio of medians, then the range of the two rounds' ratios.
    assert re.search(r"\d\.\d\dx \(\d+\.\d\d–\d+\.\d\d\)", done.stdout), done.stdout
    assert not os.path.exists(worktree)
    assert worktree not in _worktrees()


def test_baseline_task_module_refuses_another_liteq(tmp_path):
    """The guard that makes a baseline's producers and workers fail loudly if ``import
    liteq`` did not load the baseline's tree."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = dict(os.environ, LITEQ_BROKER_URL="sqlite:///" + str(tmp_path / "q.db"),
               BENCH_LITEQ_SOURCE=str(elsewhere),
               PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "benchmarks"), ROOT]))
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "producer.py"), "liteq",
           "single", "--n", "1"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0
    assert "not from BENCH_LITEQ_SOURCE" in done.stderr, done.stderr[-2000:]
    env["BENCH_LITEQ_SOURCE"] = ROOT
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]


def test_baseline_of_an_unknown_ref_is_a_clear_error():
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "run.py"), "--baseline",
           "no-such-ref-xyz", "--systems", "liteq", "--scenarios", "send", "-n", "1000",
           "--repeat", "1"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "is not a commit" in done.stdout
    assert "no-such-ref-xyz" not in _worktrees()
