"""Retries: re-enqueue failed messages with exponential backoff, so transient errors heal."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..common import compute_backoff, current_millis
from ..errors import Retry
from ..options import check_defaults, owned_by, resolve
from .middleware import Middleware

if TYPE_CHECKING:
    from ..broker import Broker, MessageProxy

logger = logging.getLogger("liteq.middleware.Retries")

#: Backoff is never longer than seven days, whatever ``max_backoff`` says.
MAX_BACKOFF_CAP = 7 * 24 * 60 * 60 * 1000


class Retries(Middleware):
    """Retries a message whose actor raised, up to ``max_retries`` times (4 runs for 3).

    ``throws`` (an exception class or tuple) fails the message at once; ``retry_when(retries,
    exception)``, read from the actor or this middleware only, replaces the count check.
    A message that is not retried is failed, so it goes to the dead letters, and its
    ``on_retry_exhausted`` actor (if any) is sent ``(message_data, {"retries", "max_retries"})``.
    """

    def __init__(
        self,
        *,
        max_retries: int | None = 20,
        min_backoff: int | None = None,
        max_backoff: int | None = None,
        retry_when: Callable[[int, BaseException], bool] | None = None,
    ) -> None:
        self.max_retries = max_retries
        self.min_backoff = 15000 if min_backoff is None else min_backoff
        self.max_backoff = 604800000 if max_backoff is None else max_backoff
        self.retry_when = retry_when
        check_defaults(max_retries=max_retries, min_backoff=self.min_backoff,
                       max_backoff=self.max_backoff, retry_when=retry_when)

    @property
    def actor_options(self) -> set[str]:
        return owned_by("Retries")

    def after_process_message(
        self, broker: Broker, message: MessageProxy, *, result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is None:
            return
        actor = broker.actors.get(message.actor_name)
        if actor is None or message.failed:
            message.fail()
            return

        options, actor_options = message.options, actor.options
        throws = resolve("throws", options, actor_options)
        if throws and isinstance(exception, throws):
            logger.info("%s raised %s, which it throws; not retrying message %s",
                        actor.actor_name, type(exception).__name__, message.message_id)
            message.fail()
            return

        retries = options.setdefault("retries", 0)
        options["retries"] += 1
        options["traceback"] = traceback.format_exc(limit=30)
        options["requeue_timestamp"] = current_millis()

        max_retries = resolve("max_retries", options, actor_options, self.max_retries)
        retry_when = resolve("retry_when", options, actor_options, self.retry_when)
        if retry_when is not None:
            give_up = not retry_when(retries, exception)
        else:
            give_up = max_retries is not None and retries >= max_retries
        if give_up:
            logger.warning("giving up on message %s for %s after %d retries",
                           message.message_id, actor.actor_name, retries)
            message.fail()
            exhausted = resolve("on_retry_exhausted", options, actor_options)
            if exhausted:
                name = exhausted if isinstance(exhausted, str) else exhausted.actor_name
                broker.get_actor(name).send(
                    message.asdict(), {"retries": retries, "max_retries": max_retries}
                )
            return

        if isinstance(exception, Retry) and exception.delay is not None:
            delay = exception.delay
        else:
            min_backoff = resolve("min_backoff", options, actor_options, self.min_backoff)
            max_backoff = min(resolve("max_backoff", options, actor_options, self.max_backoff),
                              MAX_BACKOFF_CAP)
            _, delay = compute_backoff(retries, factor=min_backoff, max_backoff=max_backoff)
        logger.info("retrying message %s for %s in %d ms", message.message_id,
                    actor.actor_name, delay)
        broker.enqueue(message._message.copy(), delay=delay)
