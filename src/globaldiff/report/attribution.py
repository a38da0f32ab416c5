"""The attribution table (beyond the paper): where a gain would come from. Each backbone alone, fused by the
same eq. (8) with GlobalDiff's x0_hat and with each control of ranking/controls.py (no diffusion)."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from globaldiff.report.aggregate import backbone_label, group_runs, improvement, mean_std
from globaldiff.report.table import NOT_RUN, Cell, Table, p_cell, pct_cell, spread_cell

SECOND_OPINIONS = {"fusion": "+GlobalDiff", "fusion_propagated": "+softmax(y)A", "fusion_popularity": "+popularity",
                   "fusion_random": "+random"}
ATTRIBUTION_METRICS = ("HR@10", "NDCG@10")


def attribution_table(runs: Sequence[Mapping], pvalues: Mapping[tuple[str, str], Mapping[str, Mapping[str, float]]],
                      recipes: Mapping[str, str] | None = None, *, metrics: Sequence[str] = ATTRIBUTION_METRICS,
                      part: str = "test", gamma: float | None = None) -> Table:
    """Each backbone alone and fused with each second opinion, mean ± std over seeds, the change against the
    backbone alone and the paired p-value.

    `runs` are metrics files (dataset, backbone, seed, part -> model -> metric); `pvalues` is
    `significance.opinion_pvalues(ranks, SECOND_OPINIONS, metrics)` (missing: "n/a"; test p-values only). A
    second opinion missing from any seed of a run reads "not run"; `recipes` {backbone: text} names each
    backbone's training recipe.
    """
    grouped = group_runs(runs)
    header = ["dataset", "backbone", "metric", "row", "seeds", "backbone alone", *SECOND_OPINIONS.values()]
    rows: list[list[Cell | str]] = []
    breaks: list[int] = []
    for (dataset, backbone), group in grouped.items():
        name = backbone_label(backbone)
        seeds = Cell(str(len(group)), len(group))
        run_p = pvalues.get((dataset, backbone), {}) if part == "test" else {}
        for metric in metrics:
            breaks.append(len(rows))
            base = mean_std([r[part]["backbone"][metric] for r in group])
            values, changes, p_cells = [], [], []
            for model in SECOND_OPINIONS:
                if not all(model in r[part] for r in group):
                    for column in (values, changes, p_cells):
                        column.append(Cell(NOT_RUN))
                    continue
                stats = mean_std([r[part][model][metric] for r in group])
                values.append(spread_cell(*stats))
                changes.append(pct_cell(improvement(stats[0], base[0])))
                p_cells.append(p_cell(run_p.get(model, {}).get(metric, math.nan)))
            rows.append([dataset, name, metric, "mean", seeds, spread_cell(*base), *values])
            rows.append([dataset, name, metric, "change %", "", "", *changes])
            rows.append([dataset, name, metric, "p-value", "", "", *p_cells])
    notes = ["Beyond the paper. Every column fuses the backbone's softmax y with a second opinion by the same "
             "eq. (8) Borda rule" + (f" at gamma = {gamma}" if gamma is not None else "") + ": GlobalDiff's "
             "x0_hat, softmax(y)A (the backbone's scores spread once over the item similarity A, no diffusion), "
             "item popularity (train counts, the same for every user) and uniform random scores (a sanity check).",
             "mean: mean ± sample std over the seeds; change %: 100 (fused / alone - 1) from the means; p-value: "
             "two-sided Wilcoxon signed-rank test against the backbone alone, users paired, each user's metric "
             "averaged over the seeds first."]
    for backbone, recipe in (recipes or {}).items():
        if any(b == backbone for _, b in grouped):
            notes.append(f"{backbone_label(backbone)}: {recipe}.")
    return Table(caption=f"Attribution: {part} metrics of each backbone alone and fused with GlobalDiff or with a "
                         "control that uses no diffusion.",
                 header=header, rows=rows, footnotes=notes, align="lllll" + "r" * (1 + len(SECOND_OPINIONS)),
                 spread=("backbone alone", *SECOND_OPINIONS.values()), breaks=tuple(breaks))


def recipe_text(model_options: Mapping) -> str:
    """A backbone's model options as one line: "hidden 64, blocks 2, loss ce"."""
    return ", ".join(f"{k} {v}" for k, v in model_options.items())
