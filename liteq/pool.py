"""The supervisor of ``liteq worker``: starts N worker processes and watches them.

The supervisor never imports the task modules; each worker process does
(:mod:`liteq.process.child`). The supervisor only watches:

* a child that dies unexpectedly has its messages released at once (claimable again
  without waiting for a lease or a heartbeat to lapse) and is restarted, with a backoff
  when it keeps crashing. Before it claims anything, each child sends its broker's
  ``release_info()``, a small picklable recipe naming a module of liteq
  (``liteq.brokers.sqlite.broker``, ``liteq.brokers.redis.broker``) whose
  ``release(info, pid, running, overran)`` does it, so that this module needs to know no
  broker. ``running`` are the ids of the messages the child was running when it died,
  read off its :class:`~liteq.process.board.RunningBoard`: on SQLite they become
  suspects that run alone, while the messages it had only prefetched run normally;
* a child that finished ``max_tasks_per_child`` tasks stops claiming, finishes what it
  holds and exits with :data:`~liteq.errors.EXIT_RECYCLE`; a fresh child takes
  its place;
* with ``hard_time_limit``, a child whose task is stuck past its time limit where
  Python cannot interrupt it is SIGKILLed, its leases released and a replacement
  started (:mod:`liteq.process.hard_limit`). The overrunning message is counted as a delivery
  (``overran``) and comes back as a suspect that runs alone; after the broker's
  ``max_deliveries`` it is dead-lettered with the reason "delivered N times without
  being acknowledged" — the same path as a message that crashes its worker.
  (Retries' ``max_retries`` and backoff do not apply to it: the child cannot run
  middleware while stuck, and the supervisor does not import the actors.)
* ``--fork-function`` functions and middleware ``forks`` run in fork processes of
  their own beside the children (:mod:`liteq.process.forks`);
* with ``prometheus``, the supervisor serves the pool's metrics, summed over its
  children, and drops the live gauges of each child that dies
  (:mod:`liteq.process.metrics`).

Signals: SIGTERM or SIGINT make the supervisor send SIGTERM to every child, which
stops claiming, returns prefetched messages, lets running ones finish within the
shutdown timeout and exits 0; the supervisor then exits 0. A second SIGTERM/SIGINT
SIGKILLs the children, releases their leases and exits 1 at once. SIGHUP (and a
changed ``.py`` file under a ``watch`` directory, :mod:`liteq.process.reload`) restarts every
child gracefully, so that they import the code afresh.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from typing import Any

from .errors import (
    EXIT_BROKER,
    EXIT_IMPORT,
    EXIT_KILLED,
    EXIT_OK,
    EXIT_PIDFILE,
    EXIT_RECYCLE,
    MetricsUnavailable,
    PidFileError,
)
from .process.board import RunningBoard
from .process.child import child_main
from .process.forks import Forks
from .process.hard_limit import HARD_LIMIT_CHECK, check_deadlines
from .process.pidfile import remove_pid_file, write_pid_file
from .process.pool_config import PoolConfig
from .process.reload import Watcher
from .process.signals import POOL_SIGNALS, block_signals

logger = logging.getLogger("liteq.pool")

#: Extra seconds the supervisor gives children beyond the shutdown timeout.
SHUTDOWN_MARGIN = 5.0


@dataclasses.dataclass
class _Child:
    slot: int
    process: Any
    conn: Any
    board: RunningBoard
    started: float
    ready_at: float | None = None
    release_info: dict[str, Any] | None = None
    expected: str | None = None  # "stop", "reload", "hard-limit"
    overran: str | None = None  # the message a hard time limit killed it for
    error: tuple[int, str] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid


class Supervisor:
    """Starts, watches, restarts and stops the worker processes of one ``liteq worker``."""

    def __init__(self, config: PoolConfig) -> None:
        if config.processes < 1:
            raise ValueError("processes must be at least 1")
        self.config = config
        self.context = (multiprocessing.get_context("spawn") if config.use_spawn
                        else multiprocessing.get_context("fork"))
        self.children: dict[int, _Child] = {}
        self.restarts: dict[int, float] = {}  # slot -> when to start it
        self.crashes: dict[int, int] = {}  # slot -> consecutive crashes
        self.signals: list[int] = []
        self.stopping = False
        self.stop_deadline = math.inf
        self.booting = True
        self.exit_code = EXIT_OK
        #: The error that made the pool give up at boot (printed by the CLI).
        self.fatal: str | None = None
        self._tidied = False
        self._reported: set[str] = set()
        self._wake_r = self._wake_w = -1
        self._watcher: Watcher | None = None
        self.forks = Forks(self.context, config)
        self.metrics: Any = None  # a liteq.process.metrics.MetricsServer with prometheus
        self.fork_guard: Any = contextlib.nullcontext()

    # -- starting children ------------------------------------------------------------
    def _start(self, slot: int) -> None:
        ctx = self.context
        reader, writer = ctx.Pipe(duplex=False)
        board = RunningBoard(ctx, self.config.threads)
        process = ctx.Process(
            target=child_main, name=f"liteq-worker-{slot}",
            args=(self.config, writer, board, os.getpid()),
        )
        previous = block_signals(getattr(signal, "SIG_BLOCK", 0), POOL_SIGNALS)
        try:
            with self.fork_guard:
                process.start()
        finally:
            block_signals(getattr(signal, "SIG_SETMASK", 2), previous)
        writer.close()
        child = _Child(slot, process, reader, board, time.monotonic())
        self.children[slot] = child
        logger.debug("started worker process %d (slot %d)", process.pid, slot)

    # -- signals ------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signals.append(signum)

    def _install_signals(self) -> None:
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        signal.set_wakeup_fd(self._wake_w)
        for signum in POOL_SIGNALS:
            signal.signal(signum, self._on_signal)

    def _handle_signals(self) -> int | None:
        while self.signals:
            signum = self.signals.pop(0)
            if signum == getattr(signal, "SIGHUP", None):
                self._reload()
            elif not self.stopping:
                logger.info("received %s; stopping the worker processes (they finish running "
                            "tasks within %d ms)", signal.Signals(signum).name,
                            self.config.shutdown_timeout)
                self._stop_all()
            else:
                logger.warning("received %s again; killing the worker processes",
                               signal.Signals(signum).name)
                return self._kill_all()
        return None

    def _reload(self) -> None:
        if self.stopping:
            return
        logger.info("reloading: restarting %d worker processes gracefully", len(self.children))
        for child in self.children.values():
            child.expected = "reload"
            self._signal(child, signal.SIGTERM)
        self.forks.reload()
        self.restarts.clear()
        # Slots whose child was waiting for a restart come back with the new code now.
        for slot in range(self.config.processes):
            if slot not in self.children:
                self.restarts[slot] = time.monotonic()

    def _stop_all(self) -> None:
        self.stopping = True
        self.restarts.clear()
        self.stop_deadline = (time.monotonic() + self.config.shutdown_timeout / 1000
                              + SHUTDOWN_MARGIN)
        for child in self.children.values():
            child.expected = "stop"
            self._signal(child, signal.SIGTERM)
        self.forks.signal(signal.SIGTERM)

    def _kill_all(self) -> int:
        self.forks.kill()
        for child in self.children.values():
            self._signal(child, signal.SIGKILL)
        for child in list(self.children.values()):
            child.process.join(5)
            self._receive(child)
            self._release(child)
            self._metrics_forget(child)
        self.children.clear()
        return EXIT_KILLED

    @staticmethod
    def _signal(child: _Child, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signum)

    # -- leases of dead children ----------------------------------------------------------
    @staticmethod
    def _broker_module(info: dict[str, Any]) -> Any:
        """The liteq module that handles a child's release recipe ``info``."""
        name = info.get("module")
        if not isinstance(name, str) or not name.startswith("liteq."):
            raise ValueError(f"no liteq broker module in the release recipe: {name!r}")
        return importlib.import_module(name)

    def _release(self, child: _Child) -> None:
        """Make the messages held by dead ``child`` claimable at once."""
        info = child.release_info
        if info is None:
            return
        pid = child.pid
        try:
            overran = [child.overran] if child.overran else []
            released = self._broker_module(info).release(info, pid, child.board.running(),
                                                          overran)
        except Exception as e:
            logger.warning("could not release the messages of process %d (they come back "
                           "when their lease or heartbeat lapses instead): %s", pid, e)
            return
        if released:
            logger.info("released %d message(s) held by process %d", released, pid)

    # -- events from children ------------------------------------------------------------
    def _receive(self, child: _Child) -> None:
        try:
            while child.conn.poll():
                kind, *data = child.conn.recv()
                if kind == "release":
                    child.release_info = data[0]
                    if self.metrics is not None:
                        self.metrics.watch_broker(data[0])
                elif kind == "ready":
                    child.ready_at = time.monotonic()
                    if not self._tidied and child.release_info is not None:
                        self._tidied = True
                        self._forget_stale_workers(child.release_info)
                    if self.booting and all(c.ready_at for c in self.children.values()) \
                            and len(self.children) == self.config.processes:
                        self.booting = False
                        logger.info("all %d worker processes are ready", self.config.processes)
                elif kind == "forks":
                    self.forks.add(data[0])
                elif kind == "error":
                    child.error = (data[0], data[1])
        except (EOFError, OSError):
            pass

    def _forget_stale_workers(self, info: dict[str, Any]) -> None:
        """Once, when the first child is ready: drop stale worker registry entries, for
        brokers that keep a registry (their module has ``forget_stale_workers(info)``)."""
        with contextlib.suppress(Exception):
            forget = getattr(self._broker_module(info), "forget_stale_workers", None)
            forgotten = forget(info) if forget is not None else 0
            if forgotten:
                logger.info("forgot %d stale worker registry entries", forgotten)

    def _reap(self, child: _Child) -> None:
        self._receive(child)
        child.process.join()
        code = child.process.exitcode
        del self.children[child.slot]
        child.conn.close()
        self._release(child)
        self._metrics_forget(child)
        how = f"exit code {code}" if code is None or code >= 0 else \
            f"signal {signal.Signals(-code).name}"
        if self.stopping:
            logger.debug("worker process %d stopped (%s)", child.pid, how)
            return
        if child.expected == "reload":
            self._start(child.slot)
            return
        if child.expected == "hard-limit":
            logger.info("replacing worker process %d", child.pid)
            self._start(child.slot)
            return
        if code == EXIT_RECYCLE:
            logger.info("worker process %d recycled after --max-tasks-per-child tasks",
                        child.pid)
            self._start(child.slot)
            return
        if code == EXIT_BROKER and child.error is None:
            child.error = (EXIT_BROKER, f"worker process {child.pid} found the broker "
                           "unusable (exit code 3)")
        if child.error is not None:
            exit_code, text = child.error
            # An unusable broker stops the pool at any time: a restart cannot cure it.
            if exit_code == EXIT_BROKER or (self.booting and exit_code == EXIT_IMPORT):
                self._give_up(exit_code, text)
                return
            if text not in self._reported:
                self._reported.add(text)
                logger.error("%s", text)
        crashes = self.crashes.get(child.slot, 0)
        if child.ready_at is not None and time.monotonic() - child.ready_at > 30:
            crashes = 0
        crashes += 1
        self.crashes[child.slot] = crashes
        delay = 0.0 if crashes == 1 else min(0.25 * 2 ** (crashes - 2), 10.0)
        logger.error("worker process %d died (%s); restarting it in %.2fs", child.pid, how,
                     delay)
        self.restarts[child.slot] = time.monotonic() + delay

    def _metrics_forget(self, child: _Child) -> None:
        """Drop the live gauges (messages in progress) of dead ``child``."""
        if self.metrics is not None:
            self.metrics.process_died(child.pid)

    def _give_up(self, exit_code: int, text: str) -> None:
        logger.error("%s", text)
        self.fatal = text
        self.exit_code = exit_code
        self._stop_all()
        if exit_code == EXIT_BROKER:
            # The other children cannot settle anything on an unusable broker: do not
            # wait the whole shutdown timeout for them.
            self.stop_deadline = min(self.stop_deadline, time.monotonic() + SHUTDOWN_MARGIN)

    def _check_deadlines(self, now: float) -> None:
        for child in self.children.values():
            if not self.config.hard_time_limit or child.expected is not None:
                continue
            overran = check_deadlines(child.board, child.pid, now)
            if overran is not None:
                child.expected = "hard-limit"
                child.overran = overran
                self._signal(child, signal.SIGKILL)

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> int:
        """Run the pool until it is stopped; returns the exit code."""
        self._install_signals()
        config = self.config
        logger.info("starting %d worker process(es) with %d threads each (%s); modules: %s",
                    config.processes, config.threads,
                    "spawn" if config.use_spawn else "fork", " ".join(config.modules))
        try:
            if config.prometheus:
                try:
                    self._serve_metrics(*config.prometheus)
                except MetricsUnavailable as e:
                    logger.error("%s", e)
                    self.fatal = str(e)
                    return e.exit_code
            self.forks.arm()
            for slot in range(config.processes):
                self._start(slot)
            if config.watch:
                self._watcher = Watcher(config.watch, include=config.watch_include,
                                        exclude=config.watch_exclude,
                                        use_polling=config.watch_polling)
                self._watcher.start()
            return self._loop()
        finally:
            self.forks.kill()
            if self.metrics is not None:
                self.metrics.close()
            if self._watcher is not None:
                self._watcher.stopped.set()
            signal.set_wakeup_fd(-1)
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _serve_metrics(self, host: str, port: int) -> None:
        """Start the metrics endpoint; its directory must be set before any fork."""
        from .process.metrics import MetricsServer

        self.metrics = MetricsServer(host, port)
        self.fork_guard = self.forks.fork_guard = self.metrics.fork_guard

    def _loop(self) -> int:
        while True:
            code = self._handle_signals()
            if code is not None:
                return code
            now = time.monotonic()
            for slot, when in list(self.restarts.items()):
                if when <= now and not self.stopping:
                    del self.restarts[slot]
                    self._start(slot)
            self.forks.start_when_due(now, self.booting, self.stopping)
            if self.stopping and not self.children and self.forks.stopped(now):
                return self.exit_code
            if self.stopping and now > self.stop_deadline:
                logger.error("worker processes did not stop within the shutdown timeout; "
                             "killing them")
                self._kill_all()
                return self.exit_code if self.fatal else EXIT_KILLED
            if self.config.hard_time_limit:
                self._check_deadlines(now)

            timeout: float | None = None
            if self.restarts:
                timeout = max(0.0, min(self.restarts.values()) - now)
            if self.config.hard_time_limit:
                timeout = HARD_LIMIT_CHECK if timeout is None else min(timeout, HARD_LIMIT_CHECK)
            if self.stopping:
                remaining = max(0.0, self.stop_deadline - now)
                timeout = remaining if timeout is None else min(timeout, remaining)
            forks_due = self.forks.wake_in(now)
            if forks_due is not None:
                timeout = forks_due if timeout is None else min(timeout, forks_due)

            waitables: list[Any] = [self._wake_r, *self.forks.sentinels()]
            by_object: dict[Any, _Child] = {}
            for child in self.children.values():
                waitables += [child.process.sentinel, child.conn]
                by_object[child.process.sentinel] = child
                by_object[child.conn] = child
            try:
                ready = multiprocessing.connection.wait(waitables, timeout)
            except InterruptedError:
                ready = []
            for obj in ready:
                if obj == self._wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 512)
                    continue
                sender = by_object.get(obj)
                if sender is None or sender.slot not in self.children:
                    continue
                if obj is sender.conn:
                    self._receive(sender)
            for child in list(self.children.values()):
                if child.process.exitcode is not None or not child.process.is_alive():
                    self._reap(child)
            fatal = self.forks.reap(self.stopping)
            if fatal is not None and not self.stopping:
                self._give_up(EXIT_IMPORT, fatal)


def run_pool(config: PoolConfig, pid_file: str | None = None) -> tuple[int, str | None]:
    """Run a supervised pool until it stops; returns (exit code, fatal error or None)."""
    if pid_file:
        try:
            write_pid_file(pid_file)
        except PidFileError as e:
            logger.error("%s", e)
            return EXIT_PIDFILE, str(e)
    try:
        supervisor = Supervisor(config)
        code = supervisor.run()
        return code, supervisor.fatal
    finally:
        if pid_file:
            remove_pid_file(pid_file)
