"""Tables as data: what every renderer (terminal, HTML, Markdown) draws.

A table is built once from results (`alexbench.report` builds them) and drawn by each renderer,
so the terminal, the HTML page and the Markdown file always show the same figures. A cell's
`tone` says what it means (pass, fail, best, warning), never how it looks; status words are part
of the text, so meaning survives piping, NO_COLOR and Markdown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from rich.cells import cell_len


class Tone(StrEnum):
    PLAIN = "plain"
    GOOD = "good"  # passed
    BAD = "bad"  # failed, crashed
    BEST = "best"  # fastest passing cell of its group
    WARN = "warn"  # a measurement to distrust (e.g. above a measured ceiling)
    DIM = "dim"  # not applicable, skipped
    VOID = "void"  # a figure that must not be quoted (its cell failed parity)


@dataclass(frozen=True)
class Entry:
    text: str
    tone: Tone = Tone.PLAIN


@dataclass(frozen=True)
class Column:
    name: str
    right: bool = True  # numbers align right
    # 0: essential, always shown; the others are added by rising priority while they fit.
    priority: int = 0


@dataclass
class TableData:
    title: str
    columns: list[Column]
    rows: list[list[Entry]] = field(default_factory=list)
    # One id per row (or None): the HTML page marks rows with it, so a row can be found again.
    row_ids: list[str | None] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # printed under the table
    row_class: str = "row"

    def add(self, entries: list[Entry | str], row_id: str | None = None) -> None:
        if len(entries) != len(self.columns):
            raise ValueError(
                f"{self.title}: {len(entries)} entries for {len(self.columns)} columns"
            )
        self.rows.append([e if isinstance(e, Entry) else Entry(e) for e in entries])
        self.row_ids.append(row_id)

    def column_widths(self) -> list[int]:
        """Natural width of each column: its widest entry or its name, in terminal cells (a
        CJK character or an emoji takes two: counting characters let such a run name overflow
        the width the columns were chosen for)."""
        widths = [cell_len(c.name) for c in self.columns]
        for row in self.rows:
            for i, e in enumerate(row):
                widths[i] = max(widths[i], cell_len(e.text))
        return widths

    def fitting_columns(self, width: int | None) -> list[int]:
        """Indices of the columns to draw within `width` characters of a boxed table (every
        column when width is None): essentials first, then the rest in order while they fit."""
        if width is None:
            return list(range(len(self.columns)))
        natural = self.column_widths()
        chosen = [i for i, c in enumerate(self.columns) if c.priority == 0]
        used = 1 + sum(natural[i] + 3 for i in chosen)  # a box draws "| x " per column + "|"
        optional = sorted((c.priority, i) for i, c in enumerate(self.columns) if c.priority)
        for _, i in optional:
            if used + natural[i] + 3 <= width:
                chosen.append(i)
                used += natural[i] + 3
        return sorted(chosen)
