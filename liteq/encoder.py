"""Message encoders: JSON by default (Dramatiq's envelope), signed pickle on request."""

from __future__ import annotations

import hashlib
import hmac
import json
import json.scanner
import os
import pickle
from collections.abc import Callable
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

from .errors import DecodeError, EncodeError, PickleKeyMissing

MessageData = dict[str, Any]

#: The environment variable ``PickleEncoder()`` reads its key from when given none.
PICKLE_KEY_VARIABLE = "LITEQ_PICKLE_KEY"


class Encoder:
    """Turns a message dict into bytes and back."""

    def encode(self, data: MessageData) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes) -> MessageData:
        raise NotImplementedError


def _unserializable(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


class JSONEncoder(Encoder):
    """Compact UTF-8 JSON, byte-for-byte what Dramatiq's JSONEncoder writes.

    It calls the C encoder that ``json.dumps`` builds on every call once, prebuilt (half
    the cost); without circular-reference checks, so a cycle is a RecursionError.
    """

    def __init__(self) -> None:
        if c_make_encoder is not None:
            chunks = c_make_encoder(None, _unserializable, encode_basestring_ascii, None,
                                    ":", ",", False, False, True)
            self._dumps: Callable[[MessageData], str] = lambda data: "".join(chunks(data, 0))
        else:
            self._dumps = json.JSONEncoder(separators=(",", ":")).encode
        decoder = json.JSONDecoder()
        self._loads: Callable[[str], MessageData] = decoder.decode
        #: The scanner behind ``decode``, called directly: a third less per message.
        #: (typeshed types make_scanner's argument as make_scanner itself.)
        self._scan: Callable[[str, int], tuple[Any, int]] = (
            json.scanner.make_scanner(decoder))  # type: ignore[arg-type]

    def encode(self, data: MessageData) -> bytes:
        try:
            return self._dumps(data).encode("utf-8")
        except (TypeError, ValueError, RecursionError) as e:
            raise EncodeError(f"message is not JSON-serializable: {e}") from e

    def decode(self, data: bytes) -> MessageData:
        try:
            text = data.decode("utf-8") if isinstance(data, bytes) else data
            try:
                value, end = self._scan(text, 0)
            except StopIteration:
                value, end = None, -1
            if end != len(text):  # whitespace around it, or not JSON: json.loads says which
                value = self._loads(text)
            return value  # type: ignore[no-any-return]
        except (TypeError, ValueError, AttributeError) as e:
            raise DecodeError(f"message body is not valid JSON: {e}", data, e) from e


class PickleEncoder(Encoder):
    """Pickle signed with HMAC-SHA256 so only holders of ``key`` can make workers unpickle.

    Whoever can write the database file or the Redis server still cannot run code in
    the workers: a body whose signature does not verify is rejected before unpickling.
    Without ``key``, the key is read from the ``LITEQ_PICKLE_KEY`` environment variable,
    so ``PickleEncoder()`` as written for Dramatiq works once producers and workers share it.
    """

    _DIGEST = 32

    def __init__(self, key: bytes | str | None = None) -> None:
        if key is None:
            key = os.environ.get(PICKLE_KEY_VARIABLE)
        if not key:
            raise PickleKeyMissing(
                "PickleEncoder signs messages and needs a secret key: pass "
                f"PickleEncoder(key=...) or set the {PICKLE_KEY_VARIABLE} environment variable "
                "(the same key in every producer and worker)"
            )
        self._key = key.encode() if isinstance(key, str) else bytes(key)

    def encode(self, data: MessageData) -> bytes:
        try:
            body = pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:
            raise EncodeError(f"message is not picklable: {e}") from e
        return hmac.new(self._key, body, hashlib.sha256).digest() + body

    def decode(self, data: bytes) -> MessageData:
        sig, body = bytes(data[: self._DIGEST]), bytes(data[self._DIGEST :])
        expected = hmac.new(self._key, body, hashlib.sha256).digest()
        if len(sig) != self._DIGEST or not hmac.compare_digest(sig, expected):
            raise DecodeError("pickled message has a bad signature; refusing to unpickle", data)
        try:
            loaded: MessageData = pickle.loads(body)
            return loaded
        except Exception as e:
            raise DecodeError(f"pickled message cannot be loaded: {e}", data, e) from e


_encoder: Encoder = JSONEncoder()


def get_encoder() -> Encoder:
    """Return the process-wide encoder."""
    return _encoder


def set_encoder(encoder: Encoder) -> None:
    """Replace the process-wide encoder (all producers and workers must agree)."""
    global _encoder
    _encoder = encoder
