"""Placeholder: the SQLite broker is being written."""

from .broker import Broker, Consumer


class SqliteBroker(Broker):
    pass


class SqliteConsumer(Consumer):
    pass
