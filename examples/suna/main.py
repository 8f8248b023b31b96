"""Run the Suna example: queue one message per actor, work them, show the state.

From this directory::

    python main.py

In Suna, the API process sends these messages and separate ``liteq worker actors``
processes run them; here one in-process worker does so the example is self-contained.
"""

import asyncio

import liteq

import state
from actors import check_health, run_agent_background, run_workflow_background

KEYS = [
    "agent_run:run-1:status",
    "agent_run:run-1:response",
    "workflow:exec-1:status",
    "health:worker",
]


async def show_state():
    redis = state.connect()
    for key in KEYS:
        print(f"{key} -> {await redis.get(key)!r}")


if __name__ == "__main__":
    run_agent_background.send("run-1", "thread-1", "gpt-4o", prompt="what can liteq do?")
    run_workflow_background.send(
        "exec-1", {"steps": ["fetch issue", "write patch", "open pull request"]}
    )
    check_health.send("health:worker")

    broker = liteq.get_broker()
    worker = liteq.Worker(broker, worker_threads=4)
    worker.start()
    try:
        broker.join("default", timeout=60000)
    finally:
        worker.stop()
    asyncio.run(show_state())
