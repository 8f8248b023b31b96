"""Suna's broker (seed: "Suna 的 Broker 配置").

Suna runs on RabbitMQ in production: set ``RABBITMQ_HOST`` and this module builds the
seed's ``RabbitmqBroker``. Without it, the same middleware runs on liteq's default
SQLite broker (``LITEQ_BROKER_URL``, else ``./liteq.db``).
"""

import os

import liteq

middleware = [
    liteq.middleware.AsyncIO(),  # 关键：支持异步 Actor
    liteq.middleware.AgeLimit(),
    liteq.middleware.TimeLimit(),
    liteq.middleware.ShutdownNotifications(),
    liteq.middleware.Callbacks(),
    liteq.middleware.Retries(),
]

if os.getenv("RABBITMQ_HOST"):
    from liteq.brokers.rabbitmq import RabbitmqBroker

    # 使用 RabbitMQ 作为生产环境 Broker
    rabbitmq_broker = RabbitmqBroker(
        host=os.getenv('RABBITMQ_HOST', 'rabbitmq'),
        port=5672,
        middleware=middleware
    )
    liteq.set_broker(rabbitmq_broker)
else:
    liteq.set_broker(liteq.SqliteBroker(
        url=os.getenv("LITEQ_BROKER_URL", "sqlite:///liteq.db"),
        middleware=middleware,
    ))
