"""CPU-bound actors for ``demo.py``, with results stored in the broker's SQLite file.

They share the workflow example's broker (``workflow/config.py``), so one worker
serves both: ``liteq worker tasks demo_tasks`` with ``examples/workflow`` and
``examples`` on ``PYTHONPATH``.
"""

import os
import time

import liteq
from liteq.results import Results
from liteq.results.backends import SqliteBackend

from config import broker

backend = SqliteBackend(path=broker.path)
broker.add_middleware(Results(backend=backend))


@liteq.actor(queue_name="numbers", store_results=True, max_retries=0)
def count_primes(limit):
    """The number of primes below ``limit`` (a sieve), plus when and where it ran."""
    started_at = time.time()
    sieve = bytearray([1]) * limit
    sieve[:2] = b"\x00\x00"
    for n in range(2, int(limit ** 0.5) + 1):
        if sieve[n]:
            sieve[n * n::n] = bytes(len(range(n * n, limit, n)))
    return {"primes": sum(sieve), "started_at": started_at, "pid": os.getpid()}
