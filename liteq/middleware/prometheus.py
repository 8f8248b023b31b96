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
"""

from __future__ import annotations

import threading
from time import perf_counter
from typing import TYPE_CHECKING, Any

from .middleware import Middleware

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ..broker import Broker

#: Dramatiq's buckets of ``dramatiq_message_duration_milliseconds``.
DURATION_BUCKETS = (5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000,
                    30000, 60000, 600000, 900000, float("inf"))

LABELS = ("queue_name", "actor_name")
INSTALL_HINT = "pip install 'liteq[prometheus]'"


def import_prometheus_client() -> Any:
    """The ``prometheus_client`` module, or an ImportError that says how to install it."""
    try:
        import prometheus_client
    except ImportError as e:
        raise ImportError(f"Prometheus metrics need prometheus_client: {INSTALL_HINT}") from e
    return prometheus_client


class _Series:
    """The metrics of one (queue, actor) pair, looked up once instead of per message."""

    __slots__ = ("total", "errors", "retries", "rejects", "inprogress", "delayed", "duration")

    def __init__(self, metrics: Prometheus, labels: tuple[str, str]) -> None:
        self.total = metrics.total_messages.labels(*labels)
        self.errors = metrics.total_errored_messages.labels(*labels)
        self.retries = metrics.total_retried_messages.labels(*labels)
        self.rejects = metrics.total_rejected_messages.labels(*labels)
        self.inprogress = metrics.inprogress_messages.labels(*labels)
        self.delayed = metrics.inprogress_delayed_messages.labels(*labels)
        self.duration = metrics.message_durations.labels(*labels)


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
        self._delayed: set[str] = set()
        self._local = threading.local()

    def _get(self, message: Any) -> _Series:
        labels = (message.queue_name, message.actor_name)
        series = self._series.get(labels)
        if series is None:
            series = self._series[labels] = _Series(self, labels)
        return series

    def after_declare_actor(self, broker: Broker, actor: Any) -> None:
        # Every actor's series exist from the start, at 0, rather than from its first message.
        self._get(actor)

    def after_enqueue(self, broker: Broker, message: Any, delay: int | None) -> None:
        if "retries" in message.options:
            self._get(message).retries.inc()

    def after_nack(self, broker: Broker, message: Any) -> None:
        self._get(message).rejects.inc()

    def before_delay_message(self, broker: Broker, message: Any) -> None:
        self._delayed.add(message.message_id)
        self._get(message).delayed.inc()

    def before_process_message(self, broker: Broker, message: Any) -> None:
        series = self._get(message)
        if self._delayed and message.message_id in self._delayed:
            self._delayed.discard(message.message_id)
            series.delayed.dec()
        series.inprogress.inc()
        self._local.started = (message.message_id, perf_counter())

    def after_process_message(
        self, broker: Broker, message: Any, *, result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        series = self._get(message)
        started = getattr(self._local, "started", None)
        # A message skipped by an earlier middleware's before hook never started here.
        if started is not None and started[0] == message.message_id:
            self._local.started = None
            series.duration.observe((perf_counter() - started[1]) * 1000)
            series.inprogress.dec()
        series.total.inc()
        if exception is not None:
            series.errors.inc()

    def after_skip_message(self, broker: Broker, message: Any) -> None:
        self.after_process_message(broker, message)
