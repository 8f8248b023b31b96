"""Callbacks: send a message to another actor when an actor succeeds or fails."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..options import owned_by, resolve
from .middleware import Middleware

if TYPE_CHECKING:
    from ..broker import Broker, MessageProxy


class Callbacks(Middleware):
    """Runs ``on_success`` / ``on_failure`` callback actors, named in message or actor options.

    ``on_success`` receives ``(message_data, result)``. ``on_failure`` receives
    ``(message_data, {"type": ..., "message": ...})`` after every failed attempt, including
    ones that will be retried; Retries has already bumped ``options["retries"]`` by then.
    """

    @property
    def actor_options(self) -> set[str]:
        return owned_by("Callbacks")

    def after_process_message(
        self, broker: Broker, message: MessageProxy, *, result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        actor = broker.actors.get(message.actor_name)
        if actor is None:
            return
        if exception is None:
            name = resolve("on_success", message.options, actor.options)
            payload: Any = result
        else:
            name = resolve("on_failure", message.options, actor.options)
            payload = {"type": type(exception).__name__, "message": str(exception)}
        if name:
            target = broker.get_actor(_actor_name(name))
            target.send(message.asdict(), payload)


def _actor_name(target: Any) -> str:
    """Callbacks may be given as actors in actor options; messages carry names."""
    return target if isinstance(target, str) else target.actor_name
