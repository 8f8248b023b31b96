"""Pipelines and groups, run by a real in-process worker on the StubBroker."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from helpers import running_worker, wait_for

import liteq
from liteq import group, pipeline
from liteq.brokers.stub import StubBroker
from liteq.errors import ResultFailure, ResultTimeout
from liteq.middleware import GroupCallbacks
from liteq.rate_limits.backends import SqliteBackend as SqliteLimits
from liteq.rate_limits.backends import StubBackend as StubLimits
from liteq.results import Results
from liteq.results.backends import StubBackend


@pytest.fixture
def broker(stub_broker: StubBroker) -> StubBroker:
    """The global broker (``msg | msg`` builds pipelines on it), storing every result."""
    stub_broker.add_middleware(Results(backend=StubBackend(), store_results=True))
    return stub_broker


def declare(broker: StubBroker) -> tuple[Any, Any]:
    @liteq.actor(broker=broker)
    def add(x: int, y: int) -> int:
        return x + y

    @liteq.actor(broker=broker, max_retries=0)
    def fail(*args: Any) -> None:
        raise ValueError("no")

    return add, fail


# Pipelines


def test_pipeline_passes_each_result_to_the_next(broker: StubBroker) -> None:
    add, _ = declare(broker)
    pipe = add.message(1, 2) | add.message(10) | pipeline([add.message(100)], broker=broker)
    assert isinstance(pipe, pipeline)
    assert len(pipe) == 3
    assert pipe.completed is False
    assert pipe.completed_count == 0
    pipe.run()
    with running_worker(broker, worker_threads=2):
        assert pipe.get_result(block=True, timeout=10000) == 113
        assert list(pipe.get_results(block=True, timeout=10000)) == [3, 13, 113]
    assert pipe.completed is True
    assert pipe.completed_count == 3


def test_pipeline_copies_its_messages(broker: StubBroker) -> None:
    add, _ = declare(broker)
    first, second = add.message(1, 2), add.message(3)
    pipe = pipeline([first, second], broker=broker)
    assert "pipe_target" not in first.options
    assert pipe.messages[0].options["pipe_target"]["message_id"] == second.message_id
    assert pipe.messages[0].message_id == first.message_id


def test_pipeline_honours_pipe_ignore(broker: StubBroker) -> None:
    add, _ = declare(broker)
    pipe = pipeline([add.message(1, 2), add.message_with_options(args=(5, 6), pipe_ignore=True)],
                    broker=broker).run()
    with running_worker(broker, worker_threads=2):
        assert pipe.get_result(block=True, timeout=10000) == 11


def test_pipeline_stops_at_a_failure(broker: StubBroker) -> None:
    add, fail = declare(broker)
    pipe = pipeline([add.message(1, 2), fail.message(), add.message(1)], broker=broker).run()
    with running_worker(broker, worker_threads=2):
        broker.join("default", timeout=10000, fail_fast=False)
    assert pipe.completed is False
    with pytest.raises(ResultFailure):
        list(pipe.get_results())


def test_empty_pipeline_is_refused(broker: StubBroker) -> None:
    with pytest.raises(ValueError, match="at least one"):
        pipeline([], broker=broker)


# Groups


def test_group_collects_results_in_order(broker: StubBroker) -> None:
    add, _ = declare(broker)
    jobs = group([add.message(i, i) for i in range(5)], broker=broker)
    assert len(jobs) == 5
    assert jobs.completed_count == 0
    jobs.run()
    with running_worker(broker, worker_threads=2):
        jobs.wait(timeout=10000)
        assert list(jobs.get_results(block=True, timeout=10000)) == [0, 2, 4, 6, 8]
    assert jobs.completed is True
    assert jobs.completed_count == 5


def test_group_of_pipelines_and_groups(broker: StubBroker) -> None:
    add, _ = declare(broker)
    jobs = group([
        add.message(1, 1),
        add.message(1, 2) | add.message(3),
        group([add.message(2, 2), add.message(3, 3)], broker=broker),
    ], broker=broker).run()
    with running_worker(broker, worker_threads=2):
        assert list(jobs.get_results(block=True, timeout=10000)) == [2, 6, [4, 6]]
    assert jobs.completed_count == 3


def test_group_wait_times_out_without_a_worker(broker: StubBroker) -> None:
    add, _ = declare(broker)
    jobs = group([add.message(1, 1)], broker=broker).run()
    with pytest.raises(ResultTimeout):
        jobs.wait(timeout=30)
    assert jobs.completed is False


# Group completion callbacks


@pytest.fixture(params=["stub", "sqlite"])
def callbacks_broker(broker: StubBroker, request: pytest.FixtureRequest,
                     tmp_path: Any) -> StubBroker:
    limits = StubLimits() if request.param == "stub" else SqliteLimits(str(tmp_path / "l.db"))
    broker.add_middleware(GroupCallbacks(limits))
    return broker


def make_recorder(broker: StubBroker) -> tuple[Any, list[Any]]:
    calls: list[Any] = []
    lock = threading.Lock()

    @liteq.actor(broker=broker)
    def finished(tag: str) -> None:
        with lock:
            calls.append(tag)

    return finished, calls


def test_group_completion_callback_fires_once(callbacks_broker: StubBroker) -> None:
    broker = callbacks_broker
    add, _ = declare(broker)
    finished, calls = make_recorder(broker)
    jobs = group([add.message(i, 1) for i in range(6)] + [add.message(1, 1) | add.message(2)],
                 broker=broker)
    jobs.add_completion_callback(finished.message("done"))
    jobs.run()
    with running_worker(broker, worker_threads=2):
        wait_for(lambda: calls, timeout=10)
        broker.join("default", timeout=10000)
    assert calls == ["done"]
    assert jobs.completed is True


def test_group_completion_callback_waits_for_every_member(callbacks_broker: StubBroker) -> None:
    broker = callbacks_broker
    add, fail = declare(broker)
    finished, calls = make_recorder(broker)
    jobs = group([add.message(1, 1), fail.message()], broker=broker)
    jobs.add_completion_callback(finished.message("done"))
    jobs.run()
    with running_worker(broker, worker_threads=2):
        broker.join("default", timeout=10000, fail_fast=False)
    assert calls == []


def test_group_callbacks_need_the_middleware(broker: StubBroker) -> None:
    add, _ = declare(broker)
    finished, _ = make_recorder(broker)
    jobs = group([add.message(1, 1)], broker=broker)
    jobs.add_completion_callback(finished.message("done"))
    with pytest.raises(RuntimeError, match="GroupCallbacks"):
        jobs.run()


def test_nested_groups_with_callbacks_are_refused(callbacks_broker: StubBroker) -> None:
    add, _ = declare(callbacks_broker)
    finished, _ = make_recorder(callbacks_broker)
    jobs = group([group([add.message(1, 1)], broker=callbacks_broker)], broker=callbacks_broker)
    jobs.add_completion_callback(finished.message("done"))
    with pytest.raises(NotImplementedError):
        jobs.run()
