"""What a ``liteq worker`` pool runs with, and the exit codes its processes report."""

from __future__ import annotations

import dataclasses

EXIT_OK = 0
EXIT_KILLED = 1
EXIT_IMPORT = 2
EXIT_BROKER = 3
EXIT_PIDFILE = 4
#: A child that processed ``max_tasks_per_child`` tasks exits with this code.
EXIT_RECYCLE = 100


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
    #: ``module:function`` paths run in fork processes of their own (:mod:`liteq.forks`).
    forks: list[str] = dataclasses.field(default_factory=list)
    #: How long (ms) fork processes wait for the worker processes to be ready.
    fork_timeout: float = 30000
    worker_timeout: int = 1000
