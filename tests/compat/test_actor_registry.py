"""Actors belong to the broker they are declared on; names are unique per broker."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import liteq
import liteq.broker
from liteq import Worker
from liteq.brokers.stub import StubBroker
from liteq.errors import ActorAlreadyRegistered


def test_a_second_actor_of_the_same_name_is_refused_with_dramatiqs_text(
    stub_broker: StubBroker,
) -> None:
    @liteq.actor
    def foo() -> str:
        return "first"

    with pytest.raises(ValueError, match=r"^An actor named 'foo' is already registered\.$") as e:
        @liteq.actor(actor_name="foo", queue_name="elsewhere")
        def other() -> str:
            return "second"

    assert isinstance(e.value, ActorAlreadyRegistered)
    assert stub_broker.actors["foo"] is foo
    assert stub_broker.get_declared_queues() == {"default"}


def test_the_same_name_may_be_declared_on_two_brokers(stub_broker: StubBroker) -> None:
    other = StubBroker()

    @liteq.actor(actor_name="job")
    def on_global() -> None:
        pass

    @liteq.actor(actor_name="job", broker=other)
    def on_other() -> None:
        pass

    assert stub_broker.actors["job"] is on_global
    assert other.actors["job"] is on_other
    other.close()


def test_an_actor_on_its_own_broker_never_touches_the_global_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With no global broker set, ``actor(broker=...)`` must not build ``./liteq.db``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(liteq.broker, "_broker", None)
    monkeypatch.delenv("LITEQ_BROKER_URL", raising=False)
    own = liteq.SqliteBroker(str(tmp_path / "own.db"))
    totals: list[int] = []

    @liteq.actor(broker=own, queue_name="sums")
    def add(x: int, y: int) -> None:
        totals.append(x + y)

    worker = Worker(own, worker_timeout=100)
    worker.start()
    try:
        add.send(1, 2)
        add.send_with_options(args=(3, 4), delay=1)
        own.join("sums")
        worker.join()
    finally:
        worker.stop(timeout=5000)
        own.close()
    assert sorted(totals) == [3, 7]
    assert liteq.broker._broker is None
    assert not (tmp_path / "liteq.db").exists()


def test_get_logger_names_loggers_as_actors_do(stub_broker: StubBroker,
                                              caplog: pytest.LogCaptureFixture) -> None:
    class Billing:
        pass

    assert liteq.get_logger("app.tasks").name == "app.tasks"
    assert liteq.get_logger("app.tasks", "charge").name == "app.tasks.charge"
    assert liteq.get_logger("app.tasks", Billing).name == "app.tasks.Billing"

    @liteq.actor
    def charge(amount: int) -> None:
        liteq.get_logger(__name__, "charge").info("charging %d", amount)

    assert charge.logger is liteq.get_logger(__name__, "charge")
    with caplog.at_level(logging.INFO, logger=__name__):
        charge(5)
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        (f"{__name__}.charge", "charging 5")
    ]
