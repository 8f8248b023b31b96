"""What a worker process has been doing lately: run times per queue and recent failures.

Kept in memory by the worker threads (an append to a bounded deque per message) and
published with the consumer's heartbeat, so ``liteq top`` can show p50/p95 run times
and the latest errors without any extra write on the hot path.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from .support.text import exception_text

#: Run times kept per queue, and failures kept per process.
SAMPLES = 256
FAILURES = 10


class Activity:
    """Recent run times (seconds) per queue and the last few failures."""

    def __init__(self) -> None:
        self.durations: dict[str, deque[float]] = {}
        self.failures: deque[dict[str, Any]] = deque(maxlen=FAILURES)

    def ran(self, queue_name: str, seconds: float) -> None:
        samples = self.durations.get(queue_name)
        if samples is None:
            samples = self.durations[queue_name] = deque(maxlen=SAMPLES)
        samples.append(seconds)

    def failed(self, actor_name: str, message_id: str, exception: BaseException) -> None:
        self.failures.append({
            "at": int(time.time() * 1000), "actor": actor_name, "message_id": message_id,
            "error": exception_text(exception)[:300],
        })

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready: ``{"run_time": {queue: {"p50", "p95", "n"}}, "failures": [...]}``."""
        run_time = {}
        for queue_name, samples in list(self.durations.items()):
            ordered = sorted(samples)
            if ordered:
                run_time[queue_name] = {
                    "p50": ordered[len(ordered) // 2],
                    "p95": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))],
                    "n": len(ordered),
                }
        return {"run_time": run_time, "failures": list(self.failures)}
