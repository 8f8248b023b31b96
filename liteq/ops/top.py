"""``liteq top``: a live terminal monitor of a broker (any: it reads its Inspector).

The terminal side: :func:`run_live` drives a ``rich.live.Live`` screen (keys read
in cbreak mode) until ``q`` or Ctrl-C, and :func:`top_command` is the click command.
The data comes from :mod:`liteq.ops.monitor`, the layout from :mod:`liteq.ops.top_render`.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

import click

from .cli_support import (
    broker_option,
    handle_errors,
    inspecting,
    json_option,
    print_json,
    queues_option,
)
from .monitor import Monitor
from .snapshot import snapshot
from .top_render import Screen


@contextlib.contextmanager
def cbreak(stream: Any) -> Iterator[int | None]:
    """``stream`` in cbreak mode (keys one at a time, no echo; Ctrl-C still signals).

    Yields its file descriptor, or None when it is not a terminal; the terminal's
    settings are restored on exit, whatever happens.
    """
    try:
        fd = stream.fileno()
    except (AttributeError, ValueError, OSError):
        fd = -1
    if fd < 0 or not os.isatty(fd):
        yield None
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def wait_key(fd: int | None, timeout: float) -> bytes:
    """Bytes typed within ``timeout`` seconds (b"" if none, or if there is no terminal)."""
    if fd is None:
        time.sleep(max(0.0, timeout))
        return b""
    ready, _, _ = select.select([fd], [], [], max(0.0, timeout))
    if not ready:
        return b""
    data = os.read(fd, 64)
    return data if data else b"q"  # end of input: quit


def run_live(monitor: Monitor, interval: float, console: Any | None = None,
             stdin: Any = None) -> None:
    """Refresh every ``interval`` seconds until ``q`` (or Ctrl-C, raised to the caller)."""
    from rich.console import Console
    from rich.live import Live

    console = console or Console()
    stdin = sys.stdin if stdin is None else stdin
    tick = min(0.2, interval)
    with cbreak(stdin) as fd, Live(console=console, screen=True, auto_refresh=False,
                                   redirect_stdout=False, redirect_stderr=False) as live:
        next_at = time.monotonic()
        size = console.size
        while True:
            now = time.monotonic()
            if now >= next_at:
                live.update(Screen(monitor.refresh()), refresh=True)
                next_at = max(next_at + interval, now + interval / 2)
                size = console.size
            elif console.size != size:  # resized: lay the same frame out again
                size = console.size
                live.refresh()
            keys = wait_key(fd, min(tick, next_at - time.monotonic()))
            if b"q" in keys.lower() or b"\x03" in keys:
                return


def _terminate_cleanly(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@click.command("top")
@click.option("--interval", type=click.FloatRange(min=0.0, min_open=False), default=1.0,
              show_default=True, help="Seconds between refreshes.")
@click.option("--once", is_flag=True,
              help="Print one frame and exit (rates over one --interval; 0: no rates).")
@json_option
@broker_option
@queues_option
@handle_errors
def top_command(interval: float, once: bool, as_json: bool, broker_url: str | None,
                queues: tuple[str, ...]) -> None:
    """A live view of queues, rates, workers and recent failures. Press q to quit.

    Reads only (on SQLite, never takes the database's write lock). --json
    prints the same data as ``liteq stats --json``. "–" is a count the broker
    cannot know.
    """
    from rich.console import Console

    if interval <= 0 and not (once or as_json):
        raise click.BadParameter("must be above 0 for the live view", param_hint="--interval")
    with inspecting(broker_url, queues) as inspector:
        if as_json:
            print_json(snapshot(inspector))
            return
        monitor = Monitor(inspector)
        if once:
            frame = monitor.refresh()
            if interval > 0:
                time.sleep(interval)  # a second sample gives rates and CPU %
                frame = monitor.refresh()
            Console().print(Screen(frame, fit_height=False))
            return
        previous = signal.signal(signal.SIGTERM, _terminate_cleanly)
        try:
            run_live(monitor, interval)
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)


__all__ = ["run_live", "top_command"]

if __name__ == "__main__":
    top_command(prog_name="liteq top")
