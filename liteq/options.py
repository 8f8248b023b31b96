"""Every actor and message option, declared once: type and range, owner, where it may be
set, and how it is resolved. Validation (actor declaration, send, decode) and the
resolution in every middleware read this table, so an option cannot mean two things.

Resolution (:func:`resolve`) keeps Dramatiq's rule per option: ``OR`` is
``message.get(name) or actor.get(name, default)`` (a falsy message value, such as a
``time_limit`` of 0, falls through to the actor); ``GET`` is
``message.get(name, actor.get(name, default))`` (any message value wins, even 0);
``FIRST_SET`` takes the first value that is not None; ``ACTOR`` reads the actor only;
``MESSAGE`` the message only.
"""

from __future__ import annotations

import difflib
import enum
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .errors import InvalidOption

#: SQLite stores integers as signed 64-bit: priorities, ETAs and the like must fit.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

ENVELOPE_FIELDS = frozenset((
    "queue_name", "actor_name", "args", "kwargs", "options", "message_id", "message_timestamp",
))

#: An empty mapping, for resolving options of messages that have no actor at hand.
NO_OPTIONS: Mapping[str, Any] = MappingProxyType({})


class Rule(enum.Enum):
    """How a middleware picks an option's value from the message, the actor and its default."""

    OR = "message `or` actor, else default (a falsy message value falls through)"
    GET = "message, else actor, else default (any value set wins, even 0)"
    FIRST_SET = "message, else actor, else default (None falls through)"
    ACTOR = "actor, else default (a message value is not read)"
    MESSAGE = "message only"


@dataclass(frozen=True)
class Option:
    """One option: who owns it, what values it takes, where it may be set, how it resolves."""

    name: str
    owner: str  # the middleware class that reads it, or "broker"
    accepts: str  # the type and range, in words (used in error messages and the README)
    check: Callable[[Any], bool]
    rule: Rule
    on_actor: bool  # may be given to @actor(...)
    at_send: bool  # may be given to send_with_options / message_with_options
    written_by: str = ""  # who writes it into messages, if liteq itself does

    def validate(self, value: Any) -> Any:
        """Return ``value``, or raise ``InvalidOption`` naming the option and the value."""
        if not self.check(value):
            raise InvalidOption(
                f"option {self.name!r} must be {self.accepts} ({self.owner}), "
                f"got {show(value)}"
            )
        return value


def show(value: Any) -> str:
    """``repr(value)``, cut to 200 characters for error messages."""
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int(low: int, high: int = INT64_MAX, *, none: bool = False) -> Callable[[Any], bool]:
    return lambda v: (none and v is None) or (_is_int(v) and low <= v <= high)


def _ms(*, none: bool = False, inf: bool = False) -> Callable[[Any], bool]:
    """Milliseconds: an int or float from 0 to INT64_MAX (infinity only when ``inf``)."""

    def check(v: Any) -> bool:
        if none and v is None:
            return True
        if not (_is_int(v) or isinstance(v, float)) or v != v or v < 0:
            return False
        return v <= INT64_MAX or (inf and math.isinf(v))

    return check


def _bool(v: Any) -> bool:
    return v is None or isinstance(v, bool)


def _str(v: Any) -> bool:
    return isinstance(v, str)


def _actor_ref(v: Any) -> bool:
    return v is None or isinstance(v, str) or isinstance(getattr(v, "actor_name", None), str)


def _exception_types(v: Any) -> bool:
    types = v if isinstance(v, tuple) else (v,)
    return v is None or all(isinstance(t, type) and issubclass(t, BaseException) for t in types)


def _callable(v: Any) -> bool:
    return v is None or callable(v)


def _envelope(v: Any) -> bool:
    return isinstance(v, dict) and v.keys() == ENVELOPE_FIELDS


def _envelopes(v: Any) -> bool:
    return isinstance(v, list) and all(_envelope(e) for e in v)


def _table(*options: Option) -> dict[str, Option]:
    return {o.name: o for o in options}


_ACTOR_NAME = "an actor or an actor name"

#: The table. Later features add their options here and nowhere else.
OPTIONS: Mapping[str, Option] = MappingProxyType(_table(
    Option("max_retries", "Retries", "an int from 0 (None: no limit)", _int(0, none=True),
           Rule.GET, True, True),
    Option("min_backoff", "Retries", "milliseconds (a number >= 0)", _ms(), Rule.GET, True, True),
    Option("max_backoff", "Retries", "milliseconds (a number >= 0)", _ms(), Rule.GET, True, True),
    Option("retry_when", "Retries", "a callable(retries, exception) -> bool", _callable,
           Rule.ACTOR, True, False),
    Option("throws", "Retries", "an exception class or a tuple of them", _exception_types,
           Rule.OR, True, True),
    Option("on_retry_exhausted", "Retries", _ACTOR_NAME, _actor_ref, Rule.OR, True, True),
    Option("max_age", "AgeLimit", "milliseconds (a number >= 0; 0 or None: no limit)",
           _ms(none=True), Rule.OR, True, True),
    Option("time_limit", "TimeLimit", "milliseconds (a number >= 0, or float('inf'))",
           _ms(none=True, inf=True), Rule.OR, True, True),
    Option("notify_shutdown", "ShutdownNotifications", "a bool", _bool, Rule.FIRST_SET,
           True, True),
    Option("on_success", "Callbacks", _ACTOR_NAME, _actor_ref, Rule.OR, True, True),
    Option("on_failure", "Callbacks", _ACTOR_NAME, _actor_ref, Rule.OR, True, True),
    Option("pipe_target", "Pipelines", "a message envelope (Message.asdict())",
           lambda v: v is None or _envelope(v), Rule.MESSAGE, True, True, "pipeline"),
    Option("pipe_ignore", "Pipelines", "a bool", _bool, Rule.OR, True, True),
    Option("group_completion_uuid", "GroupCallbacks", "a str", _str, Rule.MESSAGE,
           False, True, "group.run"),
    Option("group_completion_callbacks", "GroupCallbacks", "a list of message envelopes",
           _envelopes, Rule.MESSAGE, False, True, "group.run"),
    Option("store_results", "Results", "a bool", _bool, Rule.GET, True, True),
    Option("result_ttl", "Results", "milliseconds (an int >= 0)", _int(0), Rule.GET,
           True, True),
    Option("priority", "broker", "a signed 64-bit int (larger runs first; else the actor's "
           "priority= argument)", _int(INT64_MIN), Rule.FIRST_SET, False, True),
    Option("broker_priority", "broker", "an int from 0 to 255 (RabbitMQ's priority)",
           _int(0, 255, none=True), Rule.MESSAGE, False, True),
    Option("eta", "broker", "epoch milliseconds (an int from 0 to 2**63 - 1)", _int(0),
           Rule.MESSAGE, False, True, "brokers, for delayed messages"),
    Option("delay", "Pipelines", "milliseconds (a number >= 0)", _ms(none=True), Rule.MESSAGE,
           False, True),
    Option("redis_message_id", "broker", "a str", _str, Rule.MESSAGE, False, True,
           "RedisBroker"),
    Option("retries", "Retries", "an int from 0", _int(0), Rule.MESSAGE, False, True, "Retries"),
    Option("traceback", "Retries", "a str", lambda v: v is None or _str(v), Rule.MESSAGE,
           False, True, "Retries"),
    Option("requeue_timestamp", "Retries", "epoch milliseconds (an int)", _int(0),
           Rule.MESSAGE, False, True, "Retries"),
    Option("failure_reason", "broker", "a str", _str, Rule.MESSAGE, False, True,
           "brokers, in dead-lettered messages"),
    Option("failed_at", "broker", "epoch milliseconds (an int)", _int(0), Rule.MESSAGE,
           False, True, "brokers, in dead-lettered messages"),
))

_RULES = {name: option.rule for name, option in OPTIONS.items()}
_OR, _GET, _FIRST_SET, _ACTOR = Rule.OR, Rule.GET, Rule.FIRST_SET, Rule.ACTOR


def resolve(name: str, message: Mapping[str, Any], actor: Mapping[str, Any] = NO_OPTIONS,
            default: Any = None) -> Any:
    """The value of option ``name`` from a message's and an actor's options, by its rule.

    Options not in the table (a custom middleware's) resolve with ``Rule.GET``.
    """
    rule = _RULES.get(name, _GET)
    if rule is _OR:
        return message.get(name) or actor.get(name, default)
    if rule is _GET:
        return message.get(name, actor.get(name, default))
    if rule is _FIRST_SET:
        value = message.get(name)
        if value is None:
            value = actor.get(name)
        return default if value is None else value
    if rule is _ACTOR:
        return actor.get(name, default)
    return message.get(name, default)


def check_defaults(**defaults: Any) -> None:
    """Validate a middleware's defaults by the table (``InvalidOption`` when one is bad)."""
    for name, value in defaults.items():
        OPTIONS[name].validate(value)


def owned_by(owner: str) -> set[str]:
    """The actor options of middleware ``owner`` (its ``actor_options``)."""
    return {o.name for o in OPTIONS.values() if o.owner == owner and o.on_actor}


def send_options() -> dict[str, Option | None]:
    """Name -> option for every option accepted at send (a broker adds its custom ones)."""
    return {name: o for name, o in OPTIONS.items() if o.at_send}


def check_values(options: Mapping[str, Any]) -> None:
    """Raise ``InvalidOption`` for a known option with a bad value; other names pass."""
    for name, value in options.items():
        option = OPTIONS.get(name)
        if option is not None and not option.check(value):
            option.validate(value)


def check_send(options: Mapping[str, Any], accepted: Mapping[str, Option | None]) -> None:
    """Raise ``InvalidOption`` for a name not in ``accepted`` or a bad value of a known one."""
    for name, value in options.items():
        option = accepted.get(name, _UNKNOWN)
        if option is _UNKNOWN:
            raise InvalidOption(_unknown_message_option(name, value, accepted))
        if option is not None and not option.check(value):
            option.validate(value)


_UNKNOWN: Any = object()


def _unknown_message_option(name: str, value: Any, accepted: Iterable[str]) -> str:
    if name in OPTIONS:
        return (f"option {name!r} cannot be given to a message: {OPTIONS[name].owner} reads "
                f"it from the actor only")
    known = sorted(accepted)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (f"unknown message option {name!r}={show(value)}{hint}; known options: "
            f"{', '.join(known)}. "
            "A custom middleware declares its own in message_options or actor_options")


def unknown_actor_options(unknown: Iterable[str], accepted: Iterable[str]) -> str:
    """The error text for actor options no middleware of the broker accepts."""
    parts = []
    for name in sorted(unknown):
        option = OPTIONS.get(name)
        if option is not None and option.on_actor:
            parts.append(f"{name!r} (add the {option.owner} middleware to the broker)")
        elif option is not None:
            parts.append(f"{name!r} (a message option, not an actor option)")
        else:
            parts.append(repr(name))
    return (f"unknown actor option(s): {', '.join(parts)}; this broker accepts "
            f"{sorted(accepted)}. Did you forget to add a middleware?")


def check_actor(options: Mapping[str, Any], accepted: set[str]) -> None:
    """Raise ``InvalidOption`` for actor options not in ``accepted`` or with bad values."""
    unknown = options.keys() - accepted
    if unknown:
        raise InvalidOption(unknown_actor_options(unknown, accepted))
    check_values(options)


def markdown_table() -> str:
    """The table as Markdown, for the README (a test keeps the two equal)."""
    lines = ["| option | owner | accepts | resolved | on actor | at send | written by |",
             "|---|---|---|---|---|---|---|"]
    for o in OPTIONS.values():
        lines.append(f"| `{o.name}` | {o.owner} | {o.accepts} | {o.rule.value} | "
                     f"{'yes' if o.on_actor else 'no'} | {'yes' if o.at_send else 'no'} | "
                     f"{o.written_by or '-'} |")
    return "\n".join(lines)
