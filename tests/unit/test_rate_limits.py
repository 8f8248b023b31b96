"""Rate limits: one backend contract suite over the local backends, then the limiters."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import wait_for

from liteq.errors import RateLimitExceeded
from liteq.rate_limits import (
    Barrier,
    BucketRateLimiter,
    ConcurrentRateLimiter,
    RateLimiterBackend,
    WindowRateLimiter,
)
from liteq.rate_limits import bucket as bucket_module
from liteq.rate_limits import window as window_module
from liteq.rate_limits.backends import SqliteBackend, StubBackend


@pytest.fixture(params=["stub", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[RateLimiterBackend]:
    if request.param == "stub":
        yield StubBackend()
    else:
        yield SqliteBackend(path=str(tmp_path / "limits.db"))


# The backend contract


def test_add_sets_only_a_missing_key(backend: RateLimiterBackend) -> None:
    assert backend.add("k", 5, 60000) is True
    assert backend.add("k", 7, 60000) is False
    assert backend.decr("k", 5, 0, 60000) is True  # the value is still the first one, 5
    assert backend.decr("k", 1, 0, 60000) is False


def test_add_succeeds_again_once_the_key_expired(backend: RateLimiterBackend) -> None:
    assert backend.add("k", 1, 20) is True
    wait_for(lambda: backend.add("k", 1, 60000), timeout=5)
    assert backend.add("k", 1, 60000) is False


def test_incr_stops_at_the_maximum(backend: RateLimiterBackend) -> None:
    assert [backend.incr("k", 1, 3, 60000) for _ in range(4)] == [True, True, True, False]
    assert backend.incr("k", 2, 5, 60000) is True
    assert backend.incr("k", 1, 5, 60000) is False


def test_decr_stops_at_the_minimum(backend: RateLimiterBackend) -> None:
    assert backend.decr("missing", 1, 0, 60000) is False
    backend.add("k", 2, 60000)
    assert [backend.decr("k", 1, 0, 60000) for _ in range(3)] == [True, True, False]


def test_counters_expire(backend: RateLimiterBackend) -> None:
    # 500 ms: long enough that a loaded machine never lets it lapse between the two calls
    assert backend.incr("k", 1, 1, 500) is True
    assert backend.incr("k", 1, 1, 500) is False
    wait_for(lambda: backend.incr("k", 1, 1, 60000), timeout=5)


@pytest.mark.parametrize("as_callable", [False, True])
def test_incr_and_sum_bounds_the_sum_of_keys(
    backend: RateLimiterBackend, as_callable: bool
) -> None:
    keys = ["a", "b", "c"]
    key_arg: Any = (lambda: keys) if as_callable else keys
    backend.incr("b", 2, 10, 60000)
    assert backend.incr_and_sum("a", key_arg, 1, 4, 60000) is True   # 1 + 2 = 3
    assert backend.incr_and_sum("a", key_arg, 1, 4, 60000) is True   # 2 + 2 = 4
    assert backend.incr_and_sum("a", key_arg, 1, 4, 60000) is False  # 5 > 4
    assert backend.incr_and_sum("c", key_arg, 1, 4, 60000) is False  # the sum is full
    assert backend.decr("a", 2, 0, 60000) is True
    assert backend.incr_and_sum("c", key_arg, 2, 4, 60000) is True


def test_wait_times_out_without_a_notification(backend: RateLimiterBackend) -> None:
    assert backend.wait("event", 30) is False


def test_wait_notify_releases_current_and_later_waiters(backend: RateLimiterBackend) -> None:
    results: list[bool] = []
    waiters = [threading.Thread(target=lambda: results.append(backend.wait("event", 10000)))
               for _ in range(3)]
    for waiter in waiters:
        waiter.start()
    backend.wait_notify("event", 60000)
    for waiter in waiters:
        waiter.join(10)
    assert results == [True, True, True]
    assert backend.wait("event", 0) is True


def test_notifications_expire(backend: RateLimiterBackend) -> None:
    backend.wait_notify("event", 20)
    wait_for(lambda: backend.wait("event", 0) is False, timeout=5)


# Limiters


def test_concurrent_limiter_is_a_mutex_across_threads(backend: RateLimiterBackend) -> None:
    mutex = ConcurrentRateLimiter(backend, "mutex", limit=1)
    lock = threading.Lock()
    state = {"inside": 0, "most": 0, "entered": 0}

    def contend() -> None:
        for _ in range(30):
            with mutex.acquire(raise_on_failure=False) as acquired:
                if not acquired:
                    continue
                with lock:
                    state["inside"] += 1
                    state["entered"] += 1
                    state["most"] = max(state["most"], state["inside"])
                for _ in range(200):  # stay inside a little, without sleeping
                    pass
                with lock:
                    state["inside"] -= 1

    threads = [threading.Thread(target=contend) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert state["most"] == 1
    assert state["entered"] > 0
    with mutex.acquire() as acquired:
        assert acquired is True


def test_concurrent_limiter_allows_up_to_its_limit(backend: RateLimiterBackend) -> None:
    limiter = ConcurrentRateLimiter(backend, "sem", limit=2)
    with limiter.acquire(), limiter.acquire():
        with pytest.raises(RateLimitExceeded):
            with limiter.acquire():
                pass
        with limiter.acquire(raise_on_failure=False) as acquired:
            assert acquired is False
    with limiter.acquire() as acquired:
        assert acquired is True


def test_concurrent_limiter_releases_when_the_body_raises(backend: RateLimiterBackend) -> None:
    mutex = ConcurrentRateLimiter(backend, "mutex")
    with pytest.raises(KeyError):
        with mutex.acquire():
            raise KeyError("boom")
    with mutex.acquire() as acquired:
        assert acquired is True


def test_bucket_limiter_counts_per_bucket(
    backend: RateLimiterBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1_700_000_040_000]  # the start of a 60 s bucket
    monkeypatch.setattr(bucket_module, "current_millis", lambda: now[0])
    limiter = BucketRateLimiter(backend, "bucket", limit=3, bucket=60000)

    def attempt() -> bool:
        with limiter.acquire(raise_on_failure=False) as acquired:
            return acquired

    assert [attempt() for _ in range(4)] == [True, True, True, False]
    now[0] += 59999
    assert attempt() is False
    now[0] += 1
    assert [attempt() for _ in range(4)] == [True, True, True, False]


def test_window_limiter_slides_over_seconds(
    backend: RateLimiterBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Clock:
        now = 1_700_000_000.0

        def time(self) -> float:
            return self.now

    clock = Clock()
    monkeypatch.setattr(window_module, "time", clock)
    limiter = WindowRateLimiter(backend, "window", limit=2, window=2)

    def attempt() -> bool:
        with limiter.acquire(raise_on_failure=False) as acquired:
            return acquired

    assert [attempt(), attempt(), attempt()] == [True, True, False]
    clock.now += 1  # the first second is still inside the 2-second window
    assert attempt() is False
    clock.now += 1  # now it is not
    assert [attempt(), attempt(), attempt()] == [True, True, False]


@pytest.mark.parametrize("cls", [ConcurrentRateLimiter, BucketRateLimiter, WindowRateLimiter])
def test_limiters_refuse_a_limit_below_one(backend: RateLimiterBackend, cls: Any) -> None:
    with pytest.raises(ValueError, match="limit"):
        cls(backend, "k", limit=0)


# Barrier


def test_barrier_releases_on_the_last_party(backend: RateLimiterBackend) -> None:
    barrier = Barrier(backend, "barrier")
    assert barrier.create(3) is True
    assert barrier.create(3) is False
    assert [barrier.wait(block=False) for _ in range(3)] == [False, False, True]


def test_barrier_wakes_blocked_parties(backend: RateLimiterBackend) -> None:
    barrier = Barrier(backend, "barrier")
    barrier.create(3)
    results: list[bool] = []
    parties = [threading.Thread(target=lambda: results.append(barrier.wait(timeout=10000)))
               for _ in range(2)]
    for party in parties:
        party.start()
    wait_for(lambda: backend.decr("barrier", 0, 2, 60000) is False, timeout=10)  # both arrived
    assert barrier.wait(timeout=10000) is True
    for party in parties:
        party.join(10)
    assert results == [True, True]


def test_barrier_wait_times_out(backend: RateLimiterBackend) -> None:
    barrier = Barrier(backend, "barrier")
    barrier.create(2)
    assert barrier.wait(timeout=30) is False


# Across processes (SQLite only)


def _hold_mutex(path: str, acquired: Any, release: Any) -> None:
    mutex = ConcurrentRateLimiter(SqliteBackend(path=path), "cross-process")
    with mutex.acquire():
        acquired.set()
        release.wait(30)


def test_sqlite_mutex_holds_across_processes(tmp_path: Any) -> None:
    path = str(tmp_path / "processes.db")
    ctx = multiprocessing.get_context("spawn")
    acquired, release = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_hold_mutex, args=(path, acquired, release))
    child.start()
    try:
        assert acquired.wait(30)
        mutex = ConcurrentRateLimiter(SqliteBackend(path=path), "cross-process")
        with mutex.acquire(raise_on_failure=False) as got:
            assert got is False
        release.set()
        child.join(30)
        assert child.exitcode == 0
        with mutex.acquire(raise_on_failure=False) as got:
            assert got is True
    finally:
        release.set()
        child.join(30)
