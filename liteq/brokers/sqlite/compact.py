"""Giving a liteq file's free pages back to the file system without stalling its workers.

Deleted rows leave free pages that SQLite reuses but never returns: a file that once
held 200,000 messages stays that big. With ``auto_vacuum=INCREMENTAL`` (every file
liteq creates has it, see ``schema.AUTO_VACUUM``), :func:`compact` returns them with
``PRAGMA incremental_vacuum(N)`` in short write transactions, sized to hold the write
lock for a few milliseconds and spaced so that waiting workers get the lock in between.
An older file first needs :func:`full_vacuum`, one ``VACUUM`` that rewrites the whole
file and holds the write lock (workers and producers block) until it ends.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, cast

import apsw

from ...errors import FullVacuumNeeded
from .db import Database
from .schema import AUTO_VACUUM, EXTEND_LEASES

#: SQLite's ``PRAGMA auto_vacuum`` values by name.
AUTO_VACUUM_MODES = {0: "none", 1: "full", 2: "incremental"}
#: How long one incremental step may hold the write lock (its size adapts to this).
HOLD_MS = 10.0
_FIRST_STEP, _MAX_STEP = 64, 2048
_PAUSE = 0.002
_CHECKPOINT_PAGES = 2048
#: What ``full_vacuum`` adds to every lease: 30 s, plus the file read and written
#: twice (WAL, then checkpoint) at a slow disk's 5 MB/s.
_LEASE_GRACE_MS, _SLOW_BYTES_PER_MS = 30_000, 5_000 / 3


def storage_facts(conn: apsw.Connection) -> dict[str, Any]:
    """The size of ``conn``'s main file and its pages: what ``liteq stats`` shows.

    ``file_bytes`` is the file on disk (pages moved by a compaction leave it at the
    next checkpoint); ``free_pages`` are unused pages inside it; ``auto_vacuum`` is
    ``"none"``, ``"full"`` or ``"incremental"``.
    """
    page_size, pages, free, mode = cast("tuple[int, int, int, int]", conn.execute(
        "SELECT * FROM pragma_page_size(), pragma_page_count(), pragma_freelist_count(),"
        " pragma_auto_vacuum()").fetchone())
    path = conn.db_filename("main")
    file_bytes = os.path.getsize(path) if path and os.path.exists(path) else pages * page_size
    return {"file_bytes": file_bytes, "page_size": page_size, "pages": pages,
            "free_pages": free, "auto_vacuum": AUTO_VACUUM_MODES.get(mode, str(mode))}


def application_tables(conn: apsw.Connection) -> list[str]:
    """Tables in the file that are not liteq's (an application's database liteq adopted)."""
    return [name for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%'"
        " ESCAPE '\\' AND name NOT LIKE 'liteq\\_%' ESCAPE '\\' ORDER BY name")]


@dataclass(frozen=True)
class Compaction:
    """What a compaction did. ``bytes_freed`` = ``pages_freed`` × page size; the file
    itself shrinks at the checkpoint that ends the compaction (``file_bytes_after``)."""

    path: str
    full: bool
    pages_freed: int
    bytes_freed: int
    free_pages_left: int
    file_bytes_before: int
    file_bytes_after: int
    steps: int
    longest_hold_ms: float
    seconds: float
    auto_vacuum: str

    def asdict(self) -> dict[str, Any]:
        return asdict(self)


def _read_facts(db: Database) -> dict[str, Any]:
    return db.read_with(storage_facts)


def _checkpoint(db: Database, timeout: float = 5.0) -> None:
    """Copy the WAL into the file without blocking writers (PASSIVE), retried until the
    file is cut to its page count: SQLite truncates it only when no writer appended to
    the WAL while the checkpoint ran."""
    deadline = time.monotonic() + timeout
    while True:
        db.read("PRAGMA wal_checkpoint(PASSIVE)")
        facts = _read_facts(db)
        if facts["file_bytes"] <= facts["pages"] * facts["page_size"] \
                or time.monotonic() > deadline:
            return
        time.sleep(_PAUSE * 5)


def compact(db: Database, *, hold_ms: float = HOLD_MS,
            on_step: Callable[[int, int], None] | None = None) -> Compaction:
    """Return the free pages of ``db``'s file, a few milliseconds of write lock at a time.

    Frees at most the pages free when it starts (workers keep freeing and reusing
    pages meanwhile). ``on_step(freed_so_far, total)`` reports progress. Raises
    :class:`FullVacuumNeeded` for a file without incremental auto-vacuum.
    """
    started = time.monotonic()
    before = _read_facts(db)
    if before["auto_vacuum"] == "none":
        free = before["free_pages"]
        raise FullVacuumNeeded(
            f"{db.path!r} has auto_vacuum=NONE (made by an older liteq or by your "
            f"application): SQLite can give back its {free} free page(s) "
            f"({free * before['page_size'] / 1e6:.1f} MB) only by rewriting the whole file "
            "once: run `liteq compact --full` (workers "
            "and producers block while it runs); after that `liteq compact` works in short "
            "steps that never stall them")
    target, freed, steps, longest = before["free_pages"], 0, 0, 0.0
    step, unchecked = _FIRST_STEP, 0
    with _no_autocheckpoint(db):
        while freed < target:
            got, held = db.write(_incremental_step, min(step, target - freed))
            held_ms = (time.perf_counter() - held) * 1000
            longest, steps, freed = max(longest, held_ms), steps + 1, freed + got
            if on_step is not None:
                on_step(freed, target)
            if got == 0:
                break  # the free pages were reused meanwhile
            if held_ms < hold_ms / 2:
                step = min(step * 2, _MAX_STEP)
            elif held_ms > hold_ms:
                step = max(step // 2, 1)
            unchecked += got
            if unchecked >= _CHECKPOINT_PAGES:  # keep the WAL short, outside the lock
                db.read("PRAGMA wal_checkpoint(PASSIVE)")
                unchecked = 0
            time.sleep(max(_PAUSE, held_ms / 1000))  # let waiting writers take the lock
    _checkpoint(db)
    return _result(db, before, full=False, freed=freed, steps=steps, longest=longest,
                   started=started)


@contextmanager
def _no_autocheckpoint(db: Database) -> Iterator[None]:
    """Checkpoint explicitly, between the steps: an automatic checkpoint would run
    in a step's COMMIT and make the step look (to the adaptive step size) slow."""
    setting = db.read("PRAGMA wal_autocheckpoint")[0][0]
    db.read("PRAGMA wal_autocheckpoint = 0")
    try:
        yield
    finally:
        db.read(f"PRAGMA wal_autocheckpoint = {int(setting)}")


def _incremental_step(conn: apsw.Connection, pages: int) -> tuple[int, float]:
    """Free up to ``pages`` pages (the pragma returns a row per page it freed); also the
    moment the transaction got the write lock."""
    got_lock = time.perf_counter()
    return len(conn.execute(f"PRAGMA incremental_vacuum({int(pages)})").fetchall()), got_lock


def full_vacuum(db: Database) -> Compaction:
    """Rewrite the whole file once with ``VACUUM``, in incremental auto-vacuum mode.

    Holds the write lock until it ends: workers and producers of the file wait (a
    worker retries each transaction for up to a minute, then backs off). Leases are
    first extended by a generous estimate of that time (a slow disk's speed), so
    that no running message is reaped and run twice meanwhile; a message whose worker
    died is then redelivered that much later. The copy is built in a temporary file,
    not in memory.
    """
    started = time.monotonic()
    before = _read_facts(db)
    extension = int(_LEASE_GRACE_MS + before["file_bytes"] / _SLOW_BYTES_PER_MS)
    with db.lock, _no_autocheckpoint(db):
        conn = db.conn
        temp_store = cast("tuple[int]", conn.execute("PRAGMA temp_store").fetchone())[0]
        db.execute(AUTO_VACUUM)  # an incremental file's header is written: may be busy
        conn.execute("PRAGMA temp_store = FILE")
        try:
            db.write(lambda c: c.execute(EXTEND_LEASES, (extension,)))
            began = time.perf_counter()
            db.execute("VACUUM")  # at once: a lease claimed in between is not extended
            held_ms = (time.perf_counter() - began) * 1000
        finally:
            conn.execute(f"PRAGMA temp_store = {int(temp_store)}")
    _checkpoint(db)
    after_pages = _read_facts(db)["pages"]
    return _result(db, before, full=True, freed=max(before["pages"] - after_pages, 0),
                   steps=1, longest=held_ms, started=started)


def _result(db: Database, before: dict[str, Any], *, full: bool, freed: int, steps: int,
            longest: float, started: float) -> Compaction:
    after = _read_facts(db)
    return Compaction(
        path=db.path, full=full, pages_freed=freed, bytes_freed=freed * before["page_size"],
        free_pages_left=after["free_pages"], file_bytes_before=before["file_bytes"],
        file_bytes_after=after["file_bytes"], steps=steps,
        longest_hold_ms=round(longest, 3), seconds=round(time.monotonic() - started, 3),
        auto_vacuum=after["auto_vacuum"])
