"""A test hook: with ``LITEQ_LEASE_LOG=<dir>``, log leases and runs as JSON lines.

Each process appends to ``<dir>/leases-<pid>.jsonl``: ``lease`` (message id, token,
expiry, commit time) for every claim and renewal, ``start`` and ``end`` around every
run. A checker can then prove that no run started while another run's lease was valid.
Off (one module-level flag test per claim) unless the variable is set.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from typing import Any

from .common import current_millis

_directory = os.environ.get("LITEQ_LEASE_LOG") or None
#: Whether the hook is on (read once, at import).
enabled = _directory is not None
_lock = threading.Lock()


def _token(proxy: Any) -> Any:
    handle = getattr(proxy, "handle", None)
    return handle[1] if isinstance(handle, tuple) and len(handle) > 1 else None


def _write(lines: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(line) + "\n" for line in lines)
    path = os.path.join(_directory or ".", f"leases-{os.getpid()}.jsonl")
    with _lock, open(path, "a") as f:
        f.write(text)


def leases(proxies: Iterable[Any], expires_ms: int) -> None:
    """Log that ``proxies`` are leased until ``expires_ms`` (just committed)."""
    at = current_millis()
    _write([{"ev": "lease", "mid": p.message_id, "tok": _token(p), "exp": expires_ms,
             "at": at} for p in proxies])


def run(event: str, proxy: Any) -> None:
    """Log the ``start`` or ``end`` of a run of ``proxy``."""
    _write([{"ev": event, "mid": proxy.message_id, "tok": _token(proxy),
             "at": current_millis()}])
