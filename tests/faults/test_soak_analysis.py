"""The soak's judge on made-up logs: what counts as lost, as a double run, as a redelivery."""

from __future__ import annotations

import json
import sqlite3

from .soak_analysis import analyze, find_double_runs, load_and_analyze


def lease(mid, tok, at, exp, pid=1):
    return {"ev": "lease", "mid": mid, "tok": tok, "exp": exp, "at": at, "pid": pid}


def start(mid, tok, at, pid=1):
    return {"ev": "start", "mid": mid, "tok": tok, "at": at, "pid": pid}


def end(mid, tok, at, pid=1):
    return {"ev": "end", "mid": mid, "tok": tok, "at": at, "pid": pid}


def test_a_redelivery_after_the_lease_lapsed_is_not_a_double_run():
    events = [lease("m", 1, 0, 1000), start("m", 1, 10),  # A never ends: its process hung
              lease("m", 2, 1100, 2100, pid=2), start("m", 2, 1200, pid=2), end("m", 2, 1300, 2)]
    assert find_double_runs(events, {}) == []


def test_a_second_run_under_a_valid_lease_of_a_running_first_is_a_double_run():
    events = [lease("m", 1, 0, 1000), start("m", 1, 10), end("m", 1, 900),
              lease("m", 2, 400, 1400, pid=2), start("m", 2, 500, pid=2)]
    [double] = find_double_runs(events, {})
    assert (double.first.tok, double.second.tok, double.first_expiry) == (1, 2, 1000)


def test_a_run_ends_when_its_process_is_killed():
    events = [lease("m", 1, 0, 1000), start("m", 1, 10),
              lease("m", 2, 450, 1450, pid=2), start("m", 2, 500, pid=2)]
    assert find_double_runs(events, {1: [400]}) == []
    assert len(find_double_runs(events, {1: [600]})) == 1  # killed after B started
    assert len(find_double_runs(events, {1: [5]})) == 1  # a kill before A started is not A's


def test_a_run_that_ended_before_the_next_began_is_not_a_double_run():
    events = [lease("m", 1, 0, 1000), start("m", 1, 10), end("m", 1, 450),
              lease("m", 2, 460, 1460, pid=2), start("m", 2, 500, pid=2)]
    assert find_double_runs(events, {}) == []


def test_only_renewals_written_before_the_second_start_count():
    base = [lease("m", 1, 0, 1000), start("m", 1, 10), start("m", 2, 1500, pid=2)]
    assert len(find_double_runs(base + [lease("m", 1, 900, 1900)], {})) == 1
    assert find_double_runs(base + [lease("m", 1, 1600, 2600)], {}) == []


def test_a_message_started_twice_under_one_lease_is_a_double_run():
    events = [lease("m", 1, 0, 1000), start("m", 1, 10), start("m", 1, 20)]
    assert len(find_double_runs(events, {})) == 1


def test_simultaneous_starts_are_reported_once():
    events = [lease("m", 1, 0, 1000), lease("m", 2, 0, 1000, pid=2),
              start("m", 1, 10), start("m", 2, 10, pid=2)]
    assert len(find_double_runs(events, {})) == 1


def test_lost_means_never_completed_and_not_dead_lettered():
    task = [{"ev": "start", "mid": m, "at": 1, "pid": 1} for m in ("a", "b", "d", "d", "d")]
    task += [{"ev": "end", "mid": "a", "at": 2, "pid": 1}]
    hook = [lease("b", 1, 0, 1000), start("b", 1, 1), end("b", 1, 2)]
    report = analyze(["a", "b", "c", "d", "e"], task, hook, {}, {"c"}, lease_ms=1000)
    assert report.lost == ["d", "e"]  # d started three times, never finished
    assert (report.sent, report.run, report.dead) == (5, 2, 1)
    assert (report.redeliveries, report.redelivered) == (2, 1)
    assert report.lease_log and not report.ok and report.short_leases == 0


def test_a_lease_written_with_less_than_its_length_left_is_counted_short():
    hook = [lease("m", 1, 0, 1000), lease("m", 1, 500, 1450), lease("m", 1, 900, 1000)]
    assert analyze(["m"], [], hook, {}, set(), lease_ms=1000).short_leases == 1


def test_logs_are_read_from_disk_skipping_a_line_cut_by_a_kill(tmp_path):
    (tmp_path / "sent-0.log").write_text("a\nb\n")
    (tmp_path / "runs-7.jsonl").write_text(
        json.dumps({"ev": "start", "mid": "a", "at": 1}) + "\n"
        + json.dumps({"ev": "end", "mid": "a", "at": 2}) + "\n" + '{"ev": "sta')
    leases = tmp_path / "leases"
    leases.mkdir()
    (leases / "leases-7.jsonl").write_text("".join(json.dumps(e) + "\n" for e in (
        {"ev": "lease", "mid": "a", "tok": 1, "exp": 1000, "at": 0},
        {"ev": "start", "mid": "a", "tok": 1, "at": 1})))
    (leases / "leases-8.jsonl").write_text("".join(json.dumps(e) + "\n" for e in (
        {"ev": "lease", "mid": "a", "tok": 2, "exp": 1500, "at": 500},
        {"ev": "start", "mid": "a", "tok": 2, "at": 600})))
    (tmp_path / "kills.jsonl").write_text(json.dumps({"pid": 7, "at": 550}) + "\n")
    db = sqlite3.connect(tmp_path / "soak.db")
    db.execute("CREATE TABLE liteq_dead_letters (message_id TEXT)")
    db.execute("INSERT INTO liteq_dead_letters VALUES ('b')")
    db.commit()
    db.close()
    report = load_and_analyze(str(tmp_path), str(leases), lease_ms=1000)
    assert (report.sent, report.run, report.dead, report.lost, report.bad_lines) == (
        2, 1, 1, [], 1)
    assert report.double_runs == []  # pid 7 was killed at 550, before pid 8 started a
    assert report.ok
