"""Start private Redis and RabbitMQ servers on free ports of 127.0.0.1 (no systemd needed).

Usable from benchmarks and tests alike (standard library only)::

    from benchmarks.servers import redis_server, rabbitmq_server

    with redis_server() as url:        # redis://127.0.0.1:PORT/0
        ...
    with rabbitmq_server() as url:     # amqp://guest:guest@127.0.0.1:PORT/%2F
        ...

Each server runs in the foreground as a child of this process, in its own session,
with all its state in a private temporary directory; on leaving the block (also on an
error or Ctrl-C) it is stopped, killed if it does not stop in time, and its directory
is removed. Only processes started here are signalled: the server's own process
group and, for RabbitMQ, the private ``epmd`` it started on its own port.
``ServerUnavailable`` is raised when the binary is missing or the server does not come
up; ``INSTALL_HINT`` says how to install them (``benchmarks/setup.sh`` does it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

__all__ = [
    "INSTALL_HINT", "ServerUnavailable", "free_port", "rabbitmq_available", "rabbitmq_server",
    "redis_available", "redis_server",
]

INSTALL_HINT = (
    "sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y "
    "redis-server rabbitmq-server   (or run benchmarks/setup.sh)"
)

RABBITMQ_SCRIPT = "/usr/lib/rabbitmq/bin/rabbitmq-server"
RABBITMQ_CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"


class ServerUnavailable(RuntimeError):
    """The server binary is missing or the server did not start."""


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _redis_binary() -> str | None:
    return shutil.which("redis-server")


def redis_available() -> bool:
    return _redis_binary() is not None


def rabbitmq_available() -> bool:
    return os.access(RABBITMQ_SCRIPT, os.X_OK) and shutil.which("erl") is not None


def _stop(process: subprocess.Popen, timeout: float) -> None:
    """SIGTERM the process group we created, wait, then SIGKILL it."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    # Leftovers of the group (e.g. a shell's child) get SIGKILL; the group is ours.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


def _tail(path: str, size: int = 2000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server(timeout: float = 20.0) -> Iterator[str]:
    """A private, non-persistent Redis on a free port; yields ``redis://127.0.0.1:PORT/0``."""
    binary = _redis_binary()
    if binary is None:
        raise ServerUnavailable(f"redis-server is not installed; install it with: {INSTALL_HINT}")
    directory = tempfile.mkdtemp(prefix="liteq-redis-")
    process = None
    try:
        port = free_port()
        log = os.path.join(directory, "redis.log")
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--dir", directory,
             "--logfile", log, "--protected-mode", "yes"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=directory,
        )
        deadline = time.monotonic() + timeout
        while not _redis_ping(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise ServerUnavailable(f"redis-server did not start on port {port}:\n"
                                        f"{_tail(log)}")
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        if process is not None:
            _stop(process, 10.0)
        shutil.rmtree(directory, ignore_errors=True)


def _amqp_ready(port: int) -> bool:
    """True once the AMQP listener answers a protocol header with Connection.Start."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(b"AMQP\x00\x00\x09\x01")
            frame = s.recv(7)
            return len(frame) == 7 and frame[0] == 1  # a method frame
    except OSError:
        return False


@contextlib.contextmanager
def rabbitmq_server(timeout: float = 90.0) -> Iterator[str]:
    """A private RabbitMQ node (no plugins) on free ports; yields its ``amqp://`` URL.

    State, Erlang cookie and logs live in a temporary directory; the node uses its own
    ``epmd`` on a private port, stopped afterwards with ``epmd -port P -kill``.
    """
    if not rabbitmq_available():
        raise ServerUnavailable(
            f"rabbitmq-server is not installed; install it with: {INSTALL_HINT}")
    directory = tempfile.mkdtemp(prefix="liteq-rabbitmq-")
    process = None
    epmd_port = None
    env: dict[str, str] = {}
    try:
        port, dist_port, epmd_port = free_port(), free_port(), free_port()
        node = f"liteqbench{port}@localhost"
        with open(os.path.join(directory, "enabled_plugins"), "w") as f:
            f.write("[].\n")
        env = dict(
            os.environ,
            HOME=directory,
            RABBITMQ_NODENAME=node,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(port),
            RABBITMQ_DIST_PORT=str(dist_port),
            RABBITMQ_MNESIA_BASE=os.path.join(directory, "mnesia"),
            RABBITMQ_LOG_BASE=os.path.join(directory, "log"),
            RABBITMQ_PID_FILE=os.path.join(directory, "rabbit.pid"),
            RABBITMQ_ENABLED_PLUGINS_FILE=os.path.join(directory, "enabled_plugins"),
            ERL_EPMD_ADDRESS="127.0.0.1",
            ERL_EPMD_PORT=str(epmd_port),
        )
        stdout = os.path.join(directory, "stdout.log")
        with open(stdout, "wb") as out:
            process = subprocess.Popen(
                [RABBITMQ_SCRIPT], env=env, cwd=directory, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not _amqp_ready(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise ServerUnavailable(f"rabbitmq-server did not start on port {port}:\n"
                                        f"{_tail(stdout)}")
            time.sleep(0.1)
        yield f"amqp://guest:guest@127.0.0.1:{port}/%2F"
    finally:
        if process is not None:
            # The start script turns SIGTERM into a clean node stop.
            _stop(process, 30.0)
        if epmd_port is not None and shutil.which("epmd"):
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                subprocess.run(["epmd", "-port", str(epmd_port), "-kill"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               timeout=10)
        shutil.rmtree(directory, ignore_errors=True)
