"""``liteq top --broker redis://…`` in a real terminal (tmux) against a real 2-process pool
working on Redis, as tests/acceptance/test_top.py does on SQLite."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import threading

import psutil
import pytest
from helpers import wait_for

import liteq
from acceptance.test_top import (
    Tmux,
    column,
    kill_tree,
    shows_workers,
    top_in_tmux,
    top_process,
    wait_screen,
)
from liteq.brokers.registry import broker_from_url

redis = pytest.importorskip("redis")
FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures")
#: The database of the session's Redis server this test uses (emptied before and after):
#: a URL cannot name a namespace, so the pool and ``top`` share Dramatiq's default one.
DB = 7


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (apt-get install tmux)")
def test_top_on_redis_in_a_real_terminal_against_a_busy_pool(tmp_path, redis_url):
    url = redis_url.rsplit("/", 1)[0] + f"/{DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    env = dict(os.environ, LITEQ_BROKER_URL=url, PYTHONUNBUFFERED="1",
               LITEQ_TEST_DIR=str(tmp_path))
    broker = broker_from_url(url, middleware=[])
    broker.declare_queue("work")
    inspector = broker.inspector()  # type: ignore[attr-defined]
    log = open(tmp_path / "pool.log", "wb")  # noqa: SIM115 - closed in finally
    pool = subprocess.Popen([sys.executable, "-m", "liteq", "worker", "inspect_tasks",
                             "--path", FIXTURES, "--processes", "2", "-Q", "work"],
                            env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    stop = threading.Event()

    def feed() -> None:  # a steady stream: ~400 tasks/s and a doomed task every 0.5 s
        n = 0
        while not stop.is_set():
            broker.enqueue_many([liteq.Message("work", "ok", (n + i,), {}, {})
                                 for i in range(20)])
            if n % 200 == 0:
                broker.enqueue(liteq.Message("work", "doomed", (n,), {}, {}))
            n += 20
            stop.wait(0.05)

    feeder = threading.Thread(target=feed, daemon=True)
    term: Tmux | None = None
    top: psutil.Process | None = None
    try:
        wait_for(lambda: len(inspector.workers()) == 2, timeout=30)
        pids = sorted(w["pid"] for w in inspector.workers())
        feeder.start()
        term = top_in_tmux(tmp_path, env=f"LITEQ_BROKER_URL={shlex.quote(url)}")
        top = top_process(term)

        def busy(screen: str) -> bool:
            rate = column(screen, "Queue", "work", "Succ/s")
            return (rate not in (None, "0", "-")
                    and shows_workers(screen, pids)
                    and column(screen, "Queue", "work", "Dead") not in (None, "0")
                    and "RuntimeError: doomed" in screen
                    # each process's own figures, from its registry entry
                    and all(column(screen, "PID", str(pid), "Succ") not in (None, "0")
                            for pid in pids))

        screen = wait_screen(term, busy, timeout=30)
        assert f"redis://127.0.0.1:{url.rsplit(':', 1)[1]}" in screen  # the broker, in the header
        for pid in pids:  # every worker process, with its CPU and RSS from psutil
            cpu = column(screen, "PID", str(pid), "CPU%")
            assert cpu is not None and cpu != "-", screen
        term.send("q")
        wait_for(lambda: (tmp_path / "top.rc").exists(), timeout=10)
        assert (tmp_path / "top.rc").read_text().strip() == "0"
    finally:
        stop.set()
        if feeder.is_alive():
            feeder.join(10)
        if top is not None:
            try:
                top.kill()
            except psutil.NoSuchProcess:
                pass
        if term is not None:
            term.kill()
        kill_tree(pool)
        log.close()
        broker.close()
        client.flushdb()
        client.close()
