"""Composing messages: ``pipeline`` (each result feeds the next) and ``group`` (run together).

Both need a result backend to be waited on; group completion callbacks also need the
``GroupCallbacks`` middleware on the broker.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from .broker import Broker, get_broker
from .errors import ResultMissing
from .message import Message

if TYPE_CHECKING:
    from .results.backend import ResultBackend


def _deadline(timeout: int | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout / 1000


def _remaining(deadline: float | None) -> int | None:
    """Milliseconds left until ``deadline`` (None: no deadline)."""
    if deadline is None:
        return None
    return max(0, int((deadline - time.monotonic()) * 1000))


class pipeline:  # noqa: N801 - Dramatiq's name
    """Messages run one after another, each getting the previous result as a last argument.

    Nested pipelines are flattened; every message is copied, so the originals are left as
    they were.
    """

    messages: list[Message[Any]]

    def __init__(self, children: Iterable[Message[Any] | pipeline], *,
                 broker: Broker | None = None) -> None:
        self.broker = broker or get_broker()
        flat: list[Message[Any]] = []
        for child in children:
            if isinstance(child, pipeline):
                flat.extend(child.messages)
            else:
                flat.append(child)
        if not flat:
            raise ValueError("a pipeline needs at least one message")
        # Built from the tail so each ``pipe_target`` holds its successor's final options.
        messages: list[Message[Any]] = [flat[-1].copy()]
        for message in reversed(flat[:-1]):
            messages.append(message.copy(options={"pipe_target": messages[-1].asdict()}))
        messages.reverse()
        self.messages = messages

    def __len__(self) -> int:
        return len(self.messages)

    def __or__(self, other: Message[Any] | pipeline) -> pipeline:
        return pipeline([self, other], broker=self.broker)

    def __str__(self) -> str:
        return "pipeline([" + ", ".join(str(m) for m in self.messages) + "])"

    def _with_tail_options(self, **options: Any) -> pipeline:
        """A copy whose last message carries ``options`` too (for group callbacks)."""
        return pipeline([*self.messages[:-1], self.messages[-1].copy(options=options)],
                        broker=self.broker)

    @property
    def _backend(self) -> ResultBackend:
        return self.broker.get_results_backend()

    def run(self, *, delay: int | None = None) -> pipeline:
        """Enqueue the first message, after the larger of ``delay`` and its ``delay`` option."""
        first = self.messages[0]
        delays = [d for d in (delay, first.options.get("delay")) if d is not None]
        self.broker.enqueue(first, delay=max(delays) if delays else None)
        return self

    @property
    def completed(self) -> bool:
        """True once the last message has a result (``ResultFailure`` if it failed)."""
        try:
            self.messages[-1].get_result(backend=self._backend)
        except ResultMissing:
            return False
        return True

    @property
    def completed_count(self) -> int:
        """How many messages, from the first on, have a result."""
        backend = self._backend
        for count, message in enumerate(self.messages):
            try:
                message.get_result(backend=backend)
            except ResultMissing:
                return count
        return len(self.messages)

    def get_result(self, *, block: bool = False, timeout: int | None = None) -> Any:
        """The last message's result; with ``block``, wait up to ``timeout`` ms."""
        return self.messages[-1].get_result(backend=self._backend, block=block, timeout=timeout)

    def get_results(self, *, block: bool = False, timeout: int | None = None) -> Iterator[Any]:
        """Every message's result in order; ``timeout`` ms bounds the whole iteration."""
        backend = self._backend
        deadline = _deadline(timeout)
        for message in self.messages:
            yield message.get_result(backend=backend, block=block, timeout=_remaining(deadline))


class group:  # noqa: N801 - Dramatiq's name
    """Messages, pipelines or groups that run in parallel, optionally with callbacks that are
    enqueued once every member has succeeded."""

    def __init__(
        self, children: Iterable[Message[Any] | pipeline | group], *, broker: Broker | None = None
    ) -> None:
        self.children: list[Message[Any] | pipeline | group] = list(children)
        self.broker = broker or get_broker()
        self.completion_callbacks: list[dict[str, Any]] = []

    def __len__(self) -> int:
        return len(self.children)

    def __str__(self) -> str:
        return "group([" + ", ".join(str(c) for c in self.children) + "])"

    def add_completion_callback(self, message: Message[Any]) -> None:
        """Enqueue ``message`` once every member has succeeded (needs ``GroupCallbacks``)."""
        self.completion_callbacks.append(message.asdict())

    @property
    def _backend(self) -> ResultBackend:
        return self.broker.get_results_backend()

    def run(self, *, delay: int | None = None) -> group:
        """Enqueue every member, each after ``delay`` ms."""
        children: list[Message[Any] | pipeline | group] = self.children
        if self.completion_callbacks:
            children = self._prepare_callbacks()
        for child in children:
            if isinstance(child, Message):
                self.broker.enqueue(child, delay=delay)
            else:
                child.run(delay=delay)
        return self

    def _prepare_callbacks(self) -> list[Message[Any] | pipeline | group]:
        """Create this run's barrier and return the members tagged with it."""
        from .middleware.group_callbacks import GroupCallbacks
        from .rate_limits import Barrier

        middleware = next(
            (m for m in self.broker.middleware if isinstance(m, GroupCallbacks)), None
        )
        if middleware is None:
            raise RuntimeError(
                "group completion callbacks need the GroupCallbacks middleware on the broker: "
                "broker.add_middleware(GroupCallbacks(rate_limiter_backend))"
            )
        if any(isinstance(child, group) for child in self.children):
            raise NotImplementedError("groups nested in a group with callbacks are not supported")
        group_id = str(uuid4())
        barrier = Barrier(middleware.rate_limiter_backend, group_id, ttl=middleware.barrier_ttl)
        barrier.create(len(self.children))
        options = {
            "group_completion_uuid": group_id,
            "group_completion_callbacks": self.completion_callbacks,
        }
        return [
            child._with_tail_options(**options) if isinstance(child, pipeline)
            else child.copy(options=options)
            for child in self.children
            if not isinstance(child, group)  # refused above
        ]

    @property
    def completed(self) -> bool:
        """True once every member has a result (``ResultFailure`` if one failed)."""
        return self.completed_count == len(self.children)

    @property
    def completed_count(self) -> int:
        """How many members have a result."""
        backend = self._backend
        count = 0
        for child in self.children:
            if isinstance(child, Message):
                try:
                    child.get_result(backend=backend)
                except ResultMissing:
                    continue
                count += 1
            elif child.completed:
                count += 1
        return count

    def get_results(self, *, block: bool = False, timeout: int | None = None) -> Iterator[Any]:
        """Each member's result in order (a list for a nested group); ``timeout`` ms bounds
        the whole iteration."""
        backend = self._backend
        deadline = _deadline(timeout)
        for child in self.children:
            remaining = _remaining(deadline)
            if isinstance(child, group):
                yield list(child.get_results(block=block, timeout=remaining))
            elif isinstance(child, pipeline):
                yield child.get_result(block=block, timeout=remaining)
            else:
                yield child.get_result(backend=backend, block=block, timeout=remaining)

    def wait(self, *, timeout: int | None = None) -> None:
        """Block until every member has a result; ``ResultTimeout`` after ``timeout`` ms."""
        for _ in self.get_results(block=True, timeout=timeout):
            pass
