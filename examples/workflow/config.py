"""=== 配置文件 config.py === The broker of the workflow example.

The seed builds a ``RabbitmqBroker`` here. liteq builds the broker named by
``LITEQ_BROKER_URL`` with the same middleware, by default one SQLite file, so going
to RabbitMQ in production is a change of environment, not of code::

    LITEQ_BROKER_URL=amqp://guest:guest@rabbitmq:5672/%2F liteq worker tasks

``LITEQ_EXAMPLE_SPEED=N`` runs the workflow N times faster (sleeps, delays, backoff).
"""

import os

import liteq
from liteq import broker_from_url

SPEED = float(os.environ.get("LITEQ_EXAMPLE_SPEED", "1"))

# 1. 创建和配置 Broker
broker = broker_from_url(
    os.environ.get("LITEQ_BROKER_URL", "sqlite:///liteq.db"),
    middleware=[
        liteq.middleware.AgeLimit(),
        liteq.middleware.TimeLimit(),
        liteq.middleware.Callbacks(),
        liteq.middleware.Retries(max_retries=3, min_backoff=int(15000 / SPEED)),
        liteq.middleware.AsyncIO(),  # 支持异步 actor
    ]
)

# 2. 设置为默认 Broker
liteq.set_broker(broker)
