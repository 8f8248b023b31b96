"""An in-memory result backend for tests: blocking waits wake the moment a result lands."""

from __future__ import annotations

import threading
import time
from typing import Any

from ...encoder import Encoder
from ..backend import Missing, ResultBackend


class StubBackend(ResultBackend):
    """Keeps encoded results in a dict of this instance, each with its expiry time."""

    def __init__(self, *, namespace: str = "liteq-results", encoder: Encoder | None = None) -> None:
        super().__init__(namespace=namespace, encoder=encoder)
        self._cond = threading.Condition()
        self._data: dict[str, tuple[bytes, float]] = {}

    def _lookup(self, key: str) -> Any:
        entry = self._data.get(key)
        if entry is None:
            return Missing
        data, expires_at = entry
        if expires_at <= time.monotonic():
            del self._data[key]
            return Missing
        return self.encoder.decode(data)

    def _get(self, key: str) -> Any:
        with self._cond:
            return self._lookup(key)

    def _store(self, key: str, value: Any, ttl: int) -> None:
        data = self.encoder.encode(value)
        with self._cond:
            self._data[key] = (data, time.monotonic() + ttl / 1000)
            self._cond.notify_all()

    def _wait(self, key: str, timeout: int) -> Any:
        deadline = time.monotonic() + timeout / 1000
        with self._cond:
            while True:
                data = self._lookup(key)
                remaining = deadline - time.monotonic()
                if data is not Missing or remaining <= 0:
                    return data
                self._cond.wait(remaining)

    def flush(self) -> None:
        """Forget every stored result."""
        with self._cond:
            self._data.clear()
