"""``liteq.brokers.sqlite.SqliteBroker``: the default broker, one SQLite file (apsw)."""

from .broker import SqliteBroker
from .lease import SqliteConsumer

__all__ = ["SqliteBroker", "SqliteConsumer"]
