"""The result-backend contract: keys, (un)wrapping of results and exceptions, blocking waits.

Subclasses only store and fetch encoded values by key (``_get``/``_store``); they may
override ``_wait`` when their store can block more cheaply than polling.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from ..common import q_name
from ..encoder import Encoder, get_encoder
from ..errors import ResultFailure, ResultMissing, ResultTimeout
from ..message import Message

#: How long a blocking ``get_result`` waits when given no timeout (ms).
DEFAULT_TIMEOUT = 10000

#: The type tag of a stored exception; Dramatiq's tag is read too, so either side's
#: results can be consumed by the other on a shared Redis.
EXCEPTION_TAG = "liteq.results.Result"
_EXCEPTION_TAGS = frozenset({EXCEPTION_TAG, "dramatiq.results.Result"})


class _MissingType:
    """The type of :data:`Missing`."""

    def __repr__(self) -> str:
        return "Missing"


#: Returned by ``_get``/``_wait`` when there is no result (``None`` is a valid result).
Missing: Any = _MissingType()


class ResultBackend:
    """Stores actors' return values (or their exceptions) by message for later retrieval."""

    #: First and longest pause (seconds) of the polling ``_wait``.
    poll_start = 0.001
    poll_max = 0.1

    def __init__(self, *, namespace: str = "liteq-results", encoder: Encoder | None = None) -> None:
        self.namespace = namespace
        self.encoder = encoder or get_encoder()

    def get_result(
        self, message: Message[Any], *, block: bool = False, timeout: int | None = None
    ) -> Any:
        """The result of ``message``; with ``block``, wait up to ``timeout`` ms (default 10 s).

        Raises ``ResultMissing`` (not blocking, nothing stored yet), ``ResultTimeout``
        (blocking, nothing arrived in time) or ``ResultFailure`` (the actor raised).
        """
        if timeout is None:
            timeout = DEFAULT_TIMEOUT
        key = self.build_message_key(message)
        if block:
            data = self._wait(key, timeout)
            if data is Missing:
                raise ResultTimeout(
                    f"no result for message {message.message_id} ({message}) "
                    f"within {timeout} ms"
                )
        else:
            data = self._get(key)
            if data is Missing:
                raise ResultMissing(f"no result for message {message.message_id} ({message})")
        return self.unwrap_result(data)

    def store_result(self, message: Message[Any], result: Any, ttl: int) -> None:
        """Keep ``result`` of ``message`` for ``ttl`` ms."""
        self._store(self.build_message_key(message), result, ttl)

    def store_exception(self, message: Message[Any], exception: BaseException, ttl: int) -> None:
        """Keep the type and text of ``exception`` (not the object) for ``ttl`` ms."""
        wrapped = {
            "__t": EXCEPTION_TAG,
            "exn": {"type": type(exception).__name__, "msg": str(exception)},
        }
        self._store(self.build_message_key(message), wrapped, ttl)

    def build_message_key(self, message: Message[Any]) -> str:
        """The storage key of ``message``'s result (Dramatiq's key, so stores can be shared)."""
        name = f"{self.namespace}:{q_name(message.queue_name)}:"
        name += f"{message.actor_name}:{message.message_id}"
        return hashlib.md5(name.encode("utf-8")).hexdigest()

    def unwrap_result(self, data: Any) -> Any:
        """Turn a stored value back into a result, raising ``ResultFailure`` for exceptions."""
        if isinstance(data, dict) and data.get("__t") in _EXCEPTION_TAGS:
            exn = data.get("exn") or {}
            exc_type, exc_msg = str(exn.get("type", "")), str(exn.get("msg", ""))
            raise ResultFailure(f"actor raised {exc_type}: {exc_msg}", exc_type, exc_msg)
        return data

    def _wait(self, key: str, timeout: int) -> Any:
        """Block up to ``timeout`` ms for ``key``; return its value or ``Missing``.

        This default polls ``_get``, pausing ``poll_start`` at first and doubling the
        pause up to ``poll_max``.
        """
        deadline = time.monotonic() + timeout / 1000
        pause = self.poll_start
        while True:
            data = self._get(key)
            if data is not Missing:
                return data
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return Missing
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, self.poll_max)

    def _get(self, key: str) -> Any:
        """The decoded value stored under ``key``, or ``Missing``."""
        raise NotImplementedError

    def _store(self, key: str, value: Any, ttl: int) -> None:
        """Store ``value`` (encoded with ``self.encoder``) under ``key`` for ``ttl`` ms."""
        raise NotImplementedError
