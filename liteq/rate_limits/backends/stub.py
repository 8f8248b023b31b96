"""An in-memory rate-limiter backend for tests and single-process use."""

from __future__ import annotations

import threading
import time

from ..backend import Keys, RateLimiterBackend, resolve_keys


class StubBackend(RateLimiterBackend):
    """Counters in a dict with expiry times; one condition makes waits wake at once."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._data: dict[str, tuple[int, float]] = {}

    def _value(self, key: str) -> int | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        value, expires_at = entry
        if expires_at <= time.monotonic():
            del self._data[key]
            return None
        return value

    def _put(self, key: str, value: int, ttl: int) -> None:
        self._data[key] = (value, time.monotonic() + ttl / 1000)

    def add(self, key: str, value: int, ttl: int) -> bool:
        with self._cond:
            if self._value(key) is not None:
                return False
            self._put(key, value, ttl)
            return True

    def incr(self, key: str, amount: int, maximum: int, ttl: int) -> bool:
        with self._cond:
            value = (self._value(key) or 0) + amount
            if value > maximum:
                return False
            self._put(key, value, ttl)
            return True

    def decr(self, key: str, amount: int, minimum: int, ttl: int) -> bool:
        with self._cond:
            value = (self._value(key) or 0) - amount
            if value < minimum:
                return False
            self._put(key, value, ttl)
            return True

    def incr_and_sum(self, key: str, keys: Keys, amount: int, maximum: int, ttl: int) -> bool:
        with self._cond:
            value = (self._value(key) or 0) + amount
            total = amount + sum(self._value(k) or 0 for k in resolve_keys(keys))
            if value > maximum or total > maximum:
                return False
            self._put(key, value, ttl)
            return True

    def wait(self, key: str, timeout: int | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout / 1000
        with self._cond:
            while self._value(key) is None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def wait_notify(self, key: str, ttl: int) -> None:
        with self._cond:
            self._put(key, 1, ttl)
            self._cond.notify_all()
