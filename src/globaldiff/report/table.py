"""The one table model and its three renderers: a `Table` of `Cell`s becomes Markdown, booktabs LaTeX and CSV.

Every report table is built once as a `Table`; `to_markdown`, `to_latex` and `to_csv` render the same
columns from it, and `write_table` writes all three atomically. A cell we did not run says "not run", never
0; a number the paper does not give says "not reported".
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from globaldiff.io import atomic_path

NOT_RUN = "not run"
NOT_REPORTED = "not reported"
NA = "n/a"
DAGGER = "†"


@dataclass(frozen=True)
class Cell:
    """One table cell: `text` (+ `mark`) is what Markdown and LaTeX show; `value` and `std` are the plain
    numbers the CSV carries (None where the cell is text only, such as "not run")."""

    text: str
    value: float | int | None = None
    std: float | None = None
    mark: str = ""

    def __str__(self) -> str:
        return self.text + self.mark


@dataclass
class Table:
    """caption, header, rows (Cells or plain strings), footnotes; `align` has one letter (l/r) per column;
    `spread` names the columns whose CSV gets a `<column>_std` column beside it; `breaks` are row indices
    preceded by a rule in LaTeX; `marked` adds a `marks` CSV column naming the marked cells of each row."""

    caption: str
    header: list[str]
    rows: list[list[Cell | str]]
    footnotes: list[str] = field(default_factory=list)
    align: str = ""
    spread: tuple[str, ...] = ()
    breaks: tuple[int, ...] = ()
    marked: bool = False

    def __post_init__(self):
        self.align = self.align or "l" * len(self.header)
        if len(self.align) != len(self.header) or set(self.align) - {"l", "r", "c"}:
            raise ValueError(f"align {self.align!r} does not fit {len(self.header)} columns")
        for row in self.rows:
            if len(row) != len(self.header):
                raise ValueError(f"row {[str(c) for c in row]} has {len(row)} cells for {len(self.header)} columns")


def _as_cell(cell: Cell | str) -> Cell:
    return cell if isinstance(cell, Cell) else Cell(str(cell))


# --- Cells of numbers -------------------------------------------------------------------------------------

def spread_cell(mean: float, std: float, n: int) -> Cell:
    """mean ± sample std over n seeds, 4 decimals; one seed gives the mean alone (no std exists)."""
    if n > 1:
        return Cell(f"{mean:.4f} ± {std:.4f}", float(mean), float(std))
    return Cell(f"{mean:.4f}", float(mean))


def value_cell(value: float | None) -> Cell:
    """A paper's number, 4 decimals, or "not reported"."""
    return Cell(NOT_REPORTED) if value is None else Cell(f"{value:.4f}", float(value))


def pct_cell(pct: float) -> Cell:
    """A relative change in percent, signed, 2 decimals; "n/a" for NaN."""
    return Cell(NA) if math.isnan(pct) else Cell(f"{pct:+.2f}%", float(pct))


def format_p(p: float) -> str:
    """A p-value for a reader: 3 decimals, scientific notation below 0.001, "n/a" for NaN."""
    if math.isnan(p):
        return NA
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def p_cell(p: float) -> Cell:
    """A p-value cell: `format_p`'s text, the exact p in the CSV; "n/a" (no number) for NaN."""
    return Cell(NA) if math.isnan(p) else Cell(format_p(p), p)


# --- Renderers --------------------------------------------------------------------------------------------

def to_markdown(table: Table) -> str:
    """Caption, a pipe table, then one paragraph per footnote."""
    def line(cells) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    rules = {"l": "---", "r": "---:", "c": ":---:"}
    lines = [table.caption, "", line(table.header), "|" + "|".join(rules[a] for a in table.align) + "|"]
    lines += [line(_as_cell(c) for c in row) for row in table.rows]
    for note in table.footnotes:
        lines += ["", note]
    return "\n".join(lines) + "\n"


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
          "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", DAGGER: r"\textdagger{}"}


def latex_escape(text: str) -> str:
    """Text safe inside a LaTeX document: special characters escaped one by one, ± as $\\pm$, † as \\textdagger."""
    return "".join(_LATEX.get(ch, ch) for ch in str(text))


def to_latex(table: Table) -> str:
    """A booktabs table float (\\toprule, \\midrule, \\bottomrule); footnotes below the tabular."""
    def line(cells) -> str:
        return " & ".join(latex_escape(str(c)) for c in cells) + r" \\"

    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(table.caption)}}}",
             rf"\begin{{tabular}}{{{table.align}}}", r"\toprule", line(table.header), r"\midrule"]
    for i, row in enumerate(table.rows):
        if i in table.breaks and i > 0:
            lines.append(r"\midrule")
        lines.append(line(_as_cell(c) for c in row))
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [rf"\par{{\footnotesize {latex_escape(note)}}}" for note in table.footnotes]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def _plain(value: float | int) -> str:
    return str(value) if isinstance(value, (int, np.integer)) else repr(float(value))


def to_csv(table: Table) -> str:
    """One header line and one line per row, the same columns as the other formats; a column listed in
    `spread` is followed by `<column>_std`. Numbers are written plain (full precision, no ±, no %): a text
    cell ("not run", "n/a") keeps its text and leaves its std empty."""
    header: list[str] = []
    for name in table.header:
        header += [name, f"{name}_std"] if name in table.spread else [name]
    if table.marked:
        header.append("marks")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in table.rows:
        out, marks = [], []
        for name, cell in zip(table.header, map(_as_cell, row)):
            out.append(cell.text if cell.value is None else _plain(cell.value))
            if name in table.spread:
                out.append("" if cell.std is None else _plain(cell.std))
            if cell.mark:
                marks.append(name)
        if table.marked:
            out.append(" ".join(marks))
        writer.writerow(out)
    return buffer.getvalue()


RENDERERS = (("md", to_markdown), ("tex", to_latex), ("csv", to_csv))


def write_table(name: str, table: Table, folder: str | Path) -> list[Path]:
    """Write `<name>.md`, `<name>.tex` and `<name>.csv` into `folder`, each atomically; return their paths."""
    written = []
    for ext, render in RENDERERS:
        path = Path(folder) / f"{name}.{ext}"
        with atomic_path(path) as tmp:
            tmp.write_text(render(table))
        written.append(path)
    return written
