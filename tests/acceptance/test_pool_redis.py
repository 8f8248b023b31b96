"""``liteq worker`` on the Redis broker: a killed child's messages come back at once.

Without the supervisor's release they would wait for the dead worker's heartbeat to be
older than ``heartbeat_timeout`` (60 s by default) and for a maintenance pass.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from helpers import wait_for
from pools import Pool

import liteq
from liteq.message import Message

redis = pytest.importorskip("redis")
from liteq.redis_compat import RedisBroker, release  # noqa: E402


def ack_sets(r: redis.Redis, ns: str) -> dict[str, int]:
    """Unacknowledged message count per ack-set key of ``ns``."""
    return {key.decode(): r.scard(key) for key in r.scan_iter(match=f"{ns}:__acks__.*")}


def rows(path: Path) -> list[tuple[str, int, int]]:
    if not path.exists():
        return []
    return [(kind, int(n), int(pid)) for kind, n, pid in
            (line.split() for line in path.read_text().splitlines())]


def test_killed_child_redis_messages_run_again_at_once(tmp_path, redis_url, ns, r):
    record, gate = tmp_path / "record.txt", tmp_path / "gate"
    env = dict(os.environ, LITEQ_BROKER_URL=redis_url, LITEQ_TEST_NAMESPACE=ns,
               LITEQ_TEST_RECORD=str(record), LITEQ_TEST_GATE=str(gate),
               PYTHONUNBUFFERED="1")
    client = RedisBroker(url=redis_url, namespace=ns, middleware=[])
    assert client.heartbeat_timeout == 60000  # the default: the release must not wait for it
    client.declare_queue("default")
    pool = Pool(tmp_path, env, "--processes", "1", "--threads", "2", "--prefetch", "3",
                modules=("redis_tasks",))
    try:
        (victim,) = pool.wait_ready(1)
        client.enqueue_many([Message("default", "gated", (n,), {}, {}) for n in range(3)])
        # Two run (blocked on the gate), the third is prefetched: three unacknowledged.
        wait_for(lambda: len([x for x in rows(record) if x[0] == "start"]) == 2
                 and sum(ack_sets(r, ns).values()) == 3, timeout=15)
        (ack_key,) = ack_sets(r, ns)
        worker_id = ack_key[len(f"{ns}:__acks__."):].rsplit(".", 1)[0]
        assert r.zscore(f"{ns}:__heartbeats__", worker_id) is not None

        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        gate.touch()
        wait_for(lambda: {n for kind, n, pid in rows(record)
                          if kind == "done" and pid != victim} == {0, 1, 2}, timeout=10)
        assert time.monotonic() - killed_at < 10
        assert not any(pid == victim for kind, _, pid in rows(record) if kind == "done")
        assert f"released 3 message(s) held by process {victim}" in pool.output()
        assert r.zscore(f"{ns}:__heartbeats__", worker_id) is None
        assert not any(worker_id in key for key in ack_sets(r, ns))
        wait_for(lambda: client.qsize("default") == 0, timeout=5)
    finally:
        pool.kill()
        client.close()


def test_release_info_hides_the_password_and_release_requeues(redis_url, ns, r):
    url = redis_url.replace("redis://", "redis://:s3cret-pw@", 1)
    with_password = RedisBroker(url=url, namespace=ns, middleware=[])
    info = with_password.release_info()
    assert "s3cret-pw" not in repr(info) and "s3cret-pw" not in str(info)
    assert info["worker_ids"] == [with_password.broker_id]
    with_password.close()

    broker = RedisBroker(url=redis_url, namespace=ns, middleware=[])
    broker.declare_queue("default")
    broker.declare_queue("other")
    for queue in ("default", "other"):
        broker.enqueue(Message(queue, "a", (), {}, {}))
    broker.enqueue(Message("default", "a", (), {}, {}), delay=60000)
    consumer = broker.consume(["default", "other"], prefetch=10)
    assert len(consumer.exchange([], 10)) == 2  # and the delayed one is held
    assert sum(ack_sets(r, ns).values()) == 3
    assert release(broker.release_info(), os.getpid()) == 3
    assert ack_sets(r, ns) == {}
    assert r.zscore(f"{ns}:__heartbeats__", broker.broker_id) is None
    assert r.llen(f"{ns}:default") == 1 and r.llen(f"{ns}:other") == 1
    assert r.llen(f"{ns}:default.DQ") == 1
    assert liteq.Message.decode(r.hget(f"{ns}:default.msgs", r.lindex(f"{ns}:default", 0)))
    broker.close()
