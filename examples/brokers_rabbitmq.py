"""RabbitMQ broker: the seed's "RabbitMQ Broker（生产环境推荐）" configurations.

The same actors run on RabbitMQ by changing the broker, not the tasks. Needs a
RabbitMQ server and ``pip install 'liteq[rabbitmq]'``::

    RABBITMQ_URL=amqp://guest:guest@127.0.0.1:5672/%2F python brokers_rabbitmq.py

``RABBITMQ_HOST``/``RABBITMQ_PORT`` feed the basic configuration and ``RABBITMQ_URL``
the full one; without them the seed's values are used. The script then sends one
message through the full configuration and runs it in an in-process worker.
"""

import os

import liteq
from liteq.brokers.rabbitmq import RabbitmqBroker

# 基本配置
broker = RabbitmqBroker(
    host=os.environ.get("RABBITMQ_HOST", "localhost"),
    port=int(os.environ.get("RABBITMQ_PORT", "5672"))
)
broker.close()

# 完整配置
broker = RabbitmqBroker(
    url=os.environ.get("RABBITMQ_URL", "amqp://user:password@localhost:5672/vhost"),
    confirm_delivery=True,      # 确认消息投递
    connection_attempts=5,      # 连接重试次数
    max_priority=10,           # 支持的最大优先级
    middleware=[               # 中间件
        liteq.middleware.AgeLimit(),
        liteq.middleware.TimeLimit(),
        liteq.middleware.Callbacks(),
        liteq.middleware.Retries(),
    ]
)

liteq.set_broker(broker)


@liteq.actor(queue_name="liteq_examples")
def greet(name):
    print(f"Hello {name} from {type(liteq.get_broker()).__name__}")


if __name__ == "__main__":
    greet.send("RabbitMQ")
    worker = liteq.Worker(broker, worker_threads=2)
    worker.start()
    try:
        broker.join("liteq_examples", timeout=30000)
    finally:
        worker.stop()
        broker.close()
