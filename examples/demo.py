"""liteq in one run: queue real work, let a ``liteq worker`` process drain it, show results.

    python examples/demo.py [--keep] [--processes N] [--threads T]

1. makes a fresh SQLite database in a temporary directory (the broker: no server);
2. queues the workflow example's request (an email, a delayed order, an async
   report) and 32 ``count_primes`` tasks, every fourth one with priority 100;
3. starts ``liteq worker tasks demo_tasks`` as a separate process, waits until every
   queue is drained, and stops it with SIGTERM (a graceful shutdown);
4. prints the results (the priority-100 tasks started first although they were sent
   among the others) and ``broker.stats()``.

``LITEQ_EXAMPLE_SPEED`` (default 10 here) shortens the workflow's sleeps and delays.
With ``--keep`` the database stays, for ``liteq top`` or ``liteq stats``.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
WORKFLOW = HERE / "workflow"
HIGH, LOW = 100, 0
console = Console()


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the database directory")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=45.0, help="seconds to drain")
    return parser.parse_args()


def start_worker(args, env):
    """Start ``liteq worker`` as a real subprocess, as a user would from a shell."""
    command = [sys.executable, "-m", "liteq", "worker", "tasks", "demo_tasks",
               "--processes", str(args.processes), "--threads", str(args.threads)]
    console.print(f"$ {' '.join(command[2:])}", style="bold")
    return subprocess.Popen(command, env=env, cwd=HERE)


def wait_until_drained(broker, worker, timeout):
    """Wait until no queue has ready, delayed or running messages; False on timeout."""
    from liteq import QueueJoinTimeout

    deadline = time.monotonic() + timeout
    queues = sorted(broker.get_declared_queues())
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise SystemExit(f"the worker exited early with code {worker.returncode}")
        try:
            for queue in queues:
                broker.join(queue, timeout=200)
            return True
        except QueueJoinTimeout:
            continue
    return False


def stop_worker(worker):
    worker.send_signal(signal.SIGTERM)
    try:
        return worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
        return worker.wait()


def results_table(rows):
    table = Table(title="count_primes, in the order the tasks started")
    for column in ("started", "sent", "priority", "limit", "primes", "worker pid"):
        table.add_column(column, justify="right")
    for position, row in enumerate(rows, 1):
        style = "bold green" if row["priority"] == HIGH else None
        table.add_row(str(position), str(row["sent"]), str(row["priority"]),
                      f"{row['limit']:,}", f"{row['primes']:,}", str(row["pid"]), style=style)
    return table


def stats_table(stats):
    table = Table(title="broker.stats()")
    columns = ("ready", "delayed", "claimed", "running", "dead", "succeeded", "failed")
    table.add_column("queue")
    for column in columns:
        table.add_column(column, justify="right")
    for queue, counts in sorted(stats.items()):
        table.add_row(queue, *(str(counts[c]) for c in columns))
    return table


def main():
    args = parse_args()
    directory = Path(tempfile.mkdtemp(prefix="liteq-demo-"))
    database = directory / "liteq.db"
    env = dict(
        os.environ,
        LITEQ_BROKER_URL=f"sqlite:///{database}",
        LITEQ_EXAMPLE_REPORT_DIR=str(directory),
        PYTHONPATH=os.pathsep.join(
            [str(WORKFLOW), str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    )
    env.setdefault("LITEQ_EXAMPLE_SPEED", "10")
    os.environ.update(env)
    sys.path[:0] = [str(WORKFLOW), str(HERE)]

    import app
    from config import broker
    from demo_tasks import backend, count_primes

    try:
        console.rule(f"broker: {database}")
        app.handle_user_request()
        sent = []
        for i in range(32):
            priority = HIGH if i % 4 == 3 else LOW
            limit = 200_000 + 10_000 * i
            message = count_primes.send_with_options(args=(limit,), priority=priority)
            sent.append((i + 1, priority, limit, message))
        console.print(f"queued the workflow request and {len(sent)} count_primes tasks")

        started = time.monotonic()
        worker = start_worker(args, env)
        try:
            drained = wait_until_drained(broker, worker, args.timeout)
        finally:
            code = stop_worker(worker)
        elapsed = time.monotonic() - started
        console.print(f"worker stopped with exit code {code} after {elapsed:.2f}s")
        if not drained:
            console.print(stats_table(broker.stats()))
            raise SystemExit(f"the queues were not drained within {args.timeout}s")

        rows = []
        for number, priority, limit, message in sent:
            result = backend.get_result(message, block=True, timeout=5000)
            rows.append(dict(result, sent=number, priority=priority, limit=limit))
        rows.sort(key=lambda row: row["started_at"])
        console.print(results_table(rows))
        for priority in (HIGH, LOW):
            positions = [p for p, row in enumerate(rows, 1) if row["priority"] == priority]
            console.print(f"priority {priority}: {len(positions)} tasks, mean start position "
                          f"{sum(positions) / len(positions):.1f}")

        report = directory / "report-sales-2024-01.json"
        if report.exists():
            console.print(f"sales report: {json.loads(report.read_text())}")
        console.print(stats_table(broker.stats()))
        return 0 if code == 0 else 1
    finally:
        broker.close()
        if args.keep:
            console.print(f"kept {directory}; try: LITEQ_BROKER_URL=sqlite:///{database} "
                          "liteq stats")
        else:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
