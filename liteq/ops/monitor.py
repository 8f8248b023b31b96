"""The data model of ``liteq top``: broker snapshots turned into frames to display.

Each refresh reads :func:`liteq.ops.snapshot.snapshot` (the data of ``liteq stats
--json``) plus two cheap extras, all through the broker's
:class:`~liteq.brokers.inspect.Inspector`: the oldest waiting message of each queue
that has ready messages and the newest dead letters. The inspectors read without
blocking a worker (on SQLite: plain WAL reads, index seeks).

:class:`Monitor` turns successive snapshots into a :class:`Frame` (rates from the
``succeeded`` / ``failed`` counters where the broker knows them, else from the per-queue
``settled`` counts live workers publish in their registry entries, a 60-sample history
per queue, CPU and RSS of local worker processes). Kept apart from the rendering so it
can be tested without rich.
"""

from __future__ import annotations

import dataclasses
import socket
from collections import deque
from typing import Any

from ..brokers.inspect import COUNT_FIELDS, Inspector
from .snapshot import snapshot

#: Samples of succeeded/s and failed/s kept per queue for the sparklines.
HISTORY = 60
#: Newest dead letters read per refresh, and failures shown at most.
RECENT_DEAD = 10
RECENT_FAILURES = 10


def extras(inspector: Inspector, snap: dict[str, Any]) -> dict[str, Any]:
    """What ``liteq top`` shows beyond the snapshot, read cheaply (seeks, no scans).

    ``{"oldest_ready_age_ms": {queue: age}, "recent_dead": [newest dead letters]}``.
    """
    now = snap["at"]
    oldest: dict[str, int] = {}
    for name, counts in snap["queues"].items():
        if counts.get("ready"):
            eta = inspector.oldest_ready(name)
            if eta is not None:
                oldest[name] = max(0, now - eta)
    dead = [{"id": d.id, "queue": d.queue, "message_id": d.message_id, "actor": d.actor_name,
             "error": d.reason, "at": d.failed_at}
            for d in inspector.recent_dead(RECENT_DEAD)]
    return {"oldest_ready_age_ms": oldest, "recent_dead": dead}


@dataclasses.dataclass
class QueueView:
    """One queue's counts (None: the broker cannot know it) and rates (None: unknown yet)."""

    name: str
    ready: int | None
    delayed: int | None
    claimed: int | None
    running: int | None
    dead: int | None
    succeeded: int | None
    failed: int | None
    retried: int | None
    dead_lettered: int | None
    succeeded_rate: float | None
    failed_rate: float | None
    #: (succeeded/s, failed/s) samples, oldest first.
    history: list[tuple[float, float]]
    oldest_ms: int | None
    p50: float | None
    p95: float | None


@dataclasses.dataclass
class WorkerView:
    pid: int
    host: str
    queues: list[str]
    threads: int
    busy: int
    actors: str
    cpu: float | None
    rss: int | None
    heartbeat_age_ms: int
    state: str
    succeeded: int | None
    failed: int | None
    started_at: int


@dataclasses.dataclass
class FailureView:
    at: int | None  # None: the broker does not record when it was dead-lettered
    kind: str  # "failed" (seen by a worker) or "dead" (dead-lettered)
    queue: str | None
    actor: str
    error: str


@dataclasses.dataclass
class Frame:
    at: int
    broker: str
    queues: list[QueueView]
    workers: list[WorkerView]
    failures: list[FailureView]
    interval: float | None  # seconds between the two snapshots the rates come from

    def total(self, key: str) -> int | None:
        """The sum over the queues, or None when a queue's figure is unknown."""
        values = [getattr(q, key) for q in self.queues]
        return None if None in values else sum(values)

    def total_rate(self, key: str) -> float | None:
        rates = [getattr(q, key) for q in self.queues if getattr(q, key) is not None]
        return sum(rates) if rates else None

    @property
    def uptime_ms(self) -> int | None:
        """How long the oldest live worker has been running."""
        starts = [w.started_at for w in self.workers if w.state != "dead"]
        return self.at - min(starts) if starts else None


def _rate(before: dict[str, int | None], now: dict[str, int | None], key: str,
          elapsed: float) -> float | None:
    """``key``'s increase per second, or None when the broker does not count it."""
    old, new = before.get(key), now.get(key)
    if old is None or new is None:
        return None
    return max(0, new - old) / elapsed


def _worker_rates(before: dict[str, dict[str, Any]], workers: list[dict[str, Any]],
                  elapsed: float) -> dict[str, tuple[float, float]]:
    """Per queue (succeeded/s, failed/s) from the ``settled`` counts of the workers
    present in both snapshots (brokers without lifetime counters: RabbitMQ); empty when
    no worker reports them."""
    sums: dict[str, list[int]] = {}
    for w in workers:
        old = before.get(w.get("owner", ""))
        if old is None or "settled" not in w:
            continue
        for queue, now in w["settled"].items():
            was = old.get(queue, {})
            total = sums.setdefault(queue, [0, 0])
            total[0] += max(0, now.get("succeeded", 0) - was.get("succeeded", 0))
            total[1] += max(0, now.get("failed", 0) - was.get("failed", 0))
    return {queue: (s / elapsed, f / elapsed) for queue, (s, f) in sums.items()}


def _actors(running: list[str]) -> str:
    """``["a", "b", "a"]`` -> ``"a×2, b"`` (most frequent first)."""
    counts: dict[str, int] = {}
    for name in running:
        counts[name] = counts.get(name, 0) + 1
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(name if n == 1 else f"{name}×{n}" for name, n in ordered)


def run_times(workers: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """Per queue (p50, p95) in seconds over the workers that are not dead.

    The workers publish per-process percentiles, not samples: p50 is their mean
    weighted by sample count, p95 their maximum (an upper bound of the pooled p95).
    """
    acc: dict[str, list[float]] = {}
    for w in workers:
        if w.get("state") == "dead":
            continue
        for queue, rt in (w.get("activity") or {}).get("run_time", {}).items():
            n = rt.get("n") or 0
            if n <= 0:
                continue
            a = acc.setdefault(queue, [0.0, 0.0, 0.0])
            a[0] += rt["p50"] * n
            a[1] += n
            a[2] = max(a[2], rt["p95"])
    return {queue: (a[0] / a[1], a[2]) for queue, a in acc.items()}


def failures(workers: list[dict[str, Any]], recent_dead: list[dict[str, Any]],
             limit: int = RECENT_FAILURES) -> list[FailureView]:
    """Newest failures first: workers' recent failures and the newest dead letters.

    A message both seen failing and dead-lettered is shown once, as dead.
    """
    items: list[tuple[int, int, str, FailureView]] = []
    for d in recent_dead:
        items.append((d["at"] or 0, 1, d["message_id"], FailureView(
            d["at"], "dead", d["queue"], d["actor"] or "?", d["error"] or "")))
    for w in workers:
        worker_queues = w.get("queues") or []
        queue = worker_queues[0] if len(worker_queues) == 1 else None
        for f in (w.get("activity") or {}).get("failures", []):
            items.append((f["at"], 0, f.get("message_id", ""), FailureView(
                f["at"], "failed", queue, f.get("actor", "?"), f.get("error", ""))))
    items.sort(key=lambda item: (item[0], item[1]), reverse=True)
    seen: set[str] = set()
    result = []
    for _, _, message_id, view in items:
        if message_id and message_id in seen:
            continue
        seen.add(message_id)
        result.append(view)
        if len(result) >= limit:
            break
    return result


class Monitor:
    """Turns successive snapshots of one broker into frames with rates and history."""

    def __init__(self, inspector: Inspector, *, history: int = HISTORY) -> None:
        self.inspector = inspector
        self.history_len = history
        self._prev: tuple[int, dict[str, dict[str, int | None]]] | None = None
        self._history: dict[str, deque[tuple[float, float]]] = {}
        self._rates: dict[str, tuple[float | None, float | None]] = {}
        self._settled: dict[str, dict[str, Any]] = {}
        self._procs: dict[int, Any] = {}
        self._host = socket.gethostname()

    def refresh(self) -> Frame:
        """Read the broker (snapshot + extras) and return the next frame."""
        snap = snapshot(self.inspector)
        return self.update(snap, extras(self.inspector, snap))

    def update(self, snap: dict[str, Any], extra: dict[str, Any]) -> Frame:
        """The frame for ``snap`` (the data of ``liteq stats --json``) and ``extra``."""
        at, queues = snap["at"], snap["queues"]
        interval = None
        if self._prev is not None:
            prev_at, prev_queues = self._prev
            elapsed = (at - prev_at) / 1000
            if elapsed > 0:
                interval = elapsed
                reported = _worker_rates(self._settled, snap["workers"], elapsed)
                for name, counts in queues.items():
                    before = prev_queues.get(name)
                    if before is None:
                        continue
                    rate = (_rate(before, counts, "succeeded", elapsed),
                            _rate(before, counts, "failed", elapsed))
                    if rate == (None, None) and reported:
                        rate = reported.get(name, (0.0, 0.0))
                    self._rates[name] = rate
                    if rate[0] is not None:
                        self._history.setdefault(name, deque(maxlen=self.history_len)).append(
                            (rate[0], rate[1] or 0.0))
        self._prev = (at, {name: dict(counts) for name, counts in queues.items()})
        self._settled = {w["owner"]: w["settled"] for w in snap["workers"] if "settled" in w}

        times = run_times(snap["workers"])
        oldest = extra.get("oldest_ready_age_ms", {})
        views = []
        for name in sorted(queues):
            c = queues[name]
            rates = self._rates.get(name)
            p = times.get(name)
            figures: dict[str, Any] = {k: c.get(k) for k in COUNT_FIELDS}
            views.append(QueueView(
                name=name, **figures, succeeded_rate=rates[0] if rates else None,
                failed_rate=rates[1] if rates else None,
                history=list(self._history.get(name, ())), oldest_ms=oldest.get(name),
                p50=p[0] if p else None, p95=p[1] if p else None))

        workers = [self._worker(w) for w in snap["workers"]]
        live = {w.pid for w in workers if w.host == self._host and w.state != "dead"}
        for pid in list(self._procs):
            if pid not in live:
                del self._procs[pid]
        return Frame(at, snap.get("broker", ""), views, workers,
                     failures(snap["workers"], extra.get("recent_dead", [])), interval)

    def _worker(self, w: dict[str, Any]) -> WorkerView:
        cpu = rss = None
        if w["host"] == self._host and w.get("state") != "dead":
            cpu, rss = self._usage(w["pid"], w["started_at"])
        return WorkerView(
            w["pid"], w["host"], list(w.get("queues") or []), w.get("threads", 0),
            len(w.get("running") or []), _actors(w.get("running") or []), cpu, rss,
            w.get("heartbeat_age_ms", 0), w.get("state", "alive"), w.get("succeeded"),
            w.get("failed"), w["started_at"])

    def _usage(self, pid: int, started_at: int) -> tuple[float | None, int | None]:
        """CPU % since the previous refresh and RSS of local process ``pid``."""
        import psutil

        proc = self._procs.get(pid)
        try:
            if proc is None:
                proc = psutil.Process(pid)
                # A process created after the registry entry started is a reused pid.
                if proc.create_time() > started_at / 1000 + 2:
                    return None, None
                self._procs[pid] = proc
                proc.cpu_percent(None)  # the first call only starts the measurement
                return None, proc.memory_info().rss
            return proc.cpu_percent(None), proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            self._procs.pop(pid, None)
            return None, None


__all__ = ["Frame", "Monitor", "extras"]
