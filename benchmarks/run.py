"""liteq beside its peers: the DESIGN §7 scenarios, real worker CLIs, one table.

    .venv/bin/python benchmarks/run.py [--quick] [--systems liteq,dramatiq-rabbitmq,...]
                                       [--scenarios send,drain,...] [-n N] [--repeat R]
                                       [--baseline REF] [--json out.json]

Systems: ``liteq`` (SQLite file, ``python -m liteq worker tasks_liteq --processes 2
--threads 8``), ``liteq-redis`` and ``liteq-rabbitmq`` (the same CLI, liteq's
RedisBroker / RabbitmqBroker from ``LITEQ_BROKER_URL``), ``dramatiq-rabbitmq`` and
``dramatiq-redis`` (``dramatiq tasks_dramatiq --processes 2 --threads 8``),
``huey-sqlite`` (``huey_consumer tasks_huey.huey -w 8``, threads). A system runs only
when its packages import and its server starts; servers are started here on free ports
of 127.0.0.1 (``benchmarks/servers.py``), once per run: liteq and Dramatiq on Redis
share one Redis, on RabbitMQ one RabbitMQ node; all are stopped at the end.
liteq on a server is compared with Dramatiq on the same server (§7: drain ≥ 1.0x,
pickup p99 ≤ 10 ms on Redis); it runs the scenarios Dramatiq runs.

Scenarios (no-op tasks, default settings; each in fresh queues: a new SQLite file, a
flush of Dramatiq's queues, or a newly named, flushed queue for liteq on a server):

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

``--baseline REF`` measures liteq at git REF too, as system ``NAME@REF`` beside each
liteq system selected (``benchmarks/baseline.py``: a temporary worktree of REF, this
interpreter and harness, REF's ``liteq`` package); the two take turns round by round
(A B, B A, ...) so that a drifting load hits both alike, and the table gains a column
``NAME vs NAME@REF`` (above 1: the working tree is better), with the range of the
per-round ratios in brackets.

Completion is counted, not inferred: every task records itself (``bench_recorder``)
and each scenario checks that exactly N ran. Results go to
``benchmarks/results/bench-<time>.json`` (and ``--json``). Throughput figures are
medians of ``--repeat`` runs (3, or 1 with --quick).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.markup import escape

# Run as a script, only this directory is on sys.path: put the checkout first, so that
# ``benchmarks.*`` (and the checkout's liteq) are found.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import servers  # noqa: E402
from benchmarks.baseline import BaselineError, probe, pythonpath  # noqa: E402
from benchmarks.baseline import checkout as baseline_checkout  # noqa: E402
from benchmarks.pools import HERE, PY, ROOT, ScenarioError  # noqa: E402
from benchmarks.report import liteq_source, render, versions  # noqa: E402
from benchmarks.scenarios import (  # noqa: E402
    Skip,
    scenario_bulk,
    scenario_depth,
    scenario_drain,
    scenario_e2e,
    scenario_enqueue,
    scenario_idle,
)
from benchmarks.systems import (  # noqa: E402
    Servers,
    System,
    availability,
    kind_of,
    liteq_cli_problem,
)
from benchmarks.targets import METRICS, SAME_SERVER_PEERS, same_server_targets, target_met  # noqa: E402

ALL_SYSTEMS = ["liteq", "liteq-rabbitmq", "dramatiq-rabbitmq", "liteq-redis", "dramatiq-redis",
               "huey-sqlite"]
SCENARIOS = ["enqueue", "bulk", "drain", "e2e", "durable", "idle", "depth"]
SCENARIO_ALIASES = {"send": "enqueue"}
console = Console(width=None if sys.stdout.isatty() else 220)


class SystemRun:
    """One system's measurements: set up, then one throughput round per repeat, then
    the once-only scenarios and the medians. Split so that a system and its baseline
    can take turns, round by round, on a machine whose load drifts."""

    def __init__(self, name: str, args: argparse.Namespace, workdir: str, shared: Servers,
                 baseline: dict[str, str] | None = None) -> None:
        self.name = name
        self.args = args
        self.workdir = workdir
        self.shared = shared
        self.baseline = baseline
        self.entry: dict[str, Any] = {"status": "ok", "metrics": {}, "errors": {},
                                      "skipped": {}, "runs": []}
        if baseline:
            self.entry["source"] = baseline
        # The window of the depth comparison: the first 20,000 (or N) tasks, less a
        # margin of two milestone steps per process so that a shallow queue of N also
        # reaches it.
        self.window = min(args.n, 20000) - 2 * 100 * 2
        self.system: System | None = None
        self.cli_problem: str | None = None
        self.started = time.monotonic()

    def start(self) -> bool:
        """Check the system can run and start its server; False (and why) if not."""
        reason = availability(self.name)
        if reason:
            self.entry = {"status": "skipped", "reason": reason}
            return False
        console.print(f"[bold]{self.name}[/bold]: starting")
        self.started = time.monotonic()
        try:
            url = self.shared.url(self.name)
        except servers.ServerUnavailable as e:
            self.entry = {"status": "skipped", "reason": str(e)}
            return False
        directory = os.path.join(self.workdir, re.sub(r"[^A-Za-z0-9._-]", "_", self.name))
        self.system = System(self.name, directory, url,
                             source=self.baseline["worktree"] if self.baseline else None)
        os.makedirs(self.system.workdir, exist_ok=True)
        # A baseline's CLI was imported from its worktree by the probe already.
        if self.system.kind == "liteq" and not self.baseline:
            self.cli_problem = liteq_cli_problem()
        return True

    def attempt(self, label: str, fn: Callable[[], dict[str, Any]], needs_pool: bool,
                into: dict[str, Any]) -> None:
        if label not in self.args.scenarios:
            return
        if needs_pool and self.cli_problem:
            self.entry["skipped"][label] = self.cli_problem
            return
        t = time.monotonic()
        try:
            into.update(fn())
            console.print(f"  {self.name} {label}: done in {time.monotonic() - t:.1f} s")
        except Skip as e:
            self.entry["skipped"][label] = str(e)
        except (ScenarioError, servers.ServerUnavailable, OSError, ValueError) as e:
            self.entry["errors"][label] = f"{type(e).__name__}: {e}"
            console.print(f"  [red]{self.name} {label} failed[/red]: {e}")
            if self.args.verbose:
                traceback.print_exc()

    def round(self, r: int) -> None:
        """Run ``r`` of the throughput scenarios (their medians are reported)."""
        system, n, window = self.system, self.args.n, self.window
        assert system is not None
        run: dict[str, Any] = {}
        self.attempt("enqueue", lambda: scenario_enqueue(system, n), False, run)
        self.attempt("bulk", lambda: scenario_bulk(system, n), False, run)
        self.attempt("drain", lambda: scenario_drain(system, n, window), True, run)
        self.attempt("e2e", lambda: scenario_e2e(system, n), True, run)
        if system.liteq_sqlite:
            self.attempt("durable", lambda: scenario_drain(system, n, window, True), True, run)
        self.entry["runs"].append(run)
        console.print(f"  {self.name}: run {r + 1}/{self.args.repeat} done")

    def finish(self) -> dict[str, Any]:
        """Medians of the rounds, then the idle and depth scenarios; the entry."""
        system, args, entry = self.system, self.args, self.entry
        assert system is not None
        metrics = entry["metrics"]
        keys = {k for run in entry["runs"] for k in run}
        for key in sorted(keys):
            values = [run[key] for run in entry["runs"] if run.get(key) is not None]
            if values:
                metrics[key] = statistics.median(values)
        if self.name == "huey-sqlite" and "drain" in metrics:
            # Huey's SqliteStorage leaves synchronous at SQLite's FULL default.
            metrics["durable_drain"] = metrics["drain"]
            entry["notes"] = "durable_drain is the regular drain (Huey SQLite is FULL)"
        self.attempt("idle", lambda: scenario_idle(system, args.latency_count,
                                                   args.idle_seconds), True, metrics)
        if system.liteq_sqlite and args.depth:
            self.attempt("depth", lambda: scenario_depth(system, args.depth, self.window,
                                                         full=not args.quick), True, metrics)
        if metrics.get("depth_deep_rate") and metrics.get("depth_shallow_rate"):
            metrics["depth_ratio"] = (metrics["depth_deep_rate"]
                                      / metrics["depth_shallow_rate"])
        entry["seconds"] = time.monotonic() - self.started
        if self.name == "liteq":
            entry["targets"] = {k: target_met(k, entry["metrics"].get(k))
                                for k, *_ in METRICS if target_met(k, 0) is not None}
        return entry


def run_group(names: list[str], args: argparse.Namespace, workdir: str, shared: Servers,
              baseline: dict[str, str] | None) -> dict[str, dict[str, Any]]:
    """A system and its baseline (if any), their rounds alternating A B, B A, A B, ..."""
    runs = [SystemRun(name, args, workdir, shared, baseline if "@" in name else None)
            for name in names]
    started = [run for run in runs if run.start()]
    for r in range(args.repeat):
        for run in (started if r % 2 == 0 else started[::-1]):
            run.round(r)
    for run in started:
        run.finish()
    return {run.name: run.entry for run in runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="N=5000, one run, depth 100,000 without the full drain")
    parser.add_argument("--systems", default=",".join(ALL_SYSTEMS),
                        help=f"comma-separated subset of {','.join(ALL_SYSTEMS)}")
    parser.add_argument("-n", "--n", type=int, default=None,
                        help="messages per scenario (default 20000, 5000 with --quick)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated subset of {','.join(SCENARIOS)} "
                             "(send = enqueue)")
    parser.add_argument("--baseline", metavar="REF",
                        help="also measure liteq at git REF (a temporary worktree) as "
                             "system NAME@REF beside each liteq system")
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
    scenarios = [SCENARIO_ALIASES.get(s.strip(), s.strip())
                 for s in args.scenarios.split(",") if s.strip()]
    if unknown := [s for s in scenarios if s not in SCENARIOS]:
        parser.error(f"unknown scenario(s) {unknown}; choose from {SCENARIOS}")
    args.scenarios = set(scenarios)
    try:
        with contextlib.ExitStack() as stack:
            baseline = None
            if args.baseline:
                checkout = stack.enter_context(baseline_checkout(args.baseline))
                baseline = probe(checkout, dict(os.environ,
                                                PYTHONPATH=pythonpath(checkout.path)))
                console.print(f"baseline {args.baseline}: {baseline['commit'][:12]}, liteq "
                              f"from {os.path.dirname(baseline['liteq_file'])}")
            return measure(args, names, baseline, argv)
    except BaselineError as e:
        console.print(f"[red]--baseline[/red] {escape(args.baseline)}: {escape(str(e))}")
        return 2


def measure(args: argparse.Namespace, names: list[str], baseline: dict[str, str] | None,
            argv: list[str] | None) -> int:
    """Run the systems (each liteq one beside its baseline), print and save the table."""
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
            "scenarios": sorted(args.scenarios),
            "baseline": baseline,
        },
        "systems": {},
    }
    t = time.monotonic()
    try:
        # One Redis and one RabbitMQ for the whole run, shared by liteq and Dramatiq.
        with Servers() as shared:
            for name in names:
                group = [name]
                if baseline and kind_of(name) == "liteq":
                    group.append(f"{name}@{baseline['ref']}")
                for member, entry in run_group(group, args, workdir, shared,
                                               baseline).items():
                    results["systems"][member] = entry
                    if entry["status"] == "skipped":
                        console.print(f"[yellow]{member} skipped[/yellow]: "
                                      f"{entry['reason']}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["meta"]["seconds"] = time.monotonic() - t
    # liteq on a server against Dramatiq on the same server (DESIGN §7), once both ran.
    for name in SAME_SERVER_PEERS:
        entry = results["systems"].get(name)
        if entry and entry.get("status") == "ok":
            entry["targets"] = same_server_targets(name, results["systems"])

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    out_paths = [os.path.join(HERE, "results", f"bench-{stamp}.json")]
    if args.json:
        out_paths.append(args.json)
    for path in out_paths:
        with open(path, "w") as f:
            json.dump(results, f, indent=2, default=str)
    depth = f"depth={args.depth:,}, " if "depth" in args.scenarios else ""
    title = (f"liteq benchmarks: N={args.n}, repeat={args.repeat}, {depth}"
             f"{os.cpu_count()} CPUs, {results['meta']['seconds']:.0f} s")
    if baseline:
        title += f"; baseline {baseline['ref']} = {baseline['commit'][:12]}"
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


if __name__ == "__main__":
    # SIGTERM unwinds like Ctrl-C: pools stopped, worktree and files removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    sys.exit(main())
