"""The ``Results`` middleware: stores what actors return (or raise) in a result backend.

A result is stored on success, ``None`` on a skip that did not fail, and the exception
only when a failed message is nacked, i.e. after its retries are exhausted, so a
blocking ``get_result`` waits through the retries.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ..middleware.middleware import Middleware
from ..options import check_defaults, owned_by, resolve
from .backend import ResultBackend

if TYPE_CHECKING:
    from ..broker import Broker

#: How long results are kept unless an actor or message says otherwise (ms).
DEFAULT_RESULT_TTL = 600000


class Results(Middleware):
    """Stores results of actors with ``store_results=True`` for ``result_ttl`` ms.

    Without a ``backend``, results go to the SQLite broker's own file; on any other
    broker a backend must be given.
    """

    def __init__(
        self,
        *,
        backend: ResultBackend | None = None,
        store_results: bool = False,
        result_ttl: int | None = None,
    ) -> None:
        self._backend = backend
        self._broker: Broker | None = None
        self._lock = threading.Lock()
        self.store_results = store_results
        self.result_ttl = DEFAULT_RESULT_TTL if result_ttl is None else result_ttl
        check_defaults(store_results=store_results, result_ttl=self.result_ttl)

    @property
    def actor_options(self) -> set[str]:
        return owned_by("Results")

    @property
    def backend(self) -> ResultBackend:
        """The backend; built on first use from the SQLite broker this middleware is on."""
        if self._backend is None:
            with self._lock:
                if self._backend is None:
                    self._backend = _default_backend(self._broker)
        return self._backend

    def _options(self, broker: Broker, message: Any) -> tuple[bool, int]:
        """``(store_results, result_ttl)``: the message's value, else the actor's, else ours."""
        actor = broker.actors.get(message.actor_name)
        if actor is None:
            return False, 0
        options = message.options
        store = resolve("store_results", options, actor.options, self.store_results)
        ttl = resolve("result_ttl", options, actor.options, self.result_ttl)
        return bool(store), ttl

    def after_declare_actor(self, broker: Broker, actor: Any) -> None:
        if self._broker is None:
            self._broker = broker
        if self._backend is None:
            self.backend  # noqa: B018 - resolve now, so a missing backend is reported early

    def after_process_message(
        self, broker: Broker, message: Any, *, result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        store, ttl = self._options(broker, message)
        if store and exception is None:
            self.backend.store_result(message, result, ttl)

    def after_skip_message(self, broker: Broker, message: Any) -> None:
        store, ttl = self._options(broker, message)
        if store and not message.failed:
            self.backend.store_result(message, None, ttl)

    def after_nack(self, broker: Broker, message: Any) -> None:
        store, ttl = self._options(broker, message)
        if store and message.failed:
            exception = message._exception or Exception("unknown")
            self.backend.store_exception(message, exception, ttl)


def _default_backend(broker: Broker | None) -> ResultBackend:
    """A ``SqliteBackend`` on ``broker``'s file, or a ``ValueError`` saying what to pass."""
    if broker is not None and getattr(broker, "is_sqlite", False) and getattr(broker, "path", None):
        from .backends.sqlite import SqliteBackend

        return SqliteBackend(path=broker.path,  # type: ignore[attr-defined]
                             durable=getattr(broker, "durable", False))
    if broker is None:
        problem = "has not seen its broker yet (it does when an actor is declared)"
    else:
        problem = f"is on a {type(broker).__name__}, and only a SQLite broker provides one"
    raise ValueError(
        f"Results() was given no backend and {problem}. Pass one, e.g. "
        "Results(backend=SqliteBackend(path=...)), RedisBackend(...) or StubBackend() "
        "from liteq.results.backends"
    )
