"""Prometheus: Dramatiq's message metrics, for ``liteq worker --prometheus [HOST:]PORT``.

The names, labels (``queue_name``, ``actor_name``) and histogram buckets are Dramatiq's,
so its dashboards and alerts carry over. Each worker process writes its figures through
``prometheus_client``'s multiprocess mode into the pool's ``PROMETHEUS_MULTIPROC_DIR``;
the supervisor sums them over every process, dead ones included, on one ``/metrics``
endpoint (:mod:`liteq.process.metrics`). Needs ``pip install 'liteq[prometheus]'``.

- ``dramatiq_messages_total``: attempts that finished (returned, raised or were skipped);
- ``dramatiq_message_errors_total``: attempts that raised;
- ``dramatiq_message_retries_total``: retries enqueued (messages sent with
  ``options["retries"]``, which the Retries middleware sets);
- ``dramatiq_message_rejects_total``: messages nacked, i.e. dead-lettered by a worker;
- ``dramatiq_messages_inprogress``: messages a worker thread is running now;
- ``dramatiq_delayed_messages_inprogress``: delayed messages a consumer holds in memory
  until their ETA (RabbitMQ). Always 0 on SQLite: a delayed message stays a row of the
  file until it is due, and no process holds it meanwhile;
- ``dramatiq_message_duration_milliseconds``: how long attempts ran (a histogram).

Both gauges sum live processes only (``livesum``): a dead process's in-progress
messages do not linger. Used outside ``liteq worker --prometheus`` (no multiprocess
directory), the metrics live in this process, in :attr:`Prometheus.registry`.

Cost: a hook only adds to plain numbers of its own thread; a flusher thread writes them
to the metrics every :data:`FLUSH_INTERVAL` seconds (and at worker shutdown). Writing
each message through ``prometheus_client`` instead (five memory-mapped writes under one
process-wide lock that every worker thread fights over) took 15 µs a message with 8
threads, against about 1 µs so. A process killed outright loses at most its last
interval's figures.
"""

from __future__ import annotations

import bisect
import logging
import os
import threading
import time
from time import perf_counter
from typing import TYPE_CHECKING, Any

from .middleware import Middleware

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ..broker import Broker

#: Dramatiq's buckets of ``dramatiq_message_duration_milliseconds``.
DURATION_BUCKETS = (5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000,
                    30000, 60000, 600000, 900000, float("inf"))

logger = logging.getLogger("liteq.middleware.Prometheus")

LABELS = ("queue_name", "actor_name")
INSTALL_HINT = "pip install 'liteq[prometheus]'"
#: Seconds between two writes of the threads' figures to the metrics.
FLUSH_INTERVAL = 0.5

# The slots of a series' figures in a thread's tally (then one per duration bucket).
FINISHED, ERRORS, RETRIES, REJECTS, STARTED, ENDED, DELAYED_IN, DELAYED_OUT, \
    DURATION_SUM = range(9)
BUCKET0 = 9
WIDTH = BUCKET0 + len(DURATION_BUCKETS)


def import_prometheus_client() -> Any:
    """The ``prometheus_client`` module, or an ImportError that says how to install it."""
    try:
        import prometheus_client
    except ImportError as e:
        raise ImportError(f"Prometheus metrics need prometheus_client: {INSTALL_HINT}") from e
    return prometheus_client


class _Tally:
    """One thread's figures per (queue, actor); only that thread writes them."""

    __slots__ = ("thread", "series", "started")

    def __init__(self) -> None:
        self.thread = threading.current_thread()
        self.series: dict[tuple[str, str], list[float]] = {}
        #: (message id, perf_counter) of the message this thread is running.
        self.started: tuple[str, float] | None = None

    def row(self, message: Any) -> list[float]:
        key = (message.queue_name, message.actor_name)
        row = self.series.get(key)
        if row is None:
            row = self.series[key] = [0.0] * WIDTH
        return row


def _add(into: dict[tuple[str, str], list[float]],
         rows: dict[tuple[str, str], list[float]]) -> None:
    """Add each row of ``rows`` to the row of the same key in ``into``."""
    for key, row in rows.items():
        total = into.get(key)
        into[key] = list(row) if total is None else [
            a + b for a, b in zip(total, row, strict=True)]


class _Series:
    """The metrics of one (queue, actor) pair and the figures already written to them."""

    __slots__ = ("total", "errors", "retries", "rejects", "inprogress", "delayed", "duration",
                 "written")

    def __init__(self, metrics: Prometheus, labels: tuple[str, str]) -> None:
        self.total = metrics.total_messages.labels(*labels)
        self.errors = metrics.total_errored_messages.labels(*labels)
        self.retries = metrics.total_retried_messages.labels(*labels)
        self.rejects = metrics.total_rejected_messages.labels(*labels)
        self.inprogress = metrics.inprogress_messages.labels(*labels)
        self.delayed = metrics.inprogress_delayed_messages.labels(*labels)
        self.duration = metrics.message_durations.labels(*labels)
        self.written = [0.0] * WIDTH

    def write(self, figures: list[float]) -> None:
        """Bring the metrics to ``figures`` (the sums over every thread's tally)."""
        delta = [now - before for now, before in zip(figures, self.written, strict=True)]
        self.written = figures
        for counter, slot in ((self.total, FINISHED), (self.errors, ERRORS),
                              (self.retries, RETRIES), (self.rejects, REJECTS)):
            if delta[slot]:
                counter.inc(delta[slot])
        if delta[STARTED] or delta[ENDED]:
            self.inprogress.set(figures[STARTED] - figures[ENDED])
        if delta[DELAYED_IN] or delta[DELAYED_OUT]:
            self.delayed.set(figures[DELAYED_IN] - figures[DELAYED_OUT])
        # Histogram.observe() takes one value at a time; its sum and buckets take many.
        if delta[DURATION_SUM]:
            self.duration._sum.inc(delta[DURATION_SUM])
        for i, count in enumerate(delta[BUCKET0:]):
            if count:
                self.duration._buckets[i].inc(count)


class Prometheus(Middleware):
    """Counts messages per queue and actor under Dramatiq's metric names (see the module)."""

    def __init__(self, *, registry: CollectorRegistry | None = None) -> None:
        prom = import_prometheus_client()
        #: Where the metrics are registered (a registry of their own unless given one).
        self.registry = registry if registry is not None else prom.CollectorRegistry()
        counter, gauge = prom.Counter, prom.Gauge
        self.total_messages = counter(
            "dramatiq_messages_total", "Attempts that finished.", LABELS,
            registry=self.registry)
        self.total_errored_messages = counter(
            "dramatiq_message_errors_total", "Attempts that raised.", LABELS,
            registry=self.registry)
        self.total_retried_messages = counter(
            "dramatiq_message_retries_total", "Retries enqueued.", LABELS,
            registry=self.registry)
        self.total_rejected_messages = counter(
            "dramatiq_message_rejects_total", "Messages dead-lettered.", LABELS,
            registry=self.registry)
        self.inprogress_messages = gauge(
            "dramatiq_messages_inprogress", "Messages being run now.", LABELS,
            registry=self.registry, multiprocess_mode="livesum")
        self.inprogress_delayed_messages = gauge(
            "dramatiq_delayed_messages_inprogress",
            "Delayed messages held in memory until their ETA (always 0 on SQLite).", LABELS,
            registry=self.registry, multiprocess_mode="livesum")
        self.message_durations = prom.Histogram(
            "dramatiq_message_duration_milliseconds", "How long attempts ran.", LABELS,
            buckets=DURATION_BUCKETS, registry=self.registry)
        self._series: dict[tuple[str, str], _Series] = {}
        self._tallies: list[_Tally] = []
        self._retired: dict[tuple[str, str], list[float]] = {}
        self._delayed: set[str] = set()
        self._local = threading.local()
        self._lock = threading.Lock()  # the tallies list and the writes
        self._flusher: tuple[int, threading.Thread] | None = None

    # -- bookkeeping ----------------------------------------------------------------------
    def _tally(self) -> _Tally:
        """This thread's tally (made and registered on its first use)."""
        try:
            tally: _Tally = self._local.tally
            return tally
        except AttributeError:
            pass
        tally = self._local.tally = _Tally()
        with self._lock:
            self._tallies.append(tally)
            flusher = self._flusher
            if flusher is None or flusher[0] != os.getpid() or not flusher[1].is_alive():
                thread = threading.Thread(target=self._flush_loop, name="liteq-prometheus",
                                          daemon=True)
                self._flusher = (os.getpid(), thread)
                thread.start()
        return tally

    def _flush_loop(self) -> None:
        while True:
            time.sleep(FLUSH_INTERVAL)
            try:
                self.flush()
            except Exception:  # e.g. a full disk under the metrics files: try again later
                logger.exception("could not write the Prometheus metrics")

    def flush(self) -> None:
        """Write every thread's figures to the metrics now."""
        with self._lock:
            # The tallies of threads that ended are final: fold them into _retired.
            for tally in [t for t in self._tallies if not t.thread.is_alive()]:
                self._tallies.remove(tally)
                _add(self._retired, tally.series)
            totals = {key: list(row) for key, row in self._retired.items()}
            for tally in self._tallies:
                # Snapshots (list() of a list is atomic): its thread may go on meanwhile.
                _add(totals, {key: list(row) for key, row in list(tally.series.items())})
            for key, figures in totals.items():
                series = self._series.get(key)
                if series is None:
                    series = self._series[key] = _Series(self, key)
                series.write(figures)

    # -- hooks ----------------------------------------------------------------------------
    def after_declare_actor(self, broker: Broker, actor: Any) -> None:
        # Every actor's series exist from the start, at 0, rather than from its first message.
        key = (actor.queue_name, actor.actor_name)
        with self._lock:
            if key not in self._series:
                self._series[key] = _Series(self, key)

    def after_enqueue(self, broker: Broker, message: Any, delay: int | None) -> None:
        if "retries" in message.options:
            self._tally().row(message)[RETRIES] += 1

    def after_nack(self, broker: Broker, message: Any) -> None:
        self._tally().row(message)[REJECTS] += 1

    def before_delay_message(self, broker: Broker, message: Any) -> None:
        self._delayed.add(message.message_id)
        self._tally().row(message)[DELAYED_IN] += 1

    def before_process_message(self, broker: Broker, message: Any) -> None:
        tally = self._tally()
        row = tally.row(message)
        if self._delayed and message.message_id in self._delayed:
            self._delayed.discard(message.message_id)
            row[DELAYED_OUT] += 1
        row[STARTED] += 1
        tally.started = (message.message_id, perf_counter())

    def after_process_message(
        self, broker: Broker, message: Any, *, result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        tally = self._tally()
        row = tally.row(message)
        started = tally.started
        # A message skipped by an earlier middleware's before hook never started here.
        if started is not None and started[0] == message.message_id:
            tally.started = None
            elapsed = (perf_counter() - started[1]) * 1000
            row[ENDED] += 1
            row[DURATION_SUM] += elapsed
            row[BUCKET0 + bisect.bisect_left(DURATION_BUCKETS, elapsed)] += 1
        row[FINISHED] += 1
        if exception is not None:
            row[ERRORS] += 1

    def after_skip_message(self, broker: Broker, message: Any) -> None:
        self.after_process_message(broker, message)

    def after_worker_shutdown(self, broker: Broker, worker: Any) -> None:
        self.flush()
