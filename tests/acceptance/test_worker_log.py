"""What a real ``liteq worker`` logs when tasks fail (tasks in tests/fixtures/log_tasks.py).

As Dramatiq: an actor that fails gets one ERROR record carrying its traceback, with or
without ``-v``; a retry request, a rate limit and an exception the actor ``throws``
are not errors; ``-v`` adds the per-task DEBUG lines and nothing else.
"""

from __future__ import annotations

import pytest
from helpers import wait_for

import liteq
from liteq.store import SqliteBroker

ACTORS = ("explode", "silent", "asks_retry", "rate_limited", "refuses")


def _traceback_after(lines: list[str], index: int) -> list[str]:
    """The lines of the record starting at ``index`` that follow its first line."""
    block = []
    for line in lines[index + 1:]:
        if line.startswith("["):
            break
        block.append(line)
    return block


@pytest.mark.parametrize("verbose", [False, True], ids=["default", "verbose"])
def test_a_failed_task_is_one_error_record_with_its_traceback(tmp_path, pools, verbose):
    broker = SqliteBroker(str(tmp_path / "q.db"), middleware=[])
    broker.declare_queue("logs")
    sent = {name: broker.enqueue(liteq.Message("logs", name, (1,), {}, {})).message_id
            for name in ACTORS}
    pool = pools("-p", "1", "-t", "2", "-Q", "logs", *(["-v"] if verbose else []),
                 modules=("log_tasks",))
    try:
        wait_for(lambda: len(broker.list_dead_letters("logs")) == len(ACTORS), timeout=60)
        reasons = {d.actor_name: d.reason for d in broker.list_dead_letters("logs")}
    finally:
        broker.close()
    assert reasons["silent"] == "KeyError"  # no dangling ": " in the dead letter either
    assert reasons["explode"] == "ValueError: task 1 fails on purpose"
    wait_for(lambda: "actor silent failed" in pool.output()
             and "actor explode failed" in pool.output(), timeout=10)
    lines = pool.output().splitlines()

    errors = [i for i, line in enumerate(lines) if "[ERROR]" in line or "[CRITICAL]" in line]
    assert len(errors) == 2, "\n".join(lines)
    [explode] = [i for i in errors if "actor explode failed" in lines[i]]
    assert "[liteq.worker] [ERROR]" in lines[explode]
    assert lines[explode].endswith(
        f"actor explode failed on message {sent['explode']}: ValueError: task 1 fails on purpose")
    trace = _traceback_after(lines, explode)
    assert trace[0] == "Traceback (most recent call last):", trace
    assert any('log_tasks.py", line' in t and t.endswith("in explode") for t in trace), trace
    assert any(t.endswith("in innermost_helper") for t in trace), trace
    assert trace[-1] == "ValueError: task 1 fails on purpose"

    [silent] = [i for i in errors if "actor silent failed" in lines[i]]
    assert lines[silent].endswith(f"actor silent failed on message {sent['silent']}: KeyError")
    assert _traceback_after(lines, silent)[-1] == "KeyError"

    for name in ("asks_retry", "rate_limited", "refuses"):
        assert not any(name in lines[i] for i in errors), name
    assert any("[INFO] actor refuses failed on message" in line
               and line.endswith("with expected exception PermissionError") for line in lines)
    assert sum("Traceback (most recent call last)" in line for line in lines) == 2

    task_lines = [line for line in lines if "[DEBUG]" in line]
    if verbose:
        assert any("[liteq.task] [DEBUG] running explode(1)" in line for line in task_lines)
    else:
        assert task_lines == []
