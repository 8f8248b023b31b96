"""Fixtures shared by the integration tests of one broker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from contract.brokers import delete_queues


@pytest.fixture
def queue(rabbitmq_url: str) -> Iterator[str]:
    """A fresh RabbitMQ queue name; its Q, Q.DQ and Q.XQ are deleted after the test."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    yield name
    delete_queues(rabbitmq_url, [name])
