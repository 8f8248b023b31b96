"""``async def`` actors in Dramatiq's style, with the AsyncIO middleware added by hand.

Each worker process runs one event loop in its own thread; every coroutine actor of the
process runs on it. A coroutine that outlives its time limit is cancelled and its
message fails with ``TimeLimitExceeded``. Run it::

    liteq worker asyncio_actors
    python asyncio_actors.py 10
"""

import argparse
import asyncio
import os
import sys
import threading

import liteq as dramatiq

dramatiq.get_broker().add_middleware(dramatiq.middleware.AsyncIO())

OUT = os.environ.get("PROGRAM_OUT", ".")


def note(name, *fields):
    """Append one line of fields to the file ``name`` under OUT."""
    with open(os.path.join(OUT, name), "a") as f:
        f.write(" ".join(str(x) for x in fields) + "\n")


@dramatiq.actor
async def add(x, y):
    await asyncio.sleep(0.01)
    loop = asyncio.get_running_loop()
    add.logger.info("%d + %d = %d", x, y, x + y)
    note("sums.txt", x, y, x + y, os.getpid(), id(loop), threading.current_thread().name)


@dramatiq.actor(time_limit=300, max_retries=0)
async def dawdle():
    note("dawdle.txt", "started")
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        note("dawdle.txt", "cancelled")
        raise
    note("dawdle.txt", "finished")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Enqueue additions and one slow coroutine.")
    parser.add_argument("count", type=int, help="the number of additions to enqueue")
    args = parser.parse_args(argv)
    for i in range(args.count):
        add.send(i, 2 * i)
    dawdle.send()
    return 0


if __name__ == "__main__":
    sys.exit(main())
