"""The ``liteq`` command: ``liteq worker`` runs a pool; the other commands operate a broker.

Every command is a thin layer over library calls (``liteq.pool``, ``SqliteBroker``).
Exit codes follow Dramatiq's CLI: 0 ok, 1 killed or failed, 2 bad arguments or an
import error, 3 the broker (database) is unusable, 4 a pid-file problem.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

import click

from . import __version__

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_URL = "sqlite:///liteq.db"
#: Bulk dead-letter operations above this many rows show a progress bar.
PROGRESS_THRESHOLD = 500
#: A worker whose heartbeat is older than this (ms) is shown as stale.
STALE_AFTER_MS = 10000

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_BROKER = 3


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------
def mask_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``, safe to print or log."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    except ValueError:
        return "<unparseable broker URL>"


def _scrub(text: str, url: str | None) -> str:
    """Remove ``url``'s password from an error message."""
    if url:
        try:
            password = urlsplit(url).password
        except ValueError:
            password = None
        if password:
            text = text.replace(password, "***")
    return text


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """Print ``liteq: error: message`` on stderr and exit with ``code``."""
    click.echo(f"liteq: error: {message}", err=True)
    sys.exit(code)


def handle_errors(fn: F) -> F:
    """Turn liteq's and SQLite's exceptions into one clear line and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import apsw

        from .errors import BrokerConnectionError, DatabaseError, LiteqError

        url = kwargs.get("broker_url")
        try:
            return fn(*args, **kwargs)
        except (DatabaseError, BrokerConnectionError) as e:
            fail(_scrub(str(e), url), EXIT_BROKER)
        except apsw.Error as e:
            fail(f"database error: {type(e).__name__}: {_scrub(str(e), url)}", EXIT_BROKER)
        except LiteqError as e:
            fail(_scrub(str(e), url), EXIT_ERROR)

    return wrapper  # type: ignore[return-value]


def broker_option(fn: F) -> F:
    return click.option(
        "--broker", "broker_url", envvar="LITEQ_BROKER_URL", metavar="URL",
        help="Broker URL: sqlite:///relative.db, sqlite:////absolute.db, redis://…, "
             "amqp://…  [env: LITEQ_BROKER_URL; default: sqlite:///liteq.db]",
    )(fn)


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True,
                        help="Print plain JSON on stdout instead of a table.")(fn)


def open_broker(url: str | None, *, create: bool = False, sqlite_for: str | None = None
                ) -> Any:
    """The broker named by ``url`` (without middleware), for operations commands.

    ``sqlite_for`` names a command that only the SQLite broker supports.
    """
    from .broker import broker_from_url

    url = url or DEFAULT_URL
    scheme = url.split(":", 1)[0].lower()
    if sqlite_for and scheme != "sqlite":
        fail(f"{sqlite_for} needs the SQLite broker (sqlite:///path.db), not "
             f"{mask_url(url)}", EXIT_USAGE)
    if scheme == "sqlite":
        from .store import path_from_url

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
        fail(_scrub(str(e), url), EXIT_USAGE)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr)


def _table(title: str | None, columns: list[tuple[str, str]]) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for name, justify in columns:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    return table


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def _progress_run(total: int, label: str, run: Callable[[Callable[[int], None] | None], int]
                  ) -> int:
    """Run ``run(progress)``, with a progress bar on stderr when ``total`` is large."""
    if total < PROGRESS_THRESHOLD:
        return run(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeRemainingColumn(),
                  console=_console(stderr=True), transient=False) as progress:
        task = progress.add_task(label, total=total)
        return run(lambda done: progress.update(task, completed=done))


# ---------------------------------------------------------------------------------------
# the group
# ---------------------------------------------------------------------------------------
@click.group(context_settings={"help_option_names": ["-h", "--help"],
                               "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="liteq")
def cli() -> None:
    """liteq: background tasks with Dramatiq's programming model on one SQLite file.

    \b
    Run workers:      liteq worker tasks
    Look at queues:   liteq stats        (or liteq queues, liteq dlq list)
    Send a task:      liteq enqueue send_email --args '["a@example.com"]'

    Every command finds the broker through --broker or LITEQ_BROKER_URL
    (default: sqlite:///liteq.db in the working directory).

    \b
    Exit codes: 0 ok, 1 killed or failed, 2 bad arguments or import error,
    3 broker or database unusable, 4 pid-file problem.
    """


# ---------------------------------------------------------------------------------------
# liteq worker
# ---------------------------------------------------------------------------------------
def _default_processes() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@cli.command("worker")
@click.argument("modules", nargs=-1, required=True, metavar="MODULE[:BROKER] [MODULE...]")
@click.option("-p", "--processes", type=click.IntRange(min=1), default=None,
              help="Worker processes to run.  [default: the number of CPUs]")
@click.option("-t", "--threads", type=click.IntRange(min=1), default=8, show_default=True,
              help="Worker threads per process.")
@click.option("-Q", "--queues", multiple=True, metavar="QUEUE",
              help="Consume only these queues (repeat, or separate with commas).  "
                   "[default: every queue the modules declare]")
@click.option("-P", "--path", "paths", multiple=True, metavar="DIR",
              help="Look for the modules in DIR too (repeatable; the working directory "
                   "and PYTHONPATH are always searched).")
@click.option("--watch", multiple=True, metavar="DIR",
              type=click.Path(exists=True, file_okay=False),
              help="Restart the worker processes when a .py file under DIR changes "
                   "(development; polls once a second).")
@click.option("--pid-file", type=click.Path(dir_okay=False), metavar="FILE",
              help="Write the supervisor's pid to FILE; refuse to start (exit 4) if it "
                   "names a running process.")
@click.option("--log-file", type=click.Path(dir_okay=False), metavar="FILE",
              help="Append logs to FILE instead of stderr.")
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level (a line per task).")
@click.option("--shutdown-timeout", type=click.IntRange(min=0), default=600000,
              show_default=True, metavar="MS",
              help="On SIGTERM/SIGINT, how long running tasks may take to finish.")
@click.option("--max-tasks-per-child", type=click.IntRange(min=1), default=None, metavar="N",
              help="Replace a worker process after it ran N tasks (caps memory leaks).")
@click.option("--hard-time-limit", is_flag=True,
              help="Kill and replace a worker process whose task overran its time limit "
                   "where the TimeLimit middleware cannot interrupt it (C code, blocking "
                   "calls). The message is redelivered, then dead-lettered after the "
                   "broker's max_deliveries.")
@click.option("--use-spawn", is_flag=True,
              help="Start worker processes with the 'spawn' method instead of fork "
                   "(the default where fork is unavailable or unsafe).")
@click.option("--prefetch", type=click.IntRange(min=1), default=None, metavar="N",
              help="Messages each process claims ahead.  [default: 4 x threads]")
@broker_option
def worker_command(modules: tuple[str, ...], processes: int | None, threads: int,
                   queues: tuple[str, ...], paths: tuple[str, ...], watch: tuple[str, ...],
                   pid_file: str | None, log_file: str | None, verbose: bool,
                   shutdown_timeout: int, max_tasks_per_child: int | None,
                   hard_time_limit: bool, use_spawn: bool, prefetch: int | None,
                   broker_url: str | None) -> None:
    """Run a pool of worker processes for the actors of MODULE.

    \b
    MODULE is imported in every worker process, from --path, the working
    directory or PYTHONPATH. Its actors use the global broker: the one the
    module passed to liteq.set_broker(), else LITEQ_BROKER_URL / --broker,
    else sqlite:///liteq.db. MODULE:NAME uses the broker object NAME of the
    module instead (or calls NAME() when it is a function).

    \b
    Examples:
      liteq worker tasks
      liteq worker tasks -p 4 -t 16 -Q emails -Q reports
      liteq worker myapp.tasks:broker --watch myapp     (reload on changes)
      LITEQ_BROKER_URL=sqlite:////var/lib/app/jobs.db liteq worker tasks

    \b
    Signals: SIGTERM or Ctrl-C stop claiming, return prefetched messages and
    let running tasks finish within --shutdown-timeout (exit 0); a second
    one kills the processes at once (exit 1; their messages are released
    for redelivery). SIGHUP restarts the worker processes with fresh code.
    A crashed worker process is restarted.
    """
    from .pool import PoolConfig, run_pool, setup_logging

    if broker_url:
        os.environ["LITEQ_BROKER_URL"] = broker_url
    try:
        setup_logging(verbose, log_file)
    except OSError as e:
        fail(f"cannot open the log file {log_file}: {e.strerror}", EXIT_USAGE)
    import multiprocessing

    spawn = use_spawn or sys.platform in ("darwin", "win32") or \
        "fork" not in multiprocessing.get_all_start_methods()
    config = PoolConfig(
        modules=list(modules), paths=list(paths),
        processes=processes or _default_processes(), threads=threads,
        queues=[q for item in queues for q in item.replace(",", " ").split()] or None,
        prefetch=prefetch, shutdown_timeout=shutdown_timeout,
        max_tasks_per_child=max_tasks_per_child, hard_time_limit=hard_time_limit,
        use_spawn=spawn, verbose=verbose, log_file=log_file, watch=list(watch),
    )
    if broker_url:
        import logging

        logging.getLogger("liteq.pool").info("broker: %s", mask_url(broker_url))
    code, error = run_pool(config, pid_file)
    if error and log_file:
        click.echo(f"liteq: error: {error}", err=True)
    sys.exit(code)


# ---------------------------------------------------------------------------------------
# liteq enqueue
# ---------------------------------------------------------------------------------------
def _json_param(kind: type, what: str) -> Callable[[Any, Any, str | None], Any]:
    def parse(ctx: Any, param: Any, value: str | None) -> Any:
        if value is None:
            return kind()
        try:
            data = json.loads(value)
        except json.JSONDecodeError as e:
            raise click.BadParameter(f"not valid JSON: {e}") from None
        if not isinstance(data, kind):
            raise click.BadParameter(f"must be a JSON {what}, got {value!r}")
        return data

    return parse


@cli.command("enqueue")
@click.argument("actor_name", metavar="ACTOR")
@click.option("-q", "--queue", "queue_name", default="default", show_default=True,
              help="Queue of the actor.")
@click.option("--args", "args", callback=_json_param(list, "array"), metavar="JSON",
              help='Positional arguments as a JSON array, e.g. \'[1, "two"]\'.')
@click.option("--kwargs", "kwargs", callback=_json_param(dict, "object"), metavar="JSON",
              help='Keyword arguments as a JSON object, e.g. \'{"retry": true}\'.')
@click.option("--delay", type=click.IntRange(min=0), default=None, metavar="MS",
              help="Run no earlier than MS milliseconds from now.")
@click.option("--priority", type=int, default=None, metavar="N",
              help="Larger runs first within the queue.  [default: 0]")
@json_option
@broker_option
@handle_errors
def enqueue_command(actor_name: str, queue_name: str, args: list, kwargs: dict,
                    delay: int | None, priority: int | None, as_json: bool,
                    broker_url: str | None) -> None:
    """Send a message to ACTOR without importing its code.

    \b
    Example:
      liteq enqueue send_welcome --queue emails --args '["ada@example.com"]'
    """
    from .common import validate_queue_name
    from .errors import InvalidQueueName
    from .message import Message

    try:
        validate_queue_name(queue_name)
    except InvalidQueueName as e:
        raise click.BadParameter(str(e), param_hint="--queue") from None
    broker = open_broker(broker_url, create=True)
    options: dict[str, Any] = {}
    if priority is not None:
        options["priority"] = priority
    message = Message(queue_name=queue_name, actor_name=actor_name, args=tuple(args),
                      kwargs=kwargs, options=options)
    broker.declare_queue(queue_name)
    sent = broker.enqueue(message, delay=delay)
    broker.close()
    if as_json:
        print_json(sent.asdict())
    else:
        when = f" in {delay} ms" if delay else ""
        click.echo(f"enqueued {sent} on {queue_name}{when}: {sent.message_id}")


# ---------------------------------------------------------------------------------------
# liteq queues / stats
# ---------------------------------------------------------------------------------------
_COUNTS = ("ready", "delayed", "running", "dead", "done", "failed")


@cli.command("queues")
@json_option
@broker_option
@handle_errors
def queues_command(as_json: bool, broker_url: str | None) -> None:
    """List the queues with their ready, delayed, running and dead messages."""
    broker = open_broker(broker_url, sqlite_for="liteq queues")
    stats = broker.stats()
    broker.close()
    rows = [{"queue": name, **{k: counts[k] for k in ("ready", "delayed", "running", "dead")}}
            for name, counts in sorted(stats.items())]
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("no queues yet")
        return
    table = _table(None, [("Queue", "left"), ("Ready", "right"), ("Delayed", "right"),
                          ("Running", "right"), ("Dead", "right")])
    for row in rows:
        table.add_row(row["queue"], *(str(row[k]) for k in ("ready", "delayed", "running",
                                                             "dead")))
    _console().print(table)


def _worker_rows(broker: Any) -> list[dict[str, Any]]:
    import socket

    from .common import current_millis

    now = current_millis()
    host = socket.gethostname()
    rows = []
    for entry in broker.workers():
        age = now - entry["heartbeat_at"]
        state = "alive"
        if age > STALE_AFTER_MS:
            state = "stale"
        if entry["host"] == host:
            try:
                os.kill(entry["pid"], 0)
            except ProcessLookupError:
                state = "dead"
            except PermissionError:
                pass
        rows.append({**entry, "heartbeat_age_ms": age, "state": state})
    return rows


@cli.command("stats")
@json_option
@broker_option
@handle_errors
def stats_command(as_json: bool, broker_url: str | None) -> None:
    """Per-queue counts (ready, delayed, running, dead, done, failed) and the worker registry.

    Workers whose heartbeat is older than 10 s are shown as stale, and those
    whose process is gone from this host as dead.
    """
    broker = open_broker(broker_url, sqlite_for="liteq stats")
    stats = broker.stats()
    workers = _worker_rows(broker)
    broker.close()
    if as_json:
        print_json({"broker": mask_url(broker_url or DEFAULT_URL), "queues": stats,
                    "workers": workers})
        return
    console = _console()
    click.echo(f"broker: {mask_url(broker_url or DEFAULT_URL)}")
    table = _table("Queues", [("Queue", "left")] + [(k.title(), "right") for k in _COUNTS])
    for name, counts in sorted(stats.items()):
        table.add_row(name, *(str(counts[k]) for k in _COUNTS))
    console.print(table if stats else "no queues yet")
    wtable = _table("Workers", [("PID", "right"), ("Host", "left"), ("Queues", "left"),
                                ("Threads", "right"), ("Running", "left"),
                                ("Processed", "right"), ("Failed", "right"),
                                ("Heartbeat", "right"), ("State", "left")])
    for w in workers:
        wtable.add_row(str(w["pid"]), w["host"], ",".join(w["queues"]), str(w["threads"]),
                       ", ".join(w["running"]) or "-", str(w["processed"]), str(w["failed"]),
                       f"{w['heartbeat_age_ms'] / 1000:.1f}s ago", w["state"])
    console.print(wtable if workers else "no workers")


# ---------------------------------------------------------------------------------------
# liteq dlq
# ---------------------------------------------------------------------------------------
@cli.group("dlq")
def dlq_group() -> None:
    """Dead letters: messages that exhausted their retries or could not run.

    They are kept 7 days. List them, show one with its traceback, requeue
    them (after fixing the bug) or purge them.
    """


def _letter_dict(letter: Any, *, full: bool = False) -> dict[str, Any]:
    message = letter.message
    data: dict[str, Any] = {
        "id": letter.id, "queue": letter.queue, "message_id": letter.message_id,
        "actor_name": letter.actor_name, "priority": letter.priority,
        "reason": letter.reason, "deliveries": letter.deliveries,
        "failed_at": letter.failed_at,
    }
    if full:
        data["traceback"] = letter.traceback
        data["message"] = message.asdict() if message is not None else None
        if message is None:
            data["body"] = letter.body.decode("utf-8", errors="replace")
    return data


@dlq_group.command("list")
@click.option("-q", "--queue", default=None, help="Only this queue's dead letters.")
@click.option("-n", "--limit", type=click.IntRange(min=1), default=None,
              help="Show at most N (oldest first).  [default: all]")
@json_option
@broker_option
@handle_errors
def dlq_list(queue: str | None, limit: int | None, as_json: bool, broker_url: str | None
             ) -> None:
    """List dead letters, oldest first."""
    broker = open_broker(broker_url, sqlite_for="liteq dlq")
    letters = broker.list_dead_letters(queue, limit)
    broker.close()
    if as_json:
        print_json([_letter_dict(d) for d in letters])
        return
    if not letters:
        click.echo("no dead letters")
        return
    table = _table(None, [("ID", "right"), ("Queue", "left"), ("Actor", "left"),
                          ("Message ID", "left"), ("Tries", "right"), ("Failed at", "left"),
                          ("Reason", "left")])
    for d in letters:
        reason = d.reason if len(d.reason) <= 80 else d.reason[:77] + "..."
        table.add_row(str(d.id), d.queue, d.actor_name or "?", d.message_id or "-",
                      str(d.deliveries), _when(d.failed_at), reason)
    _console().print(table)


@dlq_group.command("show")
@click.argument("dead_id", type=int, metavar="ID")
@json_option
@broker_option
@handle_errors
def dlq_show(dead_id: int, as_json: bool, broker_url: str | None) -> None:
    """Show one dead letter: its message, why it failed and the traceback."""
    broker = open_broker(broker_url, sqlite_for="liteq dlq")
    letter = broker.get_dead_letter(dead_id)
    broker.close()
    if letter is None:
        fail(f"no dead letter with id {dead_id}")
    data = _letter_dict(letter, full=True)
    if as_json:
        print_json(data)
        return
    message = letter.message
    lines = [
        f"id:          {letter.id}",
        f"queue:       {letter.queue}",
        f"actor:       {letter.actor_name or '?'}",
        f"message id:  {letter.message_id or '-'}",
        f"call:        {message if message is not None else '(undecodable body)'}",
        f"options:     {_options(message)}",
        f"deliveries:  {letter.deliveries}",
        f"failed at:   {_when(letter.failed_at)}",
        f"reason:      {letter.reason}",
    ]
    if message is None:
        lines.append(f"body:        {data['body'][:500]}")
    click.echo("\n".join(lines))
    if letter.traceback:
        click.echo("traceback:\n" + letter.traceback.rstrip())


def _options(message: Any) -> str:
    if message is None:
        return "-"
    shown = {k: v for k, v in message.options.items() if k != "traceback"}
    return json.dumps(shown, default=str)


def _selection(ids: tuple[int, ...], queue: str | None, everything: bool) -> None:
    chosen = sum((bool(ids), queue is not None, everything))
    if chosen != 1:
        raise click.UsageError("give dead-letter IDs, or --queue QUEUE, or --all (one of them)")


def _dead_total(broker: Any, ids: tuple[int, ...], queue: str | None) -> int:
    if ids:
        return len(ids)
    stats = broker.stats()
    if queue is not None:
        return stats.get(queue, {}).get("dead", 0)
    return sum(counts["dead"] for counts in stats.values())


@dlq_group.command("requeue")
@click.argument("ids", nargs=-1, type=int, metavar="[IDS]...")
@click.option("-q", "--queue", default=None, help="Requeue every dead letter of QUEUE.")
@click.option("--all", "everything", is_flag=True, help="Requeue every dead letter.")
@json_option
@broker_option
@handle_errors
def dlq_requeue(ids: tuple[int, ...], queue: str | None, everything: bool, as_json: bool,
                broker_url: str | None) -> None:
    """Put dead letters back on their queues as new ready messages.

    \b
    Examples:
      liteq dlq requeue 12 13
      liteq dlq requeue --queue emails
      liteq dlq requeue --all
    """
    _selection(ids, queue, everything)
    broker = open_broker(broker_url, sqlite_for="liteq dlq")
    total = _dead_total(broker, ids, queue)
    moved = _progress_run(total, "requeueing", lambda progress: broker.requeue_dead_letters(
        list(ids) if ids else None, queue=queue, progress=progress))
    broker.close()
    if as_json:
        print_json({"requeued": moved})
    else:
        click.echo(f"requeued {moved} dead letter(s)")


@dlq_group.command("purge")
@click.argument("ids", nargs=-1, type=int, metavar="[IDS]...")
@click.option("-q", "--queue", default=None, help="Delete every dead letter of QUEUE.")
@click.option("--all", "everything", is_flag=True, help="Delete every dead letter.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@broker_option
@handle_errors
def dlq_purge(ids: tuple[int, ...], queue: str | None, everything: bool, yes: bool,
              as_json: bool, broker_url: str | None) -> None:
    """Delete dead letters for good (asks first unless --yes)."""
    _selection(ids, queue, everything)
    broker = open_broker(broker_url, sqlite_for="liteq dlq")
    total = _dead_total(broker, ids, queue)
    if not yes:
        which = f"of queue {queue} " if queue else ""
        click.confirm(f"Delete {total} dead letter(s) {which}for good?", abort=True)
    removed = _progress_run(total, "purging", lambda progress: broker.purge_dead_letters(
        list(ids) if ids else None, queue=queue, progress=progress))
    broker.close()
    if as_json:
        print_json({"purged": removed})
    else:
        click.echo(f"purged {removed} dead letter(s)")


# ---------------------------------------------------------------------------------------
# liteq purge
# ---------------------------------------------------------------------------------------
@cli.command("purge")
@click.argument("queue")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@broker_option
@handle_errors
def purge_command(queue: str, yes: bool, as_json: bool, broker_url: str | None) -> None:
    """Delete every message of QUEUE: ready, delayed and running (not its dead letters)."""
    broker = open_broker(broker_url, sqlite_for="liteq purge")
    stats = broker.stats()
    if queue not in stats:
        fail(f"no queue named {queue!r} (known: {', '.join(sorted(stats)) or 'none'})")
    count = sum(stats[queue][k] for k in ("ready", "delayed", "running"))
    if not yes:
        click.confirm(f"Delete {count} message(s) of queue {queue}?", abort=True)
    broker.flush(queue)
    broker.close()
    if as_json:
        print_json({"queue": queue, "purged": count})
    else:
        click.echo(f"purged {count} message(s) from {queue}")


def main(argv: list[str] | None = None) -> None:
    """The ``liteq`` console script."""
    cli.main(args=argv, prog_name="liteq")


if __name__ == "__main__":
    main()
