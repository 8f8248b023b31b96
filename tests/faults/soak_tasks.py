"""The actor of the soak harness (``liteq worker tests.faults.soak_tasks``).

It sleeps for the given time and appends its start and end to ``runs-<pid>.jsonl``
in ``SOAK_DIR``, independently of liteq's lease log, so that a message that ran to
completion is known even without that test hook. The message id is the producer's
key, so the sent log, the run logs, the lease log and the dead letters all agree.
"""

from __future__ import annotations

import json
import os
import time

import liteq

SOAK_DIR = os.environ.get("SOAK_DIR", ".")
broker = liteq.SqliteBroker(
    os.path.join(SOAK_DIR, "soak.db"), lease_ms=int(os.environ.get("SOAK_LEASE_MS", "1000")))
liteq.set_broker(broker)

_log_fd: int | None = None
_log_pid = -1


def log_run(event: str, key: str) -> None:
    """Append one line in a single write (whole lines even when the process is killed)."""
    global _log_fd, _log_pid
    if _log_pid != os.getpid():
        _log_fd = os.open(os.path.join(SOAK_DIR, f"runs-{os.getpid()}.jsonl"),
                          os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        _log_pid = os.getpid()
    line = json.dumps({"ev": event, "mid": key, "at": int(time.time() * 1000)}) + "\n"
    os.write(_log_fd, line.encode())  # type: ignore[arg-type]


@liteq.actor(queue_name="soak", max_retries=0)
def work(key: str, ms: int) -> None:
    """Pretend to work for ``ms`` milliseconds."""
    log_run("start", key)
    time.sleep(ms / 1000)
    log_run("end", key)
