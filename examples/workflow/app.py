"""=== 应用代码 app.py === Queue the workflow's work, then return at once.

From this directory, with a worker running (``liteq worker tasks``)::

    python app.py
"""

from config import SPEED
from tasks import generate_report, process_order, send_email


# 4. 发送任务到 Broker
def handle_user_request():
    # 立即返回，任务在后台执行
    send_email.send(
        "customer@example.com",
        "Order Confirmation",
        "Your order has been received"
    )

    # 延迟执行
    process_order.send_with_options(
        args=(12345,),
        delay=int(10000 / SPEED)  # 10秒后执行
    )

    # 高优先级任务
    generate_report.send_with_options(
        args=("sales", "2024-01"),
        priority=50
    )


if __name__ == "__main__":
    handle_user_request()
    print("request handled; the worker does the rest")

# === Worker 启动 ===
# 5. 在终端启动 Worker 处理任务
# liteq worker tasks
