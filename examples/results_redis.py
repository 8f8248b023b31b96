"""Results in Redis: the seed's ``RedisBackend`` example, unchanged but for the import.

Needs a Redis server (``REDIS_URL``, default ``redis://localhost:6379/0``) and
``pip install 'liteq[redis]'``. The broker stays the default SQLite file; only the
results go to Redis::

    REDIS_URL=redis://localhost:6379/0 python results_redis.py      # prints 8
"""

import os

import liteq
from liteq.results import Results
from liteq.results.backends import RedisBackend

broker = liteq.get_broker()

# 配置结果后端
backend = RedisBackend(url=os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
broker.add_middleware(Results(backend=backend))


@liteq.actor(store_results=True)
def calculate(x, y):
    return x + y


if __name__ == "__main__":
    worker = liteq.Worker(broker, worker_threads=1)
    worker.start()
    try:
        # 获取结果
        message = calculate.send(5, 3)
        result = backend.get_result(message, block=True, timeout=5000)
        print(result)  # 8
    finally:
        worker.stop()
