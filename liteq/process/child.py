"""A worker process of ``liteq worker``: imports the task modules and runs a Worker.

The supervisor starts it (forked, or spawned with ``use_spawn``); it imports the
modules, builds their broker, sends the supervisor the broker's ``release_info()``
(how to release this process's messages should it die; ``None`` for a broker without
one), emits ``after_process_boot``, starts a :class:`liteq.Worker` and tells the
supervisor it is ready (or why it cannot run) through the same pipe. It stops on
SIGTERM, when the supervisor is gone, or after ``max_tasks_per_child`` tasks (exit code
:data:`EXIT_RECYCLE`). It ignores SIGINT and SIGHUP: a terminal's Ctrl-C reaches the
whole process group, and the supervisor decides.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import sys
import threading
import time
from typing import Any

from ..errors import EXIT_BROKER, EXIT_IMPORT, EXIT_KILLED, EXIT_OK, EXIT_RECYCLE
from ..middleware.middleware import Middleware
from ..urls import scrub
from .board import RunningBoard
from .hard_limit import publish_deadlines
from .logs import setup_logging
from .pool_config import PoolConfig
from .signals import POOL_SIGNALS, block_signals

logger = logging.getLogger("liteq.pool")


class _Recycle(Middleware):
    """Counts finished tasks; at the limit, stops claiming and wakes the main thread."""

    def __init__(self, limit: int, wake_fd: int) -> None:
        self.limit = limit
        self.wake_fd = wake_fd
        self.count = 0
        self.worker: Any = None
        self._lock = threading.Lock()

    @property
    def due(self) -> bool:
        return self.count >= self.limit

    def before_worker_boot(self, broker: Any, worker: Any) -> None:
        self.worker = worker

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        with self._lock:
            self.count += 1
            if self.count != self.limit:
                return
        if self.worker is not None:
            self.worker.pause()
        with contextlib.suppress(OSError):
            os.write(self.wake_fd, b"r")

    after_skip_message = after_process_message


class _TaskLog(Middleware):
    """One DEBUG line per task (installed only with ``--verbose``)."""

    _log = logging.getLogger("liteq.task")

    def __init__(self) -> None:
        self._local = threading.local()

    def before_process_message(self, broker: Any, message: Any) -> None:
        self._local.start = time.perf_counter()
        self._log.debug("running %s (message %s)", message, message.message_id)

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        elapsed = (time.perf_counter() - getattr(self._local, "start", time.perf_counter()))
        self._log.debug("%s %s in %.2f ms (message %s)", message.actor_name,
                        "failed" if exception is not None else "done", elapsed * 1000,
                        message.message_id)

    def after_skip_message(self, broker: Any, message: Any) -> None:
        self._log.debug("skipped message %s", message.message_id)


def _add_prometheus(broker: Any, config: PoolConfig) -> None:
    """With ``--prometheus``, record the Prometheus middleware's metrics (the broker's own
    instance if it has one); without, say that a broker's instance is not served."""
    from ..middleware.prometheus import Prometheus

    present = any(isinstance(m, Prometheus) for m in broker.middleware)
    if config.prometheus and not present:
        broker.add_middleware(Prometheus())
    elif present and not config.prometheus:
        logger.warning("the broker has the Prometheus middleware, but its metrics are served "
                       "only by liteq worker --prometheus [HOST:]PORT")


def _set_parent_death_signal() -> None:
    """On Linux, get SIGTERM when the supervisor dies (so children are never orphaned)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG


def child_main(config: PoolConfig, conn: Any, board: RunningBoard,
               parent_pid: int) -> None:
    """Entry point of a worker process; never returns (exits with the pool's exit codes)."""
    code = EXIT_KILLED
    try:
        code = _run_child(config, conn, board, parent_pid)
    except BaseException:  # noqa: BLE001 - a crash must still produce an exit code
        logger.exception("worker process crashed")
    finally:
        with contextlib.suppress(Exception):
            logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _run_child(config: PoolConfig, conn: Any, board: RunningBoard,
               parent_pid: int) -> int:
    # Signals arrive blocked (the supervisor blocks them around fork); install our own
    # handlers, then let them through.
    signal.set_wakeup_fd(-1)
    rfd, wfd = os.pipe()
    os.set_blocking(rfd, False)
    os.set_blocking(wfd, False)
    received: list[int] = []

    def on_term(signum: int, frame: Any) -> None:
        received.append(signum)
        if len(received) > 1:
            os._exit(EXIT_KILLED)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.set_wakeup_fd(wfd)
    block_signals(getattr(signal, "SIG_UNBLOCK", 1), POOL_SIGNALS)
    _set_parent_death_signal()
    if not config.skip_logging:
        setup_logging(config.verbose, config.log_file)
    if os.getppid() != parent_pid:
        return EXIT_KILLED

    from ..errors import (
        BrokerConnectionError,
        BrokerFailed,
        DatabaseError,
        DatabaseFull,
        ImportFailed,
    )
    from ..worker import Worker
    from .importing import import_broker

    def fail(exit_code: int, text: str) -> int:
        with contextlib.suppress(Exception):
            conn.send(("error", exit_code, scrub(text)))
        return exit_code

    try:
        broker = import_broker(config.modules, config.paths)
    except (ImportFailed, BrokerFailed) as e:
        if isinstance(e.__cause__, DatabaseFull):
            # Not unusable, only full for now: the supervisor restarts us with a backoff.
            logger.warning("%s; this process stops and is restarted", e)
            return EXIT_KILLED
        return fail(e.exit_code, str(e))

    declared = broker.get_declared_queues()
    queues = None
    if config.queues:
        unknown = sorted(set(config.queues) - declared)
        if unknown:
            logger.warning("ignoring queue(s) no actor of %s uses: %s",
                           " ".join(config.modules), ", ".join(unknown))
        queues = sorted(set(config.queues) & declared)
        if not queues:
            return fail(EXIT_IMPORT, f"none of the queues {config.queues} is declared by "
                        f"{' '.join(config.modules)} (declared: {sorted(declared)})")
    elif not declared:
        return fail(EXIT_IMPORT, f"{' '.join(config.modules)} declare(s) no actors")

    recycle = None
    if config.max_tasks_per_child:
        recycle = _Recycle(config.max_tasks_per_child, wfd)
        broker.add_middleware(recycle)
    if config.hard_time_limit:
        publish_deadlines(broker, board)
    if config.verbose:
        broker.add_middleware(_TaskLog())
    _add_prometheus(broker, config)

    forks = [f"{fn.__module__}:{fn.__name__}" for m in broker.middleware for fn in m.forks]
    if forks:
        conn.send(("forks", forks))
    # Before any message is claimed: how the supervisor releases ours if we die.
    release_info = getattr(broker, "release_info", None)
    try:
        conn.send(("release", release_info() if callable(release_info) else None))
    except Exception as e:  # noqa: BLE001 - the messages' leases lapse instead
        logger.warning("cannot tell the supervisor how to release this process's messages "
                       "(they will come back when their lease lapses): %s", e)
    worker = Worker(broker, queues=queues, worker_threads=config.threads,
                    worker_timeout=config.worker_timeout, prefetch=config.prefetch, board=board)
    try:
        broker.emit_after("process_boot")
        worker.start()
    except (DatabaseError, BrokerConnectionError) as e:
        if isinstance(e, DatabaseFull):
            logger.warning("%s; this process stops and is restarted", e)
            return EXIT_KILLED
        return fail(EXIT_BROKER, f"cannot use the broker {broker!r}: {e}")
    conn.send(("ready",))
    logger.info("worker process ready: %d threads on %s, queues %s", config.threads,
                broker, ", ".join(worker.queue_names))

    code = EXIT_OK
    while not received:
        if worker.fatal is not None:
            code = fail(EXIT_BROKER, f"cannot use the broker {broker!r}: "
                        f"{type(worker.fatal).__name__}: {worker.fatal}")
            break
        if recycle is not None and recycle.due:
            logger.info("processed %d tasks (--max-tasks-per-child); recycling this process",
                        recycle.count)
            code = EXIT_RECYCLE
            break
        if os.getppid() != parent_pid:
            logger.warning("the supervisor is gone; stopping")
            break
        with contextlib.suppress(InterruptedError):
            select.select([rfd], [], [], 1.0)
        with contextlib.suppress(BlockingIOError):
            os.read(rfd, 512)
    logger.debug("stopping the worker (shutdown timeout %d ms)", config.shutdown_timeout)
    worker.stop(config.shutdown_timeout)
    with contextlib.suppress(Exception):
        broker.close()
    return code
