"""Class-based actors (``GenericActor``) as Dramatiq's documentation and tests use them.

The worker is started after the actors are declared: an embedded worker that picks up
queues declared after it started is a separate change (issue 9, first item).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import wait_for
from pools import enqueue, record_count, records

import liteq
import liteq.broker
from liteq import Broker, Worker
from liteq.brokers.stub import StubBroker


@pytest.fixture(params=["stub", "sqlite"])
def broker(request: pytest.FixtureRequest) -> Broker:
    """The global broker of the test: in memory, then a real SQLite file."""
    return request.getfixturevalue(f"{request.param}_broker")


@pytest.fixture
def start_worker() -> Iterator[Callable[[Broker], Worker]]:
    """Start ``Worker(broker, worker_timeout=100)``; every one is stopped at the end."""
    started: list[Worker] = []

    def start(broker: Broker) -> Worker:
        worker = Worker(broker, worker_timeout=100)
        worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop(timeout=5000)


def test_generic_actors_can_be_defined(stub_broker: StubBroker) -> None:
    class Add(liteq.GenericActor):
        def perform(self, x: int, y: int) -> int:
            return x + y

    assert isinstance(Add.__actor__, liteq.Actor)
    assert Add(1, 2) == 3
    assert Add.actor_name == "Add"
    assert Add.queue_name == "default"
    assert stub_broker.actors["Add"] is Add.__actor__


def test_meta_attributes_become_actor_options(stub_broker: StubBroker) -> None:
    class Add(liteq.GenericActor):
        class Meta:
            max_retries = 32
            queue_name = "sums"
            priority = 5
            actor_name = "add_numbers"

        def perform(self, x: int, y: int) -> int:
            return x + y

    assert Add.options == {"max_retries": 32}
    assert (Add.queue_name, Add.priority, Add.actor_name) == ("sums", 5, "add_numbers")
    assert "sums" in stub_broker.get_declared_queues()


def test_meta_options_are_checked_like_actor_options(stub_broker: StubBroker) -> None:
    with pytest.raises(ValueError, match="max_retrys"):
        class Add(liteq.GenericActor):
            class Meta:
                max_retrys = 3

            def perform(self) -> None:
                pass


def test_missing_perform_raises_not_implemented(stub_broker: StubBroker) -> None:
    class Foo(liteq.GenericActor):
        pass

    with pytest.raises(NotImplementedError, match="Foo does not implement perform"):
        Foo()


def test_abstract_bases_are_inherited_and_run(
    broker: Broker, start_worker: Callable[[Broker], Worker]
) -> None:
    calls: set[str] = set()

    class BaseTask(liteq.GenericActor):
        class Meta:
            abstract = True
            queue_name = "tasks"

        def get_task_name(self) -> str:
            raise NotImplementedError

        def perform(self) -> None:
            calls.add(self.get_task_name())

    assert isinstance(BaseTask, type) and not isinstance(BaseTask, liteq.Actor)
    assert "BaseTask" not in broker.actors

    class FooTask(BaseTask):
        def get_task_name(self) -> str:
            return "Foo"

    class BarTask(BaseTask):
        def get_task_name(self) -> str:
            return "Bar"

    assert isinstance(FooTask.__actor__, liteq.Actor)
    assert FooTask.queue_name == BarTask.queue_name == BaseTask.Meta.queue_name == "tasks"

    worker = start_worker(broker)
    FooTask.send()
    BarTask.send()
    broker.join(BaseTask.Meta.queue_name)
    worker.join()
    assert calls == {"Foo", "Bar"}


def test_abstract_classes_cannot_be_sent(stub_broker: StubBroker) -> None:
    class BaseTask(liteq.GenericActor):
        class Meta:
            abstract = True

    with pytest.raises(AttributeError, match="'BaseTask' has no attribute 'send'"):
        BaseTask.send()
    with pytest.raises(AttributeError):
        liteq.GenericActor.missing_property  # noqa: B018 - the access is the test


def test_intermediate_abstract_bases_stay_abstract(stub_broker: StubBroker) -> None:
    class Base(liteq.GenericActor):
        class Meta:
            abstract = True
            queue_name = "base"

    class Middle(Base):
        class Meta:
            abstract = True
            queue_name = "middle"

        def perform(self) -> str:
            return "middle"

    class Leaf(Middle):
        pass

    assert set(stub_broker.actors) == {"Leaf"}
    assert Leaf.queue_name == "middle"
    assert Leaf() == "middle"


def test_class_attributes_are_readable_and_used_by_perform(
    broker: Broker, start_worker: Callable[[Broker], Worker]
) -> None:
    seen: list[str] = []

    class DoSomething(liteq.GenericActor):
        STATUS_RUNNING = "running"
        STATUS_DONE = "done"

        def perform(self, suffix: str) -> None:
            seen.append(self.STATUS_DONE + suffix)

    assert DoSomething.STATUS_DONE == "done"
    worker = start_worker(broker)
    DoSomething.send_with_options(args=("!",))
    broker.join(DoSomething.queue_name)
    worker.join()
    assert seen == ["done!"]


def test_meta_actor_is_a_custom_registry(stub_broker: StubBroker) -> None:
    """``Meta.actor`` replaces the decorator: here one binding the actor to another broker."""
    other = StubBroker()
    registered: list[tuple[object, dict]] = []

    def registry(fn: Callable[..., object], **options: object) -> liteq.Actor:
        registered.append((fn, options))
        return liteq.actor(fn, broker=other, **options)

    class CustomActor(liteq.GenericActor):
        class Meta:
            actor = registry
            max_retries = 0

        def perform(self) -> str:
            return "ran"

    assert registered == [(CustomActor, {"max_retries": 0})]
    assert CustomActor.broker is other
    assert "CustomActor" in other.actors and "CustomActor" not in stub_broker.actors
    other.close()


def test_meta_broker_leaves_the_global_broker_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path, start_worker: Callable[[Broker], Worker]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(liteq.broker, "_broker", None)
    monkeypatch.delenv("LITEQ_BROKER_URL", raising=False)
    own = StubBroker()
    results: list[int] = []

    class Square(liteq.GenericActor):
        class Meta:
            broker = own

        def perform(self, x: int) -> None:
            results.append(x * x)

    worker = start_worker(own)
    Square.send(7)
    own.join(Square.queue_name)
    worker.join()
    assert results == [49]
    assert liteq.broker._broker is None
    assert list(tmp_path.iterdir()) == []
    own.close()


def test_a_generic_actor_name_can_be_declared_once(stub_broker: StubBroker) -> None:
    class Job(liteq.GenericActor):
        def perform(self) -> None:
            pass

    with pytest.raises(ValueError, match=r"^An actor named 'Job' is already registered\.$"):
        class Job(liteq.GenericActor):  # type: ignore[no-redef]  # noqa: F811
            def perform(self) -> None:
                pass


GENERIC_TASKS = '''
import os

import liteq


class RecordTask(liteq.GenericActor):
    class Meta:
        abstract = True
        max_retries = 0

    def perform(self, n):
        with open(os.environ["LITEQ_TEST_RECORD"], "a") as f:
            f.write(f"{self.prefix}{n} {os.getpid()}\\n")


class Greet(RecordTask):
    prefix = "greet-"
'''


def test_a_generic_actor_in_a_task_module_runs_under_liteq_worker(
    tmp_path: Path, pools: Callable
) -> None:
    (tmp_path / "generic_tasks.py").write_text(GENERIC_TASKS)
    enqueue(tmp_path, "Greet", [(1,), (2,)])
    pools("--path", str(tmp_path), "--processes", "1", modules=("generic_tasks",))
    wait_for(lambda: record_count(tmp_path) == 2, timeout=30)
    assert sorted(n for n, _ in records(tmp_path)) == ["greet-1", "greet-2"]
