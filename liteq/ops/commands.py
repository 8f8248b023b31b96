"""The operations commands: ``liteq enqueue``, ``queues``, ``stats``, ``dlq …`` and ``purge``.

Each is a thin layer over the broker's :class:`~liteq.brokers.inspect.Inspector` (and
:func:`liteq.ops.snapshot.snapshot`), so each works on every broker; a figure a broker
cannot know shows as "–" (``null`` in JSON). :mod:`liteq.cli` adds them to the ``liteq``
group.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from ..brokers.inspect import COUNT_FIELDS, Inspector
from .cli_support import (
    broker_option,
    console,
    count,
    fail,
    handle_errors,
    inspecting,
    json_option,
    literal,
    open_broker,
    print_json,
    progress_run,
    queues_option,
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
#: What ``liteq queues`` shows of each queue (``stats`` shows every count).
_NOW = ("ready", "delayed", "claimed", "running", "dead")
_LIFETIME = tuple(k for k in COUNT_FIELDS if k not in _NOW)


def _title(field: str) -> str:
    return field.replace("_", "-").capitalize()


@click.command("queues")
@json_option
@broker_option
@handle_errors
def queues_command(as_json: bool, broker_url: str | None) -> None:
    """List the queues with their ready, delayed, claimed, running and dead messages."""
    with inspecting(broker_url) as inspector:
        found = inspector.queues()
    rows = [{"queue": name, **{k: getattr(counts, k) for k in _NOW}}
            for name, counts in sorted(found.items())]
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("no queues yet")
        return
    grid = table(None, [("Queue", "left")] + [(_title(k), "right") for k in _NOW])
    for row in rows:
        grid.add_row(literal(row["queue"]), *(count(row[k]) for k in _NOW))
    console().print(grid)


def storage_line(storage: dict[str, Any]) -> str:
    """``file 57.0 MB, 13,900 free pages of 4,096 bytes (54.3 MB)`` for ``stats``."""
    free = storage["free_pages"] * storage["page_size"]
    return (f"storage: {storage['path']}: {storage['file_bytes'] / 1e6:.1f} MB, "
            f"{storage['free_pages']:,} free pages of {storage['page_size']:,} bytes "
            f"({free / 1e6:.1f} MB; `liteq compact` returns them"
            + (", once after `liteq compact --full`)" if storage.get("auto_vacuum") == "none"
               else ")"))


@click.command("stats")
@json_option
@broker_option
@queues_option
@handle_errors
def stats_command(as_json: bool, broker_url: str | None, queues: tuple[str, ...]) -> None:
    """Per-queue counts and the worker registry.

    \b
    Now:      ready, delayed, claimed (taken by a worker), running (a thread
              executes it), dead (in the dead letters).
    Lifetime: succeeded and failed attempts; retried (failed, then retried)
              and dead-lettered messages.
    "–" is a count this broker cannot know. Workers whose heartbeat is
    older than 10 s are shown as stale, and those whose process is gone
    from this host as dead.
    """
    from .snapshot import snapshot

    with inspecting(broker_url, queues) as inspector:
        data = snapshot(inspector)
    if as_json:
        print_json(data)
        return
    out = console()
    click.echo(safe(f"broker: {data['broker']}"))
    if data["storage"] is not None:
        click.echo(safe(storage_line(data["storage"])))
    if not data["queues"]:
        out.print("no queues yet")
    for title, fields in (("Queues now", _NOW), ("Lifetime counts", _LIFETIME)):
        if data["queues"]:
            grid = table(title, [("Queue", "left")] + [(_title(k), "right") for k in fields])
            for name, counts in data["queues"].items():
                grid.add_row(literal(name), *(count(counts[k]) for k in fields))
            out.print(grid)
    workers = table("Workers", [("PID", "right"), ("Host", "left"), ("Queues", "left"),
                                ("Threads", "right"), ("Running", "left"),
                                ("Succeeded", "right"), ("Failed", "right"),
                                ("Heartbeat", "right"), ("State", "left")])
    for w in data["workers"]:
        workers.add_row(str(w["pid"]), literal(w["host"]), literal(",".join(w["queues"])),
                        str(w["threads"]), literal(", ".join(w["running"]) or "-"),
                        count(w.get("succeeded")), count(w.get("failed")),
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


def _retries(letter: Any) -> int | None:
    """How many times the message was re-enqueued after failing (``options["retries"]``)."""
    message = letter.message
    return None if message is None else message.options.get("retries", 0)


def _letter_dict(letter: Any, *, full: bool = False) -> dict[str, Any]:
    message = letter.message
    data: dict[str, Any] = {
        "id": letter.id, "queue": letter.queue, "message_id": letter.message_id,
        "actor_name": letter.actor_name, "priority": letter.priority,
        "reason": letter.reason, "deliveries": letter.deliveries,
        "retries": _retries(letter), "failed_at": letter.failed_at,
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
    """List dead letters, oldest first.

    Deliveries: times a worker received the message; Retries: times it was
    enqueued again after failing.
    """
    with inspecting(broker_url) as inspector:
        letters = inspector.dead_letters(queue, limit)
    if as_json:
        print_json([_letter_dict(d) for d in letters])
        return
    if not letters:
        click.echo("no dead letters")
        return
    grid = table(None, [("ID", "right"), ("Queue", "left"), ("Actor", "left"),
                        ("Message ID", "left"), ("Deliveries", "right"),
                        ("Retries", "right"), ("Failed at", "left"), ("Reason", "left")])
    for column in grid.columns[4:6]:  # the two words must stay whole: they differ
        column.min_width = len(str(column.header))
    for d in letters:
        reason = safe(d.reason)
        reason = reason if len(reason) <= 80 else reason[:77] + "..."
        grid.add_row(literal(d.id), literal(d.queue), literal(d.actor_name or "?"),
                     literal(d.message_id or "-"), count(d.deliveries), count(_retries(d)),
                     when(d.failed_at), literal(reason))
    console().print(grid)


@dlq_group.command("show")
@click.argument("dead_id", metavar="ID")
@json_option
@broker_option
@handle_errors
def dlq_show(dead_id: str, as_json: bool, broker_url: str | None) -> None:
    """Show one dead letter: its message, why it failed and the traceback."""
    with inspecting(broker_url) as inspector:
        letter = inspector.dead_letter(dead_id)
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
        f"deliveries:  {count(letter.deliveries)}",
        f"retries:     {count(data['retries'])}",
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


def _selection(ids: tuple[str, ...], queue: str | None, everything: bool) -> None:
    chosen = sum((bool(ids), queue is not None, everything))
    if chosen != 1:
        raise click.UsageError("give dead-letter IDs, or --queue QUEUE, or --all (one of them)")


def _dead_total(inspector: Inspector, ids: tuple[str, ...], queue: str | None) -> int:
    """How many dead letters the selection holds (for the prompt and progress bar)."""
    if ids:
        return len(ids)
    found = inspector.queues()
    if queue is not None:
        return (found[queue].dead or 0) if queue in found else 0
    return sum(counts.dead or 0 for counts in found.values())


@dlq_group.command("requeue")
@click.argument("ids", nargs=-1, metavar="[IDS]...")
@click.option("-q", "--queue", default=None, help="Requeue every dead letter of QUEUE.")
@click.option("--all", "everything", is_flag=True, help="Requeue every dead letter.")
@json_option
@broker_option
@handle_errors
def dlq_requeue(ids: tuple[str, ...], queue: str | None, everything: bool, as_json: bool,
                broker_url: str | None) -> None:
    """Put dead letters back on their queues as new ready messages.

    \b
    Examples:
      liteq dlq requeue 12 13
      liteq dlq requeue --queue emails
      liteq dlq requeue --all
    """
    _selection(ids, queue, everything)
    with inspecting(broker_url) as inspector:
        total = _dead_total(inspector, ids, queue)
        moved = progress_run(total, "requeueing", lambda progress: inspector.requeue_dead(
            list(ids) if ids else None, queue_name=queue, progress=progress))
    if as_json:
        print_json({"requeued": moved})
    else:
        click.echo(f"requeued {moved} dead letter(s)")


@dlq_group.command("purge")
@click.argument("ids", nargs=-1, metavar="[IDS]...")
@click.option("-q", "--queue", default=None, help="Delete every dead letter of QUEUE.")
@click.option("--all", "everything", is_flag=True, help="Delete every dead letter.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@broker_option
@handle_errors
def dlq_purge(ids: tuple[str, ...], queue: str | None, everything: bool, yes: bool,
              as_json: bool, broker_url: str | None) -> None:
    """Delete dead letters for good (asks first unless --yes)."""
    _selection(ids, queue, everything)
    with inspecting(broker_url) as inspector:
        total = _dead_total(inspector, ids, queue)
        if not yes:
            which = f"of queue {safe(queue)} " if queue else ""
            click.confirm(f"Delete {total} dead letter(s) {which}for good?", abort=True)
        removed = progress_run(total, "purging", lambda progress: inspector.purge_dead(
            list(ids) if ids else None, queue_name=queue, progress=progress))
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
    """Delete every message of QUEUE: ready, delayed and claimed (not its dead letters)."""
    with inspecting(broker_url) as inspector:
        found = inspector.queues()
        if queue not in found:
            fail(f"no queue named {queue!r} (known: {', '.join(sorted(found)) or 'none'})")
        if not yes:
            known = [getattr(found[queue], k) for k in ("ready", "delayed", "claimed")]
            total = "every" if None in known else str(sum(n or 0 for n in known))
            click.confirm(f"Delete {total} message(s) of queue {safe(queue)}?", abort=True)
        purged = inspector.purge(queue)
    if as_json:
        print_json({"queue": queue, "purged": purged})
    else:
        click.echo(f"purged {purged} message(s) from {safe(queue)}")
