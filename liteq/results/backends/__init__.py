"""Result backends: ``SqliteBackend`` (default), ``StubBackend``, and ``RedisBackend``.

``RedisBackend`` is imported on first access so that redis-py stays optional.
"""

from __future__ import annotations

from typing import Any

from .sqlite import SqliteBackend
from .stub import StubBackend


def __getattr__(name: str) -> Any:
    if name == "RedisBackend":
        from .redis import RedisBackend

        return RedisBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["RedisBackend", "SqliteBackend", "StubBackend"]
