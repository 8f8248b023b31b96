"""``liteq.brokers.sqlite.SqliteBroker``: the default broker, implemented in ``liteq.store``."""

from ..store import SqliteBroker, SqliteConsumer

__all__ = ["SqliteBroker", "SqliteConsumer"]
