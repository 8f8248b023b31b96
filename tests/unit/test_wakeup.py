"""The SQLite consumers' wake-up waiter (brokers/sqlite/wakeup.py), on real files in ``tmp_path``.

Both paths: inotify on the database's directory (Linux) and polling a change check
(``LITEQ_WAKEUP=poll``); the re-check window after an event that is not yet a visible
change; ``wakeup()`` and ``sleep()`` from another thread; a real commit of another
connection seen through ``PRAGMA data_version``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import apsw
import pytest

from liteq.brokers.sqlite import wakeup
from liteq.brokers.sqlite.wakeup import Waiter

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")


class Flag:
    """A change check whose answer the test sets, counting how often it was asked."""

    def __init__(self, answers: Callable[[int], bool] = lambda n: False) -> None:
        self.answers = answers
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.answers(self.calls)


def later(seconds: float, action: Callable[[], object]) -> threading.Timer:
    """Run ``action`` on another thread after ``seconds`` (a writer or a waker)."""
    timer = threading.Timer(seconds, action)
    timer.start()
    return timer


@pytest.fixture
def make_waiter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Waiter]]:
    """``make_waiter(changed, poll=False)``: a Waiter on ``tmp_path/q.db``, closed at the end."""
    made: list[Waiter] = []

    def make(changed: Callable[[], bool], *, poll: bool = False, **kw: float) -> Waiter:
        monkeypatch.setenv("LITEQ_WAKEUP", "poll" if poll else "auto")
        waiter = Waiter(str(tmp_path / "q.db"), changed, **kw)
        made.append(waiter)
        if not poll and sys.platform.startswith("linux") and not waiter.uses_inotify:
            skip_unless_inotify_instances_are_exhausted()
        return waiter

    yield make
    for waiter in made:
        waiter.close()


def skip_unless_inotify_instances_are_exhausted() -> None:
    """Skip when no inotify instance is left (other processes hold them all); else fail."""
    libc = wakeup._inotify()
    assert libc is not None
    fd = libc.inotify_init1(0)
    if fd < 0:
        pytest.skip("no inotify instance left (fs.inotify.max_user_instances)")
    os.close(fd)
    raise AssertionError("the waiter polls although inotify works")


def append(path: Path) -> Callable[[], None]:
    def write() -> None:
        with open(path, "ab") as f:
            f.write(b"x")
    return write


# -- the inotify path ---------------------------------------------------------------------
@linux_only
def test_a_write_to_the_wal_file_wakes_the_wait_when_the_change_is_visible(make_waiter,
                                                                          tmp_path):
    flag = Flag(lambda n: True)
    waiter = make_waiter(flag)
    assert waiter.uses_inotify and wakeup.inotify_available()
    timer = later(0.05, append(tmp_path / "q.db-wal"))
    started = time.monotonic()
    assert waiter.wait(20) == "change"
    assert time.monotonic() - started < 10
    timer.join()
    assert flag.calls == 1  # no polling: asked once, on the event


@linux_only
def test_writes_to_other_files_of_the_directory_do_not_wake_it(make_waiter, tmp_path):
    flag = Flag(lambda n: True)
    waiter = make_waiter(flag)
    append(tmp_path / "other.db-wal")()
    append(tmp_path / "notes.txt")()
    assert waiter.wait(0.2) is None
    assert flag.calls == 0


@linux_only
def test_an_event_before_the_commit_is_visible_is_rechecked_for_a_few_ms(make_waiter,
                                                                         tmp_path):
    """The writer appends to ``-wal`` before publishing the commit: no second event comes."""
    flag = Flag(lambda n: n >= 3)
    waiter = make_waiter(flag)
    append(tmp_path / "q.db-wal")()
    started = time.monotonic()
    assert waiter.wait(20) == "change"
    assert time.monotonic() - started < 10
    assert flag.calls == 3


@linux_only
def test_the_recheck_window_ends_and_the_wait_sleeps_again(make_waiter, tmp_path):
    flag = Flag()
    waiter = make_waiter(flag)
    append(tmp_path / "q.db-wal")()
    started = time.monotonic()
    assert waiter.wait(0.5) is None
    assert time.monotonic() - started >= 0.5
    # ~10 ms of re-checks every 0.2 ms, then no more: polling for the whole 0.5 s
    # would ask ~2500 times.
    assert 1 <= flag.calls < 200


@linux_only
def test_the_wal_file_deleted_and_made_again_still_wakes(make_waiter, tmp_path):
    wal = tmp_path / "q.db-wal"
    append(wal)()
    flag = Flag(lambda n: True)
    waiter = make_waiter(flag)
    wal.unlink()
    assert waiter.wait(0.05) is None  # a deletion is no change of ours
    timer = later(0.05, append(wal))
    assert waiter.wait(20) == "change"
    timer.join()


@linux_only
def test_a_commit_of_another_connection_wakes_it(make_waiter, tmp_path):
    """A real SQLite file in WAL mode, the change check being ``PRAGMA data_version``."""
    path = str(tmp_path / "q.db")
    reader, writer = apsw.Connection(path), apsw.Connection(path)
    try:
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("CREATE TABLE t (x)")

        def version() -> int:
            return reader.execute("PRAGMA data_version").fetchone()[0]

        seen = version()
        waiter = make_waiter(lambda: version() != seen)
        timer = later(0.05, lambda: writer.execute("INSERT INTO t VALUES (1)"))
        assert waiter.wait(20) == "change"
        timer.join()
        assert reader.execute("SELECT count(*) FROM t").fetchone()[0] == 1
    finally:
        reader.close()
        writer.close()


# -- the poll path --------------------------------------------------------------------------
def test_the_poll_path_asks_the_change_check_every_poll_interval(make_waiter, tmp_path):
    changed = threading.Event()
    flag = Flag(lambda n: changed.is_set())
    waiter = make_waiter(flag, poll=True, poll_interval=0.01)
    assert not waiter.uses_inotify and not wakeup.inotify_available()
    timer = later(0.1, changed.set)
    assert waiter.wait(20) == "change"
    timer.join()
    assert flag.calls >= 2  # asked before the change too: it polls


def test_the_poll_path_times_out_without_a_change(make_waiter, tmp_path):
    flag = Flag()
    waiter = make_waiter(flag, poll=True, poll_interval=0.01)
    append(tmp_path / "q.db-wal")()  # no inotify: the write itself is not seen
    started = time.monotonic()
    assert waiter.wait(0.1) is None
    assert time.monotonic() - started >= 0.1
    assert flag.calls >= 2


# -- wakeup() and sleep(), on both paths -----------------------------------------------------
@pytest.mark.parametrize("poll", [False, True], ids=["inotify", "poll"])
def test_wakeup_from_another_thread_ends_the_wait_at_once(make_waiter, poll):
    waiter = make_waiter(Flag(), poll=poll)
    timer = later(0.05, waiter.wakeup)
    started = time.monotonic()
    assert waiter.wait(30) == "wakeup"
    assert time.monotonic() - started < 10
    timer.join()


@pytest.mark.parametrize("poll", [False, True], ids=["inotify", "poll"])
def test_wakeups_before_the_wait_are_kept_once(make_waiter, poll):
    waiter = make_waiter(Flag(), poll=poll)
    for _ in range(3):
        waiter.wakeup()
    assert waiter.wait(5) == "wakeup"
    assert waiter.wait(0.05) is None  # drained: three wake-ups are one


def test_wakeup_never_blocks_when_the_pipe_is_full(make_waiter):
    waiter = make_waiter(Flag())
    for _ in range(200_000):  # far more than a pipe buffer holds
        waiter.wakeup()
    assert waiter.wait(5) == "wakeup"
    assert waiter.wait(0.05) is None


def test_a_wait_without_time_left_returns_none_at_once(make_waiter):
    flag = Flag(lambda n: True)
    waiter = make_waiter(flag)
    assert waiter.wait(0) is None
    assert waiter.wait(-1) is None
    assert flag.calls == 0


@linux_only
def test_sleep_ignores_file_changes_and_drops_their_events(make_waiter, tmp_path):
    flag = Flag(lambda n: True)
    waiter = make_waiter(flag)
    timer = later(0.02, append(tmp_path / "q.db-wal"))
    started = time.monotonic()
    assert waiter.sleep(0.2) is False
    assert time.monotonic() - started >= 0.2
    timer.join()
    assert waiter.wait(0.05) is None  # the write's event was dropped, not kept for later
    assert flag.calls == 0


@pytest.mark.parametrize("poll", [False, True], ids=["inotify", "poll"])
def test_wakeup_cuts_a_sleep_short(make_waiter, poll):
    waiter = make_waiter(Flag(), poll=poll)
    timer = later(0.05, waiter.wakeup)
    started = time.monotonic()
    assert waiter.sleep(30) is True
    assert time.monotonic() - started < 10
    timer.join()
    assert waiter.wait(0.05) is None


def test_close_releases_every_descriptor_and_may_be_repeated(make_waiter):
    waiter = make_waiter(Flag())
    fds = [waiter._rpipe, waiter._wpipe] + ([waiter._notify_fd] if waiter.uses_inotify else [])
    waiter.close()
    waiter.close()
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)
