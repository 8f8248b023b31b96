"""The ``/metrics`` endpoint of ``liteq worker --prometheus [HOST:]PORT``, served by the supervisor.

The supervisor makes a fresh ``PROMETHEUS_MULTIPROC_DIR`` (a temporary directory it
removes at exit) and sets it before it starts any worker process; each worker process
then records :class:`liteq.middleware.prometheus.Prometheus`'s metrics in files of its
own there. A scrape sums every file (``prometheus_client``'s ``MultiProcessCollector``):
counters and histograms keep the figures of dead processes, so totals never go down,
while :meth:`MetricsServer.process_died` drops a dead process's live gauges. One
endpoint per pool, served by a thread of the supervisor.

A scrape also reports the queues' depths, read then through the broker's inspector
(``liteq_queue_messages{queue_name, state}``): the broker module named by a worker
process's release recipe (:mod:`liteq.pool`) supplies ``inspect_queues(info)``; a
broker module without it simply has no depth gauges.

The supervisor forks while this thread may be scraping: a fork taken while the thread
holds a lock (SQLite's, the client library's) would leave that lock held forever in the
child. :attr:`MetricsServer.fork_guard` is held for the computation of each scrape, and
the supervisor holds it around every fork.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import shutil
import socket
import socketserver
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from ..errors import MetricsUnavailable
from ..middleware.prometheus import INSTALL_HINT, import_prometheus_client
from ..urls import scrub

logger = logging.getLogger("liteq.metrics")

ENV = "PROMETHEUS_MULTIPROC_DIR"
#: The host ``--prometheus PORT`` binds to: only this machine, unless told otherwise.
DEFAULT_HOST = "127.0.0.1"
#: The queue counts published as ``liteq_queue_messages{state=…}`` (None ones are left out).
DEPTH_STATES = ("ready", "delayed", "claimed", "running", "dead")
#: How long a fork waits for a scrape in progress before going ahead anyway (seconds).
FORK_GUARD_WAIT = 10.0
#: Seconds a scrape's client may take to send its request.
CLIENT_TIMEOUT = 5.0


def parse_address(text: str) -> tuple[str, int]:
    """``[HOST:]PORT`` (``[::1]:PORT`` for IPv6) as ``(host, port)``; ValueError if bad."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep:
        host = DEFAULT_HOST
    elif host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"expected [HOST:]PORT with a port from 0 to 65535, got {text!r}")
    return host, int(port_text)


class _ForkGuard:
    """A lock the scrape holds while it computes and the supervisor holds while it forks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held = False

    def __enter__(self) -> None:
        if not self._lock.acquire(timeout=FORK_GUARD_WAIT):
            logger.warning("a metrics scrape has run for %gs; starting a process anyway",
                           FORK_GUARD_WAIT)
            self._held = False
            return
        self._held = True

    def __exit__(self, *exc: object) -> None:
        if self._held:
            self._lock.release()

    @contextlib.contextmanager
    def scraping(self) -> Iterator[None]:
        with self._lock:
            yield


class _Depths:
    """A collector of ``liteq_queue_messages``, read from the broker at scrape time."""

    def __init__(self, server: MetricsServer) -> None:
        self.server = server

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        counts = self.server.queue_counts()
        if counts is None:
            return
        family = GaugeMetricFamily(
            "liteq_queue_messages", "Messages of each queue by state, read at scrape time.",
            labels=["queue_name", "state"])
        for queue in sorted(counts):
            for state in DEPTH_STATES:
                value = getattr(counts[queue], state, None)
                if value is not None:
                    family.add_metric([queue, state], value)
        yield family


class MetricsServer:
    """The pool's multiprocess metrics directory and the HTTP endpoint that sums it."""

    def __init__(self, host: str, port: int) -> None:
        self.path = tempfile.mkdtemp(prefix="liteq-prometheus-")
        self._previous_env = os.environ.get(ENV)
        # Before prometheus_client is imported: it picks its multiprocess mode on import.
        os.environ[ENV] = self.path
        try:
            self.prom = _import_client()
        except MetricsUnavailable:
            self._remove_directory()
            raise
        from prometheus_client import multiprocess

        self._multiprocess = multiprocess
        self.fork_guard = _ForkGuard()
        self._broker_info: dict[str, Any] | None = None
        self._reported: set[str] = set()
        try:
            self._httpd = _Server((host, port), _handler(self))
        except OSError as e:
            self._remove_directory()
            raise MetricsUnavailable(
                f"--prometheus cannot listen on {_show(host, port)}: {e.strerror or e}"
            ) from e
        self.host, self.port = self._httpd.server_address[:2]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="liteq-metrics",
                                        daemon=True)
        self._thread.start()
        logger.info("serving Prometheus metrics on http://%s/metrics",
                    _show(str(self.host), int(self.port)))

    def watch_broker(self, info: dict[str, Any] | None) -> None:
        """Read queue depths through the broker a worker process described (its release
        recipe); the first recipe is kept."""
        if self._broker_info is None and info is not None:
            self._broker_info = info

    def process_died(self, pid: int) -> None:
        """Drop the live gauges of dead worker process ``pid`` (its counters stay)."""
        with contextlib.suppress(OSError):
            self._multiprocess.mark_process_dead(pid, self.path)

    def queue_counts(self) -> dict[str, Any] | None:
        """The broker's counts per queue, or None when they cannot be had."""
        info = self._broker_info
        if info is None:
            return None
        name = info.get("module")
        try:
            if not isinstance(name, str) or not name.startswith("liteq."):
                return None
            inspect = getattr(importlib.import_module(name), "inspect_queues", None)
            if inspect is None:
                return None
            counts: dict[str, Any] | None = inspect(info)
            return counts
        except Exception as e:  # noqa: BLE001 - a scrape still serves the counters
            text = scrub(f"{type(e).__name__}: {e}")
            if text not in self._reported:
                self._reported.add(text)
                logger.warning("metrics: cannot read the queue depths: %s", text)
            return None

    def render(self) -> bytes:
        """The exposition text of one scrape."""
        prom = self.prom
        registry = prom.CollectorRegistry()
        self._multiprocess.MultiProcessCollector(registry, path=self.path)
        registry.register(_Depths(self))
        with self.fork_guard.scraping():
            output: bytes = prom.generate_latest(registry)
        return output

    def close(self) -> None:
        """Stop serving and remove the metrics directory."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)
        self._remove_directory()

    def _remove_directory(self) -> None:
        if self._previous_env is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = self._previous_env
        shutil.rmtree(self.path, ignore_errors=True)


class _Server(HTTPServer):
    """An HTTP server on IPv4 or IPv6 that does not look its own name up in DNS."""

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]


def _import_client() -> Any:
    try:
        return import_prometheus_client()
    except ImportError as e:
        raise MetricsUnavailable(f"--prometheus needs prometheus_client: {INSTALL_HINT}") from e


def _show(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _handler(server: MetricsServer) -> type[BaseHTTPRequestHandler]:
    """The request handler class of ``server``'s endpoint."""

    class Handler(BaseHTTPRequestHandler):
        timeout = CLIENT_TIMEOUT

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path.split("?", 1)[0] not in ("/metrics", "/"):
                self.send_error(404, "the metrics are at /metrics")
                return
            try:
                body = server.render()
            except Exception:
                logger.exception("metrics: the scrape failed")
                self.send_error(500, "the scrape failed; see the worker log")
                return
            self.send_response(200)
            self.send_header("Content-Type", server.prom.CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            logger.debug("metrics: %s %s", self.address_string(), format % args)

    return Handler
