"""Redis broker: the seed's "Redis Broker（开发环境）" configurations.

Needs a Redis server and ``pip install 'liteq[redis]'``::

    REDIS_URL=redis://localhost:6379/0 python brokers_redis.py

``REDIS_HOST``/``REDIS_PORT`` feed the basic configuration and ``REDIS_URL`` the one
with a password and a connection pool; without them the seed's values are used. In the
seed's URL ``redis://password@localhost:6379/0`` the word before ``@`` is the password
(``redis://:password@host`` means the same), so a server without a password refuses it:
give ``REDIS_URL`` for such a server.
The script then sends one message through the second one and runs it in an
in-process worker.
"""

import os

import liteq
from liteq.brokers.redis import RedisBroker

# 基本配置
broker = RedisBroker(
    host=os.environ.get("REDIS_HOST", "localhost"),
    port=int(os.environ.get("REDIS_PORT", "6379")),
    db=0
)
broker.close()

# 带密码和连接池
broker = RedisBroker(
    url=os.environ.get("REDIS_URL", "redis://password@localhost:6379/0"),
    namespace="liteq",      # 键前缀
    connection_pool_kwargs={
        "max_connections": 20
    }
)

liteq.set_broker(broker)


@liteq.actor(queue_name="liteq_examples")
def greet(name):
    print(f"Hello {name} from {type(liteq.get_broker()).__name__}")


if __name__ == "__main__":
    greet.send("Redis")
    worker = liteq.Worker(broker, worker_threads=2)
    worker.start()
    try:
        broker.join("liteq_examples", timeout=30000)
    finally:
        worker.stop()
        broker.close()
