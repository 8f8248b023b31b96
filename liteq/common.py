"""Small helpers shared by brokers and middleware: clocks, queue names, backoff."""

from __future__ import annotations

import random
import re
import time
from datetime import timedelta

from .errors import InvalidOption, InvalidQueueName

_QUEUE_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9._-]*")
#: The range of a SQLite INTEGER, where priorities and ETAs (ms) are stored.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


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
    """Return ``priority`` or raise ``InvalidOption`` if it is not a 64-bit integer."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InvalidOption(f"priority must be an integer, got {priority!r}")
    if not INT64_MIN <= priority <= INT64_MAX:
        raise InvalidOption(f"priority must be between {INT64_MIN} and {INT64_MAX} "
                            f"(a 64-bit integer), got {priority}")
    return priority


def validate_delay(delay: object) -> int | None:
    """Return ``delay`` in ms (int or timedelta) or raise ``InvalidOption``."""
    if delay is None:
        return None
    if isinstance(delay, timedelta):
        delay = int(delay.total_seconds() * 1000)
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay != delay:
        raise InvalidOption(f"delay must be a number of milliseconds, got {delay!r}")
    if delay < 0:
        raise InvalidOption(f"delay must not be negative, got {delay!r}")
    if delay > INT64_MAX - current_millis():
        raise InvalidOption(f"delay {delay!r} ms is too large: the time it names does not "
                            "fit in a 64-bit integer of milliseconds")
    return int(delay)


def validate_eta(eta: object) -> int:
    """Return ``eta`` (integer ms since the epoch) or raise ``InvalidOption``."""
    if isinstance(eta, bool) or not isinstance(eta, int):
        raise InvalidOption(f"eta must be integer milliseconds, got {eta!r}")
    if not INT64_MIN <= eta <= INT64_MAX:
        raise InvalidOption(f"eta must fit in a 64-bit integer of milliseconds, got {eta}")
    return eta
