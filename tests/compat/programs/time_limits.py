"""Time limits in Dramatiq's style: one actor is interrupted and fails, one catches it.

``stubborn`` never returns: after its time limit the TimeLimit middleware raises
``TimeLimitExceeded`` inside it; with no retries left the message is dead-lettered.
``polite`` catches the exception, records that it gave up, and returns normally, so
its message is acknowledged. Run it::

    liteq worker time_limits
    python time_limits.py
"""

import os
import sys
import time

import liteq as dramatiq

OUT = os.environ.get("PROGRAM_OUT", ".")


def note(name, *fields):
    """Append one line of fields to the file ``name`` under OUT."""
    with open(os.path.join(OUT, name), "a") as f:
        f.write(" ".join(str(x) for x in fields) + "\n")


@dramatiq.actor(time_limit=300, max_retries=0)
def stubborn():
    note("stubborn.txt", "started")
    while True:
        time.sleep(0.02)


@dramatiq.actor(time_limit=300, max_retries=0)
def polite():
    note("polite.txt", "started")
    began = time.monotonic()
    try:
        while True:
            time.sleep(0.02)
    except dramatiq.middleware.time_limit.TimeLimitExceeded:
        polite.logger.warning("time limit exceeded; giving up")
        note("polite.txt", "gave-up", int((time.monotonic() - began) * 1000))


def main(argv=None):
    stubborn.send()
    polite.send()
    return 0


if __name__ == "__main__":
    sys.exit(main())
