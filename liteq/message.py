"""The message: Dramatiq's seven-field envelope, immutable apart from ``options``."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from .encoder import get_encoder, set_encoder
from .errors import DecodeError
from .options import ENVELOPE_FIELDS, check_values, show

if TYPE_CHECKING:
    # Type-only, and mutual by nature: ``a | b`` makes a pipeline of messages, and a
    # backend returns a message's result.
    from .composition import pipeline
    from .results.backend import ResultBackend

__all__ = ["Message", "generate_unique_id", "get_encoder", "set_encoder"]

R = TypeVar("R")

#: The type each envelope field must have when decoded (the first one is named in errors).
_FIELD_TYPES = (
    ("queue_name", (str,)), ("actor_name", (str,)), ("args", (list, tuple)),
    ("kwargs", (dict,)), ("options", (dict,)), ("message_id", (str,)),
    ("message_timestamp", (int,)),
)
#: The envelope's fields in order: Message's attributes, its ``_fields`` and its unpacking.
_FIELD_ORDER = tuple(name for name, _ in _FIELD_TYPES)


def generate_unique_id() -> str:
    """A fresh random (version 4) UUID string, as message ids are; twice as fast as uuid4()."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


@dataclasses.dataclass(frozen=True, init=False)
class Message(Generic[R]):
    """One task invocation: which actor, on which queue, with what arguments and options."""

    queue_name: str
    actor_name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    message_id: str
    message_timestamp: int

    def __init__(
        self,
        queue_name: str,
        actor_name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: dict[str, Any],
        message_id: str | None = None,
        message_timestamp: int | None = None,
    ) -> None:
        # Filled through __dict__: a frozen dataclass's generated __init__ sets each field
        # through object.__setattr__, which made building a message a third slower.
        self.__dict__.update(
            queue_name=queue_name,
            actor_name=actor_name,
            args=args if type(args) is tuple else tuple(args),
            kwargs=kwargs,
            options=options,
            message_id=message_id or generate_unique_id(),
            message_timestamp=(int(time.time() * 1000) if message_timestamp is None
                               else message_timestamp),
        )

    @classmethod
    def decode(cls, data: bytes) -> Message[Any]:
        """Build a message from bytes made by :meth:`encode`; raises ``DecodeError``.

        An envelope liteq cannot trust is refused, saying why: a field of the wrong type
        (``options`` or ``kwargs`` not an object, ``args`` not a list, ...) or an option
        of liteq's table with a bad value. Option names liteq does not know are kept.
        """
        fields = get_encoder().decode(data)
        if not isinstance(fields, dict) or fields.keys() != ENVELOPE_FIELDS:
            raise DecodeError(f"not a message envelope: {data[:200]!r}", data)
        f = fields
        if not (type(f["queue_name"]) is str and type(f["actor_name"]) is str
                and type(f["options"]) is dict and type(f["kwargs"]) is dict
                and type(f["message_id"]) is str and type(f["message_timestamp"]) is int
                and type(f["args"]) in (list, tuple)):
            for name, kind in _FIELD_TYPES:
                if type(fields[name]) not in kind:
                    raise DecodeError(
                        f"bad message envelope: {name} must be {kind[0].__name__}, "
                        f"got {show(fields[name])}", data)
        try:
            if fields["options"]:
                check_values(fields["options"])
            if not f["message_id"]:
                return cls(**fields)
            # Every field checked: filled directly, without __init__'s keyword parsing.
            f["args"] = tuple(f["args"])
            message = cls.__new__(cls)
            message.__dict__.update(f)
            return message
        except Exception as e:
            raise DecodeError(f"bad message envelope: {e}", data, e) from e

    def encode(self) -> bytes:
        """Serialize with the global encoder (JSON unless configured otherwise)."""
        return get_encoder().encode(self.asdict())

    def asdict(self) -> dict[str, Any]:
        """A shallow dict of the seven fields (``options`` is shared, not copied)."""
        return {
            "queue_name": self.queue_name,
            "actor_name": self.actor_name,
            "args": self.args,
            "kwargs": self.kwargs,
            "options": self.options,
            "message_id": self.message_id,
            "message_timestamp": self.message_timestamp,
        }

    # The namedtuple interface Dramatiq's Message had before it became a dataclass, which
    # ported code still uses: field names, unpacking, indexing, len.
    _fields: ClassVar[tuple[str, ...]] = _FIELD_ORDER
    _field_defaults: ClassVar[dict[str, Any]] = {}
    _asdict = asdict

    def _replace(self, **changes: Any) -> Message[R]:
        return dataclasses.replace(self, **changes)

    def __iter__(self) -> Iterator[Any]:
        """The seven fields in ``_fields`` order, so ``a, b, *rest = message`` unpacks."""
        return iter((self.queue_name, self.actor_name, self.args, self.kwargs, self.options,
                     self.message_id, self.message_timestamp))

    def __getitem__(self, index: int | slice) -> Any:
        return tuple(self)[index]

    def __len__(self) -> int:
        return len(_FIELD_ORDER)

    def copy(self, **attributes: Any) -> Message[R]:
        """A new message with some fields replaced; ``options`` are merged, not replaced."""
        updated = dict(self.options)
        updated.update(attributes.pop("options", {}))
        return dataclasses.replace(self, options=updated, **attributes)

    @property
    def message_datetime(self) -> datetime:
        """When the message was first created, as a UTC datetime."""
        return datetime.fromtimestamp(self.message_timestamp / 1000, tz=timezone.utc)

    def get_result(
        self,
        *,
        backend: ResultBackend | None = None,
        block: bool = False,
        timeout: int | None = None,
    ) -> R:
        """Fetch this message's result from ``backend`` or the global broker's Results."""
        if backend is None:
            from .broker import get_broker

            backend = get_broker().get_results_backend()
        result: R = backend.get_result(self, block=block, timeout=timeout)
        return result

    def __or__(self, other: Any) -> pipeline:
        from .composition import pipeline

        return pipeline([self, other])

    def __lt__(self, other: Message[Any]) -> bool:
        return dataclasses.astuple(self) < dataclasses.astuple(other)

    def __str__(self) -> str:
        params = ", ".join(repr(a) for a in self.args)
        if self.kwargs:
            params += ", " if params else ""
            params += ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"{self.actor_name}({params})"
