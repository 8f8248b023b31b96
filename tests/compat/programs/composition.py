"""Pipelines and groups in Dramatiq's style (no result backend needed to run them).

Each stage of a pipeline gets the previous stage's result as its last argument unless
its message says ``pipe_ignore=True``. Run it::

    liteq worker composition
    python composition.py
"""

import os
import sys

import liteq as dramatiq

OUT = os.environ.get("PROGRAM_OUT", ".")


def note(name, *fields):
    """Append one line of fields to the file ``name`` under OUT."""
    with open(os.path.join(OUT, name), "a") as f:
        f.write(" | ".join(str(x) for x in fields) + "\n")


@dramatiq.actor
def draft(topic):
    return f"notes on {topic}"


@dramatiq.actor
def expand(text, times=1):
    return text + " and more" * times


@dramatiq.actor
def publish(channel, text="(nothing piped)"):
    note("published.txt", channel, text)


def main(argv=None):
    (draft.message("queues") | expand.message(times=2) | publish.message("blog")).run()
    dramatiq.pipeline([
        draft.message("workers"),
        publish.message_with_options(args=("wiki",), pipe_ignore=True),
    ]).run()
    dramatiq.group(publish.message(f"feed-{n}", f"item {n}") for n in range(3)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
