"""Table 2 (test metrics of each backbone alone and +GlobalDiff, ours beside the paper's), the cells where the
direction of the change disagrees with the paper's, and the headline table (one line per backbone).

Our backbones meet the paper's rows by name: a backbone's registry class name ("SASRec") is the paper's
method name, and "<name>+GlobalDiff" its fused row. The paper's GlobalDiff backbones are the methods that
have such a fused row; its other methods are baselines. A backbone the paper lacks gets our rows only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from globaldiff.report.aggregate import METRICS, backbone_key, backbone_label, improvement
from globaldiff.report.table import (DAGGER, NOT_REPORTED, NOT_RUN, Cell, Table, p_cell, pct_cell, spread_cell,
                                     to_markdown, value_cell)

FUSED = "+GlobalDiff"


@dataclass(frozen=True)
class Disagreement:
    """A Table 2 cell where +GlobalDiff's change over the backbone has opposite signs in ours and the paper's."""

    dataset: str
    backbone: str
    metric: str
    ours_pct: float
    paper_pct: float
    p_value: float = math.nan


def paper_backbones(paper: Mapping[tuple[str, str, str], float]) -> list[str]:
    """The paper's names of the backbones it fuses with GlobalDiff, in its order."""
    methods = list(dict.fromkeys(m for m, _, _ in paper))
    return [m for m in methods if m + FUSED in methods]


def _p(pvalues: Mapping[str, float] | None, metric: str) -> float:
    return math.nan if pvalues is None else float(pvalues.get(metric, math.nan))


def table2(summary: Mapping, paper: Mapping[tuple[str, str, str], float],
           pvalues: Mapping[tuple[str, str], Mapping[str, float]] | None = None, *,
           datasets: Sequence[str] | None = None, backbones: Sequence[str] | None = None,
           metrics: Sequence[str] = METRICS, baselines: bool = True, gamma: float | None = None,
           exclude: str | None = None) -> tuple[Table, list[Disagreement]]:
    """Table 2, ours beside the paper's, and the cells where the direction of the improvement disagrees.

    `summary` is `aggregate(runs)`, `paper` is `read_paper_table2(...)`, `pvalues` is `pvalues_by_run(...)`
    (a run missing there shows "n/a"). `datasets` and `backbones` are ours, in order (default: those in
    `summary`); with `baselines` the table is the paper's whole Table 2 too: its datasets and GlobalDiff
    backbones that we lack follow ours ("not run"), and each dataset opens with the paper's baseline rows.
    Per backbone: our backbone, +GlobalDiff, diffusion alone, improvement % and p-value, then (where the
    paper has the backbone) the paper's backbone, +GlobalDiff and improvement %.
    """
    pvalues = pvalues or {}
    theirs = paper_backbones(paper)
    datasets = list(datasets or dict.fromkeys(d for d, _ in summary))
    backbones = list(backbones or dict.fromkeys(b for _, b in summary))
    if baselines:
        paper_datasets = list(dict.fromkeys(d for _, d, _ in paper))
        datasets = paper_datasets + [d for d in datasets if d not in paper_datasets]
        backbones += [backbone_key(m) for m in theirs if backbone_key(m) not in backbones]
    baseline_methods = [m for m in dict.fromkeys(m for m, _, _ in paper) if not m.endswith(FUSED) and m not in theirs]
    header = ["dataset", "model", "source", "seeds", *metrics]
    rows: list[list[Cell | str]] = []
    breaks: list[int] = []
    found: list[Disagreement] = []

    def paper_values(method: str, dataset: str) -> list[float | None]:
        return [paper.get((method, dataset, k)) for k in metrics]

    for dataset in datasets:
        breaks.append(len(rows))
        if baselines:
            for method in baseline_methods:
                values = paper_values(method, dataset)
                if any(v is not None for v in values):
                    rows.append([dataset, method, "paper", "", *map(value_cell, values)])
        for backbone in backbones:
            breaks.append(len(rows))
            name = backbone_label(backbone)
            models = summary.get((dataset, backbone))
            labels = {"backbone": name, "fusion": name + FUSED, "diffusion": f"diffusion alone ({name})"}
            for model in ("backbone", "fusion", "diffusion"):
                if models is None:
                    rows.append([dataset, labels[model], "ours", "", *[Cell(NOT_RUN)] * len(metrics)])
                else:
                    n = models[model][metrics[0]][2]
                    rows.append([dataset, labels[model], "ours", Cell(str(n), n),
                                 *(spread_cell(*models[model][k]) for k in metrics)])
            in_paper = name in theirs
            paper_bb, paper_fu = paper_values(name, dataset), paper_values(name + FUSED, dataset)
            paper_pct = [None if b is None or f is None else improvement(f, b) for b, f in zip(paper_bb, paper_fu)]
            p = pvalues.get((dataset, backbone))
            if models is None:
                gain_cells = p_cells = [Cell(NOT_RUN)] * len(metrics)
            else:
                gain_cells = []
                for k, their_pct in zip(metrics, paper_pct):
                    ours = improvement(models["fusion"][k][0], models["backbone"][k][0])
                    cell = pct_cell(ours)
                    if their_pct is not None and not math.isnan(ours) and ours * their_pct < 0:
                        cell = Cell(cell.text, cell.value, mark=DAGGER)
                        found.append(Disagreement(dataset, backbone, k, ours, their_pct, _p(p, k)))
                    gain_cells.append(cell)
                p_cells = [p_cell(_p(p, k)) for k in metrics]
            rows.append([dataset, f"Improv. % ({name})", "ours", "", *gain_cells])
            rows.append([dataset, f"p-value ({name})", "ours", "", *p_cells])
            if in_paper:
                rows.append([dataset, name, "paper", "", *map(value_cell, paper_bb)])
                rows.append([dataset, name + FUSED, "paper", "", *map(value_cell, paper_fu)])
                rows.append([dataset, f"Improv. % ({name})", "paper", "",
                             *(Cell(NOT_REPORTED) if v is None else pct_cell(v) for v in paper_pct)])

    setting = "".join([f"; gamma = {gamma}" if gamma is not None else "",
                       f"; excluded items: {exclude}" if exclude is not None else ""])
    notes = ["Ours: mean ± sample std over the seeds counted in column seeds (one seed: the mean alone). "
             "Paper: the paper's Table 2.",
             "Improv. %: +GlobalDiff over the backbone, 100 (GlobalDiff / backbone - 1), from the means.",
             "p-value: two-sided Wilcoxon signed-rank test of +GlobalDiff against the backbone, users paired, "
             "each user's metric averaged over the seeds first; n/a: per-user ranks not available.",
             f"{NOT_RUN}: a dataset and backbone we did not run (no number is implied); "
             f"{NOT_REPORTED}: the paper gives no number."]
    if found:
        cells = ", ".join(f"{d.dataset} {backbone_label(d.backbone)} {d.metric} "
                          f"(ours {d.ours_pct:+.2f}%, paper {d.paper_pct:+.2f}%)" for d in found)
        notes.append(f"{DAGGER}: our improvement and the paper's have opposite signs: {cells}.")
    table = Table(caption=f"Table 2: test metrics, full ranking over all items, every user{setting}; "
                          "ours beside the paper's.",
                  header=header, rows=rows, footnotes=notes, align="llll" + "r" * len(metrics),
                  spread=tuple(metrics), breaks=tuple(dict.fromkeys(breaks)), marked=True)
    return table, found


def results_markdown(summary: dict, paper: dict, gamma: float, exclude: str,
                     pvalues: dict | None = None) -> str:
    """Markdown Table 2 restricted to the datasets and backbones we ran (no baseline-only rows)."""
    table, _ = table2(summary, paper, pvalues, baselines=False, gamma=gamma, exclude=exclude)
    return to_markdown(table)


def headline_table(summary: Mapping, paper: Mapping[tuple[str, str, str], float],
                   pvalues: Mapping[tuple[str, str], Mapping[str, float]] | None = None, *,
                   datasets: Sequence[str], backbones: Sequence[str], metric: str = "HR@10") -> Table:
    """The finding in one line per (dataset, backbone) we ran: `metric` alone and +GlobalDiff (mean ± std over
    seeds), the change, its p-value, and the paper's change (where the paper has the backbone there)."""
    pvalues = pvalues or {}
    rows: list[list[Cell | str]] = []
    for dataset in datasets:
        for backbone in backbones:
            models = summary.get((dataset, backbone))
            if models is None:
                continue
            name = backbone_label(backbone)
            alone, fused = models["backbone"][metric], models["fusion"][metric]
            b, f = paper.get((name, dataset, metric)), paper.get((name + FUSED, dataset, metric))
            rows.append([dataset, name, Cell(str(alone[2]), alone[2]), spread_cell(*alone), spread_cell(*fused),
                         pct_cell(improvement(fused[0], alone[0])), p_cell(_p(pvalues.get((dataset, backbone)), metric)),
                         Cell(NOT_REPORTED) if b is None or f is None else pct_cell(improvement(f, b))])
    return Table(
        caption=f"Headline: test {metric} of each backbone alone and +GlobalDiff, ours beside the paper's change.",
        header=["dataset", "backbone", "seeds", "alone", FUSED, "change", "p-value", "paper's change"],
        rows=rows, align="lllrrrrr", spread=("alone", FUSED),
        footnotes=["mean ± sample std over the seeds; change: 100 (+GlobalDiff / alone - 1) from the means; p-value: "
                   "two-sided Wilcoxon signed-rank test, users paired, each user's metric averaged over the seeds "
                   "first (n/a: per-user ranks not available); paper's change: the same from the paper's Table 2 "
                   f"({NOT_REPORTED}: the paper does not run that backbone on that dataset)."])
