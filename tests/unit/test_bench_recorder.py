"""The benchmark recorder never stops reporting: a lost wake-up froze a count file.

Its flusher used to reset ``dirty`` and then clear its event. A task finishing between
the two saw ``dirty`` false, set it and the event, and the flusher then cleared that
event: from then on every task saw ``dirty`` set and never woke the flusher again, so the
process's count file stayed frozen while its tasks went on (a drain "stopped" at the
benchmark's deadline). The interleaving is forced here, deterministically, by an event
whose first ``clear()`` lets a task's ``hit()`` in first, as a thread switch would.
"""

from __future__ import annotations

import threading

from helpers import wait_for

from benchmarks import bench_recorder


class HitBeforeClear(threading.Event):
    """An event whose first ``clear()`` runs a ``hit()`` first (a task switching in)."""

    armed = True

    def clear(self) -> None:
        if HitBeforeClear.armed:
            HitBeforeClear.armed = False
            bench_recorder.hit()
        super().clear()


def recorded(directory: str) -> int:
    return sum(c["count"] for c in bench_recorder.read_counts(directory))


def test_a_hit_racing_the_flusher_is_still_written(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_recorder, "_DIR", str(tmp_path))
    with monkeypatch.context() as patch:
        patch.setattr(threading, "Event", HitBeforeClear)
        state = bench_recorder._State()
    monkeypatch.setattr(bench_recorder, "_state", state)
    bench_recorder.hit()  # wakes the flusher, whose clear() lets the second hit in
    wait_for(lambda: recorded(str(tmp_path)) == 2, timeout=5)
    assert not HitBeforeClear.armed
    bench_recorder.hit()
    wait_for(lambda: recorded(str(tmp_path)) == 3, timeout=5)
