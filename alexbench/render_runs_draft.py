"""DRAFT of `alexbench.report.render_runs` (the table of `alexbench results`), kept apart while
report.py is being reworked: move `render_runs` (and its helpers) into report.py, then import
it from there in alexbench/cli/results.py and delete this file.

Columns carry a priority like `alexbench.tables.Column`: 0 is essential (always drawn), the
others are added by rising priority while they fit the console; `wide` draws them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table
from rich.text import Text

from alexbench.runs import RunSummary


@dataclass(frozen=True)
class _Col:
    name: str
    priority: int  # 0: essential
    right: bool = False


_COLUMNS = (
    _Col("file", 0),
    _Col("date (UTC)", 0),
    _Col("device", 0),
    _Col("cells ok", 0, right=True),
    _Col("status", 0),
    _Col("model", 1),
    _Col("cpu / gpu", 2),
    _Col("host", 3),
    _Col("torch", 4),
    _Col("onnxruntime", 5),
)


def _row(r: RunSummary) -> list[Text]:
    date = r.created.strftime("%Y-%m-%d %H:%M") if r.created else "-"
    machine = r.cpu or "-"
    if r.gpu:
        machine = f"{machine} / {r.gpu}"
    repeats = f" x{r.repeat}" if r.repeat > 1 else ""
    state = Text("complete" + repeats) if r.complete else Text("incomplete" + repeats, "yellow")
    return [
        Text(r.file),
        Text(date),
        Text("+".join(r.devices) or "-"),
        Text(f"{r.cells_ok}/{r.cells_total}"),
        state,
        Text(r.model),
        Text(machine),
        Text(r.host or "-"),
        Text(r.torch or "-"),
        Text(r.onnxruntime or "-"),
    ]


def _natural(rows: list[list[Text]]) -> list[int]:
    natural = [len(c.name) for c in _COLUMNS]
    for row in rows:
        for i, cell in enumerate(row):
            natural[i] = max(natural[i], cell.cell_len)
    return natural


def _fitting(natural: list[int], width: int | None) -> list[int]:
    """Indices of the columns drawn within `width` (all when None): essentials, then the others
    by priority while they fit (a boxed table draws "| x " per column and a closing "|")."""
    if width is None:
        return list(range(len(_COLUMNS)))
    chosen = [i for i, c in enumerate(_COLUMNS) if c.priority == 0]
    used = 1 + sum(natural[i] + 3 for i in chosen)
    for _, i in sorted((c.priority, i) for i, c in enumerate(_COLUMNS) if c.priority):
        if used + natural[i] + 3 <= width:
            chosen.append(i)
            used += natural[i] + 3
    return sorted(chosen)


def render_runs(console: Console, runs: Sequence[RunSummary], wide: bool = False) -> None:
    """The stored runs, oldest first: one row per results file."""
    rows = [_row(r) for r in runs]
    natural = _natural(rows)
    width = console.width
    shown = _fitting(natural, None if wide else width)
    table = Table(title=f"Stored benchmark runs ({len(runs)})", title_justify="left")
    for i in shown:
        col = _COLUMNS[i]
        # Only the file name may wrap (folded, never cut): the other columns keep their width.
        table.add_column(
            col.name,
            justify="right" if col.right else "left",
            no_wrap=col.name != "file",
            overflow="fold",
            min_width=None if col.name == "file" else natural[i],
        )
    for row in rows:
        table.add_row(*(row[i] for i in shown))
    needed = 1 + sum(natural[i] + 3 for i in shown)
    if wide and needed > width:
        console.width = needed  # --wide: every column, even past the edge
    try:
        console.print(table)
    finally:
        console.width = width
    hidden = [_COLUMNS[i].name for i in range(len(_COLUMNS)) if i not in shown]
    if hidden:
        console.print(f"  not shown at {width} columns: {', '.join(hidden)} (--wide)", style="dim")
    legend = "  cells ok: passed parity / all (skipped too); xN: bench --repeat N."
    console.print(legend, style="dim")
