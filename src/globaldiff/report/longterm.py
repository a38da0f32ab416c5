"""Figure 3's numbers (long-term prediction): the P-th next item from one fixed input, per horizon P."""

from __future__ import annotations

from typing import Mapping, Sequence

from globaldiff.report.aggregate import METRICS, backbone_label, improvement, mean_std
from globaldiff.report.table import Cell, Table, pct_cell, spread_cell


def longterm_table(runs: Sequence[Mapping], *, dataset: str, backbone: str, gamma: float,
                   metrics: Sequence[str] = METRICS) -> Table:
    """Figure 3's numbers: for each horizon P, the backbone, +GlobalDiff and the change, mean ± std over seeds."""
    name = backbone_label(backbone)
    horizons = sorted(runs[0]["test"], key=lambda h: int(h[1:])) if runs else []
    rows: list[list[Cell | str]] = []
    for h in horizons:
        stats = {m: [mean_std([r["test"][h][m][k] for r in runs]) for k in metrics] for m in ("backbone", "fusion")}
        seeds = Cell(str(len(runs)), len(runs))
        rows.append([h[1:], name, seeds, *(spread_cell(*s) for s in stats["backbone"])])
        rows.append([h[1:], f"{name}+GlobalDiff", seeds, *(spread_cell(*s) for s in stats["fusion"])])
        rows.append([h[1:], "Improv. %", "", *(pct_cell(improvement(f[0], b[0]))
                                               for b, f in zip(stats["backbone"], stats["fusion"]))])
    return Table(
        caption=f"Figure 3 (long-term prediction): test metrics of the P-th next item from one fixed input, {name} "
                f"on {dataset}, longterm split, fused at gamma = {gamma}.",
        header=["P", "model", "seeds", *metrics], rows=rows, align="lll" + "r" * len(metrics), spread=tuple(metrics),
        breaks=tuple(range(0, len(rows), 3)),
        footnotes=["mean ± sample std over the seeds counted in column seeds (one seed: the mean alone). The paper "
                   "gives Figure 3 as a plot only, so no paper numbers sit beside ours."])
