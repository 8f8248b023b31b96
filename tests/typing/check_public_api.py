"""User code of liteq's public API, checked by mypy with strict flags and never run.

``scripts/test`` runs mypy on it (and tests/unit/test_typing.py does from the suite): each
``assert_type`` states what mypy must infer, and each ``# type: ignore[code]`` marks a
call that must be rejected (``warn_unused_ignores`` fails the check if it is accepted).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from typing_extensions import assert_type

import liteq
from liteq.brokers.stub import StubBroker
from liteq.middleware import CurrentMessage, Middleware
from liteq.results import Results
from liteq.results.backends import StubBackend

broker: liteq.Broker = StubBroker()
broker.add_middleware(Results(backend=StubBackend()))
broker.add_middleware(CurrentMessage())
liteq.set_broker(broker)
assert_type(liteq.get_broker(), liteq.Broker)


# -- the decorator, bare and with options, on def and async def ----------------------------
@liteq.actor
def add(x: int, y: int) -> int:
    return x + y


@liteq.actor(queue_name="words", max_retries=3, store_results=True)
def shout(word: str) -> str:
    return word.upper()


@liteq.actor
async def fetch(url: str) -> bytes:
    return url.encode()


@liteq.actor(store_results=True, time_limit=5000)
async def count(text: str, *, sep: str = " ") -> int:
    return len(text.split(sep))


typed_add: liteq.Actor[[int, int], int] = add
typed_shout: liteq.Actor[[str], str] = shout
typed_fetch: liteq.Actor[[str], bytes] = fetch
assert_type(add.send(1, 2), liteq.Message[int])
assert_type(add.send(1, 2).get_result(block=True, timeout=1000), int)
assert_type(add.send_with_options(args=(1, 2), delay=100).get_result(), int)
assert_type(add(1, 2), int)
assert_type(shout.message("hi").get_result(backend=StubBackend()), str)

# The async actor: its messages' results and a direct call are the coroutine's result.
assert_type(fetch.send("https://example.com/").get_result(block=True), bytes)
assert_type(count.send("a b", sep=" ").get_result(), int)
assert_type(fetch("https://example.com/"), bytes)

add.send("1", 2)  # type: ignore[arg-type]
add.send(1)  # type: ignore[call-arg]
shout.send(word=3)  # type: ignore[arg-type]
count.send("a", sep=1)  # type: ignore[arg-type]
not_bytes: str = fetch.send("a").get_result()  # type: ignore[assignment]


# -- composition -----------------------------------------------------------------------------
pipe = add.message(1, 2) | shout.message("x")
assert_type(pipe, liteq.pipeline)
assert_type(pipe | fetch.message("u"), liteq.pipeline)
assert_type(pipe.run(delay=10), liteq.pipeline)
assert_type(pipe.completed, bool)
assert_type(pipe.get_result(block=True, timeout=100), Any)
everything = liteq.group([add.message(1, 2), shout.message("y"), pipe])
assert_type(everything.run(), liteq.group)
assert_type(everything.completed_count, int)
results: Iterator[Any] = everything.get_results(block=True, timeout=100)
everything.wait(timeout=100)
everything.add_completion_callback(add.message(3, 4))


# -- messages --------------------------------------------------------------------------------
message = add.message(1, 2)
assert_type(message.message_id, str)
assert_type(message.options, dict[str, Any])
assert_type(message.encode(), bytes)
assert_type(liteq.Message.decode(message.encode()), liteq.Message[Any])
assert_type(message.asdict(), dict[str, Any])


# -- class-based actors, middleware and errors ------------------------------------------------
class Greet(liteq.GenericActor):
    class Meta:
        queue_name = "greetings"

    def perform(self, name: str) -> None:
        print(f"hello {name}")


class Tally(Middleware):
    """A user middleware overriding hooks with their declared signatures."""

    def after_process_message(self, broker: liteq.Broker, message: liteq.MessageProxy, *,
                              result: Any = None, exception: BaseException | None = None
                              ) -> None:
        print(message.message_id, result, exception)


broker.add_middleware(Tally())


def flaky() -> None:
    raise liteq.Retry("try again", delay=1000)


worker = liteq.Worker(broker, worker_threads=2)
worker.start()
worker.stop(timeout=1000)
broker.join("default", timeout=1000, fail_fast=True)
sqlite: liteq.Broker = liteq.SqliteBroker("liteq.db", lease_ms=30000)
