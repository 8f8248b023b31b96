"""Every exception liteq raises, in one place (names follow Dramatiq's)."""

from __future__ import annotations

import warnings
from typing import Any

#: Exit codes of ``liteq`` commands, of ``liteq worker`` and of its processes (the one table).
EXIT_OK = 0
#: A command failed; a worker process was stopped by a signal or a fatal error.
EXIT_ERROR = EXIT_KILLED = 1
#: A bad command line; a module named on it could not be imported (``ImportFailed``).
EXIT_USAGE = EXIT_IMPORT = 2
#: The broker could not be built or reached (``BrokerFailed``).
EXIT_BROKER = 3
#: ``--pid-file`` names a live process (``PidFileError``).
EXIT_PIDFILE = 4
#: A child that processed ``max_tasks_per_child`` tasks exits with this code.
EXIT_RECYCLE = 100


class DramatiqError(Exception):
    """Base class of liteq's errors (Dramatiq's name, so ``except DramatiqError`` ports)."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return str(self.message)


#: liteq's own name for the base class: the same class, so either name catches every error.
LiteqError = DramatiqError


class DecodeError(LiteqError):
    """A message body could not be decoded."""

    def __init__(self, message: str, data: object = None, error: BaseException | None = None):
        super().__init__(message)
        self.data = data
        self.error = error


class EncodeError(LiteqError, TypeError):
    """A message's arguments could not be encoded (nothing was written)."""


class BrokerError(LiteqError):
    """Base class of broker errors."""


class ActorNotFound(BrokerError):
    """A message names an actor this broker does not know."""


class ActorAlreadyRegistered(LiteqError, ValueError):
    """An actor of the same name is already declared on the broker (a ``ValueError``)."""


class QueueNotFound(BrokerError):
    """A queue was used before it was declared."""


class InvalidQueueName(LiteqError, ValueError):
    """A queue name does not match ``[a-zA-Z_][a-zA-Z0-9._-]*``."""


class InvalidOption(LiteqError, ValueError):
    """An actor or message option is unknown or has a bad value."""


class InvalidDeadLetterId(LiteqError, ValueError):
    """A dead-letter id is not one this broker can name (SQLite's are row numbers)."""


class HookFailed(LiteqError):
    """A middleware hook raised while handling a failed message, which is dead-lettered."""


class BrokerConnectionError(BrokerError):
    """The broker could not be reached."""


class ConnectionFailed(BrokerConnectionError):
    """Connecting to the broker failed."""


class ConnectionClosed(BrokerConnectionError):
    """The connection to the broker was lost."""


class DatabaseError(BrokerError):
    """The SQLite file cannot serve as a liteq database."""


class UnusableDatabase(DatabaseError):
    """Retrying cannot help: ``liteq worker`` stops with exit code 3 instead."""


class NotALiteqDatabase(UnusableDatabase):
    """The file is a database of some other application."""


class SchemaClash(NotALiteqDatabase):
    """An unversioned file (application_id 0, user_version 0) already has ``liteq_*``
    tables that liteq did not create; it is refused untouched."""


class SchemaTooNew(UnusableDatabase):
    """The file was written by a newer liteq with a schema this one does not know."""


class DatabaseCorrupt(UnusableDatabase):
    """SQLite found the file malformed (corrupted pages): restore or recover it."""


class DatabaseUnavailable(DatabaseError):
    """The file cannot be opened or written now (missing directory, locked, full disk)."""


class DatabaseReadOnly(DatabaseUnavailable, UnusableDatabase):
    """The file or its directory cannot be written (read-only mount, permissions,
    immutable file): SQLite needs both, for the ``-wal`` and ``-shm`` files."""


class DatabaseFull(DatabaseUnavailable):
    """The disk (or ``PRAGMA max_page_count``) is full; a worker retries with backoff."""


class MessageTooLarge(BrokerError, ValueError):
    """A value is longer than SQLite's maximum length (``SQLITE_LIMIT_LENGTH``);
    nothing was written."""


class QueueJoinTimeout(LiteqError):
    """``Broker.join`` ran out of time before the queue was empty."""


class PidFileError(LiteqError):
    """``liteq worker --pid-file`` names a live process, or a file without a pid (exit 4)."""

    exit_code = EXIT_PIDFILE


class RateLimitExceeded(LiteqError):
    """A rate limiter could not acquire a slot."""


class Retry(LiteqError):  # noqa: N818 - Dramatiq's name
    """Raised by an actor to ask for a retry, optionally after ``delay`` ms."""

    def __init__(self, message: str = "", delay: int | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class ResultError(LiteqError):
    """Base class of result errors."""


class ResultTimeout(ResultError):
    """The result did not arrive in time."""


class ResultMissing(ResultError):
    """There is no result (yet)."""


class ResultFailure(ResultError):
    """The actor raised instead of returning a result."""

    def __init__(self, message: str = "", orig_exc_type: str = "", orig_exc_msg: str = ""):
        super().__init__(message)
        self.orig_exc_type = orig_exc_type
        self.orig_exc_msg = orig_exc_msg


class MiddlewareError(Exception):
    """Base class of errors middleware raise on purpose; they propagate out of hooks."""


class SkipMessage(MiddlewareError):  # noqa: N818 - Dramatiq's name
    """Raised by a ``before_process_message`` hook to skip the message."""


class Interrupt(BaseException):  # noqa: N818 - Dramatiq's name
    """Raised asynchronously in a worker thread; not an Exception so it is not swallowed."""


class TimeLimitExceeded(Interrupt):  # noqa: N818 - Dramatiq's name
    """The actor ran past its time limit."""


class Shutdown(Interrupt):  # noqa: N818 - Dramatiq's name
    """The worker is shutting down."""


class ImportFailed(LiteqError):
    """A module named on the command line could not be imported (exit code 2)."""

    exit_code = EXIT_IMPORT


class BrokerFailed(LiteqError):
    """The broker could not be built or reached, e.g. an unusable database (exit code 3)."""

    exit_code = EXIT_BROKER


class PickleKeyMissing(LiteqError, ValueError):
    """``PickleEncoder()`` was given no key and ``LITEQ_PICKLE_KEY`` is unset or empty."""


def __getattr__(name: str) -> Any:
    """``ConnectionError``: Dramatiq's deprecated name of :class:`BrokerConnectionError`."""
    if name == "ConnectionError":
        warnings.warn(
            "ConnectionError is a deprecated name of BrokerConnectionError; use that instead",
            DeprecationWarning,
            stacklevel=2,
        )
        return BrokerConnectionError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
