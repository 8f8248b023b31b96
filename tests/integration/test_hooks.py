"""Every hook the Middleware base declares is emitted, and a before_* hook is dispatched
by one rule everywhere (Dramatiq's): a MiddlewareError propagates, any other error is
logged and the work goes on."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import liteq
from liteq import Middleware
from liteq.brokers.stub import StubBroker
from liteq.errors import MiddlewareError
from liteq.middleware import Retries
from tests.helpers import running_worker, wait_for


class Recorder(Middleware):
    """Records the settle hooks in order, with whether the message had failed."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any, bool]] = []
        self.lock = threading.Lock()

    def _add(self, name: str, message: Any) -> None:
        with self.lock:
            self.events.append((name, message.args[0], message.failed))

    def before_ack(self, broker: Any, message: Any) -> None:
        self._add("before_ack", message)

    def after_ack(self, broker: Any, message: Any) -> None:
        self._add("after_ack", message)

    def before_nack(self, broker: Any, message: Any) -> None:
        self._add("before_nack", message)

    def after_nack(self, broker: Any, message: Any) -> None:
        self._add("after_nack", message)


@pytest.fixture(params=["stub", "sqlite"])
def broker(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    made = (StubBroker(middleware=[]) if request.param == "stub"
            else liteq.SqliteBroker(str(tmp_path / "hooks.db"), middleware=[]))
    yield made
    made.close()


def test_before_ack_and_before_nack_run_once_before_their_after_hook(broker: Any) -> None:
    recorder = Recorder()
    broker.add_middleware(Retries(max_retries=0))
    broker.add_middleware(recorder)

    @liteq.actor(broker=broker)
    def job(n: int) -> None:
        if n % 2:
            raise ValueError(n)

    for n in range(6):
        job.send(n)
    with running_worker(broker, worker_threads=2):
        wait_for(lambda: len(recorder.events) == 12, timeout=10)
    for n in range(6):
        mine = [(name, failed) for name, arg, failed in recorder.events if arg == n]
        kind = "nack" if n % 2 else "ack"
        assert mine == [(f"before_{kind}", bool(n % 2)), (f"after_{kind}", bool(n % 2))]


def test_a_failing_before_ack_hook_is_logged_and_the_message_still_settled(
        broker: Any, caplog: pytest.LogCaptureFixture) -> None:
    class Refuse(Middleware):
        def before_ack(self, broker: Any, message: Any) -> None:
            raise MiddlewareError("no")

    recorder = Recorder()
    broker.add_middleware(Refuse())
    broker.add_middleware(recorder)

    @liteq.actor(broker=broker)
    def job(n: int) -> None:
        pass

    job.send(1)
    with running_worker(broker, worker_threads=1):
        wait_for(lambda: ("after_ack", 1, False) in recorder.events, timeout=10)
        broker.join(job.queue_name, timeout=10000)
    assert "before_ack of message" in caplog.text


def test_an_error_in_before_process_message_is_logged_and_the_actor_runs(
        broker: Any, caplog: pytest.LogCaptureFixture) -> None:
    """The same rule as every other before_* hook (and as Dramatiq's worker)."""
    class Broken(Middleware):
        def before_process_message(self, broker: Any, message: Any) -> None:
            raise RuntimeError("broken hook")

    broker.add_middleware(Broken())
    ran: list[int] = []

    @liteq.actor(broker=broker)
    def job(n: int) -> None:
        ran.append(n)

    job.send(7)
    with running_worker(broker, worker_threads=1):
        broker.join(job.queue_name, timeout=10000)
    assert ran == [7]
    assert "before_process_message failed" in caplog.text

