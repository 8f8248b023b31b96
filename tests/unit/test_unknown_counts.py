"""A figure a broker cannot know (None) is "–" in every table and null in JSON, never 0,
and no rate is made of it (liteq.brokers.inspect; issue 11 item 1)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from liteq.brokers.inspect import DeadLetter, Inspector, QueueCounts
from liteq.message import Message
from liteq.ops import commands
from liteq.ops.monitor import Monitor
from liteq.ops.top_render import render_text

#: What a broker like RabbitMQ knows: depths, not what runs nor lifetime totals.
PARTIAL = QueueCounts(ready=7, delayed=2, claimed=None, running=None, dead=1, succeeded=None,
                      failed=None, retried=None, dead_lettered=None)


class PartialInspector(Inspector):
    """A broker that cannot know some counts (a seam: the views are under test)."""

    url = "amqp://bob:***@127.0.0.1:5672/"

    def queues(self) -> dict[str, QueueCounts]:
        return {"emails": PARTIAL}

    def workers(self) -> list[dict[str, Any]]:
        return [{"owner": "w1", "pid": 1, "host": "elsewhere", "queues": ["emails"],
                 "threads": 4, "started_at": 0, "heartbeat_at": 0, "running": [],
                 "running_queues": {}, "processed": None, "succeeded": None, "failed": None,
                 "activity": {}}]

    def dead_letters(self, queue_name: str | None = None, limit: int | None = None
                     ) -> list[DeadLetter]:
        body = Message("emails", "send", (1,), {}, {"retries": 2}).encode()
        return [DeadLetter("m-1", "emails", "m-1", "send", 0, body, "boom", None, None, None)]

    def dead_letter(self, dead_id: str) -> DeadLetter | None:
        return None

    def requeue_dead(self, ids: list[str] | None = None, *, queue_name: str | None = None,
                     progress: Any = None) -> int:
        return 0

    def purge_dead(self, ids: list[str] | None = None, *, queue_name: str | None = None,
                   progress: Any = None) -> int:
        return 0

    def purge(self, queue_name: str) -> int:
        return 0


@pytest.fixture
def partial(monkeypatch: pytest.MonkeyPatch) -> None:
    @contextlib.contextmanager
    def inspecting(url: str | None, queues: tuple[str, ...] = ()) -> Iterator[Inspector]:
        yield PartialInspector()

    monkeypatch.setattr(commands, "inspecting", inspecting)


def invoke(command: Any, *args: str) -> str:
    result = CliRunner().invoke(command, list(args), env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    return result.output


def test_stats_and_queues_show_a_dash_and_null(partial):
    data = json.loads(invoke(commands.stats_command, "--json"))
    assert data["queues"]["emails"] == PARTIAL.asdict()
    assert data["queues"]["emails"]["succeeded"] is None and data["storage"] is None
    assert data["broker"] == PartialInspector.url

    table = invoke(commands.stats_command)
    row = [line for line in table.splitlines() if line.startswith("emails")]
    assert [cell.strip() for cell in row[0].split("│")[1:]] == ["7", "2", "–", "–", "1"]
    assert [cell.strip() for cell in row[1].split("│")[1:]] == ["–"] * 4
    assert "storage:" not in table

    [line] = [x for x in invoke(commands.queues_command).splitlines() if "emails" in x]
    assert line.split("│")[3].strip() == "–" and line.split("│")[4].strip() == "–"
    assert json.loads(invoke(commands.queues_command, "--json"))[0]["running"] is None


def test_dlq_list_shows_unknown_deliveries_as_a_dash(partial):
    [line] = [x for x in invoke(commands.dlq_list).splitlines() if "emails" in x]
    cells = [cell.strip() for cell in line.split("│")]
    assert cells[4:6] == ["–", "2"]  # Deliveries unknown, Retries from options["retries"]
    [letter] = json.loads(invoke(commands.dlq_list, "--json"))
    assert letter["deliveries"] is None and letter["retries"] == 2


def test_top_makes_no_rate_of_unknown_counters():
    monitor = Monitor(PartialInspector())
    monitor.refresh()
    frame = monitor.refresh()
    [queue] = frame.queues
    assert queue.succeeded_rate is None and queue.failed_rate is None and queue.history == []
    assert frame.total("succeeded") is None and frame.total("ready") == 7
    text = render_text(frame, 160, 40)
    assert "succeeded – (-/s)" in text and "running –" in text
    assert PartialInspector.url in text and "bob:***" in text
