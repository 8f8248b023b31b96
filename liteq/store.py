"""Public face of the SQLite broker: its code lives in ``liteq/brokers/sqlite/``.

``liteq.store.SqliteBroker`` is the same class as ``liteq.brokers.sqlite.SqliteBroker``
(see ARCHITECTURE.md for which file of that folder holds what).
"""

from .brokers.sqlite.broker import (
    SqliteBroker,
    forget_stale_workers,
    path_from_url,
    release,
)
from .brokers.sqlite.lease import SqliteConsumer

__all__ = ["SqliteBroker", "SqliteConsumer", "forget_stale_workers", "path_from_url", "release"]
