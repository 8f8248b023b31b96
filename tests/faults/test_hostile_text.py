"""Hostile text: stored names, ids, arguments and errors are printed literally.

A real worker process dead-letters messages of an actor whose name and error carry
rich markup (``[/x]``, ``[bold red]``, ``[link=…]``) and terminal escapes (clear
screen, set window title); rows written the way the broker writes them add a queue,
a message id and a worker host of the same kind. Every ``liteq`` command that shows
them, and the worker's own log, must show the text as stored (commands exiting 0) and
never emit its ESC or BEL bytes.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import wait_for
from rich.console import Console

import liteq
from liteq.brokers.sqlite import schema as q
from liteq.common import current_millis
from liteq.store import SqliteBroker

ERROR = "[/x] [bold red]boom \x1b[2J \x1b]0;pwn\x07 [link=https://evil.example]click[/link]"
ACTOR = "explode[/x]\x1b[31m"
HOLD = "hold[bold]\x1b]0;held\x07"
QUEUE = "q[/x]\x1b[5m"
MESSAGE_ID = "id[/x][red]\x1b[8m"
HOST = "host[/x]\x1b]0;pwn\x07"
FAILING = 3

TASKS = textwrap.dedent(f"""
    import os
    import time

    import liteq
    from liteq.store import SqliteBroker

    liteq.set_broker(SqliteBroker(url=os.environ["LITEQ_BROKER_URL"]))


    @liteq.actor(actor_name={ACTOR!r}, max_retries=0)
    def explode(text, **kwargs):
        raise ValueError(text)


    @liteq.actor(actor_name={HOLD!r}, queue_name="held", max_retries=0)
    def hold():
        gate = os.environ["LITEQ_TEST_GATE"]
        deadline = time.monotonic() + 120
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.01)
""")


def visible(text: str) -> str:
    """How a command must show ``text``: its escapes as ``\\x1b``/``\\x07``, the rest as is."""
    return text.replace("\x1b", "\\x1b").replace("\x07", "\\x07")


def write_rows_as_the_broker_does(broker: SqliteBroker) -> None:
    """A dead letter of a hostile queue and id, and a worker entry of a hostile host."""
    now = current_millis()

    def write(conn) -> None:
        conn.execute(q.DECLARE_QUEUE, (QUEUE, now))
        conn.execute(q.DEAD_LETTER_BODY, (
            QUEUE, MESSAGE_ID, ACTOR, 0, b"\x1b[2J not an envelope [/x]", ERROR,
            f"Traceback (most recent call last):\nValueError: {ERROR}\n", 5, now))
        activity = {"run_time": {}, "failures": [
            {"at": now, "actor": ACTOR, "message_id": MESSAGE_ID, "error": ERROR}]}
        conn.execute(q.HEARTBEAT, (
            "elsewhere:1:x", 1, HOST, json.dumps([QUEUE]), 3, now - 1000, now,
            json.dumps([HOLD, ACTOR]), json.dumps({QUEUE: 2}), 10, 9, 1, json.dumps(activity)))

    broker.db.write(write)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A database with hostile dead letters and failures, and a live worker holding a task.

    Yields the database path and the environment the commands run with.
    """
    root = tmp_path_factory.mktemp("hostile")
    db = root / "q.db"
    (root / "hostile_tasks.py").write_text(TASKS)
    env = dict(os.environ, LITEQ_BROKER_URL=f"sqlite:///{db}", COLUMNS="400", LINES="100",
               TERM="dumb", LITEQ_TEST_GATE=str(root / "gate"), PYTHONUNBUFFERED="1")
    broker = SqliteBroker(str(db), middleware=[])
    broker.declare_queue("default")
    broker.declare_queue("held")
    broker.enqueue_many(
        [liteq.Message("default", ACTOR, (ERROR,), {"note": ERROR}, {})
         for _ in range(FAILING - 1)]
        + [liteq.Message("default", ACTOR, (ERROR,), {}, {}, message_id=MESSAGE_ID),
           liteq.Message("held", HOLD, (), {}, {})])
    write_rows_as_the_broker_does(broker)
    log = open(root / "worker.log", "wb")  # noqa: SIM115 - closed below
    worker = subprocess.Popen(
        [sys.executable, "-m", "liteq", "worker", "hostile_tasks", "--path", str(root),
         "-p", "1", "-t", "2"], env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT)
    try:
        def ready() -> bool:
            mine = [w for w in broker.workers() if w["host"] != HOST]
            return (broker.stats()["default"]["dead"] == FAILING and len(mine) == 1
                    and mine[0]["running"] == [HOLD] and mine[0]["failed"] == FAILING)

        wait_for(ready, timeout=30)
        yield db, env
    finally:
        (root / "gate").touch()
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)
        log.close()
        broker.close()


def run(env: dict[str, str], *args: str, code: int = 0) -> str:
    """Run ``liteq ARGS``; return its stdout and stderr after checking they are safe."""
    proc = subprocess.run([sys.executable, "-m", "liteq", *args], env=env,
                          capture_output=True, timeout=60)
    assert proc.returncode == code, proc.stderr.decode(errors="replace")
    for stream in (proc.stdout, proc.stderr):
        assert b"\x1b" not in stream and b"\x07" not in stream, stream
    return (proc.stdout + proc.stderr).decode()


def test_dlq_list_shows_hostile_names_and_errors_literally(hostile):
    _, env = hostile
    out = run(env, "dlq", "list")
    assert out.count(visible(ACTOR)) == FAILING + 1, out
    assert visible(QUEUE) in out and visible(MESSAGE_ID) in out
    assert visible(ERROR)[:60] in out  # the table cuts long reasons


def test_dlq_show_neutralises_escapes_in_every_field(hostile):
    db, env = hostile
    broker = SqliteBroker(str(db), middleware=[])
    try:
        letters = broker.list_dead_letters()
    finally:
        broker.close()
    by_queue = {d.queue: d.id for d in letters}
    sent = run(env, "dlq", "show", str(by_queue["default"]))
    assert visible(ACTOR) in sent and visible(ERROR) in sent
    assert "[link=https://evil.example]click[/link]" in sent
    written = run(env, "dlq", "show", str(by_queue[QUEUE]))
    for text in (QUEUE, MESSAGE_ID, ACTOR, ERROR, "\x1b[2J not an envelope [/x]"):
        assert visible(text) in written, (text, written)
    assert f"ValueError: {visible(ERROR)}" in written  # the traceback


def test_top_once_shows_hostile_workers_and_failures_literally(hostile):
    _, env = hostile
    out = run(env, "top", "--once", "--interval", "0")
    for text in (QUEUE, HOST, HOLD, ACTOR, f"ValueError: {ERROR}"):
        assert visible(text) in out, (text, out)


def test_stats_and_queues_show_hostile_names_literally(hostile):
    _, env = hostile
    stats = run(env, "stats")
    for text in (QUEUE, HOST, HOLD):
        assert visible(text) in stats, (text, stats)
    queues = run(env, "queues")
    assert visible(QUEUE) in queues and "default" in queues


def test_the_worker_log_shows_failures_literally(hostile):
    db, _ = hostile
    logged = (db.parent / "worker.log").read_bytes()
    assert b"\x1b" not in logged and b"\x07" not in logged, logged
    text = logged.decode()
    assert text.count(f"actor {visible(ACTOR)} failed") == FAILING, text
    assert f"ValueError: {visible(ERROR)}" in text


def test_errors_naming_stored_queues_are_safe(hostile):
    _, env = hostile
    refused = run(env, "purge", "nosuch", "--yes", code=1)
    assert "no queue named 'nosuch'" in refused and visible(QUEUE) in refused


def test_json_output_keeps_the_text_exact(hostile):
    db, env = hostile
    letters = json.loads(run(env, "dlq", "list", "--json"))
    assert {(d["queue"], d["actor_name"]) for d in letters} == {("default", ACTOR),
                                                               (QUEUE, ACTOR)}
    assert {d["reason"] for d in letters if d["queue"] == QUEUE} == {ERROR}
    workers = json.loads(run(env, "stats", "--json"))["workers"]
    assert {w["host"] for w in workers} >= {HOST}


def test_safe_shows_every_control_character_visibly():
    from liteq.ops.cli_support import safe

    controls = [chr(c) for c in (*range(0x20), 0x7f, *range(0x80, 0xa0))]
    bidi = ["\u202e", "\u2066", "\u2028"]
    shown = safe("".join(controls + bidi))
    assert shown.isprintable() and shown.count("\\") == len(controls) + len(bidi)
    assert safe("a\tb\nc\rd", multiline=True) == "a\tb\nc\\x0dd"
    assert safe("caf\u00e9 [b]\u00d7") == "caf\u00e9 [b]\u00d7"  # printable text kept


def test_literal_text_is_never_read_as_markup():
    from liteq.ops.cli_support import literal

    console = Console(file=io.StringIO(), width=200, force_terminal=True,
                      color_system="truecolor")
    console.print(literal(ERROR))
    printed = console.file.getvalue()
    assert visible(ERROR) in printed and "\x1b]8;" not in printed  # no hyperlink either
