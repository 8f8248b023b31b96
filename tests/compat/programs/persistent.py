"""State persisted across a shutdown, in Dramatiq's style.

``fib(n)`` computes Fibonacci numbers one at a time, logging each. When the worker
stops it receives ``Shutdown`` (``notify_shutdown``), saves where it was to
``states/<n>.json`` and returns, so its message is acknowledged. Sending ``fib(n)``
again later resumes from the saved state instead of starting over. Run it::

    liteq worker persistent
    python persistent.py 500
    kill -TERM <the worker's pid>; liteq worker persistent; python persistent.py 500
"""

import argparse
import json
import os
import sys
import time

import liteq as dramatiq

OUT = os.environ.get("PROGRAM_OUT", ".")


def state_path(n):
    return os.path.join(OUT, "states", f"{n}.json")


def load_state(n):
    """``(next index, fib(next - 2), fib(next - 1))``: saved, or from the start."""
    try:
        with open(state_path(n)) as f:
            saved = json.load(f)
    except (OSError, ValueError):
        fib.logger.info("no saved state for fib(%d); starting over", n)
        return 1, 0, 1
    fib.logger.info("resuming fib(%d) at index %d", n, saved["next"])
    return saved["next"], saved["before"], saved["last"]


def save_state(n, state):
    os.makedirs(os.path.dirname(state_path(n)), exist_ok=True)
    with open(state_path(n), "w") as f:
        json.dump(state, f)
    fib.logger.info("saved fib(%d) at index %d", n, state["next"])


@dramatiq.actor(notify_shutdown=True, time_limit=float("inf"), max_retries=0)
def fib(n, pace_ms=10):
    start, before, last = load_state(n)
    state = {"next": start, "before": before, "last": last}
    try:
        with open(os.path.join(OUT, f"fib-{n}.log"), "a") as log:
            for i in range(start, n + 1):
                log.write(f"{i} {last} {os.getpid()}\n")
                log.flush()
                state = {"next": i + 1, "before": last, "last": before + last}
                before, last = last, before + last
                time.sleep(pace_ms / 1000)
    except dramatiq.middleware.Shutdown:
        save_state(n, state)
        return
    if os.path.exists(state_path(n)):
        os.remove(state_path(n))
    fib.logger.info("fib(%d) done", n)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Compute fib(n) in the background.")
    parser.add_argument("n", type=int, help="must be a positive number")
    parser.add_argument("--pace", type=int, default=10, help="ms to wait after each number")
    args = parser.parse_args(argv)
    fib.send(args.n, args.pace)
    return 0


if __name__ == "__main__":
    sys.exit(main())
