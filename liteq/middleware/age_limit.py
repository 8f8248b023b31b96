"""AgeLimit: drop messages that waited too long, since stale work is often worse than none."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..common import current_millis
from ..errors import SkipMessage
from ..options import check_defaults, owned_by, resolve
from .middleware import Middleware

if TYPE_CHECKING:
    from ..broker import Broker, MessageProxy

logger = logging.getLogger("liteq.middleware.AgeLimit")


class AgeLimit(Middleware):
    """Fails and skips a message older than ``max_age`` ms (None: no limit).

    The age counts from ``message_timestamp``, which retries keep, so it is measured
    from the first enqueue. A message or actor value of 0 falls through to the next level.
    """

    def __init__(self, *, max_age: int | None = None) -> None:
        check_defaults(max_age=max_age)
        self.max_age = max_age

    @property
    def actor_options(self) -> set[str]:
        return owned_by("AgeLimit")

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        actor = broker.get_actor(message.actor_name)
        max_age = resolve("max_age", message.options, actor.options, self.max_age)
        if not max_age:
            return
        age = current_millis() - message.message_timestamp
        if age >= max_age:
            logger.warning(
                "message %s for %s is %d ms old, past its max_age of %d ms; skipping it",
                message.message_id, message.actor_name, age, max_age,
            )
            message.fail()
            raise SkipMessage("Message age limit exceeded")
