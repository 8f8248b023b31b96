"""``liteq worker --prometheus``: real scrapes of a real pool's ``/metrics`` endpoint.

The pool runs tests/fixtures/prom_tasks.py; its totals per actor must equal what ran,
failed, was retried and was dead-lettered, summed over the worker processes, and must
not go down when a worker process is killed and replaced.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from helpers import wait_for
from pools import Pool

import liteq
from liteq.store import SqliteBroker

parser = pytest.importorskip("prometheus_client.parser")

COUNTERS = ("dramatiq_messages_total", "dramatiq_message_errors_total",
            "dramatiq_message_retries_total", "dramatiq_message_rejects_total")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``http://127.0.0.1:port/metrics``, by (name, sorted labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in parser.text_string_to_metric_families(text)
            for s in family.samples}


def per_actor(samples: dict, name: str) -> dict[str, float]:
    """The samples called ``name``, by actor (queue ``default``)."""
    found = {}
    for (sample, labels), value in samples.items():
        labels = dict(labels)
        if sample == name and labels.get("queue_name") == "default":
            found[labels["actor_name"]] = value
    return found


def totals(samples: dict) -> dict[str, dict[str, float]]:
    return {name: per_actor(samples, name) for name in COUNTERS}


def prom_env(tmp_path: Path, url: str, **extra: str) -> dict[str, str]:
    (tmp_path / "marks").mkdir(exist_ok=True)
    return dict(os.environ, LITEQ_BROKER_URL=url, LITEQ_TEST_RECORD=str(tmp_path / "record.txt"),
                LITEQ_TEST_MARKS=str(tmp_path / "marks"), LITEQ_TEST_GATE=str(tmp_path / "gate"),
                PYTHONUNBUFFERED="1", **extra)


def send(broker: liteq.Broker, actor: str, count: int, start: int = 0) -> None:
    broker.declare_queue("default")
    broker.enqueue_many([liteq.Message("default", actor, (n,), {}, {})
                         for n in range(start, start + count)])


def records(tmp_path: Path) -> list[list[str]]:
    path = tmp_path / "record.txt"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def expected_totals(succeed: int, always_fail: int, flaky: int) -> dict[str, dict[str, float]]:
    """What the known workload must count: ``always_fail`` has max_retries=2 (3 attempts,
    2 retries, dead-lettered), ``flaky`` fails its first attempt only."""
    return {
        "dramatiq_messages_total": {"succeed": succeed, "always_fail": 3 * always_fail,
                                    "flaky": 2 * flaky, "block": 0},
        "dramatiq_message_errors_total": {"succeed": 0, "always_fail": 3 * always_fail,
                                          "flaky": flaky, "block": 0},
        "dramatiq_message_retries_total": {"succeed": 0, "always_fail": 2 * always_fail,
                                           "flaky": flaky, "block": 0},
        "dramatiq_message_rejects_total": {"succeed": 0, "always_fail": always_fail,
                                           "flaky": 0, "block": 0},
    }


def run_known_workload(tmp_path: Path, broker: liteq.Broker, port: int) -> dict:
    n_ok, n_dead, n_flaky = 20, 3, 4
    send(broker, "succeed", n_ok)
    send(broker, "always_fail", n_dead)
    send(broker, "flaky", n_flaky)
    expected = expected_totals(n_ok, n_dead, n_flaky)
    wait_for(lambda: totals(scrape(port)) == expected, timeout=60, interval=0.1)
    samples = scrape(port)
    # What ran, by the tasks' own record: every success once, each in some process.
    assert Counter(row[0] for row in records(tmp_path)) == {"succeed": n_ok}
    assert per_actor(samples, "dramatiq_message_duration_milliseconds_count") == \
        expected["dramatiq_messages_total"]
    assert set(per_actor(samples, "dramatiq_messages_inprogress").values()) == {0}
    return samples


def test_scrape_of_a_two_process_pool_counts_what_ran_failed_and_was_retried(tmp_path):
    port = free_port()
    pool = Pool(tmp_path, prom_env(tmp_path, f"sqlite:///{tmp_path / 'q.db'}"),
                "--processes", "2", "--threads", "4", "--prometheus", f"127.0.0.1:{port}",
                modules=("prom_tasks",))
    broker = SqliteBroker(str(tmp_path / "q.db"), middleware=[])
    try:
        pool.wait_ready(2)
        assert f"serving Prometheus metrics on http://127.0.0.1:{port}/metrics" in pool.output()
        samples = run_known_workload(tmp_path, broker, port)
        buckets = sorted(float(dict(labels)["le"]) for (name, labels) in samples
                         if name == "dramatiq_message_duration_milliseconds_bucket"
                         and dict(labels)["actor_name"] == "succeed")
        assert buckets == [5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500,
                           10000, 30000, 60000, 600000, 900000, float("inf")]
        assert per_actor(samples, "dramatiq_delayed_messages_inprogress") == \
            {"succeed": 0, "always_fail": 0, "flaky": 0, "block": 0}
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/nothing", timeout=10)
        assert error.value.code == 404
    finally:
        broker.close()
        pool.kill()


def test_a_killed_child_is_replaced_and_the_totals_do_not_go_down(tmp_path):
    port = free_port()
    # One thread and a prefetch of one: each process holds one message at a time, so two
    # ``block`` messages run in the two processes at once.
    pool = Pool(tmp_path, prom_env(tmp_path, f"sqlite:///{tmp_path / 'q.db'}"),
                "--processes", "2", "--threads", "1", "--prefetch", "1",
                "--prometheus", f"127.0.0.1:{port}", modules=("prom_tasks",))
    broker = SqliteBroker(str(tmp_path / "q.db"), middleware=[])
    try:
        first = set(pool.wait_ready(2))
        send(broker, "succeed", 10)
        wait_for(lambda: per_actor(scrape(port), "dramatiq_messages_total").get("succeed") == 10,
                 timeout=30, interval=0.05)
        ran_by = Counter(int(row[2]) for row in records(tmp_path) if row[0] == "succeed")
        victim, ran = ran_by.most_common(1)[0]
        assert victim in first and ran >= 5

        send(broker, "block", 2)
        wait_for(lambda: per_actor(scrape(port), "dramatiq_messages_inprogress").get("block")
                 == 2, timeout=30, interval=0.05)
        before = scrape(port)
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(pool.children()) == 2 and victim not in pool.children()
                 and pool.output().count("worker process ready") >= 3, timeout=30)
        during = scrape(port)
        # The victim's successes stay counted after its death.
        for name in COUNTERS:
            for key, value in before.items():
                if key[0] == name:
                    assert during[key] >= value, key
        assert per_actor(during, "dramatiq_messages_total")["succeed"] == 10

        (tmp_path / "gate").touch()
        # The killed attempt never finished; its message runs again (released at once).
        wait_for(lambda: per_actor(scrape(port), "dramatiq_messages_total").get("block") == 2,
                 timeout=30, interval=0.05)
        after = scrape(port)
        # The dead process's in-progress gauge was dropped (mark_process_dead).
        assert per_actor(after, "dramatiq_messages_inprogress")["block"] == 0
        assert per_actor(after, "dramatiq_messages_total")["succeed"] == 10
        assert sum(1 for row in records(tmp_path) if row[0] == "done") == 2
    finally:
        broker.close()
        pool.kill()


def test_queue_depths_are_gauges_read_at_scrape_time(tmp_path):
    port = free_port()
    pool = Pool(tmp_path, prom_env(tmp_path, f"sqlite:///{tmp_path / 'q.db'}"),
                "--processes", "1", "--prometheus", f"127.0.0.1:{port}",
                modules=("prom_tasks",))
    broker = SqliteBroker(str(tmp_path / "q.db"), middleware=[])
    try:
        pool.wait_ready(1)
        broker.declare_queue("default")
        broker.enqueue(liteq.Message("default", "succeed", (1,), {}, {}), delay=3_600_000)
        broker.enqueue(liteq.Message("default", "succeed", (2,), {}, {}), delay=3_600_000)
        send(broker, "always_fail", 1)

        def depth(state: str) -> float | None:
            return scrape(port).get(
                ("liteq_queue_messages", (("queue_name", "default"), ("state", state))))

        wait_for(lambda: depth("dead") == 1, timeout=30, interval=0.05)
        assert depth("delayed") == 2
        assert depth("ready") == 0
    finally:
        broker.close()
        pool.kill()


def test_a_broker_with_its_own_prometheus_middleware(tmp_path):
    """A program that adds the middleware itself (as with Dramatiq) is told to use the
    flag; with the flag its own instance records, and no second one is added."""
    env = prom_env(tmp_path, f"sqlite:///{tmp_path / 'q.db'}", LITEQ_TEST_OWN_PROMETHEUS="1")
    plain = Pool(tmp_path, env, "--processes", "1", modules=("prom_tasks",))
    try:
        plain.wait_ready(1)
        assert "its metrics are served only by liteq worker --prometheus" in plain.output()
    finally:
        plain.kill()
    port = free_port()
    pool = Pool(tmp_path, env, "--processes", "1", "--prometheus", f"127.0.0.1:{port}",
                modules=("prom_tasks",))
    broker = SqliteBroker(str(tmp_path / "q.db"), middleware=[])
    try:
        pool.wait_ready(1)
        send(broker, "succeed", 3)
        wait_for(lambda: per_actor(scrape(port), "dramatiq_messages_total").get("succeed") == 3,
                 timeout=30, interval=0.05)
        assert "added twice" not in pool.output()
        assert "served only by" not in pool.output()
    finally:
        broker.close()
        pool.kill()


def test_a_port_in_use_is_a_clear_error_and_exit_code_2(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "liteq", "worker", "prom_tasks", "--path",
             str(Path(__file__).parent.parent / "fixtures"), "-p", "1",
             "--prometheus", f"127.0.0.1:{port}"],
            env=prom_env(tmp_path, f"sqlite:///{tmp_path / 'q.db'}"), cwd=tmp_path,
            capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert f"--prometheus cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert "worker process ready" not in proc.stderr


@pytest.mark.parametrize("argument", ["nonsense", "127.0.0.1:", "70000", "host:port"])
def test_a_bad_address_is_a_usage_error(tmp_path, argument):
    proc = subprocess.run(
        [sys.executable, "-m", "liteq", "worker", "prom_tasks", "--prometheus", argument],
        cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "[HOST:]PORT" in proc.stderr


def test_without_prometheus_client_liteq_imports_and_the_flag_exits_2(tmp_path):
    blocked = "import sys; sys.modules['prometheus_client'] = None; "
    code = (blocked + "import liteq, liteq.middleware, liteq.middleware.prometheus as p\n"
            "try:\n    p.Prometheus()\nexcept ImportError as e:\n    print(e)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "pip install 'liteq[prometheus]'" in proc.stdout
    code = blocked + "from liteq.cli import main; main(['worker', 'x', '--prometheus', '9191'])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert "--prometheus needs prometheus_client: pip install 'liteq[prometheus]'" in proc.stderr


def test_scrape_of_a_redis_pool_counts_what_ran_failed_and_was_retried(tmp_path, redis_url,
                                                                         ns):
    from liteq.redis_compat import RedisBroker

    port = free_port()
    pool = Pool(tmp_path, prom_env(tmp_path, redis_url, LITEQ_TEST_NAMESPACE=ns),
                "--processes", "2", "--threads", "4", "--prometheus", f"127.0.0.1:{port}",
                modules=("prom_tasks",))
    broker = RedisBroker(url=redis_url, namespace=ns, middleware=[])
    try:
        pool.wait_ready(2)
        samples = run_known_workload(tmp_path, broker, port)
        # The queue gauges come from the Redis inspector: the dead letters of the workload.
        assert samples[("liteq_queue_messages",
                        (("queue_name", "default"), ("state", "dead")))] == 3
    finally:
        broker.close()
        pool.kill()


def test_scrape_of_a_rabbitmq_pool_counts_what_ran_and_the_queue_depths(tmp_path,
                                                                        rabbitmq_url):
    """On RabbitMQ too: the totals per actor, and the depth gauges read through the
    inspector from the release recipe's URL (the dead letters of the workload)."""
    port = free_port()
    pool = Pool(tmp_path, prom_env(tmp_path, rabbitmq_url), "--processes", "2",
                "--threads", "4", "--prometheus", f"127.0.0.1:{port}",
                modules=("prom_tasks",))
    broker = liteq.broker_from_url(rabbitmq_url, middleware=[])
    try:
        pool.wait_ready(2)
        broker.flush_all()
        samples = run_known_workload(tmp_path, broker, port)
        dead = ("liteq_queue_messages", (("queue_name", "default"), ("state", "dead")))
        assert samples[dead] == 3
    finally:
        pool.kill()
        broker.flush_all()  # the server is shared: leave no dead letters to other tests
        broker.close()
