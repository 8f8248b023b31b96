"""Fork processes of ``liteq worker``: functions that run beside the worker processes.

Dramatiq's semantics: each ``--fork-function MODULE:FUNCTION``, and each function a
middleware lists in its ``forks`` (the worker processes report them, since the
supervisor never imports the task modules), runs in a process of its own. They start
once every worker process is ready, or after ``--worker-fork-timeout`` ms if some is
not, and exit with what the function returns. SIGTERM (the pool stopping) raises
``SystemExit(0)`` in the function; one that has not stopped a few seconds after the
worker processes is killed. A reload (SIGHUP, ``--watch``) restarts them all with
fresh code; otherwise a fork process that exited is not restarted. A function that cannot be
imported stops the pool (exit code 2), like a task module that cannot.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import signal
import sys
import time
from typing import Any

from ..errors import EXIT_IMPORT, EXIT_KILLED, EXIT_OK
from .pool_config import PoolConfig
from .signals import POOL_SIGNALS, block_signals

logger = logging.getLogger("liteq.pool")

#: Seconds a fork process may take to stop after the worker processes have.
STOP_GRACE = 5.0


def fork_main(spec: str, config: PoolConfig, conn: Any) -> None:
    """Entry point of a fork process: run ``spec``'s function; never returns."""
    code = EXIT_KILLED
    stopping: list[int] = []

    def on_term(signum: int, frame: Any) -> None:
        stopping.append(signum)
        if len(stopping) > 1:
            os._exit(EXIT_KILLED)
        raise SystemExit(EXIT_OK)

    try:
        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
        block_signals(getattr(signal, "SIG_UNBLOCK", 1), POOL_SIGNALS)
        code = _run(spec, config, conn)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else EXIT_OK
    except BaseException:  # noqa: BLE001 - a crash must still produce an exit code
        logger.exception("fork process %s crashed", spec)
        code = EXIT_KILLED
    finally:
        with contextlib.suppress(Exception):
            logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _run(spec: str, config: PoolConfig, conn: Any) -> int:
    from ..errors import ImportFailed
    from .child import _set_parent_death_signal
    from .importing import import_function
    from .logs import setup_logging

    _set_parent_death_signal()
    if not config.skip_logging:
        setup_logging(config.verbose, config.log_file)
    try:
        function = import_function(spec, config.paths)
    except ImportFailed as e:
        with contextlib.suppress(Exception):
            conn.send(str(e))
        return EXIT_IMPORT
    logger.info("fork process %s is running", spec)
    result = function()
    return result if isinstance(result, int) else EXIT_OK


@dataclasses.dataclass
class _Fork:
    spec: str
    process: Any
    conn: Any
    reload: bool = False


class Forks:
    """The fork processes of one pool, as the supervisor sees them."""

    def __init__(self, context: Any, config: PoolConfig) -> None:
        self.context = context
        self.config = config
        self.specs: list[str] = list(dict.fromkeys(config.forks))
        self.running: dict[str, _Fork] = {}
        self.started = False
        self.start_by = math.inf
        self._kill_at = math.inf
        #: Held around every fork (the supervisor's metrics endpoint sets it).
        self.fork_guard: Any = contextlib.nullcontext()

    def arm(self) -> None:
        """The worker processes are starting: the fork timeout runs from now."""
        self.start_by = time.monotonic() + self.config.fork_timeout / 1000

    def add(self, specs: list[str]) -> None:
        """Middleware forks a worker process reported (started now if forks already are)."""
        for spec in specs:
            if spec not in self.specs:
                self.specs.append(spec)
                if self.started:
                    self._start(spec)

    def start_when_due(self, now: float, booting: bool, stopping: bool) -> None:
        """Start the fork processes once the workers are ready or the timeout passed."""
        if self.started or stopping or (booting and now < self.start_by):
            return
        self.started = True
        if booting and self.specs:
            logger.warning("the worker processes are not all ready after "
                           "--worker-fork-timeout %g ms; starting the fork processes anyway",
                           self.config.fork_timeout)
        for spec in self.specs:
            self._start(spec)

    def _start(self, spec: str) -> None:
        reader, writer = self.context.Pipe(duplex=False)
        process = self.context.Process(target=fork_main, name="liteq-fork",
                                       args=(spec, self.config, writer))
        previous = block_signals(getattr(signal, "SIG_BLOCK", 0), POOL_SIGNALS)
        try:
            with self.fork_guard:
                process.start()
        finally:
            block_signals(getattr(signal, "SIG_SETMASK", 2), previous)
        writer.close()
        self.running[spec] = _Fork(spec, process, reader)
        logger.info("started fork process %d for %s", process.pid, spec)

    def wake_in(self, now: float) -> float | None:
        """Seconds until something is due here (None: nothing)."""
        due = self._kill_at if self.running else math.inf
        if not self.started and self.specs:
            due = min(due, self.start_by)
        return None if due == math.inf else max(0.0, due - now)

    def sentinels(self) -> dict[Any, str]:
        return {fork.process.sentinel: spec for spec, fork in self.running.items()}

    def reap(self, stopping: bool) -> str | None:
        """Collect exited fork processes; returns a fatal error (import failure) or None."""
        fatal = None
        for spec, fork in list(self.running.items()):
            if fork.process.exitcode is None:
                continue
            fork.process.join()
            del self.running[spec]
            error = None
            with contextlib.suppress(EOFError, OSError):
                if fork.conn.poll():
                    error = fork.conn.recv()
            fork.conn.close()
            code = fork.process.exitcode
            if error is not None:
                fatal = f"--fork-function {spec}: {error}"
            elif fork.reload and not stopping:
                self._start(spec)
            elif not stopping:
                log = logger.info if code == EXIT_OK else logger.warning
                log("fork process %d for %s exited with code %s (not restarted)",
                    fork.process.pid, spec, code)
        return fatal

    def signal(self, signum: int) -> None:
        for fork in self.running.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(fork.process.pid, signum)

    def reload(self) -> None:
        """Restart every fork process (SIGTERM; started again once it exited)."""
        for fork in self.running.values():
            fork.reload = True
        self.signal(signal.SIGTERM)
        if self.started:
            for spec in self.specs:
                if spec not in self.running:
                    self._start(spec)

    def stopped(self, now: float) -> bool:
        """With the workers gone: True once every fork process exited or was killed."""
        if not self.running:
            return True
        if self._kill_at == math.inf:
            self._kill_at = now + STOP_GRACE
            return False
        if now < self._kill_at:
            return False
        logger.warning("fork process(es) %s did not stop on SIGTERM; killing them",
                       ", ".join(self.running))
        self.kill()
        return True

    def kill(self) -> None:
        """SIGKILL every fork process and wait for it."""
        self.signal(signal.SIGKILL)
        for fork in self.running.values():
            fork.process.join(5)
            fork.conn.close()
        self.running.clear()
