"""Logging in Dramatiq's style: ``get_logger`` for modules and classes, ``actor.logger``.

Logger names follow Dramatiq: ``get_logger(__name__)`` is the module's logger,
``get_logger(__name__, SomeClass)`` is ``<module>.SomeClass``, and each actor's
``logger`` is ``<module>.<actor name>``. Run it::

    liteq worker audit
    python audit.py 5 500
"""

import argparse
import sys

import liteq as dramatiq

logger = dramatiq.get_logger(__name__)


class Ledger(dramatiq.Middleware):
    """Logs every settled message under ``audit.Ledger``."""

    def __init__(self):
        self.logger = dramatiq.get_logger(__name__, type(self))

    def after_process_message(self, broker, message, *, result=None, exception=None):
        self.logger.info("settled %s for %s", message.actor_name, message.args)


dramatiq.get_broker().add_middleware(Ledger())


@dramatiq.actor
def transfer(amount):
    transfer.logger.info("moving %d coins", amount)
    if amount > 100:
        logger.warning("large transfer of %d coins", amount)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Enqueue transfers.")
    parser.add_argument("amounts", type=int, nargs="+")
    args = parser.parse_args(argv)
    for amount in args.amounts:
        transfer.send(amount)
    return 0


if __name__ == "__main__":
    sys.exit(main())
