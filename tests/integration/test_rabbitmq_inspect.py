"""What the RabbitMQ inspector must get right beyond the broker-neutral contract, on a
real server and real ``liteq worker`` pools: delayed messages held by consumers, queues
known from producers' records, the worker registry read at once from the stream, dead
letters with their reason, and requeues that never lose a message.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from contract.brokers import delete_queues
from helpers import wait_for
from pools import kill_processes

pika = pytest.importorskip("pika")
from liteq.brokers.rabbitmq import RabbitmqBroker  # noqa: E402
from liteq.brokers.rabbitmq.inspect import RabbitmqInspector  # noqa: E402
from liteq.brokers.rabbitmq.registry import HEARTBEAT_INTERVAL  # noqa: E402
from liteq.errors import BrokerError  # noqa: E402
from liteq.message import Message  # noqa: E402

FIXTURES = Path(__file__).parents[1] / "fixtures"
HAS_DRAMATIQ = importlib.util.find_spec("dramatiq") is not None


@pytest.fixture
def task_env(rabbitmq_url: str, queue: str, tmp_path: Path) -> dict[str, str]:
    """The environment of tests/fixtures/rabbitmq_inspect_tasks.py on ``queue``."""
    return dict(os.environ, LITEQ_BROKER_URL=rabbitmq_url, LITEQ_TEST_QUEUE=queue,
                LITEQ_TEST_GATE=str(tmp_path / "gate"), PYTHONPATH=str(FIXTURES),
                PYTHONUNBUFFERED="1")


@pytest.fixture
def broker(rabbitmq_url: str) -> Iterator[RabbitmqBroker]:
    """A broker of the test itself, with no actors: it knows no queue of its own."""
    made = RabbitmqBroker(url=rabbitmq_url, middleware=[], confirm_delivery=True)
    yield made
    made.close()


@pytest.fixture
def inspectors(broker: RabbitmqBroker) -> Iterator[Callable[[], RabbitmqInspector]]:
    """Fresh inspectors (each with its own connection), closed after the test."""
    made: list[RabbitmqInspector] = []

    def make() -> RabbitmqInspector:
        made.append(broker.inspector())
        return made[-1]

    yield make
    for inspector in made:
        inspector.close()


@pytest.fixture
def pool(task_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Starts ``liteq worker rabbitmq_inspect_tasks`` pools; each is killed at the end."""
    started: list[tuple[subprocess.Popen, object]] = []

    def start(*args: str) -> subprocess.Popen:
        log = open(tmp_path / f"pool-{len(started)}.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [sys.executable, "-m", "liteq", "worker", "rabbitmq_inspect_tasks", *args],
            env=task_env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
        started.append((proc, log))
        return proc

    yield start
    import psutil

    for proc, log in started:
        try:
            children = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            children = []
        # SIGTERM first: the workers leave the registry, which other tests read
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(30)
        kill_processes([proc.pid, *children], proc)
        log.close()  # type: ignore[attr-defined]


def send(task_env: dict[str, str], code: str) -> None:
    """Run ``code`` in a producer process that imported the task module as ``t``."""
    subprocess.run([sys.executable, "-c", f"import rabbitmq_inspect_tasks as t\n{code}"],
                   env=task_env, check=True, timeout=60)


def workers_of(inspector: RabbitmqInspector, queue: str) -> list[dict]:
    return [w for w in inspector.workers() if queue in w["queues"]]


def test_delayed_messages_held_by_workers_are_counted_as_delayed(
        task_env, pool, inspectors, queue):
    send(task_env, "for _ in range(3): t.noop.send_with_options(delay=600_000)")
    inspector = inspectors()
    assert inspector.queues()[queue].delayed == 3  # still in Q.DQ
    pool("-p", "1", "-t", "1")
    # The consumer holds them unacknowledged until their ETA: Q.DQ counts none of them.
    wait_for(lambda: inspector.queues()[queue].delayed == 3 and workers_of(inspector, queue)
             and inspector._channel.queue_declare(f"{queue}.DQ", passive=True)
             .method.message_count == 0, timeout=20)
    counts = inspector.queues()[queue]
    assert (counts.ready, counts.delayed, counts.claimed, counts.running) == (0, 3, 0, 0)
    assert counts.succeeded is None and counts.dead_lettered is None  # lifetime: unknowable


def test_running_and_claimed_come_from_the_heartbeats(
        task_env, pool, inspectors, queue, tmp_path):
    send(task_env, "for _ in range(5): t.gated.send()")
    inspector = inspectors()
    counts = inspector.queues()[queue]
    assert (counts.ready, counts.claimed, counts.running) == (5, 0, 0)
    pool("-p", "1", "-t", "2")
    wait_for(lambda: inspector.queues()[queue].running == 2, timeout=20)
    counts = inspector.queues()[queue]
    # Prefetched or running, the consumer holds all five; two threads run two.
    assert counts.ready + counts.claimed == 5 and counts.claimed >= 2
    (tmp_path / "gate").touch()
    wait_for(lambda: inspector.queues()[queue].claimed == 0, timeout=20)


def test_queues_are_known_from_the_records_of_the_producers_that_declared_them(
        task_env, inspectors, queue, broker):
    assert queue not in broker.queues
    send(task_env, "t.noop.send()")
    # A new process (the test's inspector) knows the queue only from the producer's record.
    assert queue in inspectors().queues()
    inspector = inspectors()
    assert inspector.queues()[queue].ready == 1
    delete_queues(broker._server.urls[0], [queue])
    # Still recorded, but gone from the server: not listed (and not looked for each time).
    assert queue not in inspector.queues() and queue not in inspector.queues()
    assert queue in inspector._missing


def test_a_queue_given_on_the_command_line_is_listed_and_a_missing_one_is_not(
        broker, inspectors, queue):
    broker.get_queue_message_counts(f"{queue}_given")  # declared, no record reader saw
    inspector = inspectors()
    inspector.watch([f"{queue}_given", f"{queue}_missing"])
    try:
        names = set(inspector.queues())
        assert f"{queue}_given" in names and f"{queue}_missing" not in names
    finally:
        delete_queues(broker._server.urls[0], [f"{queue}_given"])


def test_a_new_inspector_reads_the_registry_at_once_from_the_stream(
        task_env, pool, inspectors, queue):
    proc = pool("-p", "2", "-t", "1")
    wait_for(lambda: len(workers_of(inspectors(), queue)) == 2, timeout=30)
    import psutil

    children = [c.pid for c in psutil.Process(proc.pid).children()
                if "resource_tracker" not in " ".join(c.cmdline())]
    for pid in children:
        os.kill(pid, signal.SIGSTOP)  # no heartbeat is published from now on
    try:
        started = time.monotonic()
        found = workers_of(inspectors(), queue)
        took = time.monotonic() - started
    finally:
        for pid in children:
            os.kill(pid, signal.SIGCONT)
    assert sorted(w["pid"] for w in found) == sorted(children)
    assert took < HEARTBEAT_INTERVAL, took
    entry = found[0]
    assert entry["threads"] == 1 and entry["queues"] == [queue]
    assert {"owner", "host", "started_at", "heartbeat_at", "processed", "succeeded", "failed",
            "running", "activity"} <= set(entry)


def test_a_worker_that_stops_leaves_the_registry_at_once(task_env, pool, inspectors, queue):
    proc = pool("-p", "1", "-t", "1")
    inspector = inspectors()
    wait_for(lambda: workers_of(inspector, queue), timeout=30)
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    assert workers_of(inspectors(), queue) == []


def test_dead_letters_carry_reason_traceback_and_time_and_dramatiq_reads_them(
        task_env, pool, inspectors, queue):
    before = int(time.time() * 1000)
    send(task_env, "t.boom.send('no <b>luck</b>')")
    pool("-p", "1", "-t", "1")
    inspector = inspectors()
    wait_for(lambda: inspector.queues()[queue].dead == 1, timeout=30)
    (letter,) = inspector.dead_letters(queue)
    assert letter.reason == "ValueError: no <b>luck</b>"
    assert letter.traceback and "raise ValueError(text)" in letter.traceback
    assert before <= letter.failed_at <= int(time.time() * 1000)
    assert letter.actor_name == "boom" and letter.id == letter.message_id
    assert inspector.dead_letter(letter.id) == letter
    assert inspector.recent_dead(5) == [letter]
    # Reading changed nothing: the dead letter is still there, once.
    assert inspector.queues()[queue].dead == 1
    if HAS_DRAMATIQ:
        import dramatiq

        decoded = dramatiq.Message.decode(letter.body)
        assert decoded.message_id == letter.message_id
        assert decoded.options["failure_reason"] == letter.reason


def _dead_letters(broker: RabbitmqBroker, queue: str, n: int) -> list[str]:
    """Put ``n`` dead letters in ``Q.XQ`` as a nack would leave them (no reason)."""
    broker.get_queue_message_counts(queue)
    messages = [Message(queue, "boom", [i], {}, {"retries": 3, "traceback": "tb"})
                for i in range(n)]
    channel = broker._channel()
    for m in messages:
        channel.basic_publish("", f"{queue}.XQ", m.encode(),
                              pika.BasicProperties(delivery_mode=2))
    return [m.message_id for m in messages]


def test_requeue_moves_the_chosen_dead_letters_and_keeps_the_others_in_order(
        broker, inspectors, queue):
    ids = _dead_letters(broker, queue, 20)
    inspector = inspectors()
    inspector.watch([queue])
    chosen = ids[::3]
    progress: list[int] = []
    assert inspector.requeue_dead(chosen, progress=progress.append) == len(chosen)
    assert progress[-1] == len(chosen)
    # Every message is in exactly one place: nothing lost, nothing doubled.
    assert [d.id for d in inspector.dead_letters(queue)] == [i for i in ids if i not in chosen]
    channel = broker._channel()
    ready = []
    while True:
        method, _, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            break
        ready.append(Message.decode(body))
    assert [m.message_id for m in ready] == chosen
    assert all("retries" not in m.options and "traceback" not in m.options for m in ready)
    assert all(m.queue_name == queue for m in ready)


def test_a_requeue_that_cannot_publish_acknowledges_nothing(broker, inspectors, queue):
    ids = _dead_letters(broker, queue, 3)
    inspector = inspectors()
    inspector.watch([queue])
    # Q refuses every publish: the server nacks the requeued copy
    channel = broker._channel()
    channel.queue_delete(queue)
    channel.queue_declare(queue, durable=True,
                          arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
    with pytest.raises(BrokerError, match="stays in"):
        inspector.requeue_dead([ids[1]])
    assert [d.id for d in inspectors().dead_letters(queue)] == ids


def test_purges(broker, inspectors, queue):
    ids = _dead_letters(broker, queue, 5)
    channel = broker._channel()
    for _ in range(4):
        channel.basic_publish("", queue, Message(queue, "noop", [], {}, {}).encode())
    channel.basic_publish("", f"{queue}.DQ", Message(f"{queue}.DQ", "noop", [], {},
                                                     {"eta": 1}).encode())
    inspector = inspectors()
    inspector.watch([queue])
    assert inspector.purge_dead([ids[0], ids[4], "no-such-id"]) == 2
    assert [d.id for d in inspector.dead_letters(queue)] == ids[1:4]
    assert inspector.purge(queue) == 5
    counts = inspector.queues()[queue]
    assert (counts.ready, counts.delayed, counts.dead) == (0, 0, 3)
    assert inspector.purge_dead(queue_name=queue) == 3
    assert inspector.queues()[queue].dead == 0


def stats_json(rabbitmq_url: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "liteq", "stats", "--json", "--broker",
                          rabbitmq_url, *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "guest:guest" not in out.stdout
    return json.loads(out.stdout)


def test_stats_json_on_rabbitmq(task_env, queue, rabbitmq_url):
    send(task_env, "t.noop.send()")
    snapshot = stats_json(rabbitmq_url)
    assert snapshot["broker"].startswith("amqp://guest:***@127.0.0.1:")
    assert snapshot["queues"][queue]["ready"] == 1
    assert snapshot["queues"][queue]["succeeded"] is None


def test_stats_lists_a_queue_no_liteq_process_named_when_given_with_queue(
        rabbitmq_url, queue):
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    try:  # declared by another client (no record): only --queue makes it known
        channel = connection.channel()
        for name in (queue, f"{queue}.DQ", f"{queue}.XQ"):
            channel.queue_declare(name, durable=True)
        channel.basic_publish("", queue, Message(queue, "noop", [], {}, {}).encode())
    finally:
        connection.close()
    assert queue not in stats_json(rabbitmq_url)["queues"]
    assert stats_json(rabbitmq_url, "--queue", queue)["queues"][queue]["ready"] == 1


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (apt-get install tmux)")
def test_top_in_a_real_terminal_against_a_rabbitmq_pool(task_env, pool, broker, queue,
                                                         rabbitmq_url, tmp_path):
    from acceptance.test_top import (
        column,
        shows_workers,
        top_in_tmux,
        top_process,
        wait_screen,
    )

    broker.declare_queue(queue)
    proc = pool("-p", "2", "-t", "2")
    inspector = broker.inspector()
    stop = threading.Event()

    def feed() -> None:  # a steady stream of no-ops and a failure every 0.5 s
        n = 0
        while not stop.is_set():
            for _ in range(20):
                broker.enqueue(Message(queue, "noop", [], {}, {}))
            if n % 200 == 0:
                broker.enqueue(Message(queue, "boom", [f"task {n} fails on purpose"], {}, {}))
            n += 20
            stop.wait(0.05)

    feeder = threading.Thread(target=feed, daemon=True)
    term = None
    try:
        wait_for(lambda: len(workers_of(inspector, queue)) == 2, timeout=30)
        pids = sorted(w["pid"] for w in workers_of(inspector, queue))
        feeder.start()
        term = top_in_tmux(tmp_path, "--broker", rabbitmq_url)
        top = top_process(term)

        def busy(screen: str) -> bool:
            rate = column(screen, "Queue", queue, "Succ/s")
            return (rate not in (None, "0", "-", "–")
                    and shows_workers(screen, pids)
                    and column(screen, "Queue", queue, "Dead") not in (None, "0")
                    and "ValueError: task" in screen)

        screen = wait_screen(term, busy, timeout=30)
        assert broker.location in screen and "guest:guest" not in screen
        assert "–" in screen  # the lifetime totals RabbitMQ cannot have
        term.send("q")
        wait_for(lambda: (tmp_path / "top.rc").exists(), timeout=10)
        assert (tmp_path / "top.rc").read_text().strip() == "0"
        wait_for(lambda: not top.is_running() or top.status() == "zombie", timeout=10)
    finally:
        stop.set()
        if feeder.is_alive():
            feeder.join(10)
        if term is not None:
            term.kill()
        inspector.close()
        assert proc.poll() is None  # the pool ran through the whole test


def liteq_cli(rabbitmq_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "liteq", *args, "--broker", rabbitmq_url],
                          capture_output=True, text=True, timeout=60)


def test_dlq_commands_on_rabbitmq(task_env, pool, inspectors, queue, rabbitmq_url):
    send(task_env, "t.boom.send('\\x1b[31mred\\x1b[0m'); t.boom.send('two')")
    proc = pool("-p", "1", "-t", "1")
    wait_for(lambda: inspectors().queues()[queue].dead == 2, timeout=30)
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)

    listed = json.loads(liteq_cli(rabbitmq_url, "dlq", "list", "--queue", queue, "--json").stdout)
    assert [d["queue"] for d in listed] == [queue, queue]
    first = listed[0]["id"]
    shown = liteq_cli(rabbitmq_url, "dlq", "show", first)
    assert shown.returncode == 0, shown.stderr
    assert "reason:      ValueError: \\x1b[31mred\\x1b[0m" in shown.stdout  # printed literally
    assert "traceback:" in shown.stdout and "raise ValueError(text)" in shown.stdout

    assert liteq_cli(rabbitmq_url, "dlq", "requeue", first).returncode == 0
    counts = inspectors().queues()[queue]
    assert (counts.ready, counts.dead) == (1, 1)
    assert liteq_cli(rabbitmq_url, "dlq", "purge", "--queue", queue, "--yes").returncode == 0
    assert inspectors().queues()[queue].dead == 0
    assert liteq_cli(rabbitmq_url, "dlq", "show", first).returncode != 0


def test_a_killed_worker_holds_nothing_at_once(task_env, inspectors, queue):
    send(task_env, "for _ in range(3): t.gated.send()")
    code = ("import time, liteq, rabbitmq_inspect_tasks as t\n"
            "liteq.Worker(t.broker, worker_threads=1).start()\ntime.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code], env=task_env)
    try:
        inspector = inspectors()
        wait_for(lambda: inspector.queues()[queue].running == 1, timeout=30)
        proc.kill()
        proc.wait(10)
        # Its last heartbeat is fresh, but its process is gone: it holds nothing.
        counts = inspector.queues()[queue]
        assert (counts.claimed, counts.running) == (0, 0)
        assert [w["pid"] for w in workers_of(inspector, queue)] == [proc.pid]  # shown
    finally:
        kill_processes([proc.pid], proc)


def test_a_dead_letter_nacked_by_another_client_has_rabbitmqs_reason(broker, inspectors, queue):
    """Dramatiq's workers nack: RabbitMQ dead-letters the body as it was, with x-death."""
    broker.get_queue_message_counts(queue)
    channel = broker._channel()
    channel.basic_publish("", queue, Message(queue, "boom", [], {}, {}).encode())
    wait_for(lambda: channel.queue_declare(queue, passive=True).method.message_count == 1)
    method, _, _ = channel.basic_get(queue, auto_ack=False)
    channel.basic_nack(method.delivery_tag, requeue=False)
    inspector = inspectors()
    inspector.watch([queue])
    wait_for(lambda: inspector.queues()[queue].dead == 1)
    (letter,) = inspector.dead_letters(queue)
    assert letter.reason == "dead-lettered by RabbitMQ (rejected); no reason recorded"
    assert letter.failed_at is not None and letter.traceback is None


def test_a_dead_letter_queue_deleted_under_a_consumer_is_declared_again(
        broker, inspectors, queue):
    broker.declare_queue(queue)
    broker.enqueue(Message(queue, "boom", [], {}, {}))
    consumer = broker.consume(queue, prefetch=1, timeout=100)
    try:
        proxies: list = []
        wait_for(lambda: proxies.extend(consumer.exchange([], 1)) or proxies, timeout=10)
        broker._channel().queue_delete(f"{queue}.XQ")  # while the consumer runs
        proxies[0].stuff_exception(ValueError("lost?"))
        proxies[0].fail()
        consumer.exchange(proxies, 0)
    finally:
        consumer.close()
    (letter,) = inspectors().dead_letters(queue)
    assert letter.reason == "ValueError: lost?"
