"""The ``liteq`` command: ``liteq worker`` runs a pool; the other commands operate a broker.

Every command is a thin layer over library calls (``liteq.pool``, ``SqliteBroker``,
``liteq.ops.snapshot``); the operations commands live in :mod:`liteq.ops.commands`.
Exit codes follow Dramatiq's CLI: 0 ok, 1 killed or failed, 2 bad arguments or an
import error, 3 the broker (database) is unusable, 4 a pid-file problem.
"""

from __future__ import annotations

import os
import sys

import click

from . import __version__
from .errors import EXIT_USAGE
from .ops.cli_support import broker_option, fail
from .ops.worker_args import WorkerCommand
from .urls import mask_url, scrub

# ---------------------------------------------------------------------------------------
# the group
# ---------------------------------------------------------------------------------------
#: The operations commands, imported only when named (``liteq worker`` starts faster).
OPERATIONS = {
    "enqueue": "liteq.ops.commands:enqueue_command",
    "queues": "liteq.ops.commands:queues_command",
    "stats": "liteq.ops.commands:stats_command",
    "dlq": "liteq.ops.commands:dlq_group",
    "purge": "liteq.ops.commands:purge_command",
    "top": "liteq.ops.top:top_command",
    "compact": "liteq.ops.compact:compact_command",
}


class _Group(click.Group):
    """The ``liteq`` group: ``worker`` is defined here, the operations load on demand."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *OPERATIONS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in OPERATIONS and cmd_name not in self.commands:
            import importlib

            module, _, name = OPERATIONS[cmd_name].partition(":")
            self.add_command(getattr(importlib.import_module(module), name), cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"],
                               "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="liteq")
def cli() -> None:
    """liteq: background tasks with Dramatiq's programming model on one SQLite file.

    \b
    Run workers:      liteq worker tasks
    Look at queues:   liteq stats        (or liteq queues, liteq dlq list)
    Send a task:      liteq enqueue send_email --args '["a@example.com"]'
    Shrink the file:  liteq compact      (SQLite: return free pages)

    Every command finds the broker through --broker or LITEQ_BROKER_URL
    (default: sqlite:///liteq.db in the working directory).

    \b
    Exit codes: 0 ok, 1 killed or failed, 2 bad arguments or import error,
    3 broker or database unusable, 4 pid-file problem.
    """


# ---------------------------------------------------------------------------------------
# liteq worker
# ---------------------------------------------------------------------------------------
def _default_processes() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _check_worker_options(watch: tuple[str, ...], watch_options: object, skip_logging: bool,
                          log_file: str | None, forks: tuple[str, ...]) -> None:
    """Refuse options that would otherwise be silently ignored (exit 2)."""
    if watch_options and not watch:
        fail("--watch-use-polling, --watch-include and --watch-exclude need --watch DIR",
             EXIT_USAGE)
    if skip_logging and log_file:
        fail("--skip-logging leaves logging to your code, --log-file configures it: "
             "give one of them", EXIT_USAGE)
    for spec in forks:
        module, _, function = spec.partition(":")
        if not module or not function:
            fail(f"--fork-function {spec!r}: expected MODULE:FUNCTION", EXIT_USAGE)


def _prometheus_address(value: str | None) -> tuple[str, int] | None:
    """``--prometheus [HOST:]PORT`` as ``(host, port)``; exit 2 if bad or unusable."""
    if value is None:
        return None
    import importlib.util

    from .process.metrics import parse_address

    try:
        address = parse_address(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    if importlib.util.find_spec("prometheus_client") is None:
        fail("--prometheus needs prometheus_client: pip install 'liteq[prometheus]'",
             EXIT_USAGE)
    return address


@cli.command("worker", cls=WorkerCommand)
@click.argument("modules", nargs=-1, metavar="MODULE[:BROKER] [MODULE...]")
@click.option("-p", "--processes", type=click.IntRange(min=1), default=None,
              help="Worker processes to run.  [default: the number of CPUs]")
@click.option("-t", "--threads", type=click.IntRange(min=1), default=8, show_default=True,
              help="Worker threads per process.")
@click.option("-Q", "--queues", multiple=True, metavar="QUEUE...",
              help="Consume only these queues: every word up to the next option "
                   "(-Q a b), also -Q a -Q b or -Q a,b.  [default: every queue the "
                   "modules declare]")
@click.option("-P", "--path", "paths", multiple=True, metavar="DIR...",
              type=click.Path(exists=True, file_okay=False),
              help="Look for the modules in these directories too (every word up to the "
                   "next option; the working directory and PYTHONPATH are always searched).")
@click.option("--watch", multiple=True, metavar="DIR",
              type=click.Path(exists=True, file_okay=False),
              help="Restart the worker processes when a .py file under DIR changes "
                   "(development; inotify on Linux, else polling once a second).")
@click.option("--watch-use-polling", is_flag=True,
              help="With --watch: poll file modification times once a second instead of "
                   "using inotify (network and container file systems).")
@click.option("-i", "--watch-include", multiple=True, metavar="PATTERN",
              help="With --watch: files matching PATTERN (e.g. '*.html') trigger a reload "
                   "too; *.py files always do.")
@click.option("-x", "--watch-exclude", multiple=True, metavar="PATTERN",
              help="With --watch: files matching PATTERN (e.g. 'migrations/*') never "
                   "trigger a reload.")
@click.option("--pid-file", type=click.Path(dir_okay=False), metavar="FILE",
              help="Write the supervisor's pid to FILE; refuse to start (exit 4) if it "
                   "names a running process.")
@click.option("--log-file", type=click.Path(dir_okay=False), metavar="FILE",
              help="Append logs to FILE instead of stderr.")
@click.option("--skip-logging", is_flag=True,
              help="Do not configure logging (no handler, no level): leave it to the "
                   "modules' own code.")
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level (a line per task).")
@click.option("--shutdown-timeout", "--worker-shutdown-timeout", "shutdown_timeout",
              type=click.IntRange(min=0), default=600000, show_default=True, metavar="MS",
              help="On SIGTERM/SIGINT, how long running tasks may take to finish.")
@click.option("-f", "--fork-function", "forks", multiple=True, metavar="MODULE:FUNCTION",
              help="Run FUNCTION in a process of its own beside the worker processes "
                   "(repeatable); it gets SIGTERM when the pool stops.")
@click.option("--worker-fork-timeout", type=click.FloatRange(min=10, max=1_800_000),
              default=30000, show_default=True, metavar="MS",
              help="How long to wait for the worker processes to be ready before starting "
                   "the --fork-function processes anyway.")
@click.option("--max-tasks-per-child", type=click.IntRange(min=1), default=None, metavar="N",
              help="Replace a worker process after it ran N tasks (caps memory leaks).")
@click.option("--hard-time-limit", is_flag=True,
              help="Kill and replace a worker process whose task overran its time limit "
                   "where the TimeLimit middleware cannot interrupt it (C code, blocking "
                   "calls). The message is redelivered, then dead-lettered after the "
                   "broker's max_deliveries.")
@click.option("--use-spawn", is_flag=True,
              help="Start worker processes with the 'spawn' method instead of fork "
                   "(the default where fork is unavailable or unsafe).")
@click.option("--prefetch", type=click.IntRange(min=1), default=None, metavar="N",
              help="Messages each process claims ahead.  [default: adaptive, about 5 ms of "
                   "work: from the thread count up to 256]")
@click.option("--prometheus", metavar="[HOST:]PORT", default=None,
              callback=lambda ctx, param, value: _prometheus_address(value),
              help="Serve Prometheus metrics (Dramatiq's names, summed over the worker "
                   "processes, plus queue depths) on http://HOST:PORT/metrics.  "
                   "[default host: 127.0.0.1; needs pip install 'liteq[prometheus]']")
@broker_option
@click.version_option(__version__, "--version", prog_name="liteq")
def worker_command(modules: tuple[str, ...], processes: int | None, threads: int,
                   queues: tuple[str, ...], paths: tuple[str, ...], watch: tuple[str, ...],
                   watch_use_polling: bool, watch_include: tuple[str, ...],
                   watch_exclude: tuple[str, ...], pid_file: str | None,
                   log_file: str | None, skip_logging: bool, verbose: bool,
                   shutdown_timeout: int, forks: tuple[str, ...], worker_fork_timeout: float,
                   max_tasks_per_child: int | None, hard_time_limit: bool, use_spawn: bool,
                   prefetch: int | None, prometheus: tuple[str, int] | None,
                   broker_url: str | None) -> None:
    """Run a pool of worker processes for the actors of MODULE.

    \b
    MODULE is imported in every worker process, from --path, the working
    directory or PYTHONPATH. Its actors use the global broker: the one the
    module passed to liteq.set_broker(), else LITEQ_BROKER_URL / --broker,
    else sqlite:///liteq.db. MODULE:NAME uses the broker object NAME of the
    module instead (or calls NAME() when it is a function).

    \b
    Examples:
      liteq worker tasks
      liteq worker tasks -p 4 -t 16 -Q emails reports
      liteq worker myapp.tasks:broker --watch myapp     (reload on changes)
      liteq worker tasks -f myapp.metrics:serve         (a fork process)
      liteq worker tasks --prometheus 9191              (metrics on :9191)
      LITEQ_BROKER_URL=sqlite:////var/lib/app/jobs.db liteq worker tasks

    \b
    The modules come first: after -Q/--queues (or -P/--path) every word up
    to the next option is a queue (a path), as in Dramatiq.

    \b
    Signals: SIGTERM or Ctrl-C stop claiming, return prefetched messages and
    let running tasks finish within --shutdown-timeout (exit 0); a second
    one kills the processes at once (exit 1; their messages are released
    for redelivery). SIGHUP restarts the worker processes with fresh code.
    A crashed worker process is restarted.
    """
    from .pool import run_pool
    from .process.logs import setup_logging
    from .process.pool_config import PoolConfig

    _check_worker_options(watch, watch_use_polling or watch_include or watch_exclude,
                          skip_logging, log_file, forks)
    if broker_url:
        os.environ["LITEQ_BROKER_URL"] = broker_url
    if not skip_logging:
        try:
            setup_logging(verbose, log_file)
        except OSError as e:
            fail(f"cannot open the log file {log_file}: {e.strerror}", EXIT_USAGE)
    import multiprocessing

    spawn = use_spawn or sys.platform in ("darwin", "win32") or \
        "fork" not in multiprocessing.get_all_start_methods()
    config = PoolConfig(
        modules=list(modules), paths=list(paths),
        processes=processes or _default_processes(), threads=threads,
        queues=[q for item in queues for q in item.replace(",", " ").split()] or None,
        prefetch=prefetch, shutdown_timeout=shutdown_timeout,
        max_tasks_per_child=max_tasks_per_child, hard_time_limit=hard_time_limit,
        use_spawn=spawn, verbose=verbose, log_file=log_file, watch=list(watch),
        watch_polling=watch_use_polling, watch_include=list(watch_include),
        watch_exclude=list(watch_exclude), skip_logging=skip_logging, forks=list(forks),
        fork_timeout=worker_fork_timeout, prometheus=prometheus,
    )
    if broker_url:
        import logging

        logging.getLogger("liteq.pool").info("broker: %s", mask_url(broker_url))
    code, error = run_pool(config, pid_file)
    if error and log_file:
        click.echo(f"liteq: error: {scrub(error)}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """The ``liteq`` console script."""
    cli.main(args=argv, prog_name="liteq")


if __name__ == "__main__":
    main()
