"""Mail actors, in their own module and queue."""

import os

import liteq as dramatiq

OUT = os.environ.get("PROGRAM_OUT", ".")


@dramatiq.actor(queue_name="mail")
def send_receipt(order_id, total):
    with open(os.path.join(OUT, "mail.txt"), "a") as f:
        f.write(f"{order_id} {total}\n")
