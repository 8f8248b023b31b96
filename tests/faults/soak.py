"""Soak: a real ``liteq worker`` pool on a SQLite file under chaos, then a verdict.

    python -m tests.faults.soak --minutes 10

Two producer processes send continuously (tasks sleeping 0-300 ms, some longer than
the lease) to a pool of 2 processes x 4 threads, while a chaos loop SIGKILLs or
SIGSTOPs (sometimes past the lease) worker processes and the supervisor (a dead
supervisor's pool is started again) and holds the write lock from another connection
(``BEGIN IMMEDIATE`` for 0.5-3 s). Then chaos stops, producers stop, everything
drains, and the logs are judged (tests/faults/soak_analysis.py): messages sent, run,
lost (must be 0), run twice under a valid lease (must be 0; needs liteq's
``LITEQ_LEASE_LOG`` test hook) and redeliveries after crashes. Exit status 0 when
nothing was lost or run twice.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable

import psutil

from liteq import SqliteBroker

from .soak_analysis import Report, load_and_analyze

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUEUE = "soak"
CHAOS_WEIGHTS = {"kill child": 30, "stop child": 25, "kill supervisor": 8,
                 "stop supervisor": 12, "hold lock": 25}


@dataclasses.dataclass
class SoakConfig:
    directory: str
    seconds: float = 600.0
    lease_ms: int = 1000
    processes: int = 2
    threads: int = 4
    producers: int = 2
    rate: float = 8.0  # messages per second per producer
    long_share: float = 0.05  # share of tasks longer than the lease
    chaos_every: float = 1.5  # mean seconds between chaos actions
    seed: int = 0
    drain_timeout: float = 180.0
    #: Relative frequency of each chaos action.
    weights: dict[str, int] = dataclasses.field(default_factory=lambda: dict(CHAOS_WEIGHTS))


def _now_ms() -> int:
    return int(time.time() * 1000)


# --- producers ------------------------------------------------------------------------------

def produce(directory: str, index: int, rate: float, lease_ms: int, long_share: float,
            seed: int) -> None:
    """Send until SIGTERM; log each message id once its send has committed."""
    os.environ["SOAK_DIR"] = directory
    from liteq import Message

    from . import soak_tasks

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    rng = random.Random(seed * 1000 + index)
    log = os.open(os.path.join(directory, f"sent-{index}.log"),
                  os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    while not stop.is_set():
        batch = 1 if rng.random() < 0.9 else rng.randint(2, 10)
        messages = []
        for _ in range(batch):
            if rng.random() < long_share:
                ms = int(lease_ms * rng.uniform(1.2, 2.0))
            else:
                ms = rng.randint(0, 300)
            key = os.urandom(16).hex()
            messages.append(Message(QUEUE, "work", (key, ms), {}, {}, message_id=key))
        if batch == 1:
            soak_tasks.broker.enqueue(messages[0])
        else:
            soak_tasks.broker.enqueue_many(messages)
        os.write(log, "".join(m.message_id + "\n" for m in messages).encode())
        stop.wait(rng.expovariate(rate / batch))
    os.close(log)


# --- the soak -------------------------------------------------------------------------------

class Soak:
    """The processes of one soak run, the chaos applied to them, and their clean-up."""

    def __init__(self, config: SoakConfig, say: Callable[[str], None] = print) -> None:
        self.config = config
        self.say = say
        self.rng = random.Random(config.seed)
        self.lease_dir = os.path.join(config.directory, "leases")
        os.makedirs(self.lease_dir, exist_ok=True)
        self.env = dict(os.environ, SOAK_DIR=config.directory,
                        SOAK_LEASE_MS=str(config.lease_ms), LITEQ_LEASE_LOG=self.lease_dir,
                        PYTHONPATH=os.pathsep.join(
                            p for p in (REPO, os.environ.get("PYTHONPATH")) if p))
        self.pool: subprocess.Popen | None = None
        self.pools: list[subprocess.Popen] = []
        self.producers: list[subprocess.Popen] = []
        self.workers: dict[int, psutil.Process] = {}  # every worker process seen
        self.stopped: dict[int, threading.Timer] = {}
        self.stopped_lock = threading.Lock()
        self.lock_thread: threading.Thread | None = None
        self.lock_release = threading.Event()
        self.counts = dict.fromkeys([*CHAOS_WEIGHTS, "pool restarts"], 0)

    # -- processes ---------------------------------------------------------------------------
    def start_pool(self) -> None:
        c = self.config
        log = open(os.path.join(c.directory, "worker.log"), "ab")  # noqa: SIM115
        self.pool = subprocess.Popen(
            [sys.executable, "-m", "liteq", "worker", "tests.faults.soak_tasks",
             "-p", str(c.processes), "-t", str(c.threads), "--shutdown-timeout", "30000"],
            cwd=REPO, env=self.env, stdout=log, stderr=log, start_new_session=True)
        log.close()
        self.pools.append(self.pool)

    def start_producers(self) -> None:
        c = self.config
        for i in range(c.producers):
            self.producers.append(subprocess.Popen(
                [sys.executable, "-m", "tests.faults.soak", "produce", "--dir", c.directory,
                 "--index", str(i), "--rate", str(c.rate), "--lease-ms", str(c.lease_ms),
                 "--long-share", str(c.long_share), "--seed", str(c.seed)],
                cwd=REPO, env=self.env))

    def children(self) -> list[psutil.Process]:
        """The current pool's worker processes (remembered for the final clean-up)."""
        if self.pool is None or self.pool.poll() is not None:
            return []
        try:
            found = psutil.Process(self.pool.pid).children()
        except psutil.NoSuchProcess:
            return []
        for p in found:
            self.workers.setdefault(p.pid, p)
        return found

    def watch(self) -> None:
        """Start a new pool when the supervisor died; fail if a producer died."""
        self.children()
        if self.pool is not None and self.pool.poll() is not None:
            self.say(f"supervisor {self.pool.pid} exited ({self.pool.returncode}); restarting")
            self.counts["pool restarts"] += 1
            self.start_pool()
        for p in self.producers:
            if p.poll() is not None and p.returncode != 0:
                raise RuntimeError(f"producer {p.pid} died with status {p.returncode}")

    # -- chaos -------------------------------------------------------------------------------
    def _log_kill(self, pid: int) -> None:
        with open(os.path.join(self.config.directory, "kills.jsonl"), "a") as f:
            f.write(json.dumps({"pid": pid, "at": _now_ms(), "sig": "KILL"}) + "\n")

    def kill(self, pid: int) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        # Logged once sent: the process runs nothing after this time, and nothing it
        # held is released (so nothing rerun) before it.
        self._log_kill(pid)

    def stop(self, pid: int, seconds: float) -> None:
        """SIGSTOP ``pid`` and SIGCONT it after ``seconds``."""
        with self.stopped_lock:
            if pid in self.stopped:
                return
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                return
            timer = threading.Timer(seconds, self.resume, (pid,))
            timer.daemon = True
            self.stopped[pid] = timer
            timer.start()

    def resume(self, pid: int) -> None:
        with self.stopped_lock:
            timer = self.stopped.pop(pid, None)
            if timer is not None:
                timer.cancel()
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def hold_lock(self, seconds: float) -> None:
        """Hold the database's write lock from another connection for ``seconds``."""
        if self.lock_thread is not None and self.lock_thread.is_alive():
            return

        def hold() -> None:
            db = sqlite3.connect(os.path.join(self.config.directory, "soak.db"),
                                 timeout=30, isolation_level=None)
            try:
                db.execute("BEGIN IMMEDIATE")
                self.lock_release.wait(seconds)
                db.execute("COMMIT")
            except sqlite3.Error as e:
                self.say(f"lock hold failed: {e}")
            finally:
                db.close()

        self.lock_release.clear()
        self.lock_thread = threading.Thread(target=hold, daemon=True)
        self.lock_thread.start()

    def chaos_step(self) -> None:
        lease = self.config.lease_ms / 1000
        children = self.children()
        weights = self.config.weights
        action = self.rng.choices(list(weights), weights=list(weights.values()))[0]
        if action in ("kill child", "stop child") and not children:
            return
        self.counts[action] += 1
        if action == "kill child":
            self.kill(self.rng.choice(children).pid)
        elif action == "stop child":
            self.stop(self.rng.choice(children).pid, lease * self.rng.uniform(0.1, 2.5))
        elif action == "kill supervisor" and self.pool is not None:
            self.kill(self.pool.pid)
            self.pool.wait()
            self.watch()
        elif action == "stop supervisor" and self.pool is not None:
            self.stop(self.pool.pid, lease * self.rng.uniform(0.1, 2.5))
        elif action == "hold lock":
            self.hold_lock(self.rng.uniform(0.5, 3.0))

    def calm(self) -> None:
        """End all chaos: resume stopped processes, release the lock."""
        for pid in list(self.stopped):
            self.resume(pid)
        self.lock_release.set()
        if self.lock_thread is not None:
            self.lock_thread.join(10)

    # -- the run -----------------------------------------------------------------------------
    def pending(self) -> int:
        db = sqlite3.connect(os.path.join(self.config.directory, "soak.db"), timeout=30)
        try:
            return db.execute("SELECT count(*) FROM liteq_messages WHERE state IN (0, 1, 2)"
                              ).fetchone()[0]
        except sqlite3.OperationalError:
            return -1  # not created yet
        finally:
            db.close()

    def run(self) -> Report:
        c = self.config
        # Made once here: processes opening a new file at the same moment can fail with
        # "database is locked" (see the xfail test in tests/faults/test_first_open.py).
        SqliteBroker(os.path.join(c.directory, "soak.db"), middleware=[]).close()
        self.start_pool()
        self.start_producers()
        try:
            deadline = time.monotonic() + c.seconds
            while time.monotonic() < deadline:
                time.sleep(min(self.rng.expovariate(1 / c.chaos_every),
                               max(0.0, deadline - time.monotonic())))
                self.watch()
                if time.monotonic() < deadline:
                    self.chaos_step()
            self.calm()
            self.stop_producers()
            self.drain()
        finally:
            self.shutdown()
        self.say("chaos: " + ", ".join(f"{k} {v}" for k, v in self.counts.items()))
        return load_and_analyze(c.directory, self.lease_dir, c.lease_ms)

    def stop_producers(self) -> None:
        for p in self.producers:
            p.send_signal(signal.SIGTERM)
        for p in self.producers:
            if p.wait(60) != 0:
                raise RuntimeError(f"producer {p.pid} exited with status {p.returncode}")

    def drain(self) -> None:
        deadline = time.monotonic() + self.config.drain_timeout
        while (left := self.pending()) != 0:
            if time.monotonic() > deadline:
                self.say(f"gave up draining: {left} messages still queued or running")
                return
            self.watch()
            time.sleep(0.2)

    def shutdown(self) -> None:
        """Stop every process this soak started (gracefully, then by force)."""
        self.calm()
        for p in self.producers:
            if p.poll() is None:
                p.kill()
                p.wait()
        for pool in self.pools:
            if pool.poll() is None:
                pool.send_signal(signal.SIGTERM)
        for pool in self.pools:
            try:
                pool.wait(45)
            except subprocess.TimeoutExpired:
                pool.kill()
                pool.wait()
        deadline = time.monotonic() + 45
        for proc in self.workers.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except psutil.TimeoutExpired:
                proc.kill()
            except psutil.NoSuchProcess:
                pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", default="soak", choices=["soak", "produce"])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--dir", help="where the database and logs go (default: a new "
                                      "temporary directory, kept)")
    parser.add_argument("--lease-ms", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=8.0, help="messages/s per producer")
    parser.add_argument("--long-share", type=float, default=0.05)
    parser.add_argument("--chaos-every", type=float, default=1.5,
                        help="mean seconds between chaos actions")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mode == "produce":
        produce(args.dir, args.index, args.rate, args.lease_ms, args.long_share, args.seed or 0)
        return 0
    seed = args.seed if args.seed is not None else random.randrange(10**6)
    directory = args.dir or tempfile.mkdtemp(prefix="liteq-soak-")
    os.makedirs(directory, exist_ok=True)
    print(f"soak for {args.minutes} min in {directory} (seed {seed})", flush=True)
    config = SoakConfig(directory, seconds=args.minutes * 60, lease_ms=args.lease_ms,
                        rate=args.rate, long_share=args.long_share,
                        chaos_every=args.chaos_every, seed=seed)
    report = Soak(config, say=lambda line: print(line, flush=True)).run()
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
