"""The ``broker`` fixture: every contract test runs once per broker in FACTORIES."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import liteq
import liteq.broker

from .brokers import FACTORIES


@pytest.fixture(params=sorted(FACTORIES))
def broker(request: pytest.FixtureRequest) -> Iterator[liteq.Broker]:
    """A fresh broker with the default middleware, made the global broker for the test."""
    made, close = FACTORIES[request.param](request)
    made.contract_name = request.param  # type: ignore[attr-defined]
    previous = liteq.broker._broker
    liteq.broker.set_broker(made)
    try:
        yield made
    finally:
        close()
        liteq.broker.set_broker(previous)  # type: ignore[arg-type]
