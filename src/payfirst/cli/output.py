"""What a command prints: a rich table and progress bar on a terminal, plain text
otherwise."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text


def _out() -> Console:
    return Console(highlight=False)


def _err() -> Console:
    return Console(stderr=True, highlight=False)


def _progress(console: Console | None = None) -> Progress:
    """A progress bar on stderr when it is a terminal; nothing at all otherwise (a log or a
    pipe gets the command's results only)."""
    console = console or _err()
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


def _show(
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    plain: Callable[[], str],
    *,
    notes: Sequence[str] = (),
    title: str | None = None,
) -> None:
    """A rich table on a terminal; the plain text (`plain()`) when piped or redirected."""
    console = _out()
    if not console.is_terminal:
        print(plain())
        return
    table = Table(*columns, title=title, header_style="bold", show_lines=False)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # a name may hold [brackets]
    console.print(table)
    for note in notes:
        console.print(note, markup=False)


def _aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows of four cells as lines: the first three padded into columns, the last as is."""
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        + "  "
        + row[3]
        for row in rows
    ]
