"""The RabbitMQ broker against a real server (the session's private node).

Every test uses its own queue names and deletes them afterwards.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import running_worker, wait_for

pika = pytest.importorskip("pika")

import liteq  # noqa: E402
import liteq.broker  # noqa: E402
from liteq.brokers.rabbitmq import DEAD_MESSAGE_TTL, RabbitmqBroker  # noqa: E402
from liteq.common import current_millis  # noqa: E402
from liteq.errors import ConnectionFailed  # noqa: E402
from liteq.message import Message  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
HAS_DRAMATIQ = importlib.util.find_spec("dramatiq") is not None


@pytest.fixture
def make_broker(rabbitmq_url: str) -> Iterator[Callable[..., RabbitmqBroker]]:
    """Builds brokers on the session's server; closes them after the test."""
    made: list[RabbitmqBroker] = []
    previous = liteq.broker._broker

    def make(**kwargs: object) -> RabbitmqBroker:
        kwargs.setdefault("url", rabbitmq_url)
        broker = RabbitmqBroker(**kwargs)  # type: ignore[arg-type]
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.close()
    liteq.broker.set_broker(previous)  # type: ignore[arg-type]


@pytest.fixture
def channel(rabbitmq_url: str) -> Iterator[object]:
    """A raw pika channel on the server (for looking behind the broker's back)."""
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    yield connection.channel()
    if connection.is_open:
        connection.close()


def raw_get(channel, queue_name: str, timeout: float = 10.0):
    """One message of ``queue_name`` (acknowledged), waiting for it to arrive.

    Publishing without confirms is asynchronous, so a message just sent on the broker's
    connection may reach the queue after this channel first asks for it.
    """
    got: list = []

    def arrived() -> bool:
        got.append(channel.basic_get(queue_name, auto_ack=True))
        return got[-1][0] is not None

    wait_for(arrived, timeout=timeout)
    return got[-1]


# -- basics ---------------------------------------------------------------------------

def test_round_trip_the_worker_receives_what_was_sent(make_broker, queue):
    broker = make_broker()
    broker.add_middleware(liteq.middleware.CurrentMessage())
    received = []

    @liteq.actor(broker=broker, queue_name=queue)
    def add(x, y):
        received.append((x + y, liteq.middleware.CurrentMessage.get_current_message()))

    sent = add.send_with_options(args=(1, 2), kwargs={}, max_age=3600000)
    with running_worker(broker, worker_threads=2):
        broker.join(queue, timeout=20000)
    [(total, message)] = received
    assert total == 3
    assert message.message == sent
    assert broker.get_queue_message_counts(queue) == (0, 0, 0)


def test_queues_are_declared_with_dramatiqs_arguments(make_broker, queue, channel):
    broker = make_broker(max_priority=10)
    broker.declare_queue(queue)
    assert broker.get_queue_message_counts(queue) == (0, 0, 0)  # declares on the server
    expected = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": f"{queue}.XQ",
                "x-max-priority": 10}
    # Re-declaring with exactly these arguments succeeds; any difference would close the
    # channel with PRECONDITION_FAILED (checked right after).
    channel.queue_declare(queue, durable=True, arguments=expected)
    channel.queue_declare(f"{queue}.DQ", durable=True, arguments=expected)
    channel.queue_declare(f"{queue}.XQ", durable=True,
                          arguments={"x-message-ttl": DEAD_MESSAGE_TTL})
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
        channel.queue_declare(queue, durable=True, arguments={
            "x-dead-letter-exchange": "", "x-dead-letter-routing-key": f"{queue}.XQ"})
    assert caught.value.reply_code == 406


def test_without_max_priority_there_is_no_x_max_priority(make_broker, queue, channel):
    broker = make_broker()
    broker.declare_queue(queue)
    broker.get_queue_message_counts(queue)
    channel.queue_declare(queue, durable=True, arguments={
        "x-dead-letter-exchange": "", "x-dead-letter-routing-key": f"{queue}.XQ"})


def test_a_queue_declared_with_other_arguments_gives_a_clear_error(make_broker, queue):
    first = make_broker(max_priority=5)
    first.declare_queue(queue)
    first.get_queue_message_counts(queue)
    other = make_broker(max_priority=9)
    other.declare_queue(queue)
    with pytest.raises(liteq.errors.BrokerError, match="max_priority"):
        other.get_queue_message_counts(queue)


@pytest.mark.parametrize("bad", [0, 256, -1, "5", 2.0, True])
def test_max_priority_is_validated(bad):
    with pytest.raises(ValueError, match="max_priority"):
        RabbitmqBroker(host="127.0.0.1", max_priority=bad)


def test_url_cannot_be_combined_with_host():
    with pytest.raises(RuntimeError, match="url"):
        RabbitmqBroker(url="amqp://127.0.0.1/", host="127.0.0.1")


def test_the_seeds_full_configuration_is_accepted_without_connecting():
    broker = RabbitmqBroker(
        url="amqp://user:password@localhost:5672/vhost", confirm_delivery=True,
        connection_attempts=5, max_priority=10,
        middleware=[liteq.middleware.AgeLimit(), liteq.middleware.TimeLimit(),
                    liteq.middleware.Callbacks(), liteq.middleware.Retries()])
    assert "password" not in repr(broker) and "password" not in str(broker)
    assert repr(broker) == ("RabbitmqBroker('amqp://user:***@localhost:5672/vhost', "
                            "max_priority=10, confirm_delivery=True)")
    broker.close()


def test_a_remote_url_without_credentials_draws_a_warning():
    with pytest.warns(UserWarning, match="no credentials"):
        RabbitmqBroker(url="amqp://rabbit.example.com:5672/%2F").close()
    with pytest.warns(UserWarning, match="no credentials"):
        RabbitmqBroker(host="10.1.2.3").close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RabbitmqBroker(url="amqp://u:p@rabbit.example.com/").close()
        RabbitmqBroker(url="amqp://localhost/").close()
        RabbitmqBroker(host="127.0.0.1", port=5672).close()


# -- priority, delays, dead letters ----------------------------------------------------

def test_higher_priority_runs_first_and_is_clamped(make_broker, queue, channel):
    broker = make_broker(max_priority=10)
    order = []

    @liteq.actor(broker=broker, queue_name=queue)
    def job(name):
        order.append(name)

    for n in range(5):
        job.send_with_options(args=(f"low{n}",), priority=0)
    job.send_with_options(args=("mid",), priority=5)
    job.send_with_options(args=("high",), priority=1000)  # clamped to 10
    with running_worker(broker, worker_threads=1):
        broker.join(queue, timeout=20000)
    assert order[:2] == ["high", "mid"]
    assert sorted(order[2:]) == [f"low{n}" for n in range(5)]

    job.send_with_options(args=("x",), priority=1000)
    wait_for(lambda: broker.get_queue_message_counts(queue)[0] == 1)
    method, props, _ = raw_get(channel, queue)
    assert props.priority == 10 and props.delivery_mode == 2


def test_without_max_priority_priority_is_ignored_with_one_warning(make_broker, queue,
                                                                   caplog):
    broker = make_broker()

    @liteq.actor(broker=broker, queue_name=queue)
    def job():
        pass

    with caplog.at_level(logging.WARNING):
        job.send_with_options(priority=3)
        job.send_with_options(priority=4)
    assert sum("max_priority" in r.getMessage() for r in caplog.records) == 1
    wait_for(lambda: broker.get_queue_message_counts(queue) == (2, 0, 0))


def test_a_delayed_message_waits_in_the_delay_queue(make_broker, queue, channel):
    broker = make_broker()
    ran = {}

    @liteq.actor(broker=broker, queue_name=queue)
    def stamp():
        ran["at"] = current_millis()

    sent_at = current_millis()
    sent = stamp.send_with_options(delay=400)
    wait_for(lambda: broker.get_queue_message_counts(queue) == (0, 1, 0))
    with running_worker(broker, worker_threads=1):
        wait_for(lambda: "at" in ran, timeout=20)
        broker.join(queue, timeout=20000)
    assert ran["at"] >= sent_at + 400
    assert broker.get_queue_message_counts(queue) == (0, 0, 0)

    # The body in Q.DQ is Dramatiq's: queue_name "Q.DQ" and an eta.
    stamp.send_with_options(delay=60000)
    _, _, body = raw_get(channel, f"{queue}.DQ")
    envelope = json.loads(body)
    assert envelope["queue_name"] == f"{queue}.DQ"
    assert envelope["options"]["eta"] >= current_millis() + 50000
    assert sent.options["eta"] >= sent_at + 400


def test_exhausted_retries_land_in_the_dead_letter_queue(make_broker, queue):
    broker = make_broker()
    attempts = []

    @liteq.actor(broker=broker, queue_name=queue, max_retries=2, min_backoff=10,
                 max_backoff=20)
    def flaky():
        attempts.append(1)
        raise RuntimeError("always")

    sent = flaky.send()
    with running_worker(broker, worker_threads=1):
        wait_for(lambda: broker.get_queue_message_counts(queue)[2] == 1, timeout=20)
        broker.join(queue, timeout=20000)
    assert len(attempts) == 3
    dead = broker.dead_letters
    assert [m.message_id for m in dead] == [sent.message_id]
    # Reading them leaves them there.
    assert [m.message_id for m in broker.dead_letters] == [sent.message_id]
    assert broker.get_queue_message_counts(queue) == (0, 0, 1)
    broker.flush_all()
    assert broker.get_queue_message_counts(queue) == (0, 0, 0)
    assert broker.dead_letters == []


def test_join_fail_fast_reraises_the_actors_exception(make_broker, queue):
    broker = make_broker()

    @liteq.actor(broker=broker, queue_name=queue, max_retries=0)
    def boom():
        raise KeyError("nope")

    boom.send()
    with running_worker(broker, worker_threads=1), pytest.raises(KeyError):
        broker.join(queue, timeout=20000, fail_fast=True)


def test_an_undecodable_body_is_dead_lettered(make_broker, queue, channel):
    broker = make_broker()
    ran = []

    @liteq.actor(broker=broker, queue_name=queue)
    def job():
        ran.append(1)

    broker.get_queue_message_counts(queue)
    channel.basic_publish("", queue, b"not json at all")
    job.send()
    with running_worker(broker, worker_threads=1):
        wait_for(lambda: ran == [1], timeout=20)
        wait_for(lambda: broker.get_queue_message_counts(queue)[2] == 1, timeout=20)


def test_an_envelope_liteq_cannot_trust_is_dead_lettered_not_run(make_broker, queue, channel):
    broker = make_broker()
    ran = []

    @liteq.actor(broker=broker, queue_name=queue)
    def job():
        ran.append(1)

    broker.get_queue_message_counts(queue)
    envelope = job.message().asdict()
    for change in ({"options": None}, {"options": []}, {"options": {"max_retries": "3"}}):
        channel.basic_publish("", queue, json.dumps({**envelope, **change}).encode())
    with running_worker(broker, worker_threads=1):
        wait_for(lambda: broker.get_queue_message_counts(queue)[2] == 3, timeout=20)
    assert ran == []


def test_flush_drops_ready_and_delayed_messages(make_broker, queue):
    broker = make_broker()

    @liteq.actor(broker=broker, queue_name=queue)
    def job():
        pass

    job.send()
    job.send_with_options(delay=60000)
    wait_for(lambda: broker.get_queue_message_counts(queue) == (1, 1, 0))
    broker.flush(queue)
    assert broker.get_queue_message_counts(queue) == (0, 0, 0)
    broker.join(queue, timeout=5000)


# -- consumers --------------------------------------------------------------------------

def test_wait_returns_early_on_wakeup_from_another_thread(make_broker, queue):
    broker = make_broker()
    broker.declare_queue(queue)
    consumer = broker.consume(queue, prefetch=4, timeout=100)
    try:
        returned = threading.Event()

        def waiter():
            consumer.wait(30)
            returned.set()

        thread = threading.Thread(target=waiter)
        started = time.monotonic()
        thread.start()
        consumer.wakeup()
        assert returned.wait(10)
        assert time.monotonic() - started < 10
        thread.join()
    finally:
        consumer.close()


def test_wait_returns_when_a_message_arrives(make_broker, queue):
    broker = make_broker()

    @liteq.actor(broker=broker, queue_name=queue)
    def job():
        pass

    consumer = broker.consume(queue, prefetch=4, timeout=100)
    try:
        assert consumer.exchange([], 4) == []
        sent = job.send()
        deadline = time.monotonic() + 10
        received = []
        while not received and time.monotonic() < deadline:
            consumer.wait(10)
            received = consumer.exchange([], 4)
        assert [p.message_id for p in received] == [sent.message_id]
        assert consumer.exchange(received, 0) == []
        broker.join(queue, timeout=5000)
    finally:
        consumer.close()


def test_requeued_messages_go_back_to_the_queue(make_broker, queue):
    broker = make_broker()

    @liteq.actor(broker=broker, queue_name=queue)
    def job(n):
        pass

    for n in range(3):
        job.send(n)
    consumer = broker.consume(queue, prefetch=10, timeout=100)
    try:
        got = []
        wait_for(lambda: got.extend(consumer.exchange([], 3)) or len(got) == 3)
        consumer.requeue(got)
    finally:
        consumer.close()
    wait_for(lambda: broker.get_queue_message_counts(queue)[0] == 3)


_KILLED_CONSUMER = """
import sys
from liteq.brokers.rabbitmq import RabbitmqBroker
broker = RabbitmqBroker(url=sys.argv[1])
broker.declare_queue(sys.argv[2])
consumer = broker.consume(sys.argv[2], prefetch=20, timeout=100)
got = []
while len(got) < 10:
    consumer.wait(1)
    got += consumer.exchange([], 10 - len(got))
print("got", len(got), flush=True)
sys.stdin.read()
"""


def test_messages_of_a_killed_consumer_are_redelivered(make_broker, queue, rabbitmq_url):
    broker = make_broker()

    @liteq.actor(broker=broker, queue_name=queue)
    def job(n):
        pass

    sent = {job.send(n).message_id for n in range(10)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_CONSUMER, rabbitmq_url, queue], cwd=ROOT,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        assert proc.stdout.readline().strip() == "got 10"
        assert broker.get_queue_message_counts(queue)[0] == 0
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    consumer = broker.consume(queue, prefetch=20, timeout=100)
    try:
        got = []
        wait_for(lambda: got.extend(consumer.exchange([], 10)) or len(got) >= 10, timeout=30)
        assert {p.message_id for p in got} == sent
        consumer.exchange(got, 0)
    finally:
        consumer.close()
    broker.join(queue, timeout=5000)


# -- publishing and connecting ---------------------------------------------------------

def test_confirm_delivery_publishes_and_redeclares_a_deleted_queue(make_broker, queue,
                                                                  channel):
    broker = make_broker(confirm_delivery=True)

    @liteq.actor(broker=broker, queue_name=queue)
    def job(n):
        pass

    for n in range(5):
        job.send(n)
    assert broker.get_queue_message_counts(queue) == (5, 0, 0)
    channel.queue_delete(queue)  # behind the broker's back
    job.send(5)  # unroutable -> declared again -> published
    assert broker.get_queue_message_counts(queue) == (1, 0, 0)


def test_a_server_that_is_down_gives_connection_failed_without_the_password(caplog):
    from benchmarks.servers import free_port

    url = f"amqp://alice:s3cr3t-pw@127.0.0.1:{free_port()}/%2F"
    broker = RabbitmqBroker(url=url, connection_attempts=3)
    broker.declare_queue("down_q")

    @liteq.actor(broker=broker, queue_name="down_q")
    def job():
        pass

    started = time.monotonic()
    with caplog.at_level(logging.DEBUG), pytest.raises(ConnectionFailed) as caught:
        job.send()
    assert time.monotonic() - started < 10
    text = str(caught.value)
    assert "3 attempt" in text and "127.0.0.1" in text and "alice:***@" in text
    assert "s3cr3t-pw" not in text and "s3cr3t-pw" not in repr(broker)
    assert "s3cr3t-pw" not in caplog.text
    assert sum("retrying" in r.getMessage() for r in caplog.records) == 2
    with pytest.raises(ConnectionFailed):
        broker.consume("down_q")
    broker.close()


def test_a_wrong_password_fails_at_once_with_a_clear_error(rabbitmq_url, caplog):
    url = rabbitmq_url.replace("guest:guest", "guest:wrong-pw-123")
    broker = RabbitmqBroker(url=url, connection_attempts=5)
    broker.declare_queue("auth_q")
    with caplog.at_level(logging.DEBUG), pytest.raises(ConnectionFailed, match="login"):
        broker.get_queue_message_counts("auth_q")
    assert "wrong-pw-123" not in caplog.text
    broker.close()


def test_broker_from_url_builds_a_rabbitmq_broker(rabbitmq_url):
    broker = liteq.broker_from_url(rabbitmq_url)
    assert isinstance(broker, RabbitmqBroker)
    assert "guest:guest" not in repr(broker)
    broker.close()


def test_a_lost_consumer_connection_is_reopened(make_broker, queue, rabbitmq_url):
    broker = make_broker()
    seen = []

    @liteq.actor(broker=broker, queue_name=queue)
    def job(n):
        seen.append(n)

    with running_worker(broker, worker_threads=2) as worker:
        job.send(1)
        wait_for(lambda: seen == [1], timeout=20)
        consumer = worker.consumer
        # Break the consumer's socket under it, as a network failure would.
        consumer._connection._impl._transport._sock.shutdown(2)  # noqa: SLF001
        job.send(2)
        wait_for(lambda: 2 in seen, timeout=30)
        broker.join(queue, timeout=20000)


# -- Dramatiq on the same queues ---------------------------------------------------------

@pytest.fixture
def dramatiq_broker(rabbitmq_url: str) -> Iterator[object]:
    if not HAS_DRAMATIQ:
        pytest.skip("dramatiq is not installed")
    import dramatiq
    from dramatiq.brokers.rabbitmq import RabbitmqBroker as DramatiqRabbitmqBroker

    previous = dramatiq.broker.global_broker
    broker = DramatiqRabbitmqBroker(url=rabbitmq_url, max_priority=10)
    yield broker
    broker.close()
    if previous is not None:
        dramatiq.set_broker(previous)


@pytest.mark.parametrize("delay", [None, 200])
def test_dramatiq_enqueues_and_a_liteq_worker_runs_it(make_broker, queue, dramatiq_broker,
                                                      delay):
    import dramatiq

    @dramatiq.actor(broker=dramatiq_broker, queue_name=queue, actor_name="shared_add")
    def dramatiq_add(x, y):
        pass

    dramatiq_broker.declare_queue(queue)  # Dramatiq declares first
    sent = dramatiq_add.send_with_options(args=(2, 3), delay=delay, broker_priority=4)

    broker = make_broker(max_priority=10)
    broker.add_middleware(liteq.middleware.CurrentMessage())
    results = []

    @liteq.actor(broker=broker, queue_name=queue, actor_name="shared_add")
    def liteq_add(x, y):
        results.append((x + y, liteq.middleware.CurrentMessage.get_current_message()))

    with running_worker(broker, worker_threads=1):
        wait_for(lambda: len(results) == 1, timeout=20)
        broker.join(queue, timeout=20000)
    [(total, message)] = results
    assert total == 5
    assert message.message_id == sent.message_id and message.queue_name == queue
    assert message.options.get("broker_priority") == 4 and "eta" not in message.options


@pytest.mark.parametrize("delay", [None, 200])
def test_liteq_enqueues_and_a_dramatiq_worker_runs_it(make_broker, queue, dramatiq_broker,
                                                      delay):
    import dramatiq

    broker = make_broker(max_priority=10)

    @liteq.actor(broker=broker, queue_name=queue, actor_name="shared_mul")
    def liteq_mul(x, y):
        pass

    sent = liteq_mul.send_with_options(args=(2, 3), delay=delay, priority=7)  # liteq first
    results = []

    @dramatiq.actor(broker=dramatiq_broker, queue_name=queue, actor_name="shared_mul")
    def dramatiq_mul(x, y):
        results.append((x * y, dramatiq.middleware.CurrentMessage.get_current_message()))

    dramatiq_broker.add_middleware(dramatiq.middleware.CurrentMessage())
    worker = dramatiq.Worker(dramatiq_broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        wait_for(lambda: len(results) == 1, timeout=20)
    finally:
        worker.stop()
    [(product, message)] = results
    assert product == 6
    assert message.message_id == sent.message_id
    assert message.queue_name == queue and "eta" not in message.options
    wait_for(lambda: broker.get_queue_message_counts(queue) == (0, 0, 0))


def test_dramatiq_reads_liteq_dead_letters_and_vice_versa(make_broker, queue,
                                                         dramatiq_broker):
    broker = make_broker(max_priority=10)

    @liteq.actor(broker=broker, queue_name=queue, max_retries=0)
    def doomed():
        raise RuntimeError("no")

    sent = doomed.send()
    with running_worker(broker, worker_threads=1):
        wait_for(lambda: broker.get_queue_message_counts(queue)[2] == 1, timeout=20)
    dramatiq_broker.declare_queue(queue)
    assert dramatiq_broker.get_queue_message_counts(queue) == (0, 0, 1)
    assert [m.message_id for m in broker.dead_letters] == [sent.message_id]
    assert isinstance(broker.dead_letters[0], Message)


def test_join_right_after_a_send_does_not_return_early(make_broker, queue):
    broker = make_broker()

    @liteq.actor(broker=broker, queue_name=queue)
    def job():
        pass

    for _ in range(5):
        job.send()
        with pytest.raises(liteq.QueueJoinTimeout):
            broker.join(queue, timeout=30)
        broker.flush(queue)


def test_a_forked_child_opens_its_own_connection(make_broker, queue):
    broker = make_broker(confirm_delivery=True)

    @liteq.actor(broker=broker, queue_name=queue)
    def job(n):
        pass

    job.send(1)  # the parent's connection exists before the fork
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            job.send(2)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    job.send(3)  # the parent's connection still works
    assert broker.get_queue_message_counts(queue) == (3, 0, 0)


def test_a_queue_deleted_under_a_running_worker_is_declared_again(make_broker, queue,
                                                                  channel):
    broker = make_broker(confirm_delivery=True)
    seen = []

    @liteq.actor(broker=broker, queue_name=queue)
    def job(n):
        seen.append(n)

    with running_worker(broker, worker_threads=1):
        job.send(1)
        wait_for(lambda: seen == [1], timeout=20)
        channel.queue_delete(queue)  # the server cancels the worker's consumer
        job.send(2)  # unroutable -> declared again -> published
        wait_for(lambda: seen == [1, 2], timeout=20)
        broker.join(queue, timeout=20000)


def test_dramatiq_broker_priority_runs_first_on_a_liteq_worker(make_broker, queue,
                                                                dramatiq_broker):
    """Dramatiq code sets the AMQP priority with the ``broker_priority`` option."""
    import dramatiq

    @dramatiq.actor(broker=dramatiq_broker, queue_name=queue, actor_name="ranked")
    def dramatiq_ranked(name):
        pass

    dramatiq_broker.declare_queue(queue)
    for n in range(5):
        dramatiq_ranked.send_with_options(args=(f"low{n}",), broker_priority=0)
    dramatiq_ranked.send_with_options(args=("high",), broker_priority=9)
    wait_for(lambda: dramatiq_broker.get_queue_message_counts(queue)[0] == 6, timeout=10)

    broker = make_broker(max_priority=10)
    order = []

    @liteq.actor(broker=broker, queue_name=queue, actor_name="ranked")
    def ranked(name):
        order.append(name)

    with running_worker(broker, worker_threads=1):
        wait_for(lambda: len(order) == 6, timeout=20)
    assert order[0] == "high", order


def test_liteq_broker_priority_runs_first_on_a_dramatiq_worker(make_broker, queue,
                                                                dramatiq_broker):
    import dramatiq

    broker = make_broker(max_priority=10)

    @liteq.actor(broker=broker, queue_name=queue, actor_name="ranked2")
    def ranked(name):
        pass

    for n in range(5):
        ranked.send_with_options(args=(f"low{n}",), broker_priority=0)
    ranked.send_with_options(args=("high",), broker_priority=9)
    wait_for(lambda: broker.get_queue_message_counts(queue)[0] == 6, timeout=10)
    order = []

    @dramatiq.actor(broker=dramatiq_broker, queue_name=queue, actor_name="ranked2")
    def dramatiq_ranked(name):
        order.append(name)

    worker = dramatiq.Worker(dramatiq_broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        wait_for(lambda: len(order) == 6, timeout=20)
    finally:
        worker.stop()
    assert order[0] == "high", order


def test_a_worker_consumes_a_queue_declared_after_it_started(make_broker, queue):
    broker = make_broker()
    ran = []
    with running_worker(broker, worker_threads=1):
        @liteq.actor(broker=broker, queue_name=queue)
        def later(x):
            ran.append(x)

        later.send(7)
        wait_for(lambda: ran == [7], timeout=20)
        broker.join(queue, min_successes=2, idle_time=10, timeout=20000)
