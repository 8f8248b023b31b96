"""``Message`` keeps the namedtuple interface Dramatiq code still uses (``_fields``,
unpacking, indexing, ``len``) without changing its envelope."""

from __future__ import annotations

import dataclasses

import pytest

import liteq
from liteq.brokers.stub import StubBroker


def make_message() -> liteq.Message:
    return liteq.Message("default", "add", (1, 2), {"z": 3}, {"max_retries": 1},
                         message_id="id-1", message_timestamp=1700000000000)


def test_fields_are_dramatiqs_in_order() -> None:
    message = make_message()
    assert liteq.Message._fields == message._fields == tuple(
        f.name for f in dataclasses.fields(liteq.Message))
    assert message._field_defaults == {}
    dramatiq = pytest.importorskip("dramatiq")
    theirs = dramatiq.Message("default", "add", (1, 2), {"z": 3}, {"max_retries": 1})
    assert message._fields == theirs._fields
    assert message._field_defaults == theirs._field_defaults


def test_unpacks_indexes_and_iterates_in_field_order() -> None:
    message = make_message()
    queue_name, actor_name, args, kwargs, options, message_id, timestamp = message
    assert (queue_name, actor_name, args, kwargs, options, message_id, timestamp) == (
        "default", "add", (1, 2), {"z": 3}, {"max_retries": 1}, "id-1", 1700000000000)
    assert message[0] == "default" and message[2] == (1, 2) and message[-1] == 1700000000000
    assert message[1:3] == ("add", (1, 2))
    assert len(message) == 7
    assert list(message) == [getattr(message, name) for name in message._fields]
    assert dict(zip(message._fields, message, strict=True)) == message._asdict()
    with pytest.raises(IndexError):
        message[7]


def test_the_envelope_is_unchanged(stub_broker: StubBroker) -> None:
    message = make_message()
    assert message.encode() == (
        b'{"queue_name":"default","actor_name":"add","args":[1,2],"kwargs":{"z":3},'
        b'"options":{"max_retries":1},"message_id":"id-1","message_timestamp":1700000000000}'
    )
    assert liteq.Message.decode(message.encode()) == message
    assert message._replace(actor_name="sub")[1] == "sub"


def test_a_sent_message_unpacks(stub_broker: StubBroker) -> None:
    @liteq.actor
    def add(x: int, y: int) -> int:
        return x + y

    queue_name, actor_name, args, *_ = add.send(1, 2)
    assert (queue_name, actor_name, args) == ("default", "add", (1, 2))
