"""Callbacks, retries and the current message, in Dramatiq's style.

``charge`` reports each outcome to another actor: ``on_success`` gets the message and the
result, ``on_failure`` the message and the error's type and text (on every failed
attempt). ``lookup`` declares ``throws``: that error fails the message at once, without
retries. ``patient`` asks for its own retries with ``dramatiq.Retry`` and reads its
retry count from the current message. Run it::

    liteq worker callbacks
    python callbacks.py
"""

import os
import sys

import liteq as dramatiq

dramatiq.get_broker().add_middleware(dramatiq.middleware.CurrentMessage())

OUT = os.environ.get("PROGRAM_OUT", ".")


def note(name, *fields):
    """Append one line of fields to the file ``name`` under OUT."""
    with open(os.path.join(OUT, name), "a") as f:
        f.write(" ".join(str(x) for x in fields) + "\n")


def current_retries():
    message = dramatiq.middleware.CurrentMessage.get_current_message()
    return message.options.get("retries", 0)


@dramatiq.actor
def receipt(message_data, result):
    note("callbacks.txt", "success", message_data["actor_name"], *message_data["args"],
         result)


@dramatiq.actor
def complaint(message_data, exception_data):
    note("callbacks.txt", "failure", message_data["actor_name"], *message_data["args"],
         exception_data["type"], exception_data["message"])


@dramatiq.actor(on_success="receipt", on_failure="complaint", max_retries=1,
                min_backoff=50, max_backoff=100)
def charge(amount):
    note("charges.txt", amount, current_retries())
    if amount < 0:
        raise ValueError(f"cannot-charge-{-amount}")
    return amount * 100


@dramatiq.actor(throws=(KeyError,), max_retries=5)
def lookup(key):
    note("lookups.txt", key, current_retries())
    raise KeyError(key)


@dramatiq.actor(max_retries=5)
def patient(key):
    retries = current_retries()
    note("patient.txt", key, retries)
    if retries < 2:
        raise dramatiq.Retry(delay=50)


def main(argv=None):
    charge.send(5)
    charge.send(-1)
    lookup.send_with_options(args=("missing",), on_failure=complaint)
    patient.send("p")
    return 0


if __name__ == "__main__":
    sys.exit(main())
