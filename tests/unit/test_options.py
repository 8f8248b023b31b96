"""The option table: validation at send, at actor declaration and at decode; resolution;
and failures that must never be acknowledged as done (issue 8 item 2, issue 9 typos)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import running_worker, wait_for

import liteq
from liteq.errors import DecodeError, InvalidOption
from liteq.middleware import Middleware, Retries

INT64_MAX = 2**63 - 1


def rows(path: str, sql: str) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


def count_messages(path: str) -> int:
    return rows(path, "SELECT count(*) FROM liteq_messages")[0][0]


def done_count(path: str, queue: str = "default") -> int:
    """Attempts that succeeded (the counter of liteq.brokers.inspect)."""
    found = rows(path, f"SELECT succeeded FROM liteq_queues WHERE queue = '{queue}'")
    return found[0][0] if found else 0


def dead_letter_reasons(path: str) -> list[str]:
    return [r for (r,) in rows(path, "SELECT reason FROM liteq_dead_letters ORDER BY id")]


def tamper(path: str, message_id: str, **fields: object) -> None:
    """Rewrite a stored message's envelope in the SQLite file, as another producer might."""
    [(body,)] = rows(path, f"SELECT body FROM liteq_messages WHERE message_id = '{message_id}'")
    envelope = json.loads(body)
    envelope.update(fields)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE liteq_messages SET body = ? WHERE message_id = ?",
                     (json.dumps(envelope).encode(), message_id))


# --- send-time validation ---------------------------------------------------------------------

BAD_SENDS = [
    ({"max_retries": "3"}, "max_retries"),
    ({"max_retries": -1}, "max_retries"),
    ({"min_backoff": "10"}, "min_backoff"),
    ({"max_backoff": float("nan")}, "max_backoff"),
    ({"max_age": "1h"}, "max_age"),
    ({"time_limit": -5}, "time_limit"),
    ({"notify_shutdown": "yes"}, "notify_shutdown"),
    ({"on_success": 5}, "on_success"),
    ({"throws": "ValueError"}, "throws"),
    ({"store_results": "yes"}, "store_results"),
    ({"result_ttl": -1}, "result_ttl"),
    ({"pipe_target": {"actor_name": "x"}}, "pipe_target"),
    ({"pipe_ignore": 1}, "pipe_ignore"),
    ({"priority": INT64_MAX + 1}, "priority"),
    ({"priority": -(2**63) - 1}, "priority"),
    ({"broker_priority": 256}, "broker_priority"),
    ({"eta": "soon"}, "eta"),
    ({"eta": INT64_MAX + 1}, "eta"),
    ({"retries": "2"}, "retries"),
    ({"delay": INT64_MAX}, "delay"),
    ({"delay": float("inf")}, "delay"),
    ({"delay": float("nan")}, "delay"),
    ({"kwargs": [1, 2]}, "kwargs"),
    ({"kwargs": {1: 2}}, "kwargs"),
    ({"args": "abc"}, "args"),
    ({"args": 5}, "args"),
    ({"retry_when": lambda retries, exc: False}, "retry_when"),
    ({"dealy": 60000}, "dealy"),
]


@pytest.mark.parametrize(("given", "named"), BAD_SENDS, ids=[n for _, n in BAD_SENDS])
def test_a_bad_option_at_send_is_refused_and_nothing_is_written(sqlite_broker, given, named):
    @liteq.actor
    def job(*args, **kwargs):
        pass

    with pytest.raises(InvalidOption) as raised:
        job.send_with_options(**given)
    text = str(raised.value)
    assert named in text
    if named not in ("kwargs", "args", "retry_when"):
        assert repr(given[named])[:20] in text
    assert count_messages(sqlite_broker.path) == 0


def test_a_hand_built_message_with_bad_values_is_refused_by_every_broker_enqueue(sqlite_broker):
    @liteq.actor
    def job():
        pass

    for bad in ({"max_retries": "3"}, {"priority": 2**64}):
        message = liteq.Message("default", "job", (), {}, bad)
        with pytest.raises(InvalidOption, match=next(iter(bad))):
            sqlite_broker.enqueue(message)
    with pytest.raises(InvalidOption, match="kwargs"):
        sqlite_broker.enqueue(liteq.Message("default", "job", (), [1], {}))  # type: ignore[arg-type]
    with pytest.raises(InvalidOption, match="options"):
        sqlite_broker.enqueue(liteq.Message("default", "job", (), {}, None))  # type: ignore[arg-type]
    assert count_messages(sqlite_broker.path) == 0


def test_a_typo_is_refused_naming_the_known_options(sqlite_broker):
    @liteq.actor
    def job(a, b):
        pass

    with pytest.raises(InvalidOption) as raised:
        job.send_with_options(args=(1, 2), dealy=60000)
    text = str(raised.value)
    assert "unknown message option 'dealy'=60000" in text
    assert "did you mean 'delay'?" in text
    for known in ("max_retries", "priority", "eta", "redis_message_id", "traceback"):
        assert known in text
    assert count_messages(sqlite_broker.path) == 0


def test_every_option_liteq_writes_itself_is_accepted_at_send(sqlite_broker):
    @liteq.actor
    def job():
        pass

    envelope = job.message().asdict()
    job.send_with_options(
        max_retries=3, min_backoff=10, max_backoff=1000.5, on_retry_exhausted=job,
        max_age=60000, time_limit=600000, notify_shutdown=True, on_success="job",
        on_failure=job, pipe_target=envelope, pipe_ignore=False, group_completion_uuid="g",
        group_completion_callbacks=[envelope], store_results=False, result_ttl=1000,
        priority=INT64_MAX, broker_priority=255, eta=0, redis_message_id="r", retries=2,
        traceback="tb", requeue_timestamp=1, delay=None,
    )
    # exception classes do not encode as JSON, so ``throws`` is checked on a built message
    assert job.message_with_options(throws=(KeyError, ValueError)).options["throws"]
    assert count_messages(sqlite_broker.path) == 1


def test_actor_options_are_checked_by_the_same_table(sqlite_broker):
    with pytest.raises(InvalidOption, match="max_retries.*'3'"):
        liteq.actor(lambda: None, actor_name="a", max_retries="3")
    with pytest.raises(InvalidOption, match="priority"):
        liteq.actor(lambda: None, actor_name="b", priority=2**63)
    with pytest.raises(InvalidOption, match="'eta' \\(a message option"):
        liteq.actor(lambda: None, actor_name="c", eta=5)
    with pytest.raises(InvalidOption, match="'store_results' \\(add the Results middleware"):
        liteq.actor(lambda: None, actor_name="d", store_results=True)
    assert sqlite_broker.get_declared_actors() == set()


def test_middleware_defaults_are_checked_by_the_same_table():
    from liteq.middleware import AgeLimit, ShutdownNotifications, TimeLimit
    from liteq.results import Results
    from liteq.results.backends.stub import StubBackend

    with pytest.raises(InvalidOption, match="'max_retries'.*'3'"):
        Retries(max_retries="3")  # type: ignore[arg-type]
    with pytest.raises(InvalidOption, match="'min_backoff'"):
        Retries(min_backoff=-1)
    with pytest.raises(InvalidOption, match="'max_age'"):
        AgeLimit(max_age="1h")  # type: ignore[arg-type]
    with pytest.raises(InvalidOption, match="'time_limit'"):
        TimeLimit(time_limit=-1)
    with pytest.raises(InvalidOption, match="'notify_shutdown'"):
        ShutdownNotifications(notify_shutdown="yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidOption, match="'result_ttl'"):
        Results(backend=StubBackend(), result_ttl=-5)
    TimeLimit(time_limit=float("inf"))
    Retries(max_retries=None)


def test_a_custom_middlewares_options_are_accepted_only_where_it_is_added(sqlite_broker):
    class Tenancy(Middleware):
        @property
        def actor_options(self) -> set[str]:
            return {"tenant_required"}

        @property
        def message_options(self) -> set[str]:
            return {"tenant"}

        def before_process_message(self, broker, message) -> None:
            seen.append((message.options.get("tenant"), message.options.get("tenant_required")))

    seen: list[tuple] = []

    @liteq.actor
    def job():
        pass

    with pytest.raises(InvalidOption, match="'tenant'"):
        job.send_with_options(tenant="acme")
    sqlite_broker.add_middleware(Tenancy())
    job.send_with_options(tenant="acme", tenant_required=True)
    with running_worker(sqlite_broker, worker_threads=1):
        sqlite_broker.join("default", timeout=10000)
    assert seen == [("acme", True)]


# --- resolution -------------------------------------------------------------------------------

def test_each_rule_resolves_as_dramatiq_does():
    from liteq import options

    resolve = options.resolve
    # OR: a falsy message value falls through (time_limit=0 on a message is "not set")
    assert resolve("time_limit", {"time_limit": 0}, {"time_limit": 500}, 9) == 500
    assert resolve("max_age", {}, {}, 7) == 7
    # GET: any value on the message wins, even 0
    assert resolve("max_retries", {"max_retries": 0}, {"max_retries": 5}, 20) == 0
    assert resolve("min_backoff", {}, {"min_backoff": 3}, 15000) == 3
    # FIRST_SET: None falls through, False does not
    assert resolve("notify_shutdown", {"notify_shutdown": None}, {"notify_shutdown": True}) is True
    assert resolve("notify_shutdown", {"notify_shutdown": False}, {"notify_shutdown": True}) \
        is False
    # ACTOR: never read from the message
    assert resolve("retry_when", {"retry_when": 1}, {}, None) is None
    # MESSAGE: never read from the actor
    assert resolve("pipe_target", {}, {"pipe_target": {}}) is None
    # a custom middleware's option: message, actor, default
    assert resolve("tenant", {}, {"tenant": "a"}, "b") == "a"


def test_the_builtin_middlewares_declare_exactly_their_rows_of_the_table():
    from liteq import options
    from liteq.results import Results
    from liteq.results.backends.stub import StubBackend

    for middleware in (*(cls() for cls in liteq.middleware.default_middleware),
                       Results(backend=StubBackend())):
        owner = type(middleware).__name__
        assert middleware.actor_options == options.owned_by(owner), owner
    owners = {o.owner for o in options.OPTIONS.values()}
    assert owners == {"Retries", "AgeLimit", "TimeLimit", "ShutdownNotifications",
                      "Callbacks", "Pipelines", "GroupCallbacks", "Results", "broker"}


def test_the_readme_lists_the_option_table():
    from liteq import options

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert options.markdown_table() in readme


# --- failures are never acknowledged as done --------------------------------------------------

def test_a_retries_hook_that_raises_dead_letters_the_message(sqlite_broker):
    def broken_retry_when(retries: int, exception: BaseException) -> bool:
        raise ZeroDivisionError("retry_when is broken")

    ran = []

    @liteq.actor(retry_when=broken_retry_when)
    def job():
        ran.append(1)
        raise ValueError("the task failed")

    job.send()
    with running_worker(sqlite_broker, worker_threads=1):
        sqlite_broker.join("default", timeout=10000, fail_fast=False)
    assert ran == [1]
    assert done_count(sqlite_broker.path) == 0
    [reason] = dead_letter_reasons(sqlite_broker.path)
    assert reason.startswith("HookFailed: Retries.after_process_message raised "
                             "ZeroDivisionError: retry_when is broken")
    assert "while handling ValueError: the task failed" in reason


def test_a_custom_middleware_raising_on_a_failure_dead_letters_the_message(db_path):
    class Alerting(Middleware):
        """Fails the message after paging someone; the pager is down."""

        def after_process_message(self, broker, message, *, result=None, exception=None):
            if exception is not None:
                raise ConnectionError("pager unreachable")
                message.fail()  # never reached

    broker = liteq.SqliteBroker(db_path, middleware=[Alerting()])
    try:
        @liteq.actor(broker=broker)
        def job():
            raise KeyError("missing")

        job.send()
        with running_worker(broker, worker_threads=1):
            broker.join("default", timeout=10000, fail_fast=False)
        assert done_count(db_path) == 0
        [reason] = dead_letter_reasons(db_path)
        assert "Alerting.after_process_message raised ConnectionError: pager unreachable" \
            in reason
        assert "while handling KeyError: 'missing'" in reason
    finally:
        broker.close()


# --- envelopes liteq cannot trust -------------------------------------------------------------

GOOD = {"queue_name": "default", "actor_name": "job", "args": [1], "kwargs": {"a": 1},
        "options": {"some_dramatiq_plugin_option": [1]}, "message_id": "m",
        "message_timestamp": 1}
UNTRUSTED = [
    ({"options": []}, "options must be dict"),
    ({"options": None}, "options must be dict"),
    ({"args": "abc"}, "args must be list"),
    ({"args": {"a": 1}}, "args must be list"),
    ({"kwargs": [1]}, "kwargs must be dict"),
    ({"message_timestamp": "now"}, "message_timestamp must be int"),
    ({"message_id": 5}, "message_id must be str"),
    ({"actor_name": None}, "actor_name must be str"),
    ({"options": {"max_retries": "3"}}, "'max_retries' must be"),
    ({"options": {"eta": "soon"}}, "'eta' must be"),
]


@pytest.mark.parametrize(("change", "reason"), UNTRUSTED, ids=[r for _, r in UNTRUSTED])
def test_decode_refuses_an_envelope_it_cannot_trust(change, reason):
    assert liteq.Message.decode(json.dumps(GOOD).encode()).options == GOOD["options"]
    with pytest.raises(DecodeError, match=reason):
        liteq.Message.decode(json.dumps({**GOOD, **change}).encode())


TASKS = """
import os
import liteq

@liteq.actor(max_retries=0)
def job(n):
    with open(os.environ["RAN_FILE"], "a") as f:
        f.write(f"{n}\\n")
    raise ValueError("the task failed")
"""


def test_untrusted_rows_written_into_the_file_go_to_the_dead_letters_under_a_real_worker(
        tmp_path):
    path = str(tmp_path / "q.db")
    (tmp_path / "tasks_untrusted.py").write_text(textwrap.dedent(TASKS))
    ran_file = tmp_path / "ran.txt"
    broker = liteq.SqliteBroker(path, middleware=[Retries()])
    try:
        @liteq.actor(broker=broker, actor_name="job", max_retries=0)
        def job(n):
            pass

        sent = [job.send(n) for n in range(6)]
    finally:
        broker.close()
    changes = [{"options": {"max_retries": "3"}}, {"options": []}, {"options": None},
               {"kwargs": []}, {"args": "abc"}]
    for message, change in zip(sent, changes, strict=False):
        tamper(path, message.message_id, **change)
    env = dict(os.environ, LITEQ_BROKER_URL=f"sqlite:///{path}", RAN_FILE=str(ran_file))
    proc = subprocess.Popen(
        [sys.executable, "-m", "liteq", "worker", "tasks_untrusted", "--path", str(tmp_path),
         "--processes", "1", "--threads", "2"],
        env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: len(dead_letter_reasons(path)) == 6, timeout=30)
    finally:
        proc.terminate()
        proc.wait(30)
    reasons = dead_letter_reasons(path)
    undecodable = [r for r in reasons if r.startswith("undecodable: bad message envelope")]
    assert len(undecodable) == 5, reasons
    for needle in ("'max_retries' must be", "options must be dict, got []",
                   "options must be dict, got None", "kwargs must be dict", "args must be list"):
        assert any(needle in r for r in undecodable), (needle, reasons)
    # only the untouched message ran (and failed, without retries)
    assert ran_file.read_text().split() == ["5"]
    assert any(r.startswith("ValueError: the task failed") for r in reasons)
    assert done_count(path) == 0
    assert rows(path, "SELECT count(*) FROM liteq_messages WHERE state != 3") == [(0,)]
