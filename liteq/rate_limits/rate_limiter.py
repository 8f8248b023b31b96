"""The rate-limiter base: ``acquire()`` as a context manager around ``_acquire``/``_release``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import RateLimitExceeded
from .backend import RateLimiterBackend


class RateLimiter:
    """Limits how often, or how many at once, something guarded by ``key`` may run."""

    def __init__(self, backend: RateLimiterBackend, key: str) -> None:
        self.backend = backend
        self.key = key

    @contextmanager
    def acquire(self, *, raise_on_failure: bool = True) -> Iterator[bool]:
        """Try to take a slot; yield whether it was taken and give it back afterwards.

        Raises ``RateLimitExceeded`` instead of yielding False when ``raise_on_failure``.
        """
        acquired = self._acquire()
        if not acquired and raise_on_failure:
            raise RateLimitExceeded(f"rate limit exceeded for key {self.key!r}")
        try:
            yield acquired
        finally:
            if acquired:
                self._release()

    def _acquire(self) -> bool:
        raise NotImplementedError

    def _release(self) -> None:
        """Give back a slot taken by ``_acquire`` (nothing to do for time-based limiters)."""
