"""Results: one contract suite run over every backend (stub, SQLite, a real Redis), then the
middleware end to end over each of them."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import running_worker, wait_for

import liteq
from liteq.brokers.sqlite.db import Database
from liteq.brokers.stub import StubBroker
from liteq.common import current_millis
from liteq.errors import SkipMessage
from liteq.message import Message
from liteq.middleware import Middleware
from liteq.results import (
    Missing,
    ResultBackend,
    ResultFailure,
    ResultMissing,
    Results,
    ResultTimeout,
)
from liteq.results.backends import SqliteBackend, StubBackend
from liteq.store import SqliteBroker

#: The Redis logical database the results tests use, emptied after each test (result
#: keys are digests, so no key prefix could find them).
REDIS_RESULTS_DB = 15


def stub_backend(request: pytest.FixtureRequest) -> Iterator[ResultBackend]:
    yield StubBackend()


def sqlite_backend(request: pytest.FixtureRequest) -> Iterator[ResultBackend]:
    yield SqliteBackend(path=str(request.getfixturevalue("tmp_path") / "results.db"))


def redis_backend(request: pytest.FixtureRequest) -> Iterator[ResultBackend]:
    """A RedisBackend on the session's real server (tests/conftest.py)."""
    pytest.importorskip("redis", reason="redis-py is not installed (pip install 'liteq[redis]')")
    import redis

    from liteq.results.backends import RedisBackend

    client = redis.Redis.from_url(request.getfixturevalue("redis_url"), db=REDIS_RESULTS_DB)
    client.flushdb()
    try:
        yield RedisBackend(client=client)
    finally:
        client.flushdb()
        client.close()


#: Every result backend; each contract and middleware test below runs over all of them.
BACKENDS = {"stub": stub_backend, "sqlite": sqlite_backend, "redis": redis_backend}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Iterator[ResultBackend]:
    yield from BACKENDS[request.param](request)


def make_message(actor_name: str = "add", queue_name: str = "default") -> Message:
    return Message(queue_name=queue_name, actor_name=actor_name, args=(1, 2), kwargs={},
                   options={})


def is_missing(backend: ResultBackend, message: Message) -> bool:
    try:
        backend.get_result(message)
    except ResultMissing:
        return True
    return False


# The backend contract


@pytest.mark.parametrize("value", [3, "text", None, [1, "a"], {"k": [1.5, True]}])
def test_stored_result_is_returned(backend: ResultBackend, value: Any) -> None:
    message = make_message()
    backend.store_result(message, value, 60000)
    assert backend.get_result(message) == value
    assert backend.get_result(message, block=True, timeout=1000) == value


def test_missing_result_raises_result_missing(backend: ResultBackend) -> None:
    with pytest.raises(ResultMissing):
        backend.get_result(make_message())
    assert backend._get(backend.build_message_key(make_message())) is Missing


def test_blocking_get_times_out(backend: ResultBackend) -> None:
    started = time.monotonic()
    with pytest.raises(ResultTimeout):
        backend.get_result(make_message(), block=True, timeout=60)
    assert time.monotonic() - started >= 0.05


def test_blocking_get_wakes_when_result_arrives(backend: ResultBackend) -> None:
    message = make_message()
    results: list[Any] = []
    waiter = threading.Thread(
        target=lambda: results.append(backend.get_result(message, block=True, timeout=10000))
    )
    waiter.start()
    backend.store_result(message, 42, 60000)
    waiter.join(10)
    assert results == [42]


def test_stored_exception_raises_result_failure(backend: ResultBackend) -> None:
    message = make_message()
    backend.store_exception(message, ValueError("bad input"), 60000)
    for block in (False, True):
        with pytest.raises(ResultFailure) as info:
            backend.get_result(message, block=block)
        assert str(info.value) == "actor raised ValueError: bad input"
        assert info.value.orig_exc_type == "ValueError"
        assert info.value.orig_exc_msg == "bad input"


def test_results_expire_after_their_ttl(backend: ResultBackend) -> None:
    short, long = make_message(), make_message()
    backend.store_result(long, "kept", 60000)
    backend.store_result(short, "gone", 30)
    wait_for(lambda: is_missing(backend, short), timeout=5)
    assert backend.get_result(long) == "kept"


def test_a_ttl_is_in_milliseconds(backend: ResultBackend) -> None:
    """A 1000 ms TTL keeps a result readable at once and drops it within seconds
    (read as seconds, it would live for 16 minutes)."""
    message = make_message()
    backend.store_result(message, "brief", 1000)
    assert backend.get_result(message) == "brief"
    wait_for(lambda: is_missing(backend, message), timeout=5, interval=0.02)


def test_storing_again_replaces_the_result(backend: ResultBackend) -> None:
    message = make_message()
    backend.store_result(message, 1, 60000)
    backend.store_result(message, 2, 60000)
    assert backend.get_result(message) == 2


def test_message_key_is_dramatiqs(backend: ResultBackend) -> None:
    message = make_message(queue_name="emails.DQ")
    raw = f"liteq-results:emails:add:{message.message_id}"
    assert backend.build_message_key(message) == hashlib.md5(raw.encode()).hexdigest()


def test_namespaces_keep_results_apart(tmp_path: Any) -> None:
    path = str(tmp_path / "ns.db")
    first, second = SqliteBackend(path=path), SqliteBackend(path=path, namespace="other")
    message = make_message()
    first.store_result(message, "first", 60000)
    assert is_missing(second, message)
    assert SqliteBackend(path=path).get_result(message) == "first"


# The SQLite backend in particular


def test_sqlite_backend_purges_expired_rows(tmp_path: Any) -> None:
    path = str(tmp_path / "purge.db")
    backend = SqliteBackend(path=path)
    for _ in range(5):
        backend.store_result(make_message(), "old", 1)
    db = Database.shared(path)
    count = "SELECT count(*) FROM liteq_results"
    assert db.read(count)[0][0] == 5
    expires_at = db.read("SELECT max(expires_at) FROM liteq_results")[0][0]
    wait_for(lambda: current_millis() > expires_at)
    backend._next_purge = 0
    backend.store_result(make_message(), "new", 60000)
    assert db.read(count)[0][0] == 1


def test_sqlite_results_share_a_file_with_other_tables(tmp_path: Any) -> None:
    path = str(tmp_path / "shared.db")
    db = Database.shared(path)
    db.write(lambda conn: conn.execute("CREATE TABLE app (x INTEGER)"))
    backend = SqliteBackend(path=path)
    message = make_message()
    backend.store_result(message, "ok", 60000)
    assert backend.get_result(message) == "ok"
    tables = {row[0] for row in db.read("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"app", "liteq_results"} <= tables


# The middleware, end to end


def make_broker(backend: ResultBackend, **results_options: Any) -> StubBroker:
    broker = StubBroker()
    broker.add_middleware(Results(backend=backend, **results_options))
    return broker


def fast_retries(broker: StubBroker) -> None:
    for m in broker.middleware:
        if type(m).__name__ == "Retries":
            m.min_backoff, m.max_backoff = 1, 10  # type: ignore[attr-defined]


def test_actor_result_is_stored(backend: ResultBackend) -> None:
    broker = make_broker(backend)

    @liteq.actor(broker=broker, store_results=True)
    def add(x: int, y: int) -> int:
        return x + y

    message = add.send(2, 3)
    with running_worker(broker, worker_threads=2):
        assert message.get_result(backend=backend, block=True, timeout=10000) == 5
    assert broker.get_results_backend() is backend


def test_message_get_result_uses_the_global_broker(stub_broker: StubBroker) -> None:
    backend = StubBackend()
    stub_broker.add_middleware(Results(backend=backend))

    @liteq.actor(store_results=True)
    def double(x: int) -> int:
        return 2 * x

    message = double.send(21)
    with running_worker(stub_broker, worker_threads=2):
        assert message.get_result(block=True, timeout=10000) == 42


def test_failure_is_stored_only_after_retries_are_exhausted(backend: ResultBackend) -> None:
    broker = make_broker(backend)
    fast_retries(broker)
    calls: list[int] = []

    @liteq.actor(broker=broker, store_results=True, max_retries=2)
    def fail() -> None:
        calls.append(1)
        raise RuntimeError(f"attempt {len(calls)}")

    message = fail.send()
    with running_worker(broker, worker_threads=2):
        with pytest.raises(ResultFailure) as info:
            message.get_result(backend=backend, block=True, timeout=10000)
    assert len(calls) == 3
    assert info.value.orig_exc_type == "RuntimeError"
    assert info.value.orig_exc_msg == "attempt 3"


def test_results_are_not_stored_without_store_results(backend: ResultBackend) -> None:
    broker = make_broker(backend)

    @liteq.actor(broker=broker)
    def plain() -> int:
        return 1

    @liteq.actor(broker=broker, store_results=True)
    def stored() -> int:
        return 2

    first, second = plain.send(), stored.send()
    with running_worker(broker, worker_threads=2):
        broker.join("default", timeout=10000)
    assert is_missing(backend, first)
    assert backend.get_result(second) == 2


def test_message_options_override_actor_options(backend: ResultBackend) -> None:
    broker = make_broker(backend, store_results=True)

    @liteq.actor(broker=broker)
    def value() -> str:
        return "v"

    default, opted_out = value.send(), value.send_with_options(store_results=False)
    with running_worker(broker, worker_threads=2):
        broker.join("default", timeout=10000)
    assert backend.get_result(default) == "v"
    assert is_missing(backend, opted_out)


def test_result_ttl_option_is_honoured(backend: ResultBackend) -> None:
    broker = make_broker(backend)

    @liteq.actor(broker=broker, store_results=True, result_ttl=30)
    def brief() -> int:
        return 1

    message = brief.send()
    with running_worker(broker, worker_threads=2):
        broker.join("default", timeout=10000)
    wait_for(lambda: is_missing(backend, message), timeout=5)


def test_result_ttl_option_is_in_milliseconds(backend: ResultBackend) -> None:
    broker = make_broker(backend)

    @liteq.actor(broker=broker, store_results=True, result_ttl=1000)
    def brief() -> str:
        return "brief"

    message = brief.send()
    with running_worker(broker, worker_threads=2):
        assert message.get_result(backend=backend, block=True, timeout=10000) == "brief"
    wait_for(lambda: is_missing(backend, message), timeout=5, interval=0.02)


def test_skipped_message_stores_none(backend: ResultBackend) -> None:
    class SkipAll(Middleware):
        def before_process_message(self, broker: Any, message: Any) -> None:
            raise SkipMessage("skipped")

    broker = make_broker(backend)
    broker.add_middleware(SkipAll())
    ran: list[int] = []

    @liteq.actor(broker=broker, store_results=True)
    def never() -> int:
        ran.append(1)
        return 1

    message = never.send()
    with running_worker(broker, worker_threads=2):
        assert message.get_result(backend=backend, block=True, timeout=10000) is None
    assert ran == []


def test_results_without_backend_on_a_non_sqlite_broker_is_an_error() -> None:
    broker = StubBroker()

    @liteq.actor(broker=broker)
    def task() -> None: ...

    with pytest.raises(ValueError, match="no backend and is on a StubBroker"):
        broker.add_middleware(Results())

    results = Results()
    other = StubBroker()
    other.add_middleware(results)
    with pytest.raises(ValueError, match="no backend and has not seen its broker"):
        results.backend  # noqa: B018

    @liteq.actor(broker=other)
    def other_task() -> None: ...

    with pytest.raises(ValueError, match="no backend and is on a StubBroker"):
        results.backend  # noqa: B018


def test_results_without_backend_uses_the_sqlite_brokers_file(tmp_path: Any) -> None:
    path = str(tmp_path / "broker.db")
    broker = SqliteBroker(path)
    results = Results()
    broker.add_middleware(results)

    @liteq.actor(broker=broker, store_results=True)
    def task() -> str:
        return "in the broker file"

    message = task.send()
    try:
        with running_worker(broker, worker_threads=2):
            assert message.get_result(backend=results.backend, block=True) == "in the broker file"
    finally:
        broker.close()
    assert isinstance(results.backend, SqliteBackend)
    assert SqliteBackend(path=path).get_result(message) == "in the broker file"
