"""The Lua script behind every change the Redis broker makes (``script.lua``), and its
Python call.

One script runs a list of operations atomically, so that a worker acknowledges what it
finished and claims its next batch in one round trip.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, Any

from ...common import current_millis

if TYPE_CHECKING:
    from redis.commands.core import Script

#: The dispatch script (written for liteq), shipped beside this module as ``script.lua``;
#: see its header for the operations.
SCRIPT = resources.files(__package__).joinpath("script.lua").read_text(encoding="utf-8")


def run(script: Script, namespace: str, worker: str, heartbeat_timeout: int,
        dead_message_ttl: int, ops: list[Any]) -> list[Any]:
    """Run ``ops`` in one call of ``script`` (registered ``SCRIPT``) as ``worker`` ('' for
    none); returns the (queue, id, body) triples that its fetches found, flattened."""
    found: list[Any] = script(
        keys=[namespace],
        args=[current_millis(), worker, heartbeat_timeout, dead_message_ttl, "0", *ops],
    )
    return found
