"""``liteq compact``: give a SQLite broker file's free pages back to the file system.

A thin layer over :mod:`liteq.brokers.sqlite.compact`; :mod:`liteq.cli` adds it to
the ``liteq`` group.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import click

from ..errors import EXIT_BROKER, EXIT_USAGE
from ..urls import mask_url
from .cli_support import (
    DEFAULT_URL,
    broker_option,
    fail,
    handle_errors,
    json_option,
    print_json,
    progress_run,
)


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


@click.command("compact")
@click.option("--full", is_flag=True,
              help="Rewrite the whole file once with VACUUM, switching it to incremental "
                   "auto-vacuum (needed once by a file made by an older liteq or by your "
                   "application); workers and producers block until it ends.")
@click.option("-y", "--yes", is_flag=True, help="With --full: do not ask for confirmation.")
@json_option
@broker_option
@handle_errors
def compact_command(full: bool, yes: bool, as_json: bool, broker_url: str | None) -> None:
    """Return the SQLite file's free pages to the file system.

    \b
    Deleted messages leave free pages that SQLite reuses but never gives
    back. This returns them in short write transactions (a few ms each),
    so running workers never stall. A file without incremental
    auto-vacuum needs `liteq compact --full` once. Redis and RabbitMQ
    manage their own storage: there is nothing to do.
    """
    from ..brokers.sqlite.broker import path_from_url
    from ..brokers.sqlite.compact import application_tables, full_vacuum
    from ..brokers.sqlite.db import Database

    url = broker_url or DEFAULT_URL
    if url.split(":", 1)[0].lower() != "sqlite":
        reason = (f"{mask_url(url)} manages its own storage; liteq compact returns the "
                  "free pages of a SQLite broker's file")
        if as_json:
            print_json({"broker": mask_url(url), "compacted": False, "reason": reason})
        else:
            click.echo(f"nothing to do: {reason}")
        return
    try:
        path = path_from_url(url)
    except ValueError as e:
        fail(str(e), EXIT_USAGE)
    if not os.path.exists(path):
        fail(f"no liteq database at {os.path.abspath(path)}", EXIT_BROKER)
    db = Database(path)
    try:
        if full:
            if not yes:
                _confirm_full(path, db.read_with(application_tables))
            result = full_vacuum(db)
        else:
            result = _compact_with_progress(db)
    finally:
        db.close()
    if as_json:
        print_json(result.asdict())
        return
    if not result.full and not result.pages_freed:
        click.echo(f"no free pages to return; file {_megabytes(result.file_bytes_after)}")
        return
    how = "rewrote the file (VACUUM)" if result.full else \
        f"returned {result.pages_freed} free page(s) in {result.steps} step(s)"
    click.echo(f"{how}: {_megabytes(result.bytes_freed)} freed, file "
               f"{_megabytes(result.file_bytes_before)} -> "
               f"{_megabytes(result.file_bytes_after)}; longest write lock "
               f"{result.longest_hold_ms:.1f} ms")


def _compact_with_progress(db: Any) -> Any:
    """:func:`compact`, with a progress bar on stderr when there is much to free."""
    from ..brokers.sqlite.compact import compact, storage_facts

    results = []

    def run(progress: Callable[[int], None] | None) -> int:
        on_step = None if progress is None else (lambda done, total: progress(done))
        results.append(compact(db, on_step=on_step))
        return results[0].pages_freed

    progress_run(db.read_with(storage_facts)["free_pages"], "compacting", run)
    return results[0]


def _confirm_full(path: str, app_tables: list[str]) -> None:
    """Warn that VACUUM blocks every writer of the file, and ask."""
    size = _megabytes(os.path.getsize(path))
    also = f", including {len(app_tables)} table(s) of your application" if app_tables else ""
    click.echo(
        f"VACUUM rewrites the whole of {path} ({size}{also}) and holds its write lock "
        "until it ends: workers and producers of this file block meanwhile (a worker "
        "waits up to a minute per transaction). It is needed once; afterwards `liteq "
        "compact` works in steps of a few milliseconds.", err=True)
    click.confirm("Rewrite the file now?", abort=True, err=True)
