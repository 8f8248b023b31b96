"""The operations commands: ``liteq enqueue``, ``queues``, ``stats``, ``dlq …`` and ``purge``.

Each is a thin layer over :class:`~liteq.brokers.sqlite.SqliteBroker` calls (and
:func:`liteq.ops.snapshot.snapshot`); :mod:`liteq.cli` adds them to the ``liteq`` group.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from .cli_support import (
    DEFAULT_URL,
    broker_option,
    console,
    fail,
    handle_errors,
    json_option,
    literal,
    open_broker,
    print_json,
    progress_run,
    safe,
    table,
    when,
)


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


@click.command("enqueue")
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
    from ..common import validate_queue_name
    from ..errors import InvalidQueueName
    from ..message import Message

    try:
        validate_queue_name(queue_name)
    except InvalidQueueName as e:
        raise click.BadParameter(str(e), param_hint="--queue") from None
    broker = open_broker(broker_url, create=True)
    options: dict[str, Any] = {}
    if priority is not None:
        options["priority"] = priority
    message: Message[Any] = Message(queue_name=queue_name, actor_name=actor_name, args=tuple(args),
                      kwargs=kwargs, options=options)
    broker.declare_queue(queue_name)
    sent = broker.enqueue(message, delay=delay)
    broker.close()
    if as_json:
        print_json(sent.asdict())
    else:
        when = f" in {delay} ms" if delay else ""
        click.echo(safe(f"enqueued {sent} on {queue_name}{when}: {sent.message_id}"))


# ---------------------------------------------------------------------------------------
# liteq queues / stats
# ---------------------------------------------------------------------------------------
_COUNTS = ("ready", "delayed", "running", "dead", "done", "failed")


@click.command("queues")
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
    grid = table(None, [("Queue", "left"), ("Ready", "right"), ("Delayed", "right"),
                        ("Running", "right"), ("Dead", "right")])
    for row in rows:
        grid.add_row(literal(row["queue"]), *(str(row[k]) for k in ("ready", "delayed",
                                                                     "running", "dead")))
    console().print(grid)


@click.command("stats")
@json_option
@broker_option
@handle_errors
def stats_command(as_json: bool, broker_url: str | None) -> None:
    """Per-queue counts (ready, delayed, running, dead, done, failed) and the worker registry.

    Workers whose heartbeat is older than 10 s are shown as stale, and those
    whose process is gone from this host as dead.
    """
    from .snapshot import snapshot

    broker = open_broker(broker_url, sqlite_for="liteq stats")
    data = snapshot(broker, broker_url or DEFAULT_URL)
    broker.close()
    if as_json:
        print_json(data)
        return
    out = console()
    click.echo(safe(f"broker: {data['broker']}"))
    queues = table("Queues", [("Queue", "left")] + [(k.title(), "right") for k in _COUNTS])
    for name, counts in sorted(data["queues"].items()):
        queues.add_row(literal(name), *(str(counts[k]) for k in _COUNTS))
    out.print(queues if data["queues"] else "no queues yet")
    workers = table("Workers", [("PID", "right"), ("Host", "left"), ("Queues", "left"),
                                ("Threads", "right"), ("Running", "left"),
                                ("Processed", "right"), ("Failed", "right"),
                                ("Heartbeat", "right"), ("State", "left")])
    for w in data["workers"]:
        workers.add_row(str(w["pid"]), literal(w["host"]), literal(",".join(w["queues"])),
                        str(w["threads"]), literal(", ".join(w["running"]) or "-"),
                        str(w["processed"]), str(w["failed"]),
                        f"{w['heartbeat_age_ms'] / 1000:.1f}s ago", literal(w["state"]))
    out.print(workers if data["workers"] else "no workers")


# ---------------------------------------------------------------------------------------
# liteq dlq
# ---------------------------------------------------------------------------------------
@click.group("dlq")
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
    grid = table(None, [("ID", "right"), ("Queue", "left"), ("Actor", "left"),
                        ("Message ID", "left"), ("Tries", "right"), ("Failed at", "left"),
                        ("Reason", "left")])
    for d in letters:
        reason = safe(d.reason)
        reason = reason if len(reason) <= 80 else reason[:77] + "..."
        grid.add_row(str(d.id), literal(d.queue), literal(d.actor_name or "?"),
                     literal(d.message_id or "-"), str(d.deliveries), when(d.failed_at),
                     literal(reason))
    console().print(grid)


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
        f"failed at:   {when(letter.failed_at)}",
        f"reason:      {letter.reason}",
    ]
    if message is None:
        lines.append(f"body:        {data['body'][:500]}")
    click.echo("\n".join(safe(line) for line in lines))
    if letter.traceback:
        click.echo("traceback:\n" + safe(letter.traceback.rstrip(), multiline=True))


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
    moved = progress_run(total, "requeueing", lambda progress: broker.requeue_dead_letters(
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
        which = f"of queue {safe(queue)} " if queue else ""
        click.confirm(f"Delete {total} dead letter(s) {which}for good?", abort=True)
    removed = progress_run(total, "purging", lambda progress: broker.purge_dead_letters(
        list(ids) if ids else None, queue=queue, progress=progress))
    broker.close()
    if as_json:
        print_json({"purged": removed})
    else:
        click.echo(f"purged {removed} dead letter(s)")


# ---------------------------------------------------------------------------------------
# liteq purge
# ---------------------------------------------------------------------------------------
@click.command("purge")
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
        click.confirm(f"Delete {count} message(s) of queue {safe(queue)}?", abort=True)
    broker.flush(queue)
    broker.close()
    if as_json:
        print_json({"queue": queue, "purged": count})
    else:
        click.echo(f"purged {count} message(s) from {safe(queue)}")
