"""``liteq worker --hard-time-limit``: kill a worker process stuck past a task's time limit.

Each worker process publishes, per worker thread, the moment by which its task must be
over (its time limit plus a grace period that lets the ``TimeLimit`` middleware
interrupt Python code first) on its :class:`~liteq.process.board.RunningBoard`. A task still
running past that moment is stuck where Python cannot interrupt it (C code, a blocking
system call, a held GIL), so the supervisor, which checks every
:data:`HARD_LIMIT_CHECK` seconds, SIGKILLs the process.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from ..middleware.middleware import Middleware
from .board import RunningBoard

logger = logging.getLogger("liteq.pool")

#: Seconds past a task's time limit before a hard time limit kills its process, on top
#: of the TimeLimit middleware's check interval (which gets the first chance).
HARD_LIMIT_GRACE = 1.0
#: How often the supervisor looks at the children's deadlines (seconds).
HARD_LIMIT_CHECK = 0.2


def check_deadlines(shared: RunningBoard, pid: int, now: float) -> str | None:
    """The id of the stuck message for which worker process ``pid`` must be killed, if
    any (logged)."""
    message_id = shared.overrun(now)
    if message_id is None:
        return None
    logger.error(
        "message %s overran its time limit in worker process %d and could "
        "not be interrupted (stuck in C code or a system call); killing the "
        "process (--hard-time-limit)", message_id, pid)
    return message_id


class _Deadlines(Middleware):
    """Publishes, per worker thread, when its current task must be over (hard time limit);
    the worker thread clears it when the task ends."""

    def __init__(self, board: RunningBoard, default_limit: float, grace: float) -> None:
        self.board = board
        self.default_limit = default_limit
        self.grace = grace

    def before_process_message(self, broker: Any, message: Any) -> None:
        actor = broker.actors.get(message.actor_name)
        limit = message.options.get("time_limit") or (
            actor.options.get("time_limit", self.default_limit) if actor else self.default_limit
        )
        if not limit or math.isinf(limit):
            return
        slot = getattr(threading.current_thread(), "index", 0)
        self.board.set_deadline(slot, time.monotonic() + limit / 1000 + self.grace)


def publish_deadlines(broker: Any, shared: RunningBoard) -> None:
    """In a worker process: publish its tasks' deadlines, past the broker's TimeLimit's own."""
    from ..middleware.time_limit import TimeLimit

    limits = [m for m in broker.middleware if isinstance(m, TimeLimit)]
    default = limits[0].time_limit if limits else math.inf
    interval = limits[0].interval / 1000 if limits else 1.0
    broker.add_middleware(_Deadlines(shared, default, interval + HARD_LIMIT_GRACE))
