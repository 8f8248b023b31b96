"""Where the RabbitMQ broker connects and how: pika parameters, masked location, retries.

Kept apart from the broker so URLs, credential masking and backoff read in one place.
"""

from __future__ import annotations

import logging
import random
import time
import warnings
from typing import Any
from urllib.parse import quote, urlsplit

import pika
import pika.exceptions

from ...errors import ConnectionFailed
from ...urls import check_url, is_local_host, mask_url, scrub

logger = logging.getLogger("liteq.RabbitmqBroker")

#: Default number of connection attempts (with exponential backoff) before ConnectionFailed.
CONNECTION_ATTEMPTS = 5

#: Errors that mean the connection (or its channel) is gone: reconnect and retry.
CONNECTION_ERRORS = (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError,
                     OSError)
def reason(error: BaseException) -> str:
    """A one-line description of a pika error (some have an empty ``str``)."""
    text = str(error).strip()
    if not text or text == "()":
        text = "; ".join(str(a) for a in getattr(error, "args", ()) if str(a)) or ""
    name = type(error).__name__
    return f"{name}: {text}" if text and not text.startswith(name) else (text or name)


def close_quietly(thing: Any) -> None:
    """Close a pika connection or channel if it is open, ignoring any error."""
    try:
        if thing.is_open:
            thing.close()
    except Exception:  # noqa: BLE001 - closing a broken connection may fail in many ways
        pass


def _warn_insecure(where: str) -> None:
    # stacklevel 4: this function, RabbitmqServer.__init__, RabbitmqBroker.__init__, caller.
    warnings.warn(
        f"RabbitMQ broker {where} is not on this machine and has no credentials in its "
        "configuration (pika then logs in as guest, which RabbitMQ refuses off loopback); "
        "give a user and password", UserWarning, stacklevel=4)


class RabbitmqServer:
    """The server(s) to connect to, from ``url``, ``parameters`` or pika keyword arguments.

    ``url`` is one URL, several separated by ``;``, or a list (tried in turn);
    ``parameters`` is a list of dicts of ``pika.ConnectionParameters`` arguments; the
    three forms exclude each other. A remote server without credentials draws a warning.
    """

    def __init__(self, url: str | list[str] | None, parameters: list[dict[str, Any]] | None,
                 pika_kwargs: dict[str, Any]) -> None:
        self.urls: list[str] = []
        if url is not None:
            if parameters is not None or pika_kwargs:
                raise RuntimeError(
                    "the 'url' argument cannot be combined with 'parameters', 'host', 'port' "
                    "or other pika connection arguments (put them in the URL's query string)")
            urls = url.split(";") if isinstance(url, str) else list(url)
            self.urls = [u.strip() for u in urls if u.strip()]
            if not self.urls:
                raise ValueError("url is empty")
            for u in self.urls:
                check_url(u)
            self.parameters = [pika.URLParameters(u) for u in self.urls]
            for u in self.urls:
                parts = urlsplit(u)
                if parts.username is None and not is_local_host(parts.hostname):
                    _warn_insecure(mask_url(u))
        elif parameters is not None:
            if pika_kwargs:
                raise RuntimeError("the 'parameters' argument cannot be combined with 'host', "
                                   "'port' or other pika connection arguments")
            self.parameters = [pika.ConnectionParameters(**p) for p in parameters]
            for p in parameters:
                if "credentials" not in p and not is_local_host(p.get("host", "localhost")):
                    _warn_insecure(str(p.get("host")))
        else:
            self.parameters = [pika.ConnectionParameters(**pika_kwargs)]
            if "credentials" not in pika_kwargs and not is_local_host(pika_kwargs.get("host")):
                _warn_insecure(str(pika_kwargs.get("host")))

    @property
    def location(self) -> str:
        """Where the server is, without credentials (safe to print and log)."""
        if self.urls:
            return ";".join(mask_url(u) for u in self.urls)
        return ";".join(f"amqp://{p.host}:{p.port}/{quote(p.virtual_host, safe='')}"
                        for p in self.parameters)

    def scrub(self, text: str) -> str:
        """``text`` (an error message) without the passwords of the URLs."""
        for u in self.urls:
            text = scrub(text, u)
        return text

    def connect(self, attempts: int) -> pika.BlockingConnection:
        """A new connection, tried ``attempts`` times with exponential backoff."""
        last: BaseException | None = None
        for attempt in range(1, attempts + 1):
            try:
                return pika.BlockingConnection(self.parameters)
            except (pika.exceptions.ProbableAuthenticationError,
                    pika.exceptions.AuthenticationError,
                    pika.exceptions.ProbableAccessDeniedError) as e:
                raise ConnectionFailed(self.scrub(
                    f"RabbitMQ at {self.location} refused the login or the virtual host "
                    f"({reason(e)}); check the user, password and vhost")) from None
            except (pika.exceptions.AMQPError, OSError) as e:
                last = e
            if attempt < attempts:
                pause = min(0.1 * 2 ** (attempt - 1), 5.0) * random.uniform(0.8, 1.2)
                logger.warning("cannot connect to RabbitMQ at %s (attempt %d of %d): %s; "
                               "retrying in %.1fs", self.location, attempt, attempts,
                               self.scrub(reason(last)), pause)
                time.sleep(pause)
        raise ConnectionFailed(self.scrub(
            f"could not connect to RabbitMQ at {self.location} after {attempts} attempt(s): "
            f"{reason(last) if last else 'unknown error'}; is the server running?"))
