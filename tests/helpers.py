"""Helpers shared by the tests: waiting on conditions and running a worker."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from liteq import Broker, Worker


def wait_for(predicate: Callable[[], object], timeout: float = 5.0,
             interval: float = 0.005) -> None:
    """Poll ``predicate`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)


@contextmanager
def running_worker(broker: Broker, **kwargs: object) -> Iterator[Worker]:
    """A started worker that is stopped (with a short grace period) on exit."""
    worker = Worker(broker, worker_timeout=100, **kwargs)  # type: ignore[arg-type]
    worker.start()
    try:
        yield worker
    finally:
        worker.stop(timeout=5000)
