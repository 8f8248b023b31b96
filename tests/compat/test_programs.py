"""Dramatiq-style programs (tests/compat/programs/, ``import liteq as dramatiq``) run under
the real ``liteq worker`` CLI on a SQLite file in ``tmp_path``.

Each program's own ``__main__`` is the producer (run as a subprocess, as a Dramatiq user
would run it); tasks write files under ``$PROGRAM_OUT`` and the tests wait on those files,
the worker's log and the SQLite stats, with deadlines.

The same programs, with only their import line changed to ``import dramatiq``, also run
under Dramatiq's own CLI on the session's private Redis (skipped without it) and must pass
the same checks: what is asserted here is Dramatiq's behaviour, not just liteq's.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from helpers import wait_for

from liteq.store import SqliteBroker

PROGRAMS = Path(__file__).parent / "programs"


@pytest.fixture
def out(tmp_path: Path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path


@pytest.fixture
def program_env(env: dict[str, str], out: Path) -> dict[str, str]:
    """The worker's environment plus where tasks write and where producers find modules."""
    path = os.pathsep.join(filter(None, [str(PROGRAMS), env.get("PYTHONPATH")]))
    return dict(env, PROGRAM_OUT=str(out), PYTHONPATH=path)


@pytest.fixture
def worker(pools: Callable, program_env: dict[str, str]) -> Callable:
    """``worker(module, *args)``: a ``liteq worker`` pool on the programs directory."""

    def start(*modules: str, args: tuple[str, ...] = ("-p", "1"),
              extra_env: dict[str, str] | None = None):
        pool = pools("--path", str(PROGRAMS), *args, modules=modules,
                     extra_env=dict(program_env, **(extra_env or {})))
        until(pool, lambda: "worker process ready" in pool.output())
        return pool

    return start


def produce(program_env: dict[str, str], cwd: Path, *argv: str) -> None:
    """Run a program's producer (``script.py args`` or ``-m package args``) to completion."""
    command = [sys.executable, *argv]
    if argv[0] != "-m":
        command[1] = str(PROGRAMS / argv[0])
    proc = subprocess.run(command, env=program_env, cwd=cwd, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def lines(out: Path, name: str) -> list[list[str]]:
    path = out / name
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def until(pool, predicate: Callable[[], object], timeout: float = 30) -> None:
    """Wait for ``predicate``; fail at once (with the log) if the pool has exited."""
    def check() -> object:
        if pool.proc.poll() is not None:
            raise AssertionError(f"the worker exited ({pool.proc.returncode}):\n"
                                 f"{pool.output()}")
        return predicate()
    wait_for(check, timeout=timeout, interval=0.02)


def stats(tmp_path: Path) -> dict[str, dict[str, int]]:
    broker = SqliteBroker(str(tmp_path / "q.db"), middleware=[])
    try:
        return broker.stats()
    finally:
        broker.close()


def dead_letters(tmp_path: Path) -> list:
    broker = SqliteBroker(str(tmp_path / "q.db"), middleware=[])
    try:
        return broker.list_dead_letters()
    finally:
        broker.close()


def idle(tmp_path: Path) -> bool:
    return all(not (s["ready"] or s["delayed"] or s["claimed"])
               for s in stats(tmp_path).values())


def stop(pool, timeout: float = 30) -> None:
    """SIGTERM the supervisor; it must exit 0 within ``timeout`` seconds."""
    pool.signal(signal.SIGTERM)
    assert pool.wait(timeout) == 0, pool.output()


# ---------------------------------------------------------------------------------------
# Running the same programs under Dramatiq (its CLI, a Redis broker)
# ---------------------------------------------------------------------------------------
DQ_BROKER = '''"""Give Dramatiq a Redis broker before any program is imported."""
import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

dramatiq.set_broker(RedisBroker(url=os.environ["DQ_REDIS_URL"],
                                namespace=os.environ["DQ_NAMESPACE"]))
'''

DQ_PRODUCE = '''"""Run each program's __main__ (``script.py args`` or ``-m package args``)."""
import os
import runpy
import sys

import dq_broker  # noqa: F401

HERE = os.path.dirname(os.path.abspath(__file__))

for spec in sys.argv[1:]:
    words = spec.split()
    sys.argv = words[1:] if words[0] == "-m" else words
    try:
        if words[0] == "-m":
            runpy.run_module(words[1], run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(os.path.join(HERE, words[0]), run_name="__main__")
    except SystemExit as e:
        assert not e.code, (spec, e.code)
'''


def dramatiq_copy(tmp_path: Path) -> Path:
    """The programs with ``import liteq as dramatiq`` replaced by ``import dramatiq``: the
    only change, checked here (no other line of a program mentions liteq)."""
    copy = tmp_path / "dramatiq_programs"
    shutil.copytree(PROGRAMS, copy, ignore=shutil.ignore_patterns("__pycache__", "*.md"))
    for path in copy.rglob("*.py"):
        code = path.read_text()
        if "import liteq as dramatiq\n" in code:
            code = code.replace("import liteq as dramatiq\n", "import dramatiq\n", 1)
        assert "liteq" not in code.split('"""')[-1], path  # outside the module docstring
        path.write_text(code)
    (copy / "dq_broker.py").write_text(DQ_BROKER)
    (copy / "dq_produce.py").write_text(DQ_PRODUCE)
    return copy


def dramatiq_env(program_env: dict[str, str], copy: Path, redis_url: str,
                 ns: str) -> dict[str, str]:
    """Dramatiq's environment: the copy first on the path, and this interpreter first on
    PATH (a SIGHUP makes Dramatiq re-exec itself as ``python -m dramatiq``)."""
    return dict(program_env, DQ_REDIS_URL=redis_url, DQ_NAMESPACE=ns,
                PYTHONPATH=os.pathsep.join([str(copy), program_env["PYTHONPATH"]]),
                PATH=os.pathsep.join([os.path.dirname(sys.executable),
                                      program_env.get("PATH", "")]))


class DramatiqWorker:
    """``python -m dramatiq dq_broker MODULE...`` on the copy of the programs."""

    def __init__(self, tmp_path: Path, env: dict[str, str], copy: Path,
                 modules: tuple[str, ...], args: list[str]) -> None:
        self.log_path = tmp_path / f"dramatiq-{time.monotonic_ns()}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dramatiq", "dq_broker", *modules, *args,
                 "--path", str(copy)],
                env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
        self.ps = psutil.Process(self.proc.pid)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        os.kill(self.proc.pid, signum)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the main process and its worker processes (by PID) if still running."""
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(psutil.NoSuchProcess):
            for process in [self.ps, *self.ps.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()
        self.proc.wait(10)


class Engine:
    """Starts workers and producers for the programs under liteq or under Dramatiq."""

    def __init__(self, name: str, tmp_path: Path, env: dict[str, str], pools: Callable,
                 copy: Path | None = None) -> None:
        self.name, self.tmp_path, self.env, self.pools, self.copy = \
            name, tmp_path, env, pools, copy
        self.started: list[DramatiqWorker] = []

    @property
    def ready(self) -> str:
        """What a worker process logs once it consumes."""
        return "worker process ready" if self.copy is None else "ready for action"

    def start(self, *modules: str, threads: int = 8, shutdown_timeout: int | None = None,
              extra_env: dict[str, str] | None = None, argv: list[str] | None = None):
        """A worker with one process, started with the same options (Dramatiq's spelling)
        under both engines (``argv``: exactly these options instead)."""
        args = ["--processes", "1", "--threads", str(threads)] if argv is None else list(argv)
        if shutdown_timeout is not None:
            args += ["--worker-shutdown-timeout", str(shutdown_timeout)]
        env = dict(self.env, **(extra_env or {}))
        if self.copy is None:
            worker = self.pools("--path", str(PROGRAMS), *args, modules=modules,
                                extra_env=env)
        else:
            worker = DramatiqWorker(self.tmp_path, env, self.copy, modules, args)
            self.started.append(worker)
        until(worker, lambda: self.ready in worker.output())
        return worker

    def produce(self, *specs: str) -> None:
        """Run producers, each ``"script.py args"`` or ``"-m package args"``."""
        if self.copy is None:
            for spec in specs:
                produce(self.env, self.tmp_path, *spec.split())
        else:
            produce(self.env, self.tmp_path, str(self.copy / "dq_produce.py"), *specs)


@pytest.fixture(params=["liteq", "dramatiq"])
def engine(request: pytest.FixtureRequest, tmp_path: Path, program_env: dict[str, str],
           pools: Callable) -> Iterator[Engine]:
    """The programs run by ``liteq worker`` (SQLite), then by ``dramatiq`` (Redis)."""
    if request.param == "liteq":
        yield Engine("liteq", tmp_path, program_env, pools)
        return
    pytest.importorskip("dramatiq")
    redis_url = request.getfixturevalue("redis_url")
    copy = dramatiq_copy(tmp_path)
    env = dramatiq_env(program_env, copy, redis_url, request.getfixturevalue("ns"))
    running = Engine("dramatiq", tmp_path, env, pools, copy)
    try:
        yield running
    finally:
        for worker in running.started:
            worker.kill()


# ---------------------------------------------------------------------------------------
# What each program must produce: the same checks hold under Dramatiq (see the last test)
# ---------------------------------------------------------------------------------------
WORDS = ["queue", "actor", "broker", "sqlite", "message", "worker", "retry"]


def basic_done(out: Path) -> bool:
    return len(lines(out, "vowels.txt")) >= 14 and bool(lines(out, "reminders.txt")) \
        and bool(lines(out, "flaky.txt"))


def check_basic(out: Path) -> None:
    rows = lines(out, "vowels.txt")
    assert collections.Counter(word for word, _ in rows) == {w: 2 for w in WORDS}
    assert all(int(n) == sum(c in "aeiou" for c in w) for w, n in rows)
    [[text, due, ran]] = lines(out, "reminders.txt")
    assert text == "stretch" and int(ran) >= int(due)  # the delay was honoured
    assert lines(out, "flaky.txt") == [["job-1", "3"]]  # two failures, then retried
    assert "stale" not in (out / "vowels.txt").read_text()  # past its max_age: skipped


def asyncio_done(out: Path) -> bool:
    return len(lines(out, "sums.txt")) >= 12 and ["cancelled"] in lines(out, "dawdle.txt")


def check_asyncio(out: Path) -> None:
    rows = lines(out, "sums.txt")
    assert sorted((int(x), int(y), int(s)) for x, y, s, *_ in rows) == [
        (i, 2 * i, 3 * i) for i in range(12)]
    # One event loop per worker process, running in one thread.
    assert len({(pid, loop, thread) for *_, pid, loop, thread in rows}) == 1
    # The coroutine past its time limit was cancelled, not left to finish.
    assert lines(out, "dawdle.txt") == [["started"], ["cancelled"]]


def time_limits_done(out: Path) -> bool:
    return len(lines(out, "polite.txt")) == 2 and bool(lines(out, "stubborn.txt"))


def check_time_limits(out: Path) -> None:
    [started, gave_up] = lines(out, "polite.txt")
    assert started == ["started"] and gave_up[0] == "gave-up" and int(gave_up[1]) >= 300
    assert lines(out, "stubborn.txt") == [["started"]]


def composition_done(out: Path) -> bool:
    return len(lines(out, "published.txt")) >= 5


def check_composition(out: Path) -> None:
    assert sorted((out / "published.txt").read_text().splitlines()) == [
        "blog | notes on queues and more and more",
        "feed-0 | item 0", "feed-1 | item 1", "feed-2 | item 2",
        "wiki | (nothing piped)",
    ]


def shop_receipts(out: Path) -> collections.Counter:
    return collections.Counter(tuple(row) for row in lines(out, "receipts.txt")
                               if row[0] in ("place_order", "send_receipt"))


def shop_done(out: Path) -> bool:
    return len(lines(out, "mail.txt")) >= 6 and sum(shop_receipts(out).values()) >= 12


def check_shop(out: Path, log: str) -> None:
    assert sorted(lines(out, "mail.txt")) == sorted(
        [f"order-{n}", str([3, 8, 12][n % 3])] for n in range(6))
    assert shop_receipts(out) == {("place_order", "orders", "ok"): 6,
                                  ("send_receipt", "mail", "ok"): 6}
    assert "[shop.orders.place_order] [INFO] order order-2 comes to 12" in log


def callbacks_done(out: Path) -> bool:
    return len(lines(out, "callbacks.txt")) >= 4 and len(lines(out, "patient.txt")) >= 3 \
        and len(lines(out, "charges.txt")) >= 3


def check_callbacks(out: Path) -> None:
    assert sorted(lines(out, "charges.txt")) == [["-1", "0"], ["-1", "1"], ["5", "0"]]
    # on_failure runs after every failed attempt; a ``throws`` error is not retried.
    assert sorted(lines(out, "callbacks.txt")) == [
        ["failure", "charge", "-1", "ValueError", "cannot-charge-1"],
        ["failure", "charge", "-1", "ValueError", "cannot-charge-1"],
        ["failure", "lookup", "missing", "KeyError", "'missing'"],
        ["success", "charge", "5", "500"],
    ]
    assert lines(out, "lookups.txt") == [["missing", "0"]]
    assert lines(out, "patient.txt") == [["p", "0"], ["p", "1"], ["p", "2"]]


def generic_done(out: Path) -> bool:
    return len(lines(out, "generic.txt")) >= 2


def check_generic(out: Path) -> None:
    assert sorted(lines(out, "generic.txt")) == [
        ["Farewell", "partings", "goodbye-bob"], ["Welcome", "jobs", "hello-ada"]]


def audit_done(log: str) -> bool:
    return "large transfer" in log and log.count("[audit.Ledger] [INFO] settled transfer") >= 2


def check_audit(log: str) -> None:
    assert "[audit.transfer] [INFO] moving 7 coins" in log
    assert "[audit.transfer] [INFO] moving 500 coins" in log
    assert "[audit] [WARNING] large transfer of 500 coins" in log
    assert "[audit.Ledger] [INFO] settled transfer for (7,)" in log


# ---------------------------------------------------------------------------------------
# Under liteq worker
# ---------------------------------------------------------------------------------------
def test_basic_actors_delay_and_retries(tmp_path, out, program_env, worker):
    pool = worker("basic")
    produce(program_env, tmp_path, "basic.py", "14", "--remind-in", "700")
    until(pool, lambda: basic_done(out))
    until(pool, lambda: idle(tmp_path))
    check_basic(out)
    [letter] = dead_letters(tmp_path)
    assert letter.message.args == ("stale",) and "age limit" in letter.reason
    assert "[basic.count_vowels] [INFO] sqlite has 2 vowels" in pool.output()
    stop(pool)


def test_asyncio_actors_share_one_event_loop_and_time_out(tmp_path, out, program_env,
                                                           worker):
    pool = worker("asyncio_actors", args=("-p", "1", "-t", "4"))
    produce(program_env, tmp_path, "asyncio_actors.py", "12")
    until(pool, lambda: asyncio_done(out) and dead_letters(tmp_path))
    check_asyncio(out)
    [letter] = dead_letters(tmp_path)
    assert letter.actor_name == "dawdle" and "TimeLimitExceeded" in letter.reason
    stop(pool)


def test_time_limit_interrupts_and_dead_letters_or_is_caught(tmp_path, out, program_env,
                                                              worker):
    pool = worker("time_limits")
    produce(program_env, tmp_path, "time_limits.py")
    until(pool, lambda: time_limits_done(out) and dead_letters(tmp_path))
    until(pool, lambda: idle(tmp_path))
    check_time_limits(out)
    [letter] = dead_letters(tmp_path)
    assert letter.actor_name == "stubborn" and "TimeLimitExceeded" in letter.reason
    assert stats(tmp_path)["default"]["succeeded"] == 1  # polite's message was acknowledged
    assert "[time_limits.polite] [WARNING] time limit exceeded; giving up" in pool.output()
    stop(pool)


def test_sigterm_interrupts_the_long_task_and_lets_the_short_one_finish(tmp_path, out,
                                                                         engine):
    pool = engine.start("long_running", shutdown_timeout=60000)
    engine.produce("long_running.py")
    until(pool, lambda: lines(out, "crunch.txt") and lines(out, "chat.txt")
          and lines(out, "settle.txt"))
    pool.signal(signal.SIGTERM)
    # crunch and chat would run for ~30 minutes: the worker stops long before the shutdown
    # timeout.
    assert pool.wait(20) == 0, pool.output()
    assert [row[0] for row in lines(out, "crunch.txt")] == ["started", "shutdown"]
    assert [row[0] for row in lines(out, "chat.txt")] == ["started", "cancelled"]
    assert lines(out, "settle.txt")[-1] == ["finished", "1500"]
    assert "[long_running.crunch] [WARNING] worker is stopping; interrupted at step" \
        in pool.output()
    if engine.name == "liteq":
        # crunch and chat failed with Shutdown and have retries left: their messages wait
        # to be retried (settle, with no retries, finished).
        s = stats(tmp_path)["default"]
        assert s["delayed"] + s["ready"] == 2 and not dead_letters(tmp_path)


def test_a_task_cut_off_by_the_shutdown_timeout_runs_again_in_the_next_worker(
        tmp_path, out, program_env, worker):
    first = worker("long_running", args=("-p", "1", "--shutdown-timeout", "300"))
    produce(program_env, tmp_path, "long_running.py", "--settle", "3000")
    until(first, lambda: lines(out, "settle.txt") and lines(out, "crunch.txt")
          and lines(out, "chat.txt"))
    stop(first)  # settle needs 3 s, the shutdown timeout is 0.3 s
    assert [row[0] for row in lines(out, "settle.txt")] == ["started"]
    assert stats(tmp_path)["default"]["claimed"] == 0  # released when its process exited

    second = worker("long_running")
    until(second, lambda: ["finished", "3000"] in lines(out, "settle.txt"))
    started = [int(pid) for word, pid in lines(out, "settle.txt") if word == "started"]
    assert len(started) == 2 and started[0] != started[1]
    stop(second)


def test_state_saved_on_shutdown_is_resumed_by_the_next_worker(tmp_path, out, engine):
    n = 300
    first = engine.start("persistent")
    engine.produce(f"persistent.py {n} --pace 20")  # 6 s of work: stopped well before
    until(first, lambda: len(lines(out, f"fib-{n}.log")) >= 40)
    stop(first)
    saved = json.loads((out / "states" / f"{n}.json").read_text())
    assert 40 <= saved["next"] - 1 < n
    if engine.name == "liteq":
        assert idle(tmp_path) and not dead_letters(tmp_path)  # caught Shutdown: acknowledged

    second = engine.start("persistent")
    engine.produce(f"persistent.py {n} --pace 1")
    until(second, lambda: not (out / "states" / f"{n}.json").exists())
    rows = [(int(i), int(value), int(pid)) for i, value, pid in lines(out, f"fib-{n}.log")]
    pids = list(dict.fromkeys(pid for *_, pid in rows))
    assert len(pids) == 2
    resumed = [i for i, _, pid in rows if pid == pids[1]]
    assert resumed[0] == saved["next"] and resumed[-1] == n
    assert {i for i, _, _ in rows} == set(range(1, n + 1))
    a, b = 0, 1
    expected = {}
    for i in range(1, n + 1):
        expected[i] = b
        a, b = b, a + b
    assert all(value == expected[i] for i, value, _ in rows)
    assert f"[persistent.fib] [INFO] resuming fib({n}) at index {saved['next']}" \
        in second.output()
    stop(second)


def test_middleware_sighup_after_n_tasks_replaces_the_worker_process(out, engine):
    pool = engine.start("max_tasks", threads=1, extra_env={"RELOAD_AFTER": "5"})
    for batch in range(2):
        engine.produce(f"max_tasks.py 5 --first {5 * batch}")
        until(pool, lambda b=batch: len(lines(out, "jobs.txt")) >= 5 * (b + 1))
        # Its fifth task made the process send SIGHUP: a fresh process takes over.
        until(pool, lambda b=batch: pool.output().count(engine.ready) >= b + 2)
    rows = lines(out, "jobs.txt")
    assert collections.Counter(int(n) for n, _ in rows) == {n: 1 for n in range(10)}
    first, second = ({pid for n, pid in rows if int(n) // 5 == batch} for batch in range(2))
    assert len(first) == len(second) == 1 and first != second, (first, second)
    assert pool.output().count("asking the supervisor for a reload") == 2
    stop(pool)


def test_actors_spread_over_several_modules_all_run(tmp_path, out, program_env, worker):
    pool = worker("shop.setup", "shop.orders", "shop.mail")
    produce(program_env, tmp_path, "-m", "shop", "6")
    until(pool, lambda: shop_done(out))
    until(pool, lambda: idle(tmp_path))
    check_shop(out, pool.output())
    assert len(lines(out, "receipts.txt")) == 12
    stop(pool)


def test_dramatiq_command_line_runs_the_shop(tmp_path, out, program_env, worker):
    # Dramatiq's spelling: several queues after one --queues, long option names (the
    # combined run under Dramatiq below uses them too).
    pool = worker("shop.setup", "shop.orders", "shop.mail", args=(
        "--processes", "1", "--threads", "2", "--queues", "orders", "mail",
        "--worker-shutdown-timeout", "5000"))
    produce(program_env, tmp_path, "-m", "shop", "3")
    until(pool, lambda: len(lines(out, "mail.txt")) >= 3)
    assert sorted(lines(out, "mail.txt")) == [["order-0", "3"], ["order-1", "8"],
                                              ["order-2", "12"]]
    stop(pool)


def test_pipelines_pass_results_along_and_groups_run(tmp_path, out, program_env, worker):
    pool = worker("composition")
    produce(program_env, tmp_path, "composition.py")
    until(pool, lambda: composition_done(out))
    until(pool, lambda: idle(tmp_path))
    check_composition(out)
    stop(pool)


def test_callbacks_retries_and_the_current_message(tmp_path, out, program_env, worker):
    pool = worker("callbacks")
    produce(program_env, tmp_path, "callbacks.py")
    until(pool, lambda: callbacks_done(out))
    until(pool, lambda: idle(tmp_path))
    check_callbacks(out)
    assert sorted(d.actor_name for d in dead_letters(tmp_path)) == ["charge", "lookup"]
    stop(pool)


def test_generic_actors_from_an_abstract_base(tmp_path, out, program_env, worker):
    pool = worker("generic")
    produce(program_env, tmp_path, "generic.py")
    until(pool, lambda: generic_done(out))
    check_generic(out)
    stop(pool)


def test_get_logger_names_match_dramatiq(tmp_path, out, program_env, worker):
    pool = worker("audit")
    produce(program_env, tmp_path, "audit.py", "7", "500")
    until(pool, lambda: audit_done(pool.output()))
    check_audit(pool.output())
    stop(pool)


# ---------------------------------------------------------------------------------------
# Under Dramatiq: the checks above are Dramatiq's own behaviour
# ---------------------------------------------------------------------------------------
def test_the_programs_are_dramatiq_programs(tmp_path, out, program_env, pools, redis_url, ns):
    pytest.importorskip("dramatiq")
    copy = dramatiq_copy(tmp_path)
    env = dramatiq_env(program_env, copy, redis_url, ns)
    engine = Engine("dramatiq", tmp_path, env, pools, copy)
    try:
        worker = engine.start("basic", "asyncio_actors", "time_limits", "composition",
                              "shop.setup", "shop.orders", "shop.mail", "callbacks", "generic",
                              "audit", argv=["--processes", "1", "--threads", "4",
                                             "--worker-shutdown-timeout", "5000"])
        engine.produce("basic.py 14 --remind-in 700", "asyncio_actors.py 12",
                       "time_limits.py", "composition.py", "-m shop 6", "callbacks.py",
                       "generic.py", "audit.py 7 500")
        until(worker, lambda: basic_done(out) and asyncio_done(out) and time_limits_done(out)
              and composition_done(out) and shop_done(out) and callbacks_done(out)
              and generic_done(out) and audit_done(worker.output()))
        stop(worker)
    finally:
        for started in engine.started:
            started.kill()
    log = worker.output()
    check_basic(out)
    check_asyncio(out)
    check_time_limits(out)
    check_composition(out)
    check_shop(out, log)
    check_callbacks(out)
    check_generic(out)
    check_audit(log)
    assert "[time_limits.polite] [WARNING] time limit exceeded; giving up" in log
    assert "dramatiq.middleware.time_limit.TimeLimitExceeded" in log
