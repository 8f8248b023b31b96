"""The built-in middleware, exercised through real in-process workers on the StubBroker."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from helpers import running_worker, wait_for

import liteq
from liteq.brokers.stub import StubBroker
from liteq.common import compute_backoff, current_millis
from liteq.errors import Retry, Shutdown, SkipMessage, TimeLimitExceeded
from liteq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    GroupCallbacks,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)
from liteq.middleware.retries import MAX_BACKOFF_CAP


def make_broker(*, retries: Retries | None = None, time_limit: TimeLimit | None = None,
                extra: list[Any] | None = None) -> StubBroker:
    """The default stack with fast retries and a fast time-limit watchdog."""
    return StubBroker(middleware=[
        AgeLimit(),
        time_limit or TimeLimit(interval=20),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        retries or Retries(min_backoff=10, max_backoff=100),
        *(extra or []),
    ])


# Retries


def test_max_retries_three_means_four_runs_then_dead_letter() -> None:
    broker = make_broker()
    calls: list[int] = []

    @liteq.actor(broker=broker, max_retries=3)
    def flaky() -> None:
        calls.append(1)
        raise ValueError("boom")

    message = flaky.send()
    with running_worker(broker, worker_threads=1):
        broker.join("default", timeout=10000, fail_fast=False)
    assert len(calls) == 4
    [dead] = broker.dead_letters
    assert dead.message_id == message.message_id
    assert dead.options["retries"] == 4
    assert "ValueError: boom" in dead.options["traceback"]
    assert dead.options["requeue_timestamp"] <= current_millis()
    assert isinstance(dead._exception, ValueError)


def test_message_option_overrides_actor_max_retries() -> None:
    broker = make_broker()
    calls: list[int] = []

    @liteq.actor(broker=broker, max_retries=5)
    def flaky() -> None:
        calls.append(1)
        raise ValueError("boom")

    flaky.send_with_options(max_retries=1)
    with running_worker(broker, worker_threads=1):
        broker.join("default", timeout=10000, fail_fast=False)
    assert len(calls) == 2


def test_success_after_retry_is_not_dead_lettered() -> None:
    broker = make_broker()
    calls: list[int] = []

    @liteq.actor(broker=broker)
    def second_time_lucky() -> None:
        calls.append(1)
        if len(calls) < 2:
            raise ValueError("first try fails")

    second_time_lucky.send()
    with running_worker(broker, worker_threads=2):
        broker.join("default", timeout=10000)
    assert len(calls) == 2
    assert broker.dead_letters == []


@pytest.mark.parametrize("retries", [0, 1, 3, 6, 10])
def test_compute_backoff_bounds(retries: int) -> None:
    factor, cap = 100, 20000
    for _ in range(50):
        attempts, backoff = compute_backoff(retries, factor=factor, max_backoff=cap)
        assert attempts == retries + 1
        uncapped_low = factor * 2**retries
        if uncapped_low * 2 <= cap:
            assert uncapped_low <= backoff <= uncapped_low * 2
        assert backoff <= cap
        if uncapped_low > cap:
            assert cap // 2 <= backoff


def test_retry_backoff_delays_the_next_attempt() -> None:
    broker = make_broker(retries=Retries(min_backoff=200, max_backoff=10000))
    times: list[float] = []

    @liteq.actor(broker=broker, max_retries=1)
    def flaky() -> None:
        times.append(time.monotonic())
        raise ValueError("boom")

    flaky.send()
    with running_worker(broker, worker_threads=1):
        broker.join("default", timeout=10000, fail_fast=False)
    assert len(times) == 2
    # first retry: min_backoff * 2**0 * U(1, 2) -> between 200 and 400 ms
    assert times[1] - times[0] >= 0.19


def test_backoff_cap_is_seven_days() -> None:
    assert MAX_BACKOFF_CAP == 604800000
    assert Retries().min_backoff == 15000
    assert Retries().max_backoff == 604800000


def test_retry_exception_delay_wins_over_backoff() -> None:
    broker = make_broker(retries=Retries(min_backoff=60000, max_backoff=120000))
    times: list[float] = []

    @liteq.actor(broker=broker)
    def asks_for_retry() -> None:
        times.append(time.monotonic())
        if len(times) == 1:
            raise Retry("later", delay=250)

    asks_for_retry.send()
    with running_worker(broker, worker_threads=1):
        broker.join("default", timeout=10000)
    assert len(times) == 2
    assert 0.24 <= times[1] - times[0] < 30


def test_throws_fails_without_retry() -> None:
    broker = make_broker()
    calls: list[int] = []

    @liteq.actor(broker=broker, throws=(KeyError, ValueError))
    def thrower() -> None:
        calls.append(1)
        raise ValueError("expected")

    thrower.send()
    with running_worker(broker, worker_threads=1):
        with pytest.raises(ValueError, match="expected"):
            broker.join("default", timeout=10000)
    assert calls == [1]
    [dead] = broker.dead_letters
    assert "retries" not in dead.options


def test_retry_when_replaces_max_retries() -> None:
    def only_key_errors_twice(retries: int, exc: BaseException) -> bool:
        return retries < 2 and isinstance(exc, KeyError)

    broker = make_broker(retries=Retries(min_backoff=10, retry_when=only_key_errors_twice))
    calls: list[str] = []

    @liteq.actor(broker=broker, max_retries=100)
    def key_error() -> None:
        calls.append("key")
        raise KeyError("k")

    @liteq.actor(broker=broker, max_retries=100)
    def value_error() -> None:
        calls.append("value")
        raise ValueError("v")

    key_error.send()
    value_error.send()
    with running_worker(broker, worker_threads=2):
        broker.join("default", timeout=10000, fail_fast=False)
    assert calls.count("key") == 3
    assert calls.count("value") == 1
    assert len(broker.dead_letters) == 2


def test_on_retry_exhausted_gets_counts() -> None:
    broker = make_broker()
    received: list[tuple[dict, dict]] = []

    @liteq.actor(broker=broker)
    def exhausted(message_data: dict, info: dict) -> None:
        received.append((message_data, info))

    @liteq.actor(broker=broker, max_retries=2, on_retry_exhausted="exhausted")
    def always_fails() -> None:
        raise RuntimeError("nope")

    message = always_fails.send()
    with running_worker(broker, worker_threads=2):
        wait_for(lambda: received)
        broker.join("default", timeout=10000, fail_fast=False)
    [(data, info)] = received
    assert data["message_id"] == message.message_id
    assert info == {"retries": 2, "max_retries": 2}


# Callbacks


def test_on_success_callback_gets_message_and_result() -> None:
    broker = make_broker()
    received: list[tuple[dict, Any]] = []

    @liteq.actor(broker=broker)
    def add(x: int, y: int) -> int:
        return x + y

    @liteq.actor(broker=broker)
    def on_added(message_data: dict, result: int) -> None:
        received.append((message_data, result))

    message = add.send_with_options(args=(2, 3), on_success=on_added)
    with running_worker(broker, worker_threads=2):
        broker.join("default", timeout=10000)
    [(data, result)] = received
    assert result == 5
    assert data["message_id"] == message.message_id
    assert data["args"] == [2, 3]


def test_on_failure_fires_on_every_attempt_with_retries_bumped() -> None:
    broker = make_broker()
    received: list[tuple[int, dict]] = []

    @liteq.actor(broker=broker)
    def on_failed(message_data: dict, error: dict) -> None:
        received.append((message_data["options"]["retries"], error))

    @liteq.actor(broker=broker, max_retries=2, on_failure="on_failed")
    def fails() -> None:
        raise ValueError("bad value")

    @liteq.actor(broker=broker, on_failure="on_failed")
    def succeeds() -> None:
        pass

    fails.send()
    succeeds.send()
    with running_worker(broker, worker_threads=2):
        broker.join("default", timeout=10000, fail_fast=False)
    assert sorted(r for r, _ in received) == [1, 2, 3]
    assert all(e == {"type": "ValueError", "message": "bad value"} for _, e in received)


# AgeLimit


def test_age_limit_skips_old_messages_into_dead_letters() -> None:
    broker = make_broker()
    calls: list[str] = []

    @liteq.actor(broker=broker, max_age=1000)
    def perishable(tag: str) -> None:
        calls.append(tag)

    stale = perishable.message("stale").copy(message_timestamp=current_millis() - 5000)
    # 0 on the message falls through to the actor's max_age ("or" semantics)
    stale_zero = perishable.message_with_options(args=("stale-zero",), max_age=0).copy(
        message_timestamp=current_millis() - 5000
    )
    broker.enqueue(stale)
    broker.enqueue(stale_zero)
    perishable.send("fresh")
    with running_worker(broker, worker_threads=1):
        # join fails fast with the skipped message's own exception, as in Dramatiq.
        with pytest.raises(SkipMessage, match="Message age limit exceeded"):
            broker.join("default", timeout=10000)
    assert calls == ["fresh"]
    assert {p.message_id for p in broker.dead_letters} == {
        stale.message_id, stale_zero.message_id
    }


def test_age_limit_from_middleware_default() -> None:
    broker = StubBroker(middleware=[AgeLimit(max_age=1000)])
    calls: list[int] = []

    @liteq.actor(broker=broker)
    def task() -> None:
        calls.append(1)

    broker.enqueue(task.message().copy(message_timestamp=current_millis() - 2000))
    with running_worker(broker, worker_threads=1):
        broker.join("default", timeout=10000, fail_fast=False)
    assert calls == []
    assert len(broker.dead_letters) == 1


# TimeLimit


def test_time_limit_interrupts_sync_actor() -> None:
    broker = make_broker()
    interrupted = threading.Event()
    release = threading.Event()

    @liteq.actor(broker=broker, time_limit=100, max_retries=0)
    def slow() -> None:
        try:
            while not release.is_set():
                release.wait(0.01)
        except TimeLimitExceeded:
            interrupted.set()
            raise

    slow.send()
    try:
        with running_worker(broker, worker_threads=1):
            broker.join("default", timeout=5000, fail_fast=False)
    finally:
        release.set()
    assert interrupted.is_set()
    [dead] = broker.dead_letters
    assert isinstance(dead._exception, TimeLimitExceeded)


def test_time_limit_interrupts_async_actor() -> None:
    broker = make_broker()
    cancelled = threading.Event()

    @liteq.actor(broker=broker, time_limit=150, max_retries=0)
    async def slow_async() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    slow_async.send()
    started = time.monotonic()
    with running_worker(broker, worker_threads=1):
        broker.join("default", timeout=5000, fail_fast=False)
        # the task's cancellation runs on the loop thread, after the worker thread moved on
        wait_for(cancelled.is_set, timeout=2)
    assert time.monotonic() - started < 5
    [dead] = broker.dead_letters
    assert isinstance(dead._exception, TimeLimitExceeded)


def test_time_limit_inf_disables_the_middleware_default() -> None:
    broker = make_broker(time_limit=TimeLimit(time_limit=50, interval=10))
    done: list[str] = []

    @liteq.actor(broker=broker, time_limit=float("inf"))
    def unlimited() -> None:
        # outlives the middleware default of 50 ms many times over
        threading.Event().wait(0.3)
        done.append("unlimited")

    unlimited.send()
    with running_worker(broker, worker_threads=1):
        broker.join("default", timeout=5000)
    assert done == ["unlimited"]
    assert broker.dead_letters == []


def test_overrunning_lists_threads_past_their_deadline() -> None:
    broker = StubBroker(middleware=[TimeLimit(time_limit=10000, interval=1000)])

    @liteq.actor(broker=broker)
    def task() -> None:
        pass

    middleware = broker.middleware[0]
    assert isinstance(middleware, TimeLimit)
    proxy = liteq.MessageProxy(task.message())
    middleware.before_process_message(broker, proxy)
    try:
        now = time.monotonic()
        assert middleware.overrunning(now) == []
        [(ident, message_id, over)] = middleware.overrunning(now + 15)
        assert ident == threading.get_ident()
        assert message_id == proxy.message_id
        assert 5 <= over < 6
    finally:
        middleware.after_process_message(broker, proxy, result=None)
        middleware.after_worker_shutdown(broker, None)
    assert middleware.overrunning(time.monotonic() + 100) == []


# ShutdownNotifications


def test_shutdown_notifications_interrupt_opted_in_actors() -> None:
    broker = make_broker(retries=Retries(max_retries=0))
    started = threading.Event()
    seen: list[str] = []
    release = threading.Event()

    @liteq.actor(broker=broker, notify_shutdown=True)
    def long_running() -> None:
        started.set()
        try:
            while not release.is_set():
                release.wait(0.01)
        except Shutdown:
            seen.append("shutdown")
            raise

    long_running.send()
    worker = liteq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        assert started.wait(5)
        stop_started = time.monotonic()
        worker.stop(timeout=5000)
        assert time.monotonic() - stop_started < 4
    finally:
        release.set()
    assert seen == ["shutdown"]


def test_shutdown_leaves_actors_that_did_not_opt_in() -> None:
    broker = make_broker()
    started = threading.Event()
    release = threading.Event()
    outcome: list[str] = []

    @liteq.actor(broker=broker)
    def polite() -> None:
        started.set()
        try:
            release.wait(5)
            outcome.append("finished")
        except Shutdown:
            outcome.append("interrupted")
            raise

    polite.send()
    worker = liteq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    assert started.wait(5)
    stopper = threading.Thread(target=worker.stop, kwargs={"timeout": 5000})
    stopper.start()
    release.set()
    stopper.join(10)
    assert outcome == ["finished"]


# CurrentMessage


def test_current_message_in_sync_and_async_actors() -> None:
    broker = make_broker(extra=[CurrentMessage()])
    seen: dict[str, str | None] = {}

    @liteq.actor(broker=broker)
    def sync_task() -> None:
        current = CurrentMessage.get_current_message()
        seen["sync"] = current.message_id if current else None

    @liteq.actor(broker=broker)
    async def async_task() -> None:
        await asyncio.sleep(0)
        current = CurrentMessage.get_current_message()
        seen["async"] = current.message_id if current else None

    sync_message = sync_task.send()
    async_message = async_task.send()
    with running_worker(broker, worker_threads=2):
        broker.join("default", timeout=10000)
    assert seen == {"sync": sync_message.message_id, "async": async_message.message_id}
    assert CurrentMessage.get_current_message() is None


def test_current_message_follows_each_message() -> None:
    broker = make_broker(extra=[CurrentMessage()])
    ids: list[str | None] = []

    @liteq.actor(broker=broker)
    def task() -> None:
        current = CurrentMessage.get_current_message()
        ids.append(current.message_id if current else None)

    sent = [task.send().message_id for _ in range(3)]
    with running_worker(broker, worker_threads=1):
        broker.join("default", timeout=10000)
    assert ids == sent


def test_current_message_is_cleared_after_processing_and_skipping() -> None:
    broker = StubBroker(middleware=[CurrentMessage()])

    @liteq.actor(broker=broker)
    def task() -> None:
        pass

    middleware = broker.middleware[0]
    assert isinstance(middleware, CurrentMessage)
    for after in ("after_process_message", "after_skip_message"):
        proxy = liteq.MessageProxy(task.message())
        middleware.before_process_message(broker, proxy)
        assert CurrentMessage.get_current_message() is proxy
        getattr(middleware, after)(broker, proxy)
        assert CurrentMessage.get_current_message() is None


# Pipelines


def test_pipe_target_receives_result() -> None:
    broker = make_broker()
    received: list[tuple] = []

    @liteq.actor(broker=broker)
    def double(x: int) -> int:
        return x * 2

    @liteq.actor(broker=broker)
    def collect(*args: Any) -> None:
        received.append(args)

    target = collect.message("prefix").asdict()
    double.send_with_options(args=(21,), pipe_target=target)
    with running_worker(broker, worker_threads=2):
        broker.join("default", timeout=10000)
    assert received == [("prefix", 42)]


def test_pipe_ignore_and_delay_on_next_message() -> None:
    broker = make_broker()
    received: list[tuple] = []
    times: dict[str, float] = {}

    @liteq.actor(broker=broker)
    def first() -> str:
        times["first"] = time.monotonic()
        return "ignored"

    @liteq.actor(broker=broker)
    def second(*args: Any) -> None:
        times["second"] = time.monotonic()
        received.append(args)

    target = second.message_with_options(args=(1,), pipe_ignore=True, delay=200).asdict()
    first.send_with_options(pipe_target=target)
    with running_worker(broker, worker_threads=2):
        broker.join("default", timeout=10000)
    assert received == [(1,)]
    assert times["second"] - times["first"] >= 0.19


def test_pipe_target_not_followed_on_failure() -> None:
    broker = make_broker(retries=Retries(max_retries=0))
    received: list[tuple] = []

    @liteq.actor(broker=broker)
    def broken() -> None:
        raise ValueError("no")

    @liteq.actor(broker=broker)
    def collect(*args: Any) -> None:
        received.append(args)

    broken.send_with_options(pipe_target=collect.message().asdict())
    with running_worker(broker, worker_threads=1):
        broker.join("default", timeout=10000, fail_fast=False)
    assert received == []
    assert len(broker.dead_letters) == 1


# GroupCallbacks


def test_group_callbacks_fire_once_when_last_member_succeeds() -> None:
    rate_limits = pytest.importorskip("liteq.rate_limits")
    backends = pytest.importorskip("liteq.rate_limits.backends")
    backend = backends.StubBackend()
    broker = make_broker(extra=[GroupCallbacks(backend)])
    calls: list[str] = []

    @liteq.actor(broker=broker)
    def member(tag: str) -> None:
        calls.append(tag)

    @liteq.actor(broker=broker)
    def done() -> None:
        calls.append("done")

    group_id = "group-under-test"
    barrier = rate_limits.Barrier(backend, group_id, ttl=60000)
    assert barrier.create(3)
    callbacks = [done.message().asdict()]
    for tag in ("a", "b", "c"):
        member.send_with_options(
            args=(tag,), group_completion_uuid=group_id, group_completion_callbacks=callbacks
        )
    with running_worker(broker, worker_threads=3):
        broker.join("default", timeout=10000)
    assert sorted(calls) == ["a", "b", "c", "done"]
    assert calls[-1] == "done"
