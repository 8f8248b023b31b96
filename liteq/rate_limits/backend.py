"""The storage protocol every rate limiter and barrier is built on (all TTLs in ms)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

#: The keys summed by ``incr_and_sum``: a list, or a callable returning one (Dramatiq's form).
Keys = Iterable[str] | Callable[[], Iterable[str]]


class RateLimiterBackend:
    """Atomic integer counters with expiry, plus one-shot notifications.

    An expired key reads as missing; a missing counter counts as 0. Each operation is
    atomic with respect to every other operation on the same store.
    """

    def add(self, key: str, value: int, ttl: int) -> bool:
        """Set ``key`` to ``value`` for ``ttl`` ms unless it exists; True if it was set."""
        raise NotImplementedError

    def incr(self, key: str, amount: int, maximum: int, ttl: int) -> bool:
        """Add ``amount`` unless the result would exceed ``maximum``; True if it was added."""
        raise NotImplementedError

    def decr(self, key: str, amount: int, minimum: int, ttl: int) -> bool:
        """Subtract ``amount`` unless the result would fall below ``minimum``; True if done."""
        raise NotImplementedError

    def incr_and_sum(self, key: str, keys: Keys, amount: int, maximum: int, ttl: int) -> bool:
        """Add ``amount`` to ``key`` unless that would push it, or the sum of ``keys``
        plus ``amount``, above ``maximum``; True if it was added."""
        raise NotImplementedError

    def wait(self, key: str, timeout: int | None) -> bool:
        """Block up to ``timeout`` ms (None: forever) until ``key`` is notified; True if it was."""
        raise NotImplementedError

    def wait_notify(self, key: str, ttl: int) -> None:
        """Wake every current and future waiter on ``key`` for the next ``ttl`` ms."""
        raise NotImplementedError


def resolve_keys(keys: Keys) -> list[str]:
    """The key list of ``keys``, calling it first when it is a callable."""
    return list(keys() if callable(keys) else keys)
