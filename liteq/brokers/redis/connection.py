"""Building the Redis broker's client from a URL or keywords, and keeping credentials
out of what it prints: its location string and scrubbed error messages."""

from __future__ import annotations

import warnings
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry as RedisRetry

from ...urls import check_url, is_local_host


def build_client(url: str | None, pool_kwargs: dict[str, Any],
                 redis_kwargs: dict[str, Any]) -> tuple[redis.Redis, list[str]]:
    """A client for ``url`` (or ``redis_kwargs``) and the URL's password, to scrub.

    Warns (``RuntimeWarning``, at the caller of ``RedisBroker(...)``) when a server not
    on this machine is reached without a password.
    """
    secrets: list[str] = []
    # liteq retries itself (connection_attempts); redis-py's own retries would add
    # seconds of silent waiting to each attempt.
    options: dict[str, Any] = {"retry": RedisRetry(NoBackoff(), 0)}
    options.update(redis_kwargs)
    options.update(pool_kwargs)
    if url:
        check_url(url)
        parts = urlsplit(url)
        if parts.username and parts.password is None and parts.scheme != "unix":
            # redis://secret@host: the seed's form, a password without a user name.
            options["password"] = unquote(parts.username)
            netloc = parts.netloc.rsplit("@", 1)[1]
            url = urlunsplit(parts._replace(netloc=netloc))
            parts = urlsplit(url)
        has_password = parts.password is not None or bool(options.get("password"))
        host = None if parts.scheme == "unix" else parts.hostname
        if parts.password:
            secrets.append(unquote(parts.password))
        pool = redis.ConnectionPool.from_url(url, **options)
    else:
        has_password = bool(options.get("password")) or "credential_provider" in options
        host = None if options.get("unix_socket_path") else options.get("host", "localhost")
        pool = redis.ConnectionPool(**options)
    if not has_password and not is_local_host(host):
        warnings.warn(
            f"RedisBroker: the Redis server {host!r} is not on this machine and no "
            "password is configured; anyone who can reach it can read and inject "
            "tasks. Give one, e.g. url='rediss://:PASSWORD@host:6379/0'.",
            RuntimeWarning, stacklevel=3,
        )
    return redis.Redis(connection_pool=pool), secrets


def describe(kwargs: dict[str, Any]) -> str:
    """The server's location from a pool's ``connection_kwargs``, without credentials."""
    if kwargs.get("path"):
        return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    host = kwargs.get("host", "localhost")
    if ":" in str(host):
        host = f"[{host}]"
    return f"redis://{host}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"

