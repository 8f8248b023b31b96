"""How benchmark tasks record themselves, the same way for every system.

Every no-op task calls :func:`hit`: under a lock it counts itself and notes the time of
the first and latest task of its process (and, every ``BENCH_MILESTONE`` tasks up to
``BENCH_MILESTONE_LIMIT``, a milestone time). A flusher thread, woken only when there
is something new, writes that state to ``$BENCH_COUNTER_DIR/count-<pid>.json``
(atomically, by rename) at most every ~20 ms; the times are taken by the tasks
themselves, so the delay postpones only the detection of the end, not its measurement.
The benchmark sums those files and checks the total equals the number of messages it
sent. An idle process writes nothing and wakes for nothing, so the recorder does not
disturb the idle-CPU figure.

Latency tasks call :func:`record_latency` with the sender's ``time.time()``; the start
time is appended to ``$BENCH_COUNTER_DIR/latency-<pid>.txt``.

Standard library only, fork-safe (state is per pid), no-op without ``BENCH_COUNTER_DIR``.
"""

from __future__ import annotations

import json
import os
import threading
import time

_DIR = os.environ.get("BENCH_COUNTER_DIR")
_MILESTONE = int(os.environ.get("BENCH_MILESTONE", "100"))
_MILESTONE_LIMIT = int(os.environ.get("BENCH_MILESTONE_LIMIT", "60000"))
_FLUSH_DELAY = 0.02


class _State:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.milestones: list[float] = []
        self.dirty = False
        self.event = threading.Event()
        self.path = os.path.join(_DIR, f"count-{self.pid}.json") if _DIR else None
        if self.path:
            threading.Thread(target=self._flusher, name="bench-recorder", daemon=True).start()

    def _flusher(self) -> None:
        assert self.path is not None
        tmp = self.path + ".tmp"
        while True:
            self.event.wait()
            time.sleep(_FLUSH_DELAY)
            # Clear before resetting ``dirty``: a task finishing in between sees it still
            # set and is written below; one finishing after sets the event again.
            self.event.clear()
            self.dirty = False
            with self.lock:
                data = {"pid": self.pid, "count": self.count, "first": self.first,
                        "last": self.last, "milestones": list(self.milestones),
                        "milestone": _MILESTONE}
            with open(tmp, "w") as f:
                json.dump(data, f)
            os.replace(tmp, self.path)


_state: _State | None = None
_state_lock = threading.Lock()


def _get_state() -> _State:
    global _state
    state = _state
    if state is None or state.pid != os.getpid():
        with _state_lock:
            state = _state
            if state is None or state.pid != os.getpid():
                state = _state = _State()
    return state


def hit() -> None:
    """Count one finished no-op task of this process."""
    state = _state
    if state is None or state.pid != os.getpid():
        state = _get_state()
    now = time.time()
    with state.lock:
        state.count += 1
        if state.count == 1:
            state.first = now
        if now > state.last:
            state.last = now
        if _MILESTONE and state.count % _MILESTONE == 0 and state.count <= _MILESTONE_LIMIT:
            state.milestones.append(now)
    if not state.dirty:
        state.dirty = True
        state.event.set()


def record_latency(sent: float) -> None:
    """Note that a message sent at ``sent`` (``time.time()``) started now."""
    started = time.time()
    if _DIR:
        with open(os.path.join(_DIR, f"latency-{os.getpid()}.txt"), "a") as f:
            f.write(f"{sent!r} {started!r}\n")


def read_counts(directory: str) -> list[dict]:
    """Every process's latest count file in ``directory``."""
    result = []
    for name in os.listdir(directory):
        if name.startswith("count-") and name.endswith(".json"):
            try:
                with open(os.path.join(directory, name)) as f:
                    result.append(json.load(f))
            except (OSError, ValueError):
                continue  # replaced while we read it; the next poll sees it
    return result


def read_latencies(directory: str) -> list[float]:
    """Send-to-start delays in ms of every recorded latency task."""
    delays = []
    for name in os.listdir(directory):
        if name.startswith("latency-"):
            with open(os.path.join(directory, name)) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) == 2:
                        delays.append((float(parts[1]) - float(parts[0])) * 1000)
    return delays
