"""Message.decode: the fast path builds the same message as the constructor, and the
JSON scanner it calls directly accepts and refuses what ``json.loads`` does."""

from __future__ import annotations

import json

import pytest

from liteq.errors import DecodeError
from liteq.message import Message

SAMPLE = Message("default", "add", (1, [2, 3]), {"k": "v"}, {"max_retries": 2})



def test_a_decoded_message_equals_the_one_that_was_encoded():
    sent = SAMPLE
    got = Message.decode(sent.encode())
    assert got == sent
    assert repr(got) == repr(sent)
    assert got.asdict() == sent.asdict()
    assert type(got.args) is tuple
    assert got.args == (1, [2, 3])
    with pytest.raises(AttributeError):
        got.actor_name = "other"  # type: ignore[misc]


@pytest.mark.parametrize("wrap", [" {}", "{} ", "\n{}\t\n", "{}"])
def test_whitespace_around_the_envelope_is_accepted(wrap):
    body = wrap.replace("{}", SAMPLE.encode().decode())
    assert Message.decode(body.encode()) == SAMPLE


@pytest.mark.parametrize("body", [b"", b" ", b"{} {}", b"[1] x", b"\xff", b"nul"])
def test_what_json_loads_refuses_is_a_decode_error(body):
    with pytest.raises(DecodeError):
        Message.decode(body)


def test_trailing_garbage_after_a_whole_envelope_is_refused():
    with pytest.raises(DecodeError, match="not valid JSON"):
        Message.decode(SAMPLE.encode() + b"x")


def test_an_empty_message_id_is_replaced_as_the_constructor_does():
    fields = {**SAMPLE.asdict(), "message_id": ""}
    got = Message.decode(json.dumps(fields).encode())
    assert got.message_id
    assert got.message_id != ""
