"""The systems under test: producing to, running the worker CLI of, and serving each one.

Everything that differs between liteq, Dramatiq and Huey is here; scenarios stay generic.
A system's name is ``KIND-BACKEND`` (``liteq`` alone is liteq on SQLite): liteq-redis
and dramatiq-redis share one Redis server per run, liteq-rabbitmq and dramatiq-rabbitmq
one RabbitMQ node (``Servers``). ``NAME@REF`` is system NAME running liteq's code at git
REF (``--baseline``, ``benchmarks/baseline.py``): its processes import liteq from
``source``, the worktree of REF.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import os
import shlex
import subprocess
import tempfile
import time
from collections.abc import Iterator

from benchmarks import servers
from benchmarks.baseline import pythonpath
from benchmarks.pools import HERE, PY, ROOT, Pool, ScenarioError

#: Generations are unique in the run, so that two systems on one server never share a
#: queue name (e.g. ``liteq-redis`` and ``liteq-redis@REF``).
_GENERATIONS = itertools.count(1)


class System:
    """How to produce to, run workers of, and reset one system."""

    def __init__(self, name: str, workdir: str, url: str | None, threads: int = 8,
                 processes: int = 2, source: str | None = None) -> None:
        self.name = name
        self.workdir = workdir
        self.url = url
        self.kind = kind_of(name)
        self.backend = backend_of(name)
        self.source = source
        self.threads = threads
        self.processes = processes
        self.generation = 0
        self.durable = False
        self.logs = os.path.join(workdir, "logs")
        os.makedirs(self.logs, exist_ok=True)

    @property
    def liteq_sqlite(self) -> bool:
        """liteq on its own SQLite broker (the scenarios only it has: bulk, durable, depth)."""
        return self.kind == "liteq" and self.backend == "sqlite"

    # -- state --------------------------------------------------------------------------
    def fresh(self, durable: bool = False) -> None:
        """New, empty queues: a new database file (SQLite systems), a flush (Dramatiq), or
        a flush of a queue named afresh for this scenario (liteq on a server)."""
        self.generation = next(_GENERATIONS)
        self.durable = durable

    @property
    def queue_name(self) -> str:
        """liteq's queue on a server: new for every scenario, never Dramatiq's ``default``."""
        return f"liteqbench{os.getpid()}g{self.generation}"

    @property
    def db_path(self) -> str:
        return os.path.join(self.workdir, f"{self.kind}-{self.generation}.db")

    def env(self, counter_dir: str | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("BENCH_LITEQ_SOURCE", None)
        if self.source:
            # A baseline: its liteq tree first, and the task module checks it was used.
            env["PYTHONPATH"] = pythonpath(self.source)
            env["BENCH_LITEQ_SOURCE"] = self.source
        else:
            # A caller's PYTHONPATH comes before the checkout, so that another liteq
            # source tree (e.g. an exported commit) can be measured with the same suite.
            env["PYTHONPATH"] = os.pathsep.join(
                [HERE] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []) + [ROOT])
        env.pop("BENCH_COUNTER_DIR", None)
        if counter_dir:
            env["BENCH_COUNTER_DIR"] = counter_dir
        for key in ("BENCH_QUEUE", "BENCH_REDIS_NAMESPACE"):
            env.pop(key, None)
        if self.liteq_sqlite:
            env["LITEQ_BROKER_URL"] = "sqlite:///" + self.db_path
            env["BENCH_DURABLE"] = "1" if self.durable else "0"
        elif self.kind == "liteq":
            if not self.url:
                raise ScenarioError(f"{self.name} has no server URL")
            env["LITEQ_BROKER_URL"] = self.url
            env["BENCH_QUEUE"] = self.queue_name
            if self.backend == "redis":
                env["BENCH_REDIS_NAMESPACE"] = "liteqbench"
        elif self.kind == "dramatiq":
            env["BENCH_BROKER_URL"] = self.url or ""
        elif self.kind == "huey":
            env["BENCH_HUEY_DB"] = self.db_path
        return env

    # -- producing ------------------------------------------------------------------------
    def produce(self, mode: str, n: int, *, flush: bool = False, interval: float = 0.02,
                batch: int = 1000) -> dict[str, float]:
        cmd = [PY, os.path.join(HERE, "producer.py"), self.kind, mode, "--n", str(n),
               "--batch", str(batch), "--interval", str(interval)]
        if flush:
            cmd.append("--flush")
        timeout = 120 + n / 400 + (n * interval if mode == "latency" else 0)
        try:
            done = subprocess.run(cmd, env=self.env(), cwd=HERE, capture_output=True,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise ScenarioError(f"producer ({mode}, n={n}) took over {timeout:.0f} s") from e
        if done.returncode != 0:
            raise ScenarioError(f"producer ({mode}) failed: {done.stderr[-1500:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    # -- workers --------------------------------------------------------------------------
    def worker_cmd(self) -> list[str]:
        p, t = str(self.processes), str(self.threads)
        if self.kind == "liteq":
            prefix = None if self.source else os.environ.get("BENCH_LITEQ_CMD")
            base = shlex.split(prefix) if prefix else [PY, "-m", "liteq"]
            return [*base, "worker", "tasks_liteq", "--processes", p, "--threads", t]
        if self.kind == "dramatiq":
            return [PY, "-m", "dramatiq", "tasks_dramatiq", "--processes", p, "--threads", t]
        return [PY, "-m", "huey.bin.huey_consumer", "tasks_huey.huey", "-w", t,
                "-k", "thread"]

    def start_pool(self, counter_dir: str, label: str) -> Pool:
        log = os.path.join(self.logs, f"{label}-{self.generation}.log")
        return Pool(self.worker_cmd(), self.env(counter_dir), log)

    def counter_dir(self) -> str:
        return tempfile.mkdtemp(prefix="count-", dir=self.workdir)


def liteq_cli_problem() -> str | None:
    """Why ``python -m liteq worker`` cannot be used here, or None."""
    if os.environ.get("BENCH_LITEQ_CMD"):
        return None
    if importlib.util.find_spec("liteq") is None:
        return "liteq is not importable"
    if importlib.util.find_spec("liteq.cli") is None:
        return "liteq.cli (the `liteq worker` command) does not exist yet"
    return None


def base_of(name: str) -> str:
    """The system a name runs, without its ``@REF``: ``liteq-redis@HEAD~1`` -> ``liteq-redis``."""
    return name.split("@", 1)[0]


def kind_of(name: str) -> str:
    """``liteq``, ``dramatiq`` or ``huey``."""
    return base_of(name).split("-")[0]


def backend_of(name: str) -> str:
    """``sqlite``, ``redis`` or ``rabbitmq``: where the system keeps its queues."""
    base = base_of(name)
    return base.split("-", 1)[1] if "-" in base else "sqlite"


#: Seconds to let a freshly started RabbitMQ node settle before the first measurement.
RABBITMQ_SETTLE = 5.0


class Servers:
    """The Redis and RabbitMQ servers of one run: each started on first use, once, and
    shared by every system of that backend (liteq and Dramatiq alike); stopped on exit.

    A server that did not start is not retried: the error is kept and raised again for
    the next system that needs it.
    """

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._urls: dict[str, str] = {}
        self._failed: dict[str, servers.ServerUnavailable] = {}

    def __enter__(self) -> Servers:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def url(self, name: str) -> str | None:
        """The URL of the server system ``name`` uses (started now if need be), or None."""
        backend = backend_of(name)
        if backend not in ("redis", "rabbitmq"):
            return None
        if backend in self._failed:
            raise self._failed[backend]
        if backend not in self._urls:
            manager = servers.redis_server() if backend == "redis" else servers.rabbitmq_server()
            try:
                self._urls[backend] = self._stack.enter_context(manager)
            except servers.ServerUnavailable as e:
                self._failed[backend] = e
                raise
            if backend == "rabbitmq":
                # A node that just answered AMQP is still finishing its boot: the first
                # system measured on it got half the enqueue rate of the second (either
                # order). Let it settle so that sharing one node stays fair.
                time.sleep(RABBITMQ_SETTLE)
        return self._urls[backend]


@contextlib.contextmanager
def system_server(name: str) -> Iterator[str | None]:
    """A server for ``name`` alone (started and stopped here), or None for SQLite systems."""
    with Servers() as started:
        yield started.url(name)


def availability(name: str) -> str | None:
    """Why ``name`` cannot run here, or None (a baseline's own liteq is probed apart)."""
    name = base_of(name)
    def missing(*modules: str) -> list[str]:
        def absent(module: str) -> bool:
            try:
                return importlib.util.find_spec(module) is None
            except ImportError:  # a parent package that does not import
                return True
        return [m for m in modules if absent(m)]

    if name == "liteq":
        return None if not missing("liteq") else "liteq is not importable"
    if name in ("liteq-redis", "liteq-rabbitmq"):
        backend = backend_of(name)
        client = "redis" if backend == "redis" else "pika"
        if m := missing("liteq", client):
            return (f"{', '.join(m)} not installed: .venv/bin/pip install {client} "
                    "(or benchmarks/setup.sh)")
        adapter = "liteq.redis_compat" if backend == "redis" else "liteq.brokers.rabbitmq"
        if missing(adapter):
            return f"this liteq has no {backend} broker ({adapter})"
        if backend == "redis" and not servers.redis_available():
            return f"redis-server is not installed: {servers.INSTALL_HINT}"
        if backend == "rabbitmq" and not servers.rabbitmq_available():
            return f"rabbitmq-server is not installed: {servers.INSTALL_HINT}"
    if name == "dramatiq-rabbitmq":
        if m := missing("dramatiq", "pika"):
            return (f"{', '.join(m)} not installed: .venv/bin/pip install "
                    "'dramatiq[rabbitmq,redis]' (or benchmarks/setup.sh)")
        if not servers.rabbitmq_available():
            return f"rabbitmq-server is not installed: {servers.INSTALL_HINT}"
    if name == "dramatiq-redis":
        if m := missing("dramatiq", "redis"):
            return (f"{', '.join(m)} not installed: .venv/bin/pip install "
                    "'dramatiq[rabbitmq,redis]' (or benchmarks/setup.sh)")
        if not servers.redis_available():
            return f"redis-server is not installed: {servers.INSTALL_HINT}"
    if name == "huey-sqlite" and missing("huey"):
        return "huey is not installed: .venv/bin/pip install huey (or benchmarks/setup.sh)"
    return None
