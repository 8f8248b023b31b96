"""``liteq worker --hard-time-limit``: kill a worker process stuck past a task's time limit.

Each worker process publishes, per worker thread, the id of the message it runs and the
moment by which it must be over (its time limit plus a grace period that lets the
``TimeLimit`` middleware interrupt Python code first) in shared memory. A task still
running past that moment is stuck where Python cannot interrupt it (C code, a blocking
system call, a held GIL), so the supervisor, which checks every
:data:`HARD_LIMIT_CHECK` seconds, SIGKILLs the process.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from typing import Any

from .middleware.middleware import Middleware

logger = logging.getLogger("liteq.pool")

#: Seconds past a task's time limit before a hard time limit kills its process, on top
#: of the TimeLimit middleware's check interval (which gets the first chance).
HARD_LIMIT_GRACE = 1.0
#: How often the supervisor looks at the children's deadlines (seconds).
HARD_LIMIT_CHECK = 0.2
_ID_WIDTH = 36


class SharedDeadlines:
    """Per worker thread of one process: when its task must be over, and the message's id.

    Built by the supervisor before it starts the process, which inherits (fork) or
    receives (spawn) the shared memory.
    """

    def __init__(self, context: Any, threads: int) -> None:
        self.deadlines = context.RawArray("d", threads)
        self.ids = context.RawArray("c", threads * _ID_WIDTH)

    def overrun(self, now: float) -> str | None:
        """The id of a message that runs past its deadline at ``now``, if any."""
        for slot, deadline in enumerate(self.deadlines):
            if deadline and now > deadline:
                raw = bytes(self.ids[slot * _ID_WIDTH:(slot + 1) * _ID_WIDTH])
                return raw.decode(errors="replace").strip()
        return None


def check_deadlines(shared: SharedDeadlines, pid: int, now: float) -> bool:
    """Whether worker process ``pid`` must be killed for a stuck task (logs which one)."""
    message_id = shared.overrun(now)
    if message_id is None:
        return False
    logger.error(
        "message %s overran its time limit in worker process %d and could "
        "not be interrupted (stuck in C code or a system call); killing the "
        "process (--hard-time-limit)", message_id, pid)
    return True


class _Deadlines(Middleware):
    """Publishes, per worker thread, when its current task must be over (hard time limit)."""

    def __init__(self, shared: SharedDeadlines, default_limit: float, grace: float) -> None:
        self.deadlines = shared.deadlines
        self.ids = shared.ids
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


def publish_deadlines(broker: Any, shared: SharedDeadlines) -> None:
    """In a worker process: publish its tasks' deadlines, past the broker's TimeLimit's own."""
    from .middleware.time_limit import TimeLimit

    limits = [m for m in broker.middleware if isinstance(m, TimeLimit)]
    default = limits[0].time_limit if limits else math.inf
    interval = limits[0].interval / 1000 if limits else 1.0
    broker.add_middleware(_Deadlines(shared, default, interval + HARD_LIMIT_GRACE))
