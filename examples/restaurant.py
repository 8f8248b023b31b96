"""The restaurant metaphor (seed: "形象的比喻：餐厅系统"), runnable.

| liteq    | restaurant   |
|----------|--------------|
| Actor    | a cook        (``cook_pasta``)
| Broker   | the order system (the SQLite file)
| Message  | an order ticket
| Worker   | the kitchen
| Queue    | the list of waiting orders ("kitchen")

Customers order first, then the kitchen opens with one cook, who takes the VIP
ticket (priority 100) before the tickets that were printed earlier::

    python restaurant.py
"""

import os
import time

import liteq

#: LITEQ_EXAMPLE_SPEED=N runs the example N times faster (the tests use 100).
SPEED = float(os.environ.get("LITEQ_EXAMPLE_SPEED", "1"))


@liteq.actor(queue_name="kitchen")
def cook_pasta(pasta, sauce, table=None):
    print(f"cooking {pasta} {sauce} for table {table}")
    time.sleep(1 / SPEED)
    print(f"{pasta} {sauce} ready, waiter notified")


if __name__ == "__main__":
    # 1. 顾客点餐（应用发送任务）
    cook_pasta.send("spaghetti", "carbonara")  # 下单
    cook_pasta.send("penne", "arrabbiata", table=4)
    cook_pasta.send_with_options(args=("linguine", "vongole"), kwargs={"table": 1},
                                 priority=100)  # VIP 订单优先

    # 2. 订单系统记录（Broker 存储消息）
    broker = liteq.get_broker()
    print(f"tickets waiting: {broker.stats()['kitchen']['ready']}")

    # 3. 厨师接单（Worker 获取任务）
    kitchen = liteq.Worker(broker, worker_threads=1)
    kitchen.start()
    try:
        # 4. 完成通知（任务完成）
        broker.join("kitchen", timeout=60000)
    finally:
        kitchen.stop()
    print("all orders served")
