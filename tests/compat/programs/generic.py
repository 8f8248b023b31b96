"""Class-based actors in Dramatiq's style: ``GenericActor`` with an abstract base.

The abstract base's ``Meta`` gives its options (queue, retries) to every subclass that
has no ``Meta`` of its own; a subclass with its own ``Meta`` uses that instead. Class
attributes work as defaults that subclasses override. Run it::

    liteq worker generic
    python generic.py
"""

import os
import sys

import liteq as dramatiq

OUT = os.environ.get("PROGRAM_OUT", ".")


class Job(dramatiq.GenericActor):
    """Writes a greeting for ``name``; subclasses choose the greeting."""

    class Meta:
        abstract = True
        queue_name = "jobs"
        max_retries = 0

    greeting = "hello"

    def perform(self, name):
        with open(os.path.join(OUT, "generic.txt"), "a") as f:
            f.write(f"{self.actor_name} {self.queue_name} {self.greeting}-{name}\n")


class Welcome(Job):
    pass


class Farewell(Job):
    greeting = "goodbye"

    class Meta:
        queue_name = "partings"


def main(argv=None):
    Welcome.send("ada")
    Farewell.send("bob")
    return 0


if __name__ == "__main__":
    sys.exit(main())
