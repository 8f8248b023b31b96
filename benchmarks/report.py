"""The results table, and what the results record about the code and packages measured.

Separate from the runner so the table can be read (and changed) without the orchestration.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from typing import Any

from rich.table import Table

from benchmarks.pools import HERE, PY, ROOT
from benchmarks.systems import base_of, kind_of
from benchmarks.targets import (
    METRICS,
    RATIO_TARGETS,
    SAME_SERVER_PEERS,
    SYSTEM_TARGETS,
    peer_ratio,
    ratio_target_met,
    system_target_met,
)


def fmt(value: Any, unit: str) -> str:
    if value is None:
        return "—"
    if unit in ("msg/s", "task/s"):
        return f"{value:,.0f}"
    if unit == "MB":
        return f"{value:,.1f}"
    if unit in ("ms", "s", "x", "% core"):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    return str(value)


def _mark(text: str, met: bool | None) -> str:
    if met is True:
        return f"[green]{text} ✓[/green]"
    if met is False:
        return f"[red]{text} ✗[/red]"
    return text


def _target_text(target: tuple[str, float]) -> str:
    return f"{target[0].replace('>=', '≥').replace('<=', '≤')} {target[1]:g}"


def render(results: dict[str, Any], title: str) -> Table:
    """One row per figure, one column per system; then liteq (SQLite) against the best
    peer, each liteq-on-a-server against Dramatiq on the same server (§7 marks), and
    each system against its ``@REF`` baseline (with the range of the per-round ratios).
    A ratio above 1 means the first is better (for lower-is-better figures it is the
    second over the first)."""
    systems = results["systems"]
    names = list(systems)

    def value_of(name: str, key: str) -> float | None:
        entry = systems.get(name, {})
        return entry.get("metrics", {}).get(key) if entry.get("status") == "ok" else None

    peers = [n for n in names if kind_of(n) != "liteq"]
    pairs = [(mine, peer) for mine, peer in SAME_SERVER_PEERS.items()
             if mine in names and peer in names]
    before_after = [(base_of(n), n) for n in names if n != base_of(n) and base_of(n) in names]
    table = Table(title=title, title_justify="left")
    table.add_column("scenario")
    table.add_column("unit")
    table.add_column("target")
    for name in names:
        table.add_column(name, justify="right")
    versus_best = "liteq" in names and bool(peers)
    if versus_best:
        table.add_column("liteq vs best peer", justify="right")
    for mine, peer in pairs:
        table.add_column(f"{mine} vs {peer}", justify="right")
    for mine, before in before_after:
        table.add_column(f"{mine} vs {before}", justify="right")
    for key, label, unit, target, higher in METRICS:
        cells = [_mark(fmt(value_of(name, key), unit), system_target_met(name, key, value_of(
            name, key))) for name in names]
        if all(c == "—" for c in cells):
            continue
        liteq_value = value_of("liteq", key)
        peer_values = [v for n in peers if (v := value_of(n, key)) is not None]
        ratio = "—"
        if liteq_value is not None and peer_values and unit not in ("x",):
            best = max(peer_values) if higher else min(peer_values)
            if (r := peer_ratio(key, liteq_value, best)) is not None:
                ratio = f"{r:.2f}x"
        pair_cells = []
        for mine, peer in pairs:
            r = peer_ratio(key, value_of(mine, key), value_of(peer, key)) \
                if unit != "x" else None
            pair_cells.append(_mark(f"{r:.2f}x", ratio_target_met(key, r))
                              if r is not None else "—")
        for mine, before in before_after:
            r = peer_ratio(key, value_of(mine, key), value_of(before, key))
            spread = round_ratios(systems[mine], systems[before], key)
            text = f"{r:.2f}x" if r is not None else "—"
            if r is not None and len(spread) > 1:
                text += f" ({min(spread):.2f}–{max(spread):.2f})"
            pair_cells.append(text)
        targets = [_target_text(target)] if target else []
        if key in RATIO_TARGETS:
            targets.append(f"server {_target_text(RATIO_TARGETS[key])}x Dramatiq")
        targets += [f"{name.split('-', 1)[1]} {_target_text(t[key])}"
                    for name, t in SYSTEM_TARGETS.items() if key in t and name in names]
        table.add_row(label, unit, "; ".join(targets), *cells,
                      *([ratio] if versus_best else []), *pair_cells)
    return table


def round_ratios(mine: dict[str, Any], before: dict[str, Any], key: str) -> list[float]:
    """``key``'s ratio in each round the two systems ran side by side: their spread shows
    how much of a before/after difference is the machine's noise."""
    ratios = []
    for a, b in zip(mine.get("runs", []), before.get("runs", []), strict=False):
        if (r := peer_ratio(key, a.get(key), b.get(key))) is not None:
            ratios.append(r)
    return ratios


def liteq_source() -> dict[str, str | None]:
    """Which liteq the worker processes import, and the checkout's commit."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []) + [ROOT]))
    found: dict[str, str | None] = {"path": None, "commit": None, "dirty": None}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        found["path"] = subprocess.run(
            [PY, "-c", "import liteq, os; print(os.path.dirname(liteq.__file__))"],
            env=env, cwd=HERE, capture_output=True, text=True, timeout=30).stdout.strip()
        found["commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
            timeout=10).stdout.strip() or None
        found["dirty"] = subprocess.run(
            ["git", "status", "--porcelain", "liteq"], cwd=ROOT, capture_output=True,
            text=True, timeout=10).stdout.strip() or None
    return found


def versions() -> dict[str, str | None]:
    from importlib import metadata

    found: dict[str, str | None] = {}
    for package in ("liteq", "apsw", "dramatiq", "huey", "pika", "redis"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found
