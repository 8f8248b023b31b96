"""A basic actor module in Dramatiq's style: plain actors, delays, an age limit, retries.

Only the import differs from a Dramatiq program. Run it::

    liteq worker basic          # dramatiq basic
    python basic.py 20          # enqueue 20 words, a reminder and a flaky job

A word sent with a 200 ms delay but a 100 ms ``max_age`` is too old when it comes due: the
AgeLimit middleware skips it (and dead-letters it) instead of running it.

Tasks append their results to files in $PROGRAM_OUT (default: the working directory).
"""

import argparse
import os
import sys
import time

import liteq as dramatiq

OUT = os.environ.get("PROGRAM_OUT", ".")
WORDS = ["queue", "actor", "broker", "sqlite", "message", "worker", "retry"]


def note(name, *fields):
    """Append one line of fields to the file ``name`` under OUT."""
    with open(os.path.join(OUT, name), "a") as f:
        f.write(" ".join(str(x) for x in fields) + "\n")


@dramatiq.actor
def count_vowels(word):
    vowels = sum(ch in "aeiou" for ch in word)
    count_vowels.logger.info("%s has %d vowels", word, vowels)
    note("vowels.txt", word, vowels)


@dramatiq.actor(queue_name="reminders", max_retries=0)
def remind(text, due_ms):
    note("reminders.txt", text, due_ms, int(time.time() * 1000))


@dramatiq.actor(max_retries=3, min_backoff=50, max_backoff=200)
def flaky(key):
    """Fails on its first two attempts (counted in a file), succeeds on the third."""
    note(f"attempts-{key}.txt", "attempt")
    with open(os.path.join(OUT, f"attempts-{key}.txt")) as f:
        attempts = len(f.readlines())
    if attempts < 3:
        raise RuntimeError(f"attempt {attempts} of {key} fails on purpose")
    note("flaky.txt", key, attempts)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Enqueue work for the basic actors.")
    parser.add_argument("count", type=int, help="how many words to count vowels of")
    parser.add_argument("--remind-in", type=int, default=500, help="reminder delay in ms")
    args = parser.parse_args(argv)
    for i in range(args.count):
        count_vowels.send(WORDS[i % len(WORDS)])
    count_vowels.send_with_options(args=("stale",), delay=200, max_age=100)
    due = int(time.time() * 1000) + args.remind_in
    remind.send_with_options(args=("stretch", due), delay=args.remind_in)
    flaky.send("job-1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
