"""What the ``liteq`` commands share: error reporting, the --broker option, output helpers."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from ..errors import EXIT_BROKER, EXIT_ERROR, EXIT_USAGE
from ..support.text import safe
from ..urls import mask_url, scrub

if TYPE_CHECKING:
    from ..brokers.inspect import Inspector

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_URL = "sqlite:///liteq.db"
#: Bulk dead-letter operations above this many rows show a progress bar.
PROGRESS_THRESHOLD = 500


def literal(value: object, *, style: str = "") -> Any:
    """``value`` as a rich ``Text``: shown literally (never read as markup), made :func:`safe`."""
    from rich.text import Text

    return Text(safe(value), style=style)


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """Print ``liteq: error: message`` (without passwords, control characters shown
    visibly) on stderr and exit with ``code``."""
    click.echo(f"liteq: error: {safe(scrub(message))}", err=True)
    sys.exit(code)


def handle_errors(fn: F) -> F:
    """Turn liteq's and SQLite's exceptions into one clear line and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import apsw

        from ..errors import (
            BrokerConnectionError,
            DatabaseError,
            InvalidDeadLetterId,
            InvalidOption,
            LiteqError,
            MessageTooLarge,
        )

        url = kwargs.get("broker_url")
        try:
            return fn(*args, **kwargs)
        except (InvalidOption, InvalidDeadLetterId, MessageTooLarge) as e:
            fail(scrub(str(e), url), EXIT_USAGE)
        except (DatabaseError, BrokerConnectionError) as e:
            fail(scrub(str(e), url), EXIT_BROKER)
        except apsw.Error as e:
            fail(f"database error: {type(e).__name__}: {scrub(str(e), url)}", EXIT_BROKER)
        except LiteqError as e:
            fail(scrub(str(e), url), EXIT_ERROR)

    return wrapper  # type: ignore[return-value]


def broker_option(fn: F) -> F:
    """``--broker URL`` (or ``LITEQ_BROKER_URL``), passed as ``broker_url``."""
    return click.option(
        "--broker", "broker_url", envvar="LITEQ_BROKER_URL", metavar="URL",
        help="Broker URL: sqlite:///relative.db, sqlite:////absolute.db, redis://…, "
             "amqp://…  [env: LITEQ_BROKER_URL; default: sqlite:///liteq.db]",
    )(fn)


def json_option(fn: F) -> F:
    """``--json``, passed as ``as_json``."""
    return click.option("--json", "as_json", is_flag=True,
                        help="Print plain JSON on stdout instead of a table.")(fn)


def open_broker(url: str | None, *, create: bool = False) -> Any:
    """The broker named by ``url`` (without middleware), for operations commands."""
    from ..brokers.registry import broker_from_url

    url = url or DEFAULT_URL
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        from ..brokers.sqlite.broker import path_from_url

        try:
            path = path_from_url(url)
        except ValueError as e:
            fail(str(e), EXIT_USAGE)
        if not create and not os.path.exists(path):
            fail(f"no liteq database at {os.path.abspath(path)} (give --broker or "
                 "LITEQ_BROKER_URL, or run from the directory that holds liteq.db)",
                 EXIT_BROKER)
    try:
        return broker_from_url(url, middleware=[])
    except ImportError as e:
        fail(f"the broker for {mask_url(url)} is not available: {e}", EXIT_USAGE)
    except ValueError as e:
        fail(scrub(str(e), url), EXIT_USAGE)


@contextlib.contextmanager
def inspecting(url: str | None, queues: tuple[str, ...] = ()) -> Iterator[Inspector]:
    """The inspector of the broker named by ``url``: all the operations commands see of
    it; closed with its broker on exit. ``queues`` are listed too by inspectors that
    cannot list every queue themselves (they have ``watch``: RabbitMQ)."""
    broker = open_broker(url)
    try:
        if not hasattr(broker, "inspector"):
            fail(f"{type(broker).__name__} ({mask_url(url or DEFAULT_URL)}) cannot be "
                 "inspected", EXIT_USAGE)
        inspector: Inspector = broker.inspector()
        watch = getattr(inspector, "watch", None)
        if queues and watch is not None:
            watch(queues)
        try:
            yield inspector
        finally:
            inspector.close()
    finally:
        broker.close()


#: ``--queue`` of ``stats`` and ``top``.
queues_option = click.option(
    "-q", "--queue", "queues", multiple=True, metavar="QUEUE",
    help="Show QUEUE too (repeatable); on RabbitMQ, for queues no liteq worker or "
         "producer has named.")


def count(n: int | None) -> str:
    """A count for a table: "–" when the broker cannot know it."""
    return "–" if n is None else str(n)


def print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout (what ``--json`` prints)."""
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def console(stderr: bool = False) -> Any:
    """A rich console on stdout (or stderr)."""
    from rich.console import Console

    return Console(stderr=stderr)


def table(title: str | None, columns: list[tuple[str, str]]) -> Any:
    """A borderless rich table with ``(name, justify)`` columns."""
    from rich.table import Table

    result = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for name, justify in columns:
        result.add_column(name, justify=justify)  # type: ignore[arg-type]
    return result


def when(ms: int | None) -> str:
    """A millisecond timestamp as local ``YYYY-mm-dd HH:MM:SS`` (``-`` for none)."""
    if not ms:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def progress_run(total: int, label: str, run: Callable[[Callable[[int], None] | None], int]
                 ) -> int:
    """Run ``run(progress)``, with a progress bar on stderr when ``total`` is large."""
    if total < PROGRESS_THRESHOLD:
        return run(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console(stderr=True), transient=False) as progress:
        task = progress.add_task(label, total=total)
        return run(lambda done: progress.update(task, completed=done))
