"""The ``--watch`` file watcher (liteq.process.reload) on real directories, both of its paths.

tests/acceptance/test_cli_worker_flags.py covers include/exclude on a first level and a
new directory, the fallback to polling when inotify runs out of watches, and a real pool
reloading. Here: what the pattern rule matches, deletions and renames (an editor's
save), hidden and skipped directories, several directories, the settle window, an
inotify queue overflow, and the thread's SIGHUP.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import wait_for

import liteq.process.reload
from liteq.process.reload import Watcher

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
both = pytest.mark.parametrize("use_polling", [True, False], ids=["polling", "inotify"])


def touch(path: Path, seconds: int = 5) -> None:
    """Move the file's mtime ``seconds`` on in one call (polling sees it whatever the clock's
    grain; one inotify event)."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 1_000_000_000))


@pytest.fixture
def make_watcher() -> Iterator[Callable[..., Watcher]]:
    """``make_watcher(dirs, **options)``; each watcher's inotify descriptor is closed at the end."""
    made: list[Watcher] = []

    def make(directories: list[Path], **kw: object) -> Watcher:
        watcher = Watcher([str(d) for d in directories], **kw)  # type: ignore[arg-type]
        made.append(watcher)
        if not kw.get("use_polling") and sys.platform.startswith("linux") and watcher.polling:
            pytest.skip("no inotify instance left (fs.inotify.max_user_instances)")
        return watcher

    yield make
    for watcher in made:
        watcher.stopped.set()
        if watcher._events is not None:
            watcher._events.close()


def wait_changes(watcher: Watcher, use_polling: bool, timeout: float = 5) -> list[str]:
    """The next changes: polling compares at once, inotify waits for the first event."""
    return watcher.changes(0 if use_polling else timeout)


@pytest.mark.parametrize(("path", "include", "exclude", "expected"), [
    ("/src/app/tasks.py", [], [], True),
    ("/src/app/page.html", [], [], False),
    ("/src/app/templates/page.html", ["templates/*.html"], [], True),
    ("/src/app/static/page.html", ["templates/*.html"], [], False),
    ("/src/app/tasks_test.py", [], ["*_test.py"], False),
    ("/src/app/migrations/0001.py", [], ["migrations/*.py"], False),
    ("/src/app/tasks.py", [], ["migrations/*.py"], True),
])
def test_patterns_match_the_end_of_the_path(tmp_path, path, include, exclude, expected):
    watcher = Watcher([str(tmp_path)], include=include, exclude=exclude, use_polling=True)
    assert watcher.matches(path) is expected


@both
def test_a_deleted_file_counts_as_a_change(tmp_path, make_watcher, use_polling):
    (tmp_path / "mod.py").write_text("x")
    watcher = make_watcher([tmp_path], use_polling=use_polling)
    (tmp_path / "mod.py").unlink()
    assert wait_changes(watcher, use_polling) == [str(tmp_path / "mod.py")]


@both
def test_a_save_by_rename_counts_as_a_change_of_the_target(tmp_path, make_watcher,
                                                           use_polling):
    """Editors write ``.mod.py.swp``-like temporaries and rename them over the file."""
    (tmp_path / "mod.py").write_text("old")
    watcher = make_watcher([tmp_path], use_polling=use_polling)
    temporary = tmp_path / "mod.py.tmp"
    temporary.write_text("new")
    touch(temporary)
    temporary.replace(tmp_path / "mod.py")
    assert wait_changes(watcher, use_polling) == [str(tmp_path / "mod.py")]


@both
def test_hidden_and_skipped_directories_are_not_watched(tmp_path, make_watcher, use_polling):
    for name in (".git", "__pycache__", "venv", "node_modules", "pkg"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "mod.py").write_text("x")
    watcher = make_watcher([tmp_path], use_polling=use_polling)
    for name in (".git", "__pycache__", "venv", "node_modules"):
        touch(tmp_path / name / "mod.py")
    (tmp_path / ".cache").mkdir()  # a new hidden directory is not watched either
    (tmp_path / ".cache" / "new.py").write_text("x")
    assert watcher.changes(0 if use_polling else 0.3) == []
    touch(tmp_path / "pkg" / "mod.py")
    assert wait_changes(watcher, use_polling) == [str(tmp_path / "pkg" / "mod.py")]


@both
def test_every_directory_given_is_watched(tmp_path, make_watcher, use_polling):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (first / "one.py").write_text("x")
    (second / "two.py").write_text("x")
    watcher = make_watcher([first, second], use_polling=use_polling)
    touch(second / "two.py")
    assert wait_changes(watcher, use_polling) == [str(second / "two.py")]
    touch(first / "one.py")
    assert wait_changes(watcher, use_polling) == [str(first / "one.py")]


def test_polling_reports_a_file_once_and_only_when_its_mtime_moves(tmp_path, make_watcher):
    (tmp_path / "mod.py").write_text("x")
    watcher = make_watcher([tmp_path], use_polling=True)
    assert watcher.changes(0) == []
    (tmp_path / "new.py").write_text("x")
    touch(tmp_path / "mod.py")
    assert watcher.changes(0) == [str(tmp_path / "mod.py"), str(tmp_path / "new.py")]
    assert watcher.changes(0) == []


def test_polling_stops_waiting_when_the_watcher_is_stopped(tmp_path, make_watcher):
    watcher = make_watcher([tmp_path], use_polling=True)
    (tmp_path / "mod.py").write_text("x")
    stop = threading.Timer(0.05, watcher.stopped.set)
    stop.start()
    assert watcher.changes(30) == []  # returns at the stop, not after 30 s
    stop.join()


@linux_only
def test_events_that_follow_within_the_settle_window_are_one_change(tmp_path, make_watcher,
                                                                    monkeypatch):
    monkeypatch.setattr(liteq.process.reload, "SETTLE", 1.0)
    watcher = make_watcher([tmp_path])
    (tmp_path / "a.py").write_text("x")
    (tmp_path / "a.py").write_text("xx")  # several events of one file are one path
    later = threading.Timer(0.05, lambda: (tmp_path / "b.py").write_text("x"))
    later.start()
    assert watcher.changes(5) == [str(tmp_path / "a.py"), str(tmp_path / "b.py")]
    later.join()
    assert watcher.changes(0.05) == []


@linux_only
def test_an_inotify_queue_overflow_reports_every_watched_directory(tmp_path, make_watcher):
    """Events lost to the overflow could be anything: the watcher says "all of it"."""
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    if limit > 100_000:
        pytest.skip(f"fs.inotify.max_queued_events is {limit}: too many events to make")
    files = [tmp_path / "a.txt", tmp_path / "b.txt"]  # excluded names: still events
    for file in files:
        file.write_text("x")
    watcher = make_watcher([tmp_path])
    for n in range(limit + 10):  # alternating names: the kernel cannot merge them
        os.utime(files[n % 2])
    assert watcher.changes(5) == [str(tmp_path)]


@pytest.fixture
def sighups() -> Iterator[list[int]]:
    """SIGHUPs this process receives during the test (the previous handler is restored)."""
    received: list[int] = []
    previous = signal.signal(signal.SIGHUP, lambda signum, frame: received.append(signum))
    try:
        yield received
    finally:
        signal.signal(signal.SIGHUP, previous)


@both
def test_the_watcher_thread_sends_sighup_to_its_process_on_a_change(tmp_path, make_watcher,
                                                                    sighups, use_polling,
                                                                    caplog):
    caplog.set_level("INFO", logger="liteq.pool")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "mod.py").write_text("x")
    watcher = make_watcher([tmp_path], use_polling=use_polling, interval=0.05)
    watcher.start()
    touch(tmp_path / "notes.txt")  # not watched: no reload
    touch(tmp_path / "mod.py")
    wait_for(lambda: sighups, timeout=20)
    watcher.stopped.set()
    watcher.join(10)
    assert not watcher.is_alive()
    assert sighups == [signal.SIGHUP]
    reloads = [r.getMessage() for r in caplog.records if "code changed" in r.getMessage()]
    assert len(reloads) == 1 and "mod.py" in reloads[0] and "notes.txt" not in reloads[0]
