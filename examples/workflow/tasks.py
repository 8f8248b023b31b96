"""=== 任务定义 tasks.py === The workflow's actors.

Start a worker for them (the seed's ``dramatiq tasks:send_email tasks:process_order
tasks:generate_report``) from this directory with::

    liteq worker tasks

then queue work with ``python app.py``. Every actor of the module is served;
``--queues emails,orders`` would restrict the worker to some queues.
"""

import asyncio
import json
import os
import random
import tempfile
import time

import liteq

from config import SPEED

REPORT_DIR = os.environ.get("LITEQ_EXAMPLE_REPORT_DIR", tempfile.gettempdir())


# 3. 定义 Actors
@liteq.actor(queue_name="emails", priority=5)
def send_email(recipient, subject, body):
    """发送邮件的 Actor"""
    print(f"Sending email to {recipient}")
    # 模拟发送邮件
    time.sleep(2 / SPEED)
    print(f"Email sent to {recipient}")


@liteq.actor(queue_name="orders", priority=10, max_retries=5)
def process_order(order_id):
    """处理订单的 Actor"""
    print(f"Processing order {order_id}")
    # 订单处理逻辑
    time.sleep(5 / SPEED)
    if random.random() < 0.1:  # 10% 失败率
        raise Exception("Order processing failed")
    print(f"Order {order_id} completed")
    return f"Order {order_id} completed"


async def fetch_data(date_range):
    """Pretend to query a database for ``date_range`` ("2024-01": every day of January)."""
    await asyncio.sleep(0.5 / SPEED)
    rng = random.Random(date_range)
    return [{"day": day, "sales": rng.randint(100, 1000)} for day in range(1, 32)]


async def process_data(rows):
    await asyncio.sleep(0.5 / SPEED)
    total = sum(row["sales"] for row in rows)
    best = max(rows, key=lambda row: row["sales"])
    return {"days": len(rows), "total": total, "best_day": best["day"]}


async def save_report(report_type, date_range, summary):
    path = os.path.join(REPORT_DIR, f"report-{report_type}-{date_range}.json")
    content = json.dumps({"type": report_type, "range": date_range, **summary})
    await asyncio.to_thread(_write, path, content)
    return path


def _write(path, content):
    with open(path, "w", encoding="utf-8") as f:
        f.write(content)


@liteq.actor(time_limit=600000)  # 10分钟超时
async def generate_report(report_type, date_range):
    """生成报告的异步 Actor"""
    print(f"Generating {report_type} report")
    # 异步 I/O 操作
    rows = await fetch_data(date_range)
    summary = await process_data(rows)
    path = await save_report(report_type, date_range, summary)
    print(f"Report generated: {path}")
