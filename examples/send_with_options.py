"""``send_with_options``: a delayed message and a high-priority message.

Seed section "Actor 的高级用法 / 1. 带参数发送" with ``dramatiq`` replaced by ``liteq``::

    python send_with_options.py

Three routine tasks are queued before ``urgent_task``; the worker still runs the
urgent one first, because a larger priority is claimed first. ``process_order`` runs
one minute after it was sent (``LITEQ_EXAMPLE_SPEED=60`` makes that one second).
"""

import os
import time

import liteq

#: LITEQ_EXAMPLE_SPEED=N runs the example N times faster (the tests use 100).
SPEED = float(os.environ.get("LITEQ_EXAMPLE_SPEED", "1"))

sent_at = time.monotonic()


@liteq.actor
def process_order(order_id):
    print(f"Processing order {order_id}, {time.monotonic() - sent_at:.2f}s after it was sent")


@liteq.actor
def urgent_task():
    print("Running urgent_task")


@liteq.actor
def routine_task(n):
    print(f"Running routine_task {n}")


if __name__ == "__main__":
    order_id = 1001
    sent_at = time.monotonic()

    # 延迟执行
    process_order.send_with_options(
        args=(order_id,),
        delay=int(60000 / SPEED)  # 延迟1分钟执行
    )

    for n in range(3):
        routine_task.send(n)

    # 设置优先级
    urgent_task.send_with_options(
        priority=100  # 高优先级
    )

    print(f"queued; waiting {60 / SPEED:g}s for the delayed order")
    broker = liteq.get_broker()
    worker = liteq.Worker(broker, worker_threads=1)
    worker.start()
    try:
        broker.join("default", timeout=int(60000 / SPEED) + 30000)
    finally:
        worker.stop()
    print("all done")
