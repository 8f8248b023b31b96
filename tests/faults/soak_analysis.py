"""Reading the soak's logs and judging them: sent, run, lost, run twice under a valid lease.

The logs (see tests/faults/soak.py): producers append the id of every message whose
send committed to ``sent-*.log``; the actor appends its start and end to
``runs-<pid>.jsonl``; liteq's lease-log test hook (``LITEQ_LEASE_LOG=<dir>``) appends
``lease`` (claim or renewal, with the expiry written), ``start`` and ``end`` events
with the lease token to ``<dir>/leases-<pid>.jsonl``; the chaos loop appends every
SIGKILL it sends to ``kills.jsonl``.

A double run is a run B of a message that starts before the last expiry logged (at
or before B's start) for the token of an earlier run A of the same message, while A
has not ended before B's start. A run ends at its ``end`` event or when its process
was SIGKILLed, whichever comes first.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
import sqlite3
from collections.abc import Iterable

Event = dict
#: A lease written with less than lease_ms - SHORT_MS left was computed from a stale clock.
SHORT_MS = 50


@dataclasses.dataclass(frozen=True)
class Run:
    mid: str
    tok: int
    pid: int
    start: int
    end: int | None  # None: never ended (its process died without a logged kill)


@dataclasses.dataclass(frozen=True)
class DoubleRun:
    mid: str
    first: Run
    second: Run
    first_expiry: int  # the last expiry logged for the first run's token before the second began


@dataclasses.dataclass
class Report:
    sent: int
    run: int  # sent messages that ran to completion at least once
    lost: list[str]
    dead: int  # sent messages in the dead letters
    redeliveries: int  # starts beyond the first of each message
    redelivered: int  # messages started more than once
    double_runs: list[DoubleRun]
    lease_log: bool  # whether the lease-log test hook wrote anything
    short_leases: int = 0  # leases written expiring before commit + lease_ms - 50 ms
    bad_lines: int = 0

    @property
    def ok(self) -> bool:
        return not self.lost and not self.double_runs

    def summary(self) -> str:
        double = (str(len(self.double_runs)) if self.lease_log
                  else "unknown (no lease log: LITEQ_LEASE_LOG not supported by this liteq)")
        lines = [
            f"messages sent:                           {self.sent}",
            f"messages run to completion:              {self.run}",
            f"messages dead-lettered:                  {self.dead}",
            f"messages lost (must be 0):               {len(self.lost)}",
            f"run twice under a valid lease (must be 0): {double}",
            f"redeliveries after crashes:              {self.redeliveries}"
            f" (of {self.redelivered} messages)",
        ]
        if self.lease_log:
            lines.append(f"leases written already short:            {self.short_leases}"
                         f" (expiring before commit + lease - {SHORT_MS} ms)")
        if self.bad_lines:
            lines.append(f"unreadable log lines (skipped):          {self.bad_lines}")
        lines += [f"  lost: {mid}" for mid in self.lost[:20]]
        lines += [f"  double run: {d.mid} token {d.first.tok} (pid {d.first.pid}, started "
                  f"{d.first.start}, ended {d.first.end}, lease to {d.first_expiry}) and token "
                  f"{d.second.tok} (pid {d.second.pid}, started {d.second.start})"
                  for d in self.double_runs[:20]]
        return "\n".join(lines)


def build_runs(lease_events: Iterable[Event], kills: dict[int, list[int]]) -> list[Run]:
    """Pair the hook's start and end events of each (process, message, token) into runs;
    a run whose process was SIGKILLed ends at the kill if it had not ended before."""
    open_runs: dict[tuple[int, str, int], list[int]] = {}
    runs: list[Run] = []
    events = sorted((e for e in lease_events if e["ev"] in ("start", "end")),
                    key=lambda e: (e["at"], e["ev"] != "start"))
    for e in events:
        key = (e["pid"], e["mid"], e["tok"])
        if e["ev"] == "start":
            open_runs.setdefault(key, []).append(e["at"])
        elif open_runs.get(key):
            runs.append(_ended(key, open_runs[key].pop(0), e["at"], kills))
    for key, starts in open_runs.items():
        runs += [_ended(key, start, None, kills) for start in starts]
    return runs


def _ended(key: tuple[int, str, int], start: int, end: int | None,
           kills: dict[int, list[int]]) -> Run:
    pid, mid, tok = key
    killed = [at for at in kills.get(pid, []) if at >= start]
    if killed and (end is None or min(killed) < end):
        end = min(killed)
    return Run(mid, tok, pid, start, end)


def find_double_runs(lease_events: list[Event], kills: dict[int, list[int]]
                     ) -> list[DoubleRun]:
    """Every pair of runs of one message where the later one began under the earlier
    one's still valid lease, while the earlier one was still running."""
    expiries: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for e in lease_events:
        if e["ev"] == "lease":
            expiries.setdefault((e["mid"], e["tok"]), []).append((e["at"], e["exp"]))
    by_message: dict[str, list[Run]] = {}
    for run in build_runs(lease_events, kills):
        by_message.setdefault(run.mid, []).append(run)
    found = []
    for mid, runs in by_message.items():
        runs.sort(key=lambda r: r.start)
        for i, a in enumerate(runs):
            for b in runs[i + 1:]:
                pairs = [(a, b), (b, a)] if a.start == b.start else [(a, b)]
                for first, second in pairs:
                    expiry = _overlap(expiries.get((mid, first.tok), []), first, second)
                    if expiry is not None:
                        found.append(DoubleRun(mid, first, second, expiry))
                        break
    return found


def _overlap(expiries: list[tuple[int, int]], first: Run, second: Run) -> int | None:
    """The expiry of ``first``'s lease if ``second`` began under it while ``first`` ran."""
    logged = [exp for at, exp in expiries if at <= second.start]
    if not logged or second.start >= max(logged):
        return None
    if first.end is not None and first.end <= second.start:
        return None
    return max(logged)


def analyze(sent: Iterable[str], task_events: Iterable[Event], lease_events: list[Event],
            kills: dict[int, list[int]], dead: set[str], lease_ms: int, bad_lines: int = 0
            ) -> Report:
    """Judge one soak: ``task_events`` are the actor's own start/end lines."""
    sent_ids = set(sent)
    task_events = list(task_events)
    completed = {e["mid"] for e in task_events if e["ev"] == "end"}
    completed |= {e["mid"] for e in lease_events if e["ev"] == "end"}
    starts: dict[str, int] = {}
    for e in task_events:
        if e["ev"] == "start":
            starts[e["mid"]] = starts.get(e["mid"], 0) + 1
    lost = sorted(sent_ids - completed - dead)
    return Report(
        sent=len(sent_ids),
        run=len(sent_ids & completed),
        lost=lost,
        dead=len(sent_ids & dead),
        redeliveries=sum(n - 1 for n in starts.values()),
        redelivered=sum(n > 1 for n in starts.values()),
        double_runs=find_double_runs(lease_events, kills),
        lease_log=bool(lease_events),
        short_leases=sum(e["exp"] < e["at"] + lease_ms - SHORT_MS
                         for e in lease_events if e["ev"] == "lease"),
        bad_lines=bad_lines,
    )


def _read_jsonl(path: str, extra: dict | None = None) -> tuple[list[Event], int]:
    events, bad = [], 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                event = json.loads(line)
            except ValueError:
                bad += 1  # a line cut short by a kill
                continue
            if extra:
                event.update(extra)
            events.append(event)
    return events, bad


def _pid_of(path: str) -> int:
    return int(re.search(r"-(\d+)\.jsonl$", path).group(1))  # type: ignore[union-attr]


def load_and_analyze(directory: str, lease_dir: str, lease_ms: int) -> Report:
    """Read every log of a finished soak in ``directory`` and judge it."""
    bad = 0
    sent: list[str] = []
    for path in glob.glob(os.path.join(directory, "sent-*.log")):
        with open(path, encoding="utf-8") as f:
            sent += [line.strip() for line in f if line.strip()]
    task_events: list[Event] = []
    for path in glob.glob(os.path.join(directory, "runs-*.jsonl")):
        events, n = _read_jsonl(path, {"pid": _pid_of(path)})
        task_events += events
        bad += n
    lease_events: list[Event] = []
    for path in glob.glob(os.path.join(lease_dir, "leases-*.jsonl")):
        events, n = _read_jsonl(path, {"pid": _pid_of(path)})
        lease_events += events
        bad += n
    kills: dict[int, list[int]] = {}
    kill_log = os.path.join(directory, "kills.jsonl")
    if os.path.exists(kill_log):
        for e in _read_jsonl(kill_log)[0]:
            kills.setdefault(e["pid"], []).append(e["at"])
    db = sqlite3.connect(os.path.join(directory, "soak.db"))
    try:
        dead = {row[0] for row in db.execute("SELECT message_id FROM liteq_dead_letters")}
    finally:
        db.close()
    return analyze(sent, task_events, lease_events, kills, dead, lease_ms, bad)
