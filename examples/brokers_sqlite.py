"""The default SQLite broker, configured like the seed's "完整配置" RabbitMQ broker.

No server: the queue is one SQLite file (``./liteq.db``, or ``LITEQ_BROKER_URL``)::

    python brokers_sqlite.py

How the RabbitMQ options map:

- ``url``: ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``.
- ``confirm_delivery=True``: ``durable=True``; ``send()`` returns once the message is
  committed with ``synchronous=FULL``, so not even a power loss can lose it.
- ``connection_attempts``: nothing to connect to; a busy database is retried.
- ``max_priority``: no limit; any integer, larger runs first.
- ``middleware``: the same list.

``charge_card`` fails once on purpose: ``Retries`` runs it again and ``Callbacks``
then sends its result to ``notify_customer``.
"""

import os

import liteq

broker = liteq.SqliteBroker(
    url=os.environ.get("LITEQ_BROKER_URL", "sqlite:///liteq.db"),
    durable=True,
    middleware=[
        liteq.middleware.AgeLimit(),
        liteq.middleware.TimeLimit(),
        liteq.middleware.Callbacks(),
        liteq.middleware.Retries(),
    ]
)

liteq.set_broker(broker)

#: LITEQ_EXAMPLE_SPEED=N runs the example N times faster (the tests use 100).
SPEED = float(os.environ.get("LITEQ_EXAMPLE_SPEED", "1"))

attempts = {}


@liteq.actor
def notify_customer(message_data, result):
    print(f"notify_customer: {result}")


@liteq.actor(max_retries=3, min_backoff=int(1000 / SPEED), on_success=notify_customer)
def charge_card(order_id, amount):
    attempts[order_id] = attempts.get(order_id, 0) + 1
    print(f"charge_card {order_id}: attempt {attempts[order_id]}")
    if attempts[order_id] == 1:
        raise TimeoutError("payment gateway timed out")
    return f"order {order_id} charged {amount:.2f}"


if __name__ == "__main__":
    charge_card.send(7, 19.99)
    worker = liteq.Worker(broker, worker_threads=2)
    worker.start()
    try:
        broker.join("default", timeout=30000)
    finally:
        worker.stop()
    print(broker.stats()["default"])
