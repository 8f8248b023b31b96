"""The worker pool behind ``liteq worker``: a supervisor process and N worker processes.

The supervisor never imports the task modules. Each child process (forked, or
spawned with ``use_spawn``) imports them, builds its broker, emits
``after_process_boot``, runs a :class:`liteq.Worker` and tells the supervisor it is
ready through a pipe. The supervisor then only watches:

* a child that dies unexpectedly has its leases released at once
  (``broker.release_process(pid)``: its messages are claimable again without
  waiting for the lease to lapse) and is restarted, with a backoff when it keeps
  crashing;
* a child that finished ``max_tasks_per_child`` tasks stops claiming, finishes what it
  holds and exits with :data:`EXIT_RECYCLE`; a fresh child takes its place;
* with ``hard_time_limit``, each child publishes per worker thread the moment by
  which its current task must be over (its time limit plus a grace period that lets
  the ``TimeLimit`` middleware interrupt Python code first) in shared memory. A task
  still running past that moment is stuck where Python cannot interrupt it (C code,
  a blocking system call, a held GIL), so the supervisor SIGKILLs the child, releases
  its leases and starts a replacement. The overrunning message was counted as a
  delivery when it was claimed, so it is redelivered and, after the broker's
  ``max_deliveries`` deliveries, dead-lettered with the reason "delivered N times
  without being acknowledged" — the same path as a message that crashes its worker.
  (Retries' ``max_retries`` and backoff do not apply to it: the child cannot run
  middleware while stuck, and the supervisor does not import the actors.)

Signals: SIGTERM or SIGINT make the supervisor send SIGTERM to every child, which
stops claiming, returns prefetched messages, lets running ones finish within the
shutdown timeout and exits 0; the supervisor then exits 0. A second SIGTERM/SIGINT
SIGKILLs the children, releases their leases and exits 1 at once. SIGHUP (and a
changed ``.py`` file under a ``watch`` directory) restarts every child gracefully,
so that they import the code afresh. Children ignore SIGINT (a terminal's Ctrl-C
reaches the whole process group; the supervisor decides).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import itertools
import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import select
import signal
import sys
import threading
import time
from typing import Any

from .middleware.middleware import Middleware

logger = logging.getLogger("liteq.pool")

EXIT_OK = 0
EXIT_KILLED = 1
EXIT_IMPORT = 2
EXIT_BROKER = 3
EXIT_PIDFILE = 4
#: A child that processed ``max_tasks_per_child`` tasks exits with this code.
EXIT_RECYCLE = 100

LOG_FORMAT = (
    "[%(asctime)s] [PID %(process)d] [%(threadName)s] [%(name)s] [%(levelname)s] %(message)s"
)

#: Seconds past a task's time limit before a hard time limit kills its process, on top
#: of the TimeLimit middleware's check interval (which gets the first chance).
HARD_LIMIT_GRACE = 1.0
#: How often the supervisor looks at the children's deadlines (seconds).
HARD_LIMIT_CHECK = 0.2
#: Extra seconds the supervisor gives children beyond the shutdown timeout.
SHUTDOWN_MARGIN = 5.0
_ID_WIDTH = 36
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_ALL_SIGNALS = {signal.SIGTERM, signal.SIGINT}
if hasattr(signal, "SIGHUP"):  # not on Windows
    _ALL_SIGNALS.add(signal.SIGHUP)


def _block_signals(how: int, signals: Any) -> Any:
    if hasattr(signal, "pthread_sigmask"):
        return signal.pthread_sigmask(how, signals)
    return set()


def setup_logging(verbose: bool = False, log_file: str | None = None) -> None:
    """Log ``[time] [PID n] [thread] [logger] [LEVEL] msg`` to stderr or append to a file."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler: logging.Handler
    if log_file:
        handler = logging.FileHandler(log_file, mode="a", encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


@dataclasses.dataclass
class PoolConfig:
    """Everything a supervisor and its children need (picklable for ``spawn``)."""

    modules: list[str]
    paths: list[str] = dataclasses.field(default_factory=list)
    processes: int = 1
    threads: int = 8
    queues: list[str] | None = None
    prefetch: int | None = None
    shutdown_timeout: int = 600000
    max_tasks_per_child: int | None = None
    hard_time_limit: bool = False
    use_spawn: bool = False
    verbose: bool = False
    log_file: str | None = None
    watch: list[str] = dataclasses.field(default_factory=list)
    worker_timeout: int = 1000


# ---------------------------------------------------------------------------------------
# The child process
# ---------------------------------------------------------------------------------------
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


class _Deadlines(Middleware):
    """Publishes, per worker thread, when its current task must be over (hard time limit)."""

    def __init__(self, deadlines: Any, ids: Any, default_limit: float, grace: float) -> None:
        self.deadlines = deadlines
        self.ids = ids
        self.default_limit = default_limit
        self.grace = grace
        self._local = threading.local()
        self._slots = itertools.count()

    def _slot(self) -> int:
        try:
            return self._local.slot
        except AttributeError:
            slot = self._local.slot = next(self._slots) % len(self.deadlines)
            return slot

    def before_process_message(self, broker: Any, message: Any) -> None:
        actor = broker.actors.get(message.actor_name)
        limit = message.options.get("time_limit") or (
            actor.options.get("time_limit", self.default_limit) if actor else self.default_limit
        )
        if not limit or math.isinf(limit):
            return
        slot = self._slot()
        start = slot * _ID_WIDTH
        self.ids[start:start + _ID_WIDTH] = message.message_id.encode()[:_ID_WIDTH].ljust(
            _ID_WIDTH)
        self.deadlines[slot] = time.monotonic() + limit / 1000 + self.grace

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        self.deadlines[self._slot()] = 0.0

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


def _set_parent_death_signal() -> None:
    """On Linux, get SIGTERM when the supervisor dies (so children are never orphaned)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG


def child_main(config: PoolConfig, conn: Any, deadlines: Any, ids: Any,
               parent_pid: int) -> None:
    """Entry point of a worker process; never returns (exits with the pool's exit codes)."""
    code = EXIT_KILLED
    try:
        code = _run_child(config, conn, deadlines, ids, parent_pid)
    except BaseException:  # noqa: BLE001 - a crash must still produce an exit code
        logger.exception("worker process crashed")
    finally:
        with contextlib.suppress(Exception):
            logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _run_child(config: PoolConfig, conn: Any, deadlines: Any, ids: Any,
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
    _block_signals(getattr(signal, "SIG_UNBLOCK", 1), _ALL_SIGNALS)
    _set_parent_death_signal()
    setup_logging(config.verbose, config.log_file)
    if os.getppid() != parent_pid:
        return EXIT_KILLED

    from .errors import BrokerConnectionError, DatabaseError
    from .importing import BrokerFailed, ImportFailed, import_broker
    from .worker import Worker

    def fail(exit_code: int, text: str) -> int:
        with contextlib.suppress(Exception):
            conn.send(("error", exit_code, text))
        return exit_code

    try:
        broker = import_broker(config.modules, config.paths)
    except (ImportFailed, BrokerFailed) as e:
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
    if config.hard_time_limit and deadlines is not None:
        from .middleware.time_limit import TimeLimit

        limits = [m for m in broker.middleware if isinstance(m, TimeLimit)]
        default = limits[0].time_limit if limits else math.inf
        interval = limits[0].interval / 1000 if limits else 1.0
        broker.add_middleware(_Deadlines(deadlines, ids, default, interval + HARD_LIMIT_GRACE))
    if config.verbose:
        broker.add_middleware(_TaskLog())

    worker = Worker(broker, queues=queues, worker_threads=config.threads,
                    worker_timeout=config.worker_timeout, prefetch=config.prefetch)
    try:
        broker.emit_after("process_boot")
        worker.start()
    except (DatabaseError, BrokerConnectionError) as e:
        return fail(EXIT_BROKER, f"cannot use the broker {broker!r}: {e}")
    conn.send(("ready", getattr(broker, "path", None) if getattr(broker, "is_sqlite", False)
               else None))
    logger.info("worker process ready: %d threads on %s, queues %s", config.threads,
                broker, ", ".join(worker.queue_names))

    code = EXIT_OK
    while not received:
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


# ---------------------------------------------------------------------------------------
# The supervisor
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Child:
    slot: int
    process: Any
    conn: Any
    deadlines: Any
    ids: Any
    started: float
    ready_at: float | None = None
    expected: str | None = None  # "stop", "reload", "hard-limit"
    error: tuple[int, str] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid


class _Watcher(threading.Thread):
    """Polls ``*.py`` modification times under some directories; sends SIGHUP on a change."""

    SKIP = {"__pycache__", "node_modules", "venv", "site-packages"}

    def __init__(self, directories: list[str], interval: float = 1.0) -> None:
        super().__init__(name="liteq-watch", daemon=True)
        self.directories = [os.path.abspath(d) for d in directories]
        self.interval = interval
        self.stopped = threading.Event()

    def snapshot(self) -> dict[str, int]:
        seen: dict[str, int] = {}
        for top in self.directories:
            for root, dirs, files in os.walk(top):
                dirs[:] = [d for d in dirs if not d.startswith(".") and d not in self.SKIP]
                for name in files:
                    if name.endswith(".py"):
                        path = os.path.join(root, name)
                        with contextlib.suppress(OSError):
                            seen[path] = os.stat(path).st_mtime_ns
        return seen

    def run(self) -> None:
        before = self.snapshot()
        while not self.stopped.wait(self.interval):
            now = self.snapshot()
            if now != before:
                changed = sorted(p for p in set(now) | set(before) if now.get(p) != before.get(p))
                logger.info("code changed (%s); reloading the worker processes",
                            ", ".join(os.path.relpath(p) for p in changed[:3]))
                os.kill(os.getpid(), signal.SIGHUP)
            before = now


class Supervisor:
    """Starts, watches, restarts and stops the worker processes of one ``liteq worker``."""

    def __init__(self, config: PoolConfig) -> None:
        if config.processes < 1:
            raise ValueError("processes must be at least 1")
        self.config = config
        self.context = multiprocessing.get_context("spawn" if config.use_spawn else "fork")
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
        self.broker_path: str | None = None
        self._release_broker: Any = None
        self._reported: set[str] = set()
        self._wake_r = self._wake_w = -1
        self._watcher: _Watcher | None = None

    # -- starting children ------------------------------------------------------------
    def _start(self, slot: int) -> None:
        ctx = self.context
        reader, writer = ctx.Pipe(duplex=False)
        deadlines = ids = None
        if self.config.hard_time_limit:
            deadlines = ctx.RawArray("d", self.config.threads)
            ids = ctx.RawArray("c", self.config.threads * _ID_WIDTH)
        process = ctx.Process(
            target=child_main, name=f"liteq-worker-{slot}",
            args=(self.config, writer, deadlines, ids, os.getpid()),
        )
        previous = _block_signals(getattr(signal, "SIG_BLOCK", 0), _ALL_SIGNALS)
        try:
            process.start()
        finally:
            _block_signals(getattr(signal, "SIG_SETMASK", 2), previous)
        writer.close()
        child = _Child(slot, process, reader, deadlines, ids, time.monotonic())
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
        for signum in _ALL_SIGNALS:
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

    def _kill_all(self) -> int:
        for child in self.children.values():
            self._signal(child, signal.SIGKILL)
        for child in list(self.children.values()):
            child.process.join(5)
            self._release(child.pid)
        self.children.clear()
        return EXIT_KILLED

    @staticmethod
    def _signal(child: _Child, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signum)

    # -- leases of dead children ----------------------------------------------------------
    def _release(self, pid: int) -> None:
        """Make the messages leased by dead process ``pid`` claimable at once."""
        if self.broker_path is None:
            return
        try:
            if self._release_broker is None:
                from .store import SqliteBroker

                self._release_broker = SqliteBroker(self.broker_path, middleware=[])
            released = self._release_broker.release_process(pid)
        except Exception as e:
            logger.warning("could not release the messages of process %d (their leases "
                           "will lapse instead): %s", pid, e)
            return
        finally:
            # Never hold a connection across fork(): each use opens and closes it.
            if self._release_broker is not None:
                with contextlib.suppress(Exception):
                    self._release_broker.db.close()
        if released:
            logger.info("released %d message(s) held by process %d", released, pid)

    # -- events from children ------------------------------------------------------------
    def _receive(self, child: _Child) -> None:
        try:
            while child.conn.poll():
                kind, *data = child.conn.recv()
                if kind == "ready":
                    child.ready_at = time.monotonic()
                    if self.broker_path is None and data[0]:
                        self.broker_path = data[0]
                        self._forget_stale_workers()
                    if self.booting and all(c.ready_at for c in self.children.values()) \
                            and len(self.children) == self.config.processes:
                        self.booting = False
                        logger.info("all %d worker processes are ready", self.config.processes)
                elif kind == "error":
                    child.error = (data[0], data[1])
        except (EOFError, OSError):
            pass

    def _forget_stale_workers(self) -> None:
        with contextlib.suppress(Exception):
            from .store import SqliteBroker

            broker = SqliteBroker(self.broker_path, middleware=[])  # type: ignore[arg-type]
            try:
                forgotten = broker.forget_stale_workers()
                if forgotten:
                    logger.info("forgot %d stale worker registry entries", forgotten)
            finally:
                broker.db.close()

    def _reap(self, child: _Child) -> None:
        self._receive(child)
        child.process.join()
        code = child.process.exitcode
        del self.children[child.slot]
        child.conn.close()
        self._release(child.pid)
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
        if child.error is not None:
            exit_code, text = child.error
            if self.booting and exit_code in (EXIT_IMPORT, EXIT_BROKER):
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

    def _give_up(self, exit_code: int, text: str) -> None:
        logger.error("%s", text)
        self.fatal = text
        self.exit_code = exit_code
        self._stop_all()

    def _check_deadlines(self, now: float) -> None:
        for child in self.children.values():
            if child.deadlines is None or child.expected is not None:
                continue
            for slot, deadline in enumerate(child.deadlines):
                if deadline and now > deadline:
                    raw = bytes(child.ids[slot * _ID_WIDTH:(slot + 1) * _ID_WIDTH])
                    message_id = raw.decode(errors="replace").strip()
                    logger.error(
                        "message %s overran its time limit in worker process %d and could "
                        "not be interrupted (stuck in C code or a system call); killing the "
                        "process (--hard-time-limit)", message_id, child.pid)
                    child.expected = "hard-limit"
                    self._signal(child, signal.SIGKILL)
                    break

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> int:
        """Run the pool until it is stopped; returns the exit code."""
        self._install_signals()
        config = self.config
        logger.info("starting %d worker process(es) with %d threads each (%s); modules: %s",
                    config.processes, config.threads,
                    "spawn" if config.use_spawn else "fork", " ".join(config.modules))
        try:
            for slot in range(config.processes):
                self._start(slot)
            if config.watch:
                self._watcher = _Watcher(config.watch)
                self._watcher.start()
            return self._loop()
        finally:
            if self._watcher is not None:
                self._watcher.stopped.set()
            signal.set_wakeup_fd(-1)
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)

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
            if self.stopping and not self.children:
                return self.exit_code
            if self.stopping and now > self.stop_deadline:
                logger.error("worker processes did not stop within the shutdown timeout; "
                             "killing them")
                self._kill_all()
                return EXIT_KILLED
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

            waitables: list[Any] = [self._wake_r]
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
                child = by_object.get(obj)
                if child is None or child.slot not in self.children:
                    continue
                if obj is child.conn:
                    self._receive(child)
            for child in list(self.children.values()):
                if child.process.exitcode is not None or not child.process.is_alive():
                    self._reap(child)


# ---------------------------------------------------------------------------------------
# pid files
# ---------------------------------------------------------------------------------------
class PidFileError(Exception):
    """The pid file names a live process, or holds something else than a pid (exit 4)."""

    exit_code = EXIT_PIDFILE


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_pid_file(path: str) -> None:
    """Write our pid to ``path``; a stale pid is replaced, a live one or garbage refused."""
    path = os.path.abspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            content = f.read().strip()
    except FileNotFoundError:
        content = None
    except OSError as e:
        raise PidFileError(f"cannot read pid file {path}: {e.strerror}") from e
    if content:
        try:
            pid = int(content)
        except ValueError:
            raise PidFileError(f"pid file {path} does not contain a pid: {content[:40]!r}"
                               ) from None
        if pid != os.getpid() and _pid_alive(pid):
            raise PidFileError(f"pid file {path} names process {pid}, which is running; "
                               "is another liteq worker using it?")
        logger.info("replacing the stale pid file %s (process %d is gone)", path, pid)
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"{os.getpid()}\n")
    except OSError as e:
        raise PidFileError(f"cannot write pid file {path}: {e.strerror}") from e


def remove_pid_file(path: str) -> None:
    """Remove ``path`` if it still holds our pid."""
    with contextlib.suppress(OSError, ValueError):
        with open(path, encoding="utf-8") as f:
            if int(f.read().strip()) != os.getpid():
                return
        os.unlink(path)


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
