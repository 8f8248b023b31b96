"""Suna's three actors (seed: "Suna 的 Actor 定义"), ``async def`` on liteq.

Serve them with ``liteq worker actors`` from this directory; ``python main.py`` queues
one of each and runs them in-process.

The agent "streams" by appending each chunk to ``agent_run:<id>:response`` as it is
produced, so a web request can read the partial answer, and it stops early when
``agent_run:<id>:stop`` is set (中途停止).
"""

import asyncio
import os

import liteq

import config  # noqa: F401 - sets the broker before the actors are declared
from state import redis

#: LITEQ_EXAMPLE_SPEED=N runs the example N times faster (the tests use 100).
SPEED = float(os.environ.get("LITEQ_EXAMPLE_SPEED", "1"))


async def fake_model(model_name, prompt):
    """Yield the answer of ``model_name`` one chunk at a time, as a streaming LLM API does."""
    for word in f"[{model_name}] You said: {prompt}".split():
        await asyncio.sleep(0.2 / SPEED)
        yield word + " "


# 三个主要的 Actor 对应不同类型的任务

@liteq.actor
async def run_agent_background(
    agent_run_id: str,
    thread_id: str,
    model_name: str,
    prompt: str = "hello",
):
    """
    处理 AI 对话的 Actor
    - 可能运行几分钟到几小时
    - 需要流式返回结果
    - 支持中途停止
    """
    key = f"agent_run:{agent_run_id}"
    await redis.set(f"{key}:status", "running")
    await redis.delete(f"{key}:response")
    async for chunk in fake_model(model_name, prompt):
        if await redis.get(f"{key}:stop"):
            await redis.set(f"{key}:status", "stopped")
            print(f"agent run {agent_run_id} stopped")
            return
        await redis.append(f"{key}:response", chunk)
    await redis.set(f"{key}:status", "completed")
    print(f"agent run {agent_run_id} on thread {thread_id} completed")


@liteq.actor
async def run_workflow_background(
    execution_id: str,
    workflow_definition: dict,
):
    """
    执行工作流的 Actor
    - 协调多个步骤
    - 可能调用其他服务
    - 需要状态追踪
    """
    key = f"workflow:{execution_id}"
    for number, step in enumerate(workflow_definition["steps"], 1):
        await redis.set(f"{key}:status", f"step {number}: {step}")
        print(f"workflow {execution_id} step {number}: {step}")
        await asyncio.sleep(0.1 / SPEED)  # call the service this step names
    await redis.set(f"{key}:status", "completed")
    print(f"workflow {execution_id} completed")


@liteq.actor
async def check_health(key: str):
    """
    健康检查的 Actor
    - 轻量级任务
    - 快速执行
    - 用于监控
    """
    await redis.set(key, "healthy", ex=60)
    print(f"{key} = healthy")
