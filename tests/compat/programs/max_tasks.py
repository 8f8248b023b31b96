"""Max tasks per child in Dramatiq's style: a middleware asks for a reload with SIGHUP.

After ``RELOAD_AFTER`` tasks in one worker process, the ``ReloadAfter`` middleware sends
SIGHUP to its parent, the worker's supervisor, which replaces every worker process
gracefully (running tasks finish, unstarted ones go back to the queue). Run it::

    RELOAD_AFTER=100 liteq worker max_tasks -p 1
    python max_tasks.py 250
"""

import argparse
import os
import signal
import sys
import threading

import liteq as dramatiq

OUT = os.environ.get("PROGRAM_OUT", ".")


class ReloadAfter(dramatiq.Middleware):
    """Sends SIGHUP to the worker's supervisor once this process has run ``limit`` tasks."""

    def __init__(self, limit):
        self.limit = limit
        self.done = 0
        self.asked = False
        self.lock = threading.Lock()

    def after_process_message(self, broker, message, *, result=None, exception=None):
        with self.lock:
            self.done += 1
            if self.done < self.limit or self.asked:
                return
            self.asked = True
        job.logger.info("ran %d tasks; asking the supervisor for a reload", self.done)
        os.kill(os.getppid(), signal.SIGHUP)


if int(os.environ.get("RELOAD_AFTER", "0")) > 0:
    dramatiq.get_broker().add_middleware(ReloadAfter(int(os.environ["RELOAD_AFTER"])))


@dramatiq.actor(max_retries=0)
def job(n):
    with open(os.path.join(OUT, "jobs.txt"), "a") as f:
        f.write(f"{n} {os.getpid()}\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Enqueue numbered jobs.")
    parser.add_argument("count", type=int)
    parser.add_argument("--first", type=int, default=0, help="the first job's number")
    args = parser.parse_args(argv)
    for n in range(args.first, args.first + args.count):
        job.send(n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
