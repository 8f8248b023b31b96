"""How ``liteq top`` draws a :class:`~liteq.ops.monitor.Frame` with rich.

:func:`render` lays a frame out for a given terminal size, dropping columns on
narrow terminals and rows on short ones; :func:`render_text` renders it to a string
(``--once`` and tests). Pure layout: no terminal and no broker access here. Every
cell is shown literally (:func:`liteq.ops.cli_support.literal`): names and errors come
from messages and may hold markup or terminal escapes.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any

from .cli_support import literal, safe
from .monitor import HISTORY, Frame

SPARKS = "▂▃▄▅▆▇█"
IDLE_SPARK = "▁"


# ---------------------------------------------------------------------------------------
# formatting
# ---------------------------------------------------------------------------------------
def fmt_count(n: int | None) -> str:
    """A count in at most 6 cells; "–" when the broker cannot know it."""
    if n is None:
        return "–"
    if n < 100000:
        return f"{n:,}"
    if n < 10_000_000:
        return f"{n / 1000:.0f}k" if n < 1_000_000 else f"{n / 1e6:.2f}M"
    return f"{n / 1e6:.1f}M" if n < 1e9 else f"{n / 1e9:.2f}G"


def fmt_rate(rate: float | None) -> str:
    if rate is None:
        return "-"
    if rate == 0:
        return "0"
    if rate < 10:
        return f"{rate:.1f}"
    if rate < 100000:
        return f"{rate:,.0f}"
    return f"{rate / 1000:.0f}k"


def fmt_age(ms: int | float | None) -> str:
    """A duration for humans: ``850ms``, ``12s``, ``3m10s``, ``2h05m``, ``3d04h``."""
    if ms is None:
        return "-"
    s = ms / 1000
    if s < 1:
        return f"{ms:.0f}ms"
    if s < 60:
        return f"{s:.0f}s" if s >= 10 else f"{s:.1f}s"
    m, s = divmod(int(s), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d{h:02d}h"


def fmt_ago(ms: int) -> str:
    return "now" if ms < 1000 else fmt_age(ms) + " ago"


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 0.001:
        return f"{s * 1e6:.0f}µs"
    if s < 1:
        return f"{s * 1000:.0f}ms" if s >= 0.01 else f"{s * 1000:.1f}ms"
    return fmt_age(s * 1000)


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "K", "M", "G"):
        if n < 1024 or unit == "G":
            return f"{n:.0f}{unit}" if unit in ("B", "K") or n >= 100 else f"{n:.1f}{unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n}"


def sparkline(samples: list[tuple[float, float]], width: int) -> Any:
    """succeeded/s samples as ``width`` bars, red where something failed.

    More samples than bars are averaged in buckets, so the line always spans the
    whole history (the last minute at the default interval).
    """
    from rich.text import Text

    recent = list(samples)
    if width <= 0:
        recent = []
    elif len(recent) > width:
        buckets = []
        for i in range(width):
            chunk = recent[i * len(recent) // width:(i + 1) * len(recent) // width]
            buckets.append((sum(d for d, _ in chunk) / len(chunk), max(f for _, f in chunk)))
        recent = buckets
    top = max((done for done, _ in recent), default=0.0)
    text = Text(" " * (width - len(recent)), no_wrap=True)
    for done, failed in recent:
        if done <= 0 or top <= 0:
            char = IDLE_SPARK
        else:
            char = SPARKS[min(len(SPARKS) - 1, int(done / top * (len(SPARKS) - 1) + 0.5))]
        text.append(char, style="red" if failed > 0 else "green")
    return text


# ---------------------------------------------------------------------------------------
# layout
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class Column:
    header: str
    cells: list[Any]
    justify: str = "right"
    #: Dropped first when the terminal is too narrow: highest drop number first.
    drop: int = 0
    #: A flexible column is cut (with an ellipsis) down to ``min_width`` before any drop.
    min_width: int | None = None
    max_width: int | None = None
    style: str | None = None
    #: Cells drawn for the column's final width (sparklines), instead of ``cells``.
    draw: Callable[[int], list[Any]] | None = None

    def __post_init__(self) -> None:
        from rich.text import Text

        self.cells = [c if isinstance(c, Text) else literal(c) for c in self.cells]

    def natural(self) -> int:
        from rich.cells import cell_len

        if self.draw is not None and self.max_width is not None:
            return max(self.max_width, cell_len(self.header))
        widths = [cell_len(self.header)]
        widths += [c.cell_len for c in self.cells]
        width = max(widths)
        return min(width, self.max_width) if self.max_width else width

    def minimum(self) -> int:
        return self.natural() if self.min_width is None else min(self.natural(),
                                                                 self.min_width)


def fit(columns: list[Column], width: int) -> list[tuple[Column, int]]:
    """Columns (in their order) with widths summing to at most ``width``.

    Flexible columns shrink (last listed first) to their minimum; then columns are
    dropped, highest ``drop`` first, until the rest fit.
    """
    kept = list(columns)
    while len(kept) > 1 and sum(c.minimum() for c in kept) + len(kept) - 1 > width:
        victim = max(reversed(kept), key=lambda c: c.drop)
        kept.remove(victim)
    widths = {id(c): c.natural() for c in kept}
    excess = sum(widths.values()) + len(kept) - 1 - width
    for c in reversed(kept):
        if excess <= 0:
            break
        if c.min_width is not None:
            cut = min(excess, widths[id(c)] - c.minimum())
            widths[id(c)] -= cut
            excess -= cut
    return [(c, widths[id(c)]) for c in kept]


def build_table(columns: list[Column], width: int, rows: int | None = None,
                more_label: str = "more") -> Any:
    """A compact table (header, rule, rows) no wider than ``width``; ``rows`` cuts rows."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    fitted = fit(columns, width)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 0),
                  header_style="bold", expand=False)
    for c, w in fitted:
        table.add_column(c.header, justify=c.justify, width=w, no_wrap=True,  # type: ignore[arg-type]
                         overflow="ellipsis", style=c.style)
    cells = [c.draw(w) if c.draw is not None else c.cells for c, w in fitted]
    total = len(columns[0].cells) if columns else 0
    shown = total if rows is None else min(total, rows)
    if shown < total:
        shown = max(0, shown - 1)
    for i in range(shown):
        table.add_row(*(col[i] for col in cells))
    if shown < total:
        return Group(table, Text(f"… {total - shown} more {more_label}", style="dim"))
    return table


STATE_STYLE = {"alive": "green", "stale": "yellow", "dead": "bold red"}


def queue_columns(frame: Frame, width: int) -> list[Column]:
    from rich.text import Text

    qs = frame.queues
    return [
        Column("Queue", [q.name for q in qs], "left", 0, min_width=6, style="cyan"),
        Column("Ready", [fmt_count(q.ready) for q in qs], drop=0),
        Column("Delay", [fmt_count(q.delayed) for q in qs], drop=3),
        Column("Run", [fmt_count(q.running) for q in qs], drop=1),
        Column("Dead", [Text(fmt_count(q.dead), style="red" if q.dead else "")
                        for q in qs], drop=2),
        Column("Succ/s", [fmt_rate(q.succeeded_rate) for q in qs], drop=0),
        Column("Fail/s", [Text(fmt_rate(q.failed_rate),
                               style="red" if q.failed_rate else "") for q in qs], drop=2),
        Column("Trend", [""] * len(qs), "left", 4, min_width=8, max_width=HISTORY,
               draw=lambda w: [sparkline(q.history, w) for q in qs]),
        Column("Oldest", [fmt_age(q.oldest_ms) if q.ready else "-" for q in qs], drop=3),
        Column("p50", [fmt_seconds(q.p50) for q in qs], drop=5),
        Column("p95", [fmt_seconds(q.p95) for q in qs], drop=5),
    ]


def worker_columns(frame: Frame) -> list[Column]:

    ws = frame.workers
    return [
        Column("PID", [w.pid for w in ws], drop=0),
        Column("Host", [w.host for w in ws], "left", 6, min_width=6),
        Column("Queues", [",".join(w.queues) or "*" for w in ws], "left", 5, min_width=6),
        Column("Busy", [f"{w.busy}/{w.threads}" for w in ws], drop=0),
        Column("CPU%", [f"{w.cpu:.0f}" if w.cpu is not None else "-" for w in ws], drop=1),
        Column("RSS", [fmt_bytes(w.rss) for w in ws], drop=2),
        Column("Succ", [fmt_count(w.succeeded) for w in ws], drop=4),
        Column("Fail", [fmt_count(w.failed) for w in ws], drop=4),
        Column("Beat", [fmt_age(w.heartbeat_age_ms) for w in ws], drop=3),
        Column("State", [literal(w.state, style=STATE_STYLE.get(w.state, "")) for w in ws],
               "left", 0),
        Column("Running", [w.actors or "-" for w in ws], "left", 2, min_width=7),
    ]


def failure_columns(frame: Frame) -> list[Column]:
    from rich.text import Text

    fs = frame.failures
    return [
        Column("When", ["?" if f.at is None else fmt_ago(frame.at - f.at) for f in fs],
               drop=0),
        Column("", [Text(f.kind, style="bold red" if f.kind == "dead" else "red")
                    for f in fs], "left", 2),
        Column("Queue", [f.queue or "-" for f in fs], "left", 3, min_width=6),
        Column("Actor", [f.actor for f in fs], "left", 1, min_width=8),
        Column("Error", [f.error.replace("\n", " ") for f in fs], "left", 0, min_width=10),
    ]


def header_lines(frame: Frame, width: int) -> list[Any]:
    """The header: segments packed greedily into lines no wider than ``width``."""
    from rich.text import Text

    at = time.strftime("%H:%M:%S", time.localtime(frame.at / 1000))
    alive = sum(1 for w in frame.workers if w.state == "alive")
    busy = sum(w.busy for w in frame.workers if w.state != "dead")
    threads = sum(w.threads for w in frame.workers if w.state != "dead")
    uptime = frame.uptime_ms
    broker = (safe(frame.broker), "cyan")
    title = Text.assemble(("liteq top", "bold"), " ", broker)
    segments = [
        title if title.cell_len <= width else Text.assemble(broker),  # the URL comes first
        Text(f"at {at}" + (f", every {fmt_seconds(frame.interval)}"
                           if frame.interval else ""), style="dim"),
        Text.assemble(("ready ", "dim"), fmt_count(frame.total("ready")),
                      ("  delayed ", "dim"), fmt_count(frame.total("delayed")),
                      ("  claimed ", "dim"), fmt_count(frame.total("claimed")),
                      ("  running ", "dim"), fmt_count(frame.total("running")),
                      ("  dead ", "dim"), (fmt_count(frame.total("dead")),
                                           "red" if frame.total("dead") else "")),
        Text.assemble(("succeeded ", "dim"), fmt_count(frame.total("succeeded")),
                      f" ({fmt_rate(frame.total_rate('succeeded_rate'))}/s)",
                      ("  failed ", "dim"), fmt_count(frame.total("failed")),
                      f" ({fmt_rate(frame.total_rate('failed_rate'))}/s)",
                      ("  retried ", "dim"), fmt_count(frame.total("retried")),
                      ("  dead-lettered ", "dim"), fmt_count(frame.total("dead_lettered"))),
        Text.assemble(("workers ", "dim"), f"{alive}/{len(frame.workers)} alive",
                      ("  threads ", "dim"), f"{busy}/{threads} busy",
                      ("  up ", "dim"), fmt_age(uptime) if uptime is not None else "-"),
    ]
    lines: list[Any] = []
    current: Any = None
    for seg in segments:
        if current is not None and current.cell_len + 3 + seg.cell_len <= width:
            current.append(" │ ", style="dim")
            current.append_text(seg)
        else:
            if current is not None:
                lines.append(current)
            current = seg.copy()
            current.no_wrap = True
            current.overflow = "ellipsis"
    if current is not None:
        lines.append(current)
    return lines


def render(frame: Frame, width: int, height: int | None = None) -> Any:
    """``frame`` laid out in ``width`` columns and at most ``height`` lines (None: all)."""
    from rich.console import Group
    from rich.text import Text

    header = header_lines(frame, width)
    parts: list[Any] = list(header)
    nq, nw, nf = len(frame.queues), len(frame.workers), len(frame.failures)
    rows_q, rows_w, rows_f = nq, nw, nf
    if height is not None:
        # Each section: a blank line, then header row and rule and rows (or a one-line
        # note). Queues first, then workers (at least a few rows), failures get the rest.
        left = height - len(header) - 1 - (3 if nq else 2) - (3 if nw else 2)
        rows_q = min(nq, max(1, left - min(nw, 3)))
        left -= rows_q
        rows_w = min(nw, max(1, left))
        left -= rows_w
        rows_f = min(nf, left - 3) if left - 3 >= 2 else 0
    if nq:
        parts += [Text(""), build_table(queue_columns(frame, width), width, rows_q, "queues")]
    else:
        parts += [Text(""), Text("no queues yet", style="dim")]
    if nw:
        parts += [Text(""), build_table(worker_columns(frame), width, rows_w, "workers")]
    else:
        parts += [Text(""), Text("no workers (start one: liteq worker MODULE)", style="dim")]
    if rows_f:
        parts += [Text(""), build_table(failure_columns(frame), width, rows_f, "failures")]
    if height is None:
        return Group(*parts)
    return Crop(Group(*parts), max(1, height - 1))


class Crop:
    """The first ``height`` lines of a renderable (for terminals too short for a frame)."""

    def __init__(self, renderable: Any, height: int) -> None:
        self.renderable = renderable
        self.height = height

    def __rich_console__(self, console: Any, options: Any) -> Iterator[Any]:
        from rich.segment import Segment

        lines = console.render_lines(self.renderable, options.update(height=None), pad=False,
                                     new_lines=False)
        for line in lines[:self.height]:
            yield from line
            yield Segment.line()


class Screen:
    """A frame that lays itself out for the console's current size at each refresh."""

    def __init__(self, frame: Frame, fit_height: bool = True) -> None:
        self.frame = frame
        self.fit_height = fit_height

    def __rich_console__(self, console: Any, options: Any) -> Iterator[Any]:
        height = (options.height or console.size.height) if self.fit_height else None
        yield render(self.frame, options.max_width, height)


def render_text(frame: Frame, width: int = 80, height: int | None = None,
                color: bool = False) -> str:
    """``frame`` rendered to a string (for ``--once`` output and tests)."""
    import io

    from rich.console import Console

    console = Console(file=io.StringIO(), width=width, color_system="truecolor" if color
                      else None, force_terminal=color, legacy_windows=False)
    console.print(render(frame, width, height))
    return console.file.getvalue()  # type: ignore[attr-defined]


__all__ = ["render", "render_text"]
