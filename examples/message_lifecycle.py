"""What ``send()`` and a worker do, step by step (seed: "Actor 和 Broker 的交互细节").

The seed's three snippets with real liteq calls::

    python message_lifecycle.py

1. 消息创建: ``send()`` builds a ``Message``; ``message_id`` (a uuid4 string) and
   ``message_timestamp`` (ms) are fields of the message, filled in for you.
2. Broker 处理: ``broker.enqueue(message)`` encodes it (Dramatiq's JSON envelope)
   and commits it to the SQLite file.
3. Worker 消费: a consumer claims it, the actor runs, the consumer acknowledges it.
   ``liteq.Worker`` does exactly this with many threads, batching the claims and acks.
"""

import time

import liteq
from liteq import Message


@liteq.actor
def send_email(recipient, subject, body):
    print(f"Sending email to {recipient}")
    return f"email to {recipient} sent"


if __name__ == "__main__":
    broker = liteq.get_broker()

    # 1. 消息创建
    # 当调用 actor.send() 时
    message = Message(
        queue_name="default",
        actor_name="send_email",
        args=("user@example.com", "Hi", "Hello"),
        kwargs={},
        options={},
    )
    print(f"message_id={message.message_id} message_timestamp={message.message_timestamp}")
    print(f"encoded: {message.encode().decode()}")

    # 2. Broker 处理
    # Broker 接收消息
    broker.enqueue(message)
    # 消息被序列化并存储到队列 (SQLite: committed to the database file)

    # 3. Worker 消费
    # Worker 从 Broker 获取消息
    consumer = broker.consume("default")
    deadline = time.monotonic() + 10
    received = None
    while received is None and time.monotonic() < deadline:
        received = next(consumer)  # None when nothing arrived within the consumer's timeout
    assert received.message_id == message.message_id  # the message that was sent
    # 查找对应的 Actor
    actor = broker.get_actor(received.actor_name)
    # 执行 Actor
    result = actor(*received.args, **received.kwargs)
    print(f"result: {result}")
    # 确认消息已处理
    consumer.ack(received)
    consumer.close()
    print(f"stats: {broker.stats()['default']}")
