"""A point-in-time picture of a broker: queue counts, the worker registry, its storage.

The one source of what ``liteq stats`` (and ``liteq top``) show: plain JSON-ready
data read through the broker's :class:`~liteq.brokers.inspect.Inspector` only, no
formatting, so every view of every broker agrees.
"""

from __future__ import annotations

import socket
from typing import Any

import psutil

from ..brokers.inspect import STALE_AFTER_MS, Inspector
from ..common import current_millis


def worker_state(entry: dict[str, Any], now: int, host: str) -> str:
    """``alive``, ``stale`` (no heartbeat for :data:`STALE_AFTER_MS`) or ``dead``.

    ``dead`` needs proof: the entry's process is gone from this host.
    """
    state = "stale" if now - entry["heartbeat_at"] > STALE_AFTER_MS else "alive"
    if entry["host"] == host and not psutil.pid_exists(entry["pid"]):
        state = "dead"
    return state


def snapshot(inspector: Inspector) -> dict[str, Any]:
    """What ``liteq stats --json`` prints: ``{"broker": masked URL, "queues": {queue:
    QueueCounts as a dict (None = not knowable)}, "workers": [registry entry (see
    :meth:`Inspector.workers`) + "heartbeat_age_ms" and "state"], "storage":
    :meth:`Inspector.storage` or None, "at": ms}``.
    """
    queues = {name: counts.asdict() for name, counts in sorted(inspector.queues().items())}
    entries = inspector.workers()
    now = current_millis()
    host = socket.gethostname()
    workers = [{**entry, "heartbeat_age_ms": now - entry["heartbeat_at"],
                "state": worker_state(entry, now, host)} for entry in entries]
    return {"broker": inspector.url, "queues": queues, "workers": workers,
            "storage": inspector.storage(), "at": now}
