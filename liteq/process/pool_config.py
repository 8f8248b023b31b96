"""What a ``liteq worker`` pool runs with (its exit codes are in ``liteq.errors``)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class PoolConfig:
    """Everything a supervisor and its children need (picklable for ``spawn``)."""

    modules: list[str]
    paths: list[str] = dataclasses.field(default_factory=list)
    processes: int = 1
    threads: int = 8
    queues: list[str] | None = None
    prefetch: int | None = None
    shutdown_timeout: int = 600000
    max_tasks_per_child: int | None = None
    hard_time_limit: bool = False
    use_spawn: bool = False
    verbose: bool = False
    log_file: str | None = None
    watch: list[str] = dataclasses.field(default_factory=list)
    watch_polling: bool = False
    watch_include: list[str] = dataclasses.field(default_factory=list)
    watch_exclude: list[str] = dataclasses.field(default_factory=list)
    #: Leave logging alone in every process (the modules configure it).
    skip_logging: bool = False
    #: ``module:function`` paths run in fork processes of their own (:mod:`liteq.process.forks`).
    forks: list[str] = dataclasses.field(default_factory=list)
    #: How long (ms) fork processes wait for the worker processes to be ready.
    fork_timeout: float = 30000
    worker_timeout: int = 1000
    #: ``(host, port)`` of the supervisor's Prometheus endpoint (:mod:`liteq.process.metrics`);
    #: every worker process then records the Prometheus middleware's metrics.
    prometheus: tuple[str, int] | None = None
