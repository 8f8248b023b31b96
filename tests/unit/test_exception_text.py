"""An exception without a message is shown as its type alone, never ``"KeyError: "``."""

from __future__ import annotations

from liteq.activity import Activity
from liteq.support.text import exception_text


def test_exception_text_has_no_dangling_separator() -> None:
    assert exception_text(KeyError()) == "KeyError"
    assert exception_text(TimeoutError()) == "TimeoutError"
    assert exception_text(ValueError("bad value")) == "ValueError: bad value"


def test_the_failures_liteq_top_shows_name_a_bare_exception_by_its_type() -> None:
    activity = Activity()
    activity.failed("charge", "m-1", KeyError())
    activity.failed("charge", "m-2", ValueError("card declined"))
    errors = [f["error"] for f in activity.snapshot()["failures"]]
    assert errors == ["KeyError", "ValueError: card declined"]
