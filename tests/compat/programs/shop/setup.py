"""Broker setup shared by every module of the shop: a receipt middleware on the broker."""

import os

import liteq as dramatiq

OUT = os.environ.get("PROGRAM_OUT", ".")


class Receipts(dramatiq.Middleware):
    """Records every processed message (actor, queue, outcome) in ``receipts.txt``."""

    def after_process_message(self, broker, message, *, result=None, exception=None):
        outcome = "ok" if exception is None else type(exception).__name__
        with open(os.path.join(OUT, "receipts.txt"), "a") as f:
            f.write(f"{message.actor_name} {message.queue_name} {outcome}\n")


broker = dramatiq.get_broker()
broker.add_middleware(Receipts())
