"""The Prometheus middleware on the StubBroker, and the supervisor's metrics endpoint
in this process (the pool itself: tests/acceptance/test_prometheus.py)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import urllib.request
from typing import Any

import pytest
from helpers import running_worker, wait_for

import liteq
from liteq.brokers.inspect import QueueCounts
from liteq.brokers.stub import StubBroker
from liteq.errors import SkipMessage
from liteq.middleware import Middleware, Retries

# Imported before any MetricsServer sets PROMETHEUS_MULTIPROC_DIR in this process, so the
# middleware's metrics here stay in memory (prometheus_client picks its mode on import).
prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from liteq.middleware.prometheus import DURATION_BUCKETS, Prometheus  # noqa: E402
from liteq.process import metrics  # noqa: E402


def make_broker(*extra: Middleware) -> tuple[StubBroker, Prometheus]:
    prometheus = Prometheus()
    broker = StubBroker(middleware=[*extra, Retries(min_backoff=1, max_backoff=5), prometheus])
    return broker, prometheus


def value(prometheus: Prometheus, name: str, actor: str) -> float | None:
    """A sample after the threads' figures were written (the flusher does it every 0.5 s)."""
    prometheus.flush()
    return prometheus.registry.get_sample_value(
        name, {"queue_name": "default", "actor_name": actor})


def test_counts_what_ran_failed_was_retried_and_dead_lettered() -> None:
    broker, prometheus = make_broker()
    failed_once: set[int] = set()

    @liteq.actor(broker=broker, max_retries=0)
    def ok(n: int) -> None:
        pass

    @liteq.actor(broker=broker, max_retries=2)
    def doomed(n: int) -> None:
        raise ValueError(n)

    @liteq.actor(broker=broker, max_retries=3)
    def flaky(n: int) -> None:
        if n not in failed_once:
            failed_once.add(n)
            raise ValueError(n)

    for n in range(5):
        ok.send(n)
    for n in range(2):
        doomed.send(n)
    for n in range(3):
        flaky.send(n)
    with running_worker(broker, worker_threads=2):
        broker.join("default", timeout=10000, fail_fast=False)
        # after_nack runs once the consumer thread settled the last failure.
        wait_for(lambda: value(prometheus, "dramatiq_message_rejects_total", "doomed") == 2)
    expected = {
        "ok": (5, 0, 0, 0),
        "doomed": (6, 6, 4, 2),  # 3 attempts each, 2 retries each, then the dead letters
        "flaky": (6, 3, 3, 0),  # 2 attempts each, the first failing
    }
    for actor, (total, errors, retries, rejects) in expected.items():
        assert value(prometheus, "dramatiq_messages_total", actor) == total
        assert value(prometheus, "dramatiq_message_errors_total", actor) == errors
        assert value(prometheus, "dramatiq_message_retries_total", actor) == retries
        assert value(prometheus, "dramatiq_message_rejects_total", actor) == rejects
        assert value(prometheus, "dramatiq_message_duration_milliseconds_count", actor) == total
        assert value(prometheus, "dramatiq_messages_inprogress", actor) == 0
    assert len(broker.dead_letters) == 2


def test_in_progress_and_duration_of_a_running_message() -> None:
    broker, prometheus = make_broker()
    release = threading.Event()

    @liteq.actor(broker=broker)
    def slow() -> None:
        release.wait(10)

    assert value(prometheus, "dramatiq_messages_inprogress", "slow") == 0  # from declaration
    slow.send()
    with running_worker(broker, worker_threads=2):
        wait_for(lambda: value(prometheus, "dramatiq_messages_inprogress", "slow") == 1)
        release.set()
        broker.join("default", timeout=10000)
    assert value(prometheus, "dramatiq_messages_inprogress", "slow") == 0
    assert value(prometheus, "dramatiq_message_duration_milliseconds_count", "slow") == 1
    assert value(prometheus, "dramatiq_message_duration_milliseconds_sum", "slow") > 0


class _SkipAll(Middleware):
    def before_process_message(self, broker: Any, message: Any) -> None:
        raise SkipMessage("skipped on purpose")


def test_a_message_skipped_before_it_started_counts_once_and_never_goes_negative() -> None:
    broker, prometheus = make_broker(_SkipAll())
    ran: list[int] = []

    @liteq.actor(broker=broker)
    def never() -> None:
        ran.append(1)

    never.send()
    with running_worker(broker, worker_threads=1):
        broker.join("default", timeout=10000)
    assert ran == []
    assert value(prometheus, "dramatiq_messages_total", "never") == 1
    assert value(prometheus, "dramatiq_messages_inprogress", "never") == 0
    assert value(prometheus, "dramatiq_message_duration_milliseconds_count", "never") == 0


def test_delayed_messages_held_in_memory_are_a_gauge_until_they_run() -> None:
    broker, prometheus = make_broker()

    @liteq.actor(broker=broker)
    def later() -> None:
        pass

    message = later.message()
    prometheus.before_delay_message(broker, message)
    assert value(prometheus, "dramatiq_delayed_messages_inprogress", "later") == 1
    prometheus.before_process_message(broker, message)
    assert value(prometheus, "dramatiq_delayed_messages_inprogress", "later") == 0
    prometheus.after_process_message(broker, message)
    assert value(prometheus, "dramatiq_messages_total", "later") == 1


def test_names_types_labels_buckets_and_modes_are_dramatiqs(tmp_path) -> None:
    pytest.importorskip("dramatiq")
    describe = (
        "import json, sys\n"
        "from dramatiq.middleware.prometheus import Prometheus\n"
        "m = Prometheus()\n"
        "m.after_process_boot(None)\n"
        "out = {}\n"
        "for attr, metric in vars(m).items():\n"
        "    if hasattr(metric, '_labelnames'):\n"
        "        out[attr] = [metric._name, metric._type, list(metric._labelnames),\n"
        "                     getattr(metric, '_upper_bounds', None)]\n"
        "json.dump(out, sys.stdout, default=str)\n"
    )
    env = dict(os.environ, dramatiq_prom_db=str(tmp_path))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.run([sys.executable, "-c", describe], env=env, capture_output=True,
                          text=True, timeout=60, check=True)
    theirs = json.loads(proc.stdout)
    ours = Prometheus()
    assert len(theirs) == 7
    for attr, (name, kind, labels, bounds) in theirs.items():
        metric = getattr(ours, attr)
        assert [metric._name, metric._type, list(metric._labelnames)] == [name, kind, labels]
        if bounds is not None:
            assert list(metric._upper_bounds) == bounds
    assert ours.inprogress_messages._multiprocess_mode == "livesum"
    assert ours.inprogress_delayed_messages._multiprocess_mode == "livesum"


def test_batched_durations_fill_the_buckets_as_observe_would(monkeypatch) -> None:
    """The flusher adds many observations at once through the histogram's sum and
    buckets; the result must be what observe() gives one value at a time."""
    broker, prometheus = make_broker()

    @liteq.actor(broker=broker)
    def timed() -> None:
        pass

    message = timed.message()
    durations = [0.0, 4.9, 5.0, 7, 99, 100, 101, 2500, 61000, 10**7]
    clock = iter(x for d in durations for x in (0.0, d / 1000))
    reference = prometheus_client.Histogram(
        "reference", "observe() one at a time", buckets=DURATION_BUCKETS,
        registry=prometheus_client.CollectorRegistry())
    monkeypatch.setattr("liteq.middleware.prometheus.perf_counter", lambda: next(clock))
    for d in durations:
        prometheus.before_process_message(broker, message)
        prometheus.after_process_message(broker, message)
        reference.observe(d)
    monkeypatch.undo()
    prometheus.flush()
    ours = {s.labels["le"]: s.value for m in prometheus.message_durations.collect()
            for s in m.samples if s.name.endswith("_bucket")}
    theirs = {s.labels["le"]: s.value for m in reference.collect()
              for s in m.samples if s.name.endswith("_bucket")}
    assert ours == theirs
    assert value(prometheus, "dramatiq_message_duration_milliseconds_sum", "timed") == \
        pytest.approx(sum(durations))


def test_figures_of_threads_that_ended_stay_counted() -> None:
    broker, prometheus = make_broker()

    @liteq.actor(broker=broker)
    def short() -> None:
        pass

    def run(count: int) -> None:
        for _ in range(count):
            message = short.message()
            prometheus.before_process_message(broker, message)
            prometheus.after_process_message(broker, message, exception=ValueError())

    for count in (3, 4):
        thread = threading.Thread(target=run, args=(count,))
        thread.start()
        thread.join()
        assert value(prometheus, "dramatiq_messages_total", "short") in (3, 7)
    assert value(prometheus, "dramatiq_messages_total", "short") == 7
    assert value(prometheus, "dramatiq_message_errors_total", "short") == 7
    assert value(prometheus, "dramatiq_messages_inprogress", "short") == 0
    assert prometheus._tallies == []  # folded into the retired figures


def test_the_flusher_writes_without_being_asked() -> None:
    broker, prometheus = make_broker()

    @liteq.actor(broker=broker)
    def noticed() -> None:
        pass

    noticed.send()
    with running_worker(broker, worker_threads=1):
        broker.join("default", timeout=10000)
        wait_for(lambda: prometheus.registry.get_sample_value(
            "dramatiq_messages_total", {"queue_name": "default", "actor_name": "noticed"}) == 1,
            timeout=5)


# -- the supervisor's endpoint ------------------------------------------------------------


@pytest.mark.parametrize(("text", "address"), [
    ("9191", ("127.0.0.1", 9191)),
    ("0.0.0.0:80", ("0.0.0.0", 80)),
    ("[::1]:9", ("::1", 9)),
    ("localhost:0", ("localhost", 0)),
])
def test_parse_address(text: str, address: tuple[str, int]) -> None:
    assert metrics.parse_address(text) == address


@pytest.mark.parametrize("text", ["", "abc", "host:", ":80", "65536", "1.2.3.4:-1"])
def test_parse_address_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"\[HOST:\]PORT"):
        metrics.parse_address(text)


def scrape(server: metrics.MetricsServer) -> dict[tuple[str, tuple[Any, ...]], float]:
    url = f"http://127.0.0.1:{server.port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_endpoint_owns_its_directory_and_serves_queue_depths(monkeypatch, caplog) -> None:
    from liteq.brokers.sqlite import broker as sqlite_broker

    before = os.environ.get(metrics.ENV)
    server = metrics.MetricsServer("127.0.0.1", 0)
    try:
        assert os.environ[metrics.ENV] == server.path and os.path.isdir(server.path)
        assert scrape(server) == {}  # no worker process yet, no broker
        counts = {"emails": QueueCounts(ready=3, delayed=1, claimed=None, running=None, dead=2)}
        monkeypatch.setattr(sqlite_broker, "inspect_queues", lambda info: counts)
        server.watch_broker({"module": "liteq.brokers.sqlite.broker", "path": "unused.db"})
        depths = {dict(labels)["state"]: v for (name, labels), v in scrape(server).items()
                  if name == "liteq_queue_messages"}
        assert depths == {"ready": 3, "delayed": 1, "dead": 2}  # None: not published

        def broken(info: Any) -> None:
            raise RuntimeError("database is locked")

        monkeypatch.setattr(sqlite_broker, "inspect_queues", broken)
        with caplog.at_level(logging.WARNING, logger="liteq.metrics"):
            assert scrape(server) == {}
            assert scrape(server) == {}
        assert [r.getMessage() for r in caplog.records] == [
            "metrics: cannot read the queue depths: RuntimeError: database is locked"]
    finally:
        server.close()
    assert not os.path.exists(server.path)
    assert os.environ.get(metrics.ENV) == before
