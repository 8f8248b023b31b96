"""A distributed barrier: ``parties`` callers meet; the last to arrive releases the others."""

from __future__ import annotations

from .backend import RateLimiterBackend


class Barrier:
    """Counts down from ``parties``; ``wait`` returns True once everyone has arrived.

    Group completion callbacks use it: the member that arrives last runs the callbacks.
    """

    def __init__(self, backend: RateLimiterBackend, key: str, *, ttl: int = 900000) -> None:
        self.backend = backend
        self.key = key
        self.key_events = key + "@events"
        self.ttl = ttl

    def create(self, parties: int) -> bool:
        """Set the barrier up for ``parties`` callers; False if it already exists."""
        return self.backend.add(self.key, parties, self.ttl)

    def wait(self, *, block: bool = True, timeout: int | None = None) -> bool:
        """Arrive; True for the last party (and, with ``block``, for everyone once the last
        arrives within ``timeout`` ms), False otherwise."""
        if not self.backend.decr(self.key, 1, 1, self.ttl):
            self.backend.wait_notify(self.key_events, self.ttl)
            return True
        if block:
            return self.backend.wait(self.key_events, timeout)
        return False
