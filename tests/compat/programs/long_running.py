"""A long-running task and SIGTERM, in Dramatiq's style.

``crunch`` opts in to ``notify_shutdown``: when the worker is told to stop, the
ShutdownNotifications middleware raises ``Shutdown`` inside it, so the worker does not
wait for it; it does not catch the exception, so its message is retried later by
Retries (the work is not lost). ``chat`` is the same as a coroutine: the worker cancels
it, so it sees ``asyncio.CancelledError`` at its ``await``. ``settle`` does not opt in:
the worker lets it finish within the shutdown timeout. Run it::

    liteq worker long_running
    python long_running.py
    kill -TERM <the worker's pid>
"""

import argparse
import asyncio
import os
import sys
import time

import liteq as dramatiq

dramatiq.get_broker().add_middleware(dramatiq.middleware.AsyncIO())

OUT = os.environ.get("PROGRAM_OUT", ".")


def note(name, *fields):
    """Append one line of fields to the file ``name`` under OUT."""
    with open(os.path.join(OUT, name), "a") as f:
        f.write(" ".join(str(x) for x in fields) + "\n")


@dramatiq.actor(notify_shutdown=True, time_limit=float("inf"), max_retries=3,
                min_backoff=60000)
def crunch(steps):
    note("crunch.txt", "started", os.getpid())
    step = 0
    try:
        while step < steps:
            time.sleep(0.02)
            step += 1
    except dramatiq.middleware.Shutdown:
        crunch.logger.warning("worker is stopping; interrupted at step %d", step)
        note("crunch.txt", "shutdown", step)
        raise
    note("crunch.txt", "finished", steps)


@dramatiq.actor(notify_shutdown=True, time_limit=float("inf"), max_retries=3,
                min_backoff=60000)
async def chat(turns):
    note("chat.txt", "started", os.getpid())
    turn = 0
    try:
        while turn < turns:
            await asyncio.sleep(0.02)
            turn += 1
    except asyncio.CancelledError:
        note("chat.txt", "cancelled", turn)
        raise
    note("chat.txt", "finished", turns)


@dramatiq.actor(max_retries=0)
def settle(ms):
    note("settle.txt", "started", os.getpid())
    time.sleep(ms / 1000)
    note("settle.txt", "finished", ms)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Enqueue two endless tasks and one short.")
    parser.add_argument("--settle", type=int, default=1500, help="ms the short task takes")
    args = parser.parse_args(argv)
    crunch.send(100_000)
    chat.send(100_000)
    settle.send(args.settle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
