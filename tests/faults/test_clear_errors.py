"""Bad values end with a named error and one clear line, never a raw ``OverflowError``
or ``apsw.TooBigError``, and nothing is written; a broker URL's password is never
printed, even when the URL is malformed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import apsw
import pytest

import liteq
from liteq.errors import InvalidOption, MessageTooLarge
from liteq.store import SqliteBroker
from liteq.urls import check_url, mask_url, scrub

HERE = Path(__file__).parent


def rows(broker: SqliteBroker) -> int:
    return broker.db.read("SELECT count(*) FROM liteq_messages")[0][0]


def liteq_cli(cwd: Path, *args: str, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "LITEQ_BROKER_URL"}
    return subprocess.run([sys.executable, "-m", "liteq", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60, env=dict(environ, **(env or {})))


# -- overflowing delay, priority, ETA -------------------------------------------------------
@pytest.mark.parametrize("options, delay", [
    ({"priority": 2**63}, None),
    ({"priority": -(2**63) - 1}, None),
    ({"eta": 2**70}, None),
    ({}, 2**63),
    ({}, float("inf")),
    ({}, 1e300),
], ids=["priority", "negative-priority", "eta", "delay", "infinite-delay", "float-delay"])
def test_an_overflowing_option_is_invalid_and_nothing_is_written(sqlite_broker, options,
                                                                 delay):
    @liteq.actor
    def job():
        pass

    with pytest.raises(InvalidOption, match=r"64-bit|too large|2\*\*63"):
        job.send_with_options(delay=delay, **options)
    with pytest.raises(InvalidOption):
        sqlite_broker.enqueue_many([job.message(), job.message_with_options(**options)],
                                   delay=delay)
    assert rows(sqlite_broker) == 0


def test_the_largest_priority_and_eta_sqlite_stores_are_accepted(sqlite_broker):
    @liteq.actor
    def job():
        pass

    job.send_with_options(priority=2**63 - 1)
    job.send_with_options(priority=-(2**63), eta=2**63 - 1)
    assert rows(sqlite_broker) == 2


@pytest.mark.parametrize("option", [["--priority", "99999999999999999999"],
                                    ["--delay", "99999999999999999999"]])
def test_cli_enqueue_prints_one_line_and_exits_2_on_an_overflowing_option(tmp_path, option):
    proc = liteq_cli(tmp_path, "enqueue", "job", *option, "--broker",
                     f"sqlite:///{tmp_path / 'q.db'}")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("liteq: error:"), proc.stderr
    assert "64-bit" in lines[0] or "too large" in lines[0]
    assert "Traceback" not in proc.stderr and "OverflowError" not in proc.stderr
    broker = SqliteBroker(str(tmp_path / "q.db"), middleware=[])
    try:
        assert rows(broker) == 0
    finally:
        broker.close()


# -- a value over SQLite's maximum length ------------------------------------------------------
def test_arguments_over_sqlites_maximum_length_are_message_too_large(sqlite_broker):
    """Tested with a lowered SQLITE_LIMIT_LENGTH rather than 1.1 GB of arguments."""
    @liteq.actor
    def job(payload):
        pass

    with sqlite_broker.db.lock:
        sqlite_broker.db.conn.limit(apsw.SQLITE_LIMIT_LENGTH, 10_000)
    for size in (20_000, 9_900):  # over the limit; under it, but the row is over it
        with pytest.raises(MessageTooLarge, match="maximum length"):
            job.send("x" * size)
        with pytest.raises(MessageTooLarge):
            sqlite_broker.enqueue_many([job.message("small"), job.message("x" * size)])
    assert rows(sqlite_broker) == 0
    job.send("x" * 100)
    assert rows(sqlite_broker) == 1


def test_too_large_arguments_in_the_callers_transaction_are_message_too_large(
        sqlite_broker, db_path):
    @liteq.actor
    def job(payload):
        pass

    conn = apsw.Connection(db_path)
    conn.limit(apsw.SQLITE_LIMIT_LENGTH, 10_000)
    with pytest.raises(MessageTooLarge):
        with conn:
            sqlite_broker.enqueue(job.message("x" * 20_000), connection=conn)
    conn.close()
    assert rows(sqlite_broker) == 0


def test_message_too_large_is_a_value_error_and_a_broker_error():
    assert issubclass(MessageTooLarge, ValueError)
    assert issubclass(MessageTooLarge, liteq.errors.BrokerError)


# -- passwords in URLs --------------------------------------------------------------------------
SECRET_URLS = [
    ("sqlite://user:secret@localhost/x.db", "secret"),
    ("amqp://user:pa#ss@127.0.0.1:1/", "pa#ss"),
    ("redis://user:pa#ss@127.0.0.1:1/0", "pa#ss"),
    ("amqp://user:pa/ss@127.0.0.1:1/", "pa/ss"),
    ("redis://s3cr3t#x@127.0.0.1:1/0", "s3cr3t#x"),
]


@pytest.mark.parametrize("url, secret", SECRET_URLS)
def test_mask_url_hides_the_password_of_malformed_urls_too(url, secret):
    masked = mask_url(url)
    assert secret not in masked and "***" in masked
    assert "127.0.0.1:1" in masked or "localhost" in masked
    assert secret not in scrub(f"error while using {url!r}: boom")
    assert secret not in scrub(f"something about {secret}", url)


def test_urls_without_a_password_are_unchanged():
    for url in ("sqlite:////tmp/x.db", "sqlite:///rel.db", "amqp://guest@host/", "redis://h:1/0",
                "sqlite:////tmp/odd@name.db"):
        assert mask_url(url) == url


@pytest.mark.parametrize("url", ["amqp://user:pa#ss@127.0.0.1:1/",
                                 "redis://user:pa?ss@127.0.0.1:1/0"])
def test_check_url_names_a_malformed_url_without_its_password(url):
    with pytest.raises(ValueError, match="malformed broker URL") as info:
        check_url(url)
    assert "pa" not in str(info.value).replace("password", "").replace("parse", "")


@pytest.mark.parametrize("command", [["enqueue", "job"], ["stats"], ["queues"],
                                     ["dlq", "list"], ["top", "--once"]])
@pytest.mark.parametrize("url, secret", SECRET_URLS[:3])
def test_cli_commands_never_print_the_password(tmp_path, command, url, secret):
    for how in ("--broker", "env"):
        if how == "env":
            proc = liteq_cli(tmp_path, *command, env={"LITEQ_BROKER_URL": url})
        else:
            proc = liteq_cli(tmp_path, *command, "--broker", url)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, out
        assert secret not in out and "Traceback" not in out, out
        assert "pa#" not in out and "'pa'" not in out, out


@pytest.mark.parametrize("url, secret", SECRET_URLS[:3])
def test_liteq_worker_never_prints_the_password(tmp_path, url, secret):
    """The task module builds its broker from LITEQ_BROKER_URL (given by --broker)."""
    proc = subprocess.run(
        [sys.executable, "-m", "liteq", "worker", "noop_tasks", "--path",
         str(HERE.parent / "fixtures"), "--processes", "1", "--broker", url],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if k != "LITEQ_BROKER_URL"})
    out = proc.stdout + proc.stderr
    assert proc.returncode in (2, 3), out
    assert secret not in out and "pa#" not in out and "'pa'" not in out, out
    assert "***" in out
