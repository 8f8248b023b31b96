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
from benchmarks.targets import METRICS, target_met


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


def render(results: dict[str, Any], title: str) -> Table:
    systems = results["systems"]
    names = list(systems)
    table = Table(title=title, title_justify="left")
    table.add_column("scenario")
    table.add_column("unit")
    table.add_column("target")
    for name in names:
        table.add_column(name, justify="right")
    table.add_column("liteq vs best peer", justify="right")
    for key, label, unit, target, higher in METRICS:
        cells = []
        peer_values = []
        for name in names:
            entry = systems[name]
            value = entry.get("metrics", {}).get(key) if entry.get("status") == "ok" else None
            text = fmt(value, unit)
            if name == "liteq":
                met = target_met(key, value)
                if met is True:
                    text = f"[green]{text} ✓[/green]"
                elif met is False:
                    text = f"[red]{text} ✗[/red]"
            elif value is not None:
                peer_values.append(value)
            cells.append(text)
        liteq_value = systems.get("liteq", {}).get("metrics", {}).get(key)
        ratio = "—"
        if liteq_value is not None and peer_values and unit not in ("x",):
            best = max(peer_values) if higher else min(peer_values)
            if best and liteq_value:
                ratio = f"{(liteq_value / best if higher else best / liteq_value):.2f}x"
        target_text = f"{target[0].replace('>=', '≥').replace('<=', '≤')} {target[1]:g}" \
            if target else ""
        if all(c == "—" for c in cells):
            continue
        table.add_row(label, unit, target_text, *cells, ratio)
    return table


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
