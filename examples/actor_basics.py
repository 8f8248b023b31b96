"""Actor basics: ``@liteq.actor``, a synchronous call, and ``.send()``.

Seed section "Actor: 定义和特点" (1. 装饰器模式, 2. 异步执行能力) with ``dramatiq``
replaced by ``liteq``. Run it with::

    python actor_basics.py

It uses the default broker: the SQLite file ``./liteq.db`` (or ``LITEQ_BROKER_URL``).
The worker runs inside this script so that it is self-contained; in a real project
you would start it in another terminal with ``liteq worker actor_basics``.
"""

import liteq


# 1. 装饰器模式
@liteq.actor
def send_email(recipient, subject, body):
    # 这个函数现在是一个 Actor
    print(f"Sending email to {recipient}")


if __name__ == "__main__":
    # 2. 异步执行能力
    print("-- synchronous call --")
    # 普通函数调用（同步执行）
    send_email("user@example.com", "Hi", "Hello")  # 阻塞直到完成

    # Actor 调用（异步执行）
    message = send_email.send("user@example.com", "Hi", "Hello")  # 立即返回
    print(f"-- .send() returned at once: message {message.message_id} "
          f"on queue {message.queue_name!r} --")

    print("-- a worker runs the message --")
    broker = liteq.get_broker()
    worker = liteq.Worker(broker, worker_threads=1)
    worker.start()
    try:
        broker.join(send_email.queue_name, timeout=30000)
    finally:
        worker.stop()
    print("-- done --")
