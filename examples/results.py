"""Results: store what an actor returns and wait for it.

Seed section "2. 获取结果（需要结果后端）" with ``dramatiq`` replaced by ``liteq``.
The seed uses ``RedisBackend``; liteq's default result backend is ``SqliteBackend``,
which keeps results in the broker's own SQLite file, so no server is needed
(``results_redis.py`` is the Redis variant)::

    python results.py        # prints 8
"""

import liteq
from liteq.results import Results
from liteq.results.backends import SqliteBackend

broker = liteq.get_broker()

# 配置结果后端
backend = SqliteBackend(path=broker.path)
broker.add_middleware(Results(backend=backend))


@liteq.actor(store_results=True)
def calculate(x, y):
    return x + y


if __name__ == "__main__":
    worker = liteq.Worker(broker, worker_threads=1)  # `liteq worker results` elsewhere
    worker.start()
    try:
        # 获取结果
        message = calculate.send(5, 3)
        result = backend.get_result(message, block=True, timeout=5000)
        print(result)  # 8
    finally:
        worker.stop()
