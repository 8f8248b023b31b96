"""A point-in-time picture of a broker: queue counts and the worker registry.

The one source of what ``liteq stats`` (and ``liteq top``) show: plain JSON-ready
data, no formatting, so every view of a broker agrees.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from ..common import current_millis
from ..urls import mask_url

#: A worker whose heartbeat is older than this (ms) is shown as stale.
STALE_AFTER_MS = 10000


def worker_state(entry: dict[str, Any], now: int, host: str) -> str:
    """``alive``, ``stale`` (no heartbeat for :data:`STALE_AFTER_MS`) or ``dead``.

    ``dead`` needs proof: the entry's process is gone from this host.
    """
    state = "stale" if now - entry["heartbeat_at"] > STALE_AFTER_MS else "alive"
    if entry["host"] == host:
        try:
            os.kill(entry["pid"], 0)
        except ProcessLookupError:
            state = "dead"
        except PermissionError:
            pass
    return state


def snapshot(broker: Any, url: str | None = None) -> dict[str, Any]:
    """Queue counts and workers of a SQLite ``broker``, as ``liteq stats --json`` prints them.

    ``{"broker": masked URL (``url``, else built from the broker's path),
    "queues": {queue: {"ready", "delayed", "running", "dead", "done", "failed"}},
    "workers": [registry entry + "heartbeat_age_ms" and "state"], "at": ms}``. A
    registry entry has ``owner``, ``pid``, ``host``, ``queues``, ``threads``,
    ``started_at``, ``heartbeat_at`` (ms), ``running``, ``processed``, ``failed`` and
    ``activity`` (recent run-time p50/p95 per queue and recent failures).
    """
    queues = broker.stats()
    entries = broker.workers()
    now = current_millis()
    host = socket.gethostname()
    workers = [{**entry, "heartbeat_age_ms": now - entry["heartbeat_at"],
                "state": worker_state(entry, now, host)} for entry in entries]
    return {"broker": mask_url(url if url is not None else f"sqlite:///{broker.path}"),
            "queues": queues, "workers": workers, "at": now}
