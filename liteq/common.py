"""Small helpers shared by brokers and middleware: clocks, queue names, backoff."""

from __future__ import annotations

import random
import re
import time
from datetime import timedelta

from .errors import InvalidOption, InvalidQueueName
from .options import INT64_MAX, INT64_MIN, OPTIONS

_QUEUE_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9._-]*")


def current_millis() -> int:
    """Wall-clock time in integer milliseconds since the epoch."""
    return int(time.time() * 1000)


def validate_queue_name(name: object) -> str:
    """Return ``name`` or raise ``InvalidQueueName`` saying what is wrong with it."""
    if not isinstance(name, str) or not _QUEUE_NAME.fullmatch(name):
        raise InvalidQueueName(
            f"invalid queue name {name!r}: it must match [a-zA-Z_][a-zA-Z0-9._-]*"
        )
    return name


def q_name(name: str) -> str:
    """The canonical queue name (without ``.DQ``/``.XQ``)."""
    if name.endswith((".DQ", ".XQ")):
        return name[:-3]
    return name


def dq_name(name: str) -> str:
    """The delay-queue name of a queue."""
    return q_name(name) + ".DQ"


def xq_name(name: str) -> str:
    """The dead-letter-queue name of a queue."""
    return q_name(name) + ".XQ"


def compute_backoff(
    attempts: int, *, factor: int = 5, jitter: bool = True, max_backoff: int = 2000,
    max_exponent: int = 32,
) -> tuple[int, int]:
    """Exponential backoff with jitter: ``(attempts + 1, ms)``, capped at ``max_backoff``."""
    exponent = min(attempts, max_exponent)
    backoff = factor * 2**exponent
    if jitter:
        backoff = int(backoff * random.uniform(1, 2))
    if backoff > max_backoff:
        backoff = int(max_backoff * (random.uniform(0.5, 1) if jitter else 1))
    return attempts + 1, backoff


def validate_priority(priority: object) -> int:
    """Return ``priority`` or raise ``InvalidOption`` unless it is an int SQLite can store."""
    if type(priority) is not int or not INT64_MIN <= priority <= INT64_MAX:
        OPTIONS["priority"].validate(priority)
    return priority  # type: ignore[return-value]


def validate_delay(delay: object) -> int | None:
    """Return ``delay`` in ms (int, float or timedelta) or raise ``InvalidOption``.

    A delay must leave the ETA (now + delay) within SQLite's signed 64-bit integers.
    """
    if delay is None:
        return None
    if isinstance(delay, timedelta):
        delay = int(delay.total_seconds() * 1000)
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay != delay:
        raise InvalidOption(f"delay must be a number of milliseconds, got {delay!r}")
    if delay < 0:
        raise InvalidOption(f"delay must not be negative, got {delay!r}")
    if delay > INT64_MAX - current_millis():
        raise InvalidOption(
            f"delay {delay!r} ms is too large: the ETA must stay below {INT64_MAX} ms"
        )
    return int(delay)

