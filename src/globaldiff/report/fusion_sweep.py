"""The fusion sweep's tables (beyond the paper): eq. (8) over a gamma x normalisation grid, and the setting
chosen on validation for each seed, from the fusion_sweep stages' sweep.json files."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from globaldiff.report.aggregate import METRICS, backbone_label, improvement, mean_std
from globaldiff.report.significance import compare_runs
from globaldiff.report.table import Cell, Table, p_cell, pct_cell, spread_cell


def _grid_mean(runs: Sequence[Mapping], norm: str, gamma: float, part: str, metric: str) -> float:
    values = [cell[part][metric] for r in runs for cell in r["grid"] if cell["norm"] == norm and cell["gamma"] == gamma]
    if len(values) != len(runs):
        raise ValueError(f"sweep grid point ({norm}, {gamma}) is missing from {len(runs) - len(values)} seed(s)")
    return float(np.mean(values))


def sweep_table(sweeps: Mapping[tuple[str, str], Sequence[Mapping]], *, metric: str | None = None) -> Table:
    """The fusion sweep's grid: for each (dataset, backbone), normalisation of x0_hat and split, the change of
    eq. (8)'s fusion against the backbone alone at every gamma, from the means over seeds. `sweeps` holds
    one sweep.json per seed; `metric` defaults to the sweep's selection metric."""
    first = next((runs[0] for runs in sweeps.values() if runs), None)
    metric = metric or (first["select_metric"] if first else "HR@10")
    gammas = sorted({cell["gamma"] for runs in sweeps.values() for r in runs for cell in r["grid"]})
    norms = list(dict.fromkeys(cell["norm"] for runs in sweeps.values() for r in runs for cell in r["grid"]))
    header = ["dataset", "backbone", "norm", "split", "seeds", *(f"γ={g:g}" for g in gammas)]
    rows: list[list[Cell | str]] = []
    breaks: list[int] = []
    for (dataset, backbone), runs in sorted(sweeps.items()):
        breaks.append(len(rows))
        seeds = Cell(str(len(runs)), len(runs))
        for norm in norms:
            for part in ("val", "test"):
                base = float(np.mean([r["backbone"][part][metric] for r in runs]))
                cells = [pct_cell(improvement(_grid_mean(runs, norm, g, part, metric), base)) for g in gammas]
                rows.append([dataset, backbone_label(backbone), norm, part, seeds, *cells])
    return Table(
        caption=f"Fusion sweep (beyond the paper): change of {metric} when the backbone's softmax is fused with "
                "GlobalDiff's x0_hat by eq. (8), for each gamma and normalisation of x0_hat.",
        header=header, rows=rows, align="lllll" + "r" * len(gammas), breaks=tuple(breaks),
        footnotes=["100 (fused / backbone alone - 1) from the means over the seeds counted in column seeds. "
                   "gamma = 1 is the backbone alone; gamma = 0 orders items by x0_hat alone. The diffusion model "
                   "(and its epoch) is the main run's, chosen at diffusion.select_gamma with ensemble.norm; "
                   "the test rows describe, they choose nothing (fusion_tuned does the choosing, on validation)."])


def tuned_table(sweeps: Mapping[tuple[str, str], Sequence[Mapping]],
                ranks: Mapping[tuple[str, str], Sequence[tuple[np.ndarray, np.ndarray]]],
                metrics: Sequence[str] = METRICS) -> Table:
    """The fusion with (norm, gamma) chosen on validation for each seed: test metrics beside the backbone
    alone's, the change and the paired p-value (users paired, seeds averaged per user). `ranks` holds one
    (backbone test ranks, tuned test ranks) pair per seed; a run without them reads "n/a"."""
    header = ["dataset", "backbone", "seeds", "chosen (norm, γ) per seed", "row", *metrics]
    rows: list[list[Cell | str]] = []
    breaks: list[int] = []
    for (dataset, backbone), runs in sorted(sweeps.items()):
        breaks.append(len(rows))
        name = backbone_label(backbone)
        seeds = Cell(str(len(runs)), len(runs))
        chosen = ", ".join(f"{r['tuned']['norm']} {r['tuned']['gamma']:g}" for r in runs)
        base = [mean_std([r["backbone"]["test"][m] for r in runs]) for m in metrics]
        tuned = [mean_std([r["tuned"]["test"][m] for r in runs]) for m in metrics]
        pairs = ranks.get((dataset, backbone))
        have = pairs is not None and len(pairs) == len(runs)
        pvalues = [compare_runs([b for b, _ in pairs], [t for _, t in pairs], m) if have else math.nan for m in metrics]
        rows.append([dataset, name, seeds, chosen, "backbone alone", *(spread_cell(*s) for s in base)])
        rows.append([dataset, name, seeds, chosen, "+GlobalDiff, tuned", *(spread_cell(*s) for s in tuned)])
        rows.append([dataset, name, "", "", "change %", *(pct_cell(improvement(t[0], b[0])) for b, t in zip(base, tuned))])
        rows.append([dataset, name, "", "", "p-value", *map(p_cell, pvalues)])
    select = next((runs[0]["select_metric"] for runs in sweeps.values() if runs), "HR@10")
    return Table(
        caption="Fusion tuned on validation (beyond the paper): eq. (8) with the gamma and normalisation of x0_hat "
                f"that give the best validation {select} for each seed, test metrics.",
        header=header, rows=rows, align="lllll" + "r" * len(metrics), spread=tuple(metrics), breaks=tuple(breaks),
        footnotes=["mean ± sample std over the seeds; change %: 100 (tuned / alone - 1) from the means; p-value: "
                   "two-sided Wilcoxon signed-rank test against the backbone alone, users paired, each user's "
                   "metric averaged over the seeds first. Ties on validation go to the larger gamma."])
