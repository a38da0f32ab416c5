"""The ablation table (every variant beside the main run) and which variants draw Figures 4 and 6 and Table 3."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from globaldiff.config.ablations import changes, leaves
from globaldiff.report.aggregate import METRICS, backbone_label, mean_std
from globaldiff.report.significance import compare_runs
from globaldiff.report.table import NOT_RUN, Cell, Table, p_cell, spread_cell


def describe_changes(overrides: Mapping) -> str:
    """A variant's overrides as "T = 200; similarity.method = kmeans"."""
    return "; ".join(f"{k} = {v}" for k, v in leaves(overrides).items())


def ablation_table(reference: Sequence[Mapping], variants: Mapping[str, Sequence[Mapping]],
                   overrides: Mapping[str, Mapping], reference_ranks: Sequence[Mapping[str, np.ndarray]] | None,
                   variant_ranks: Mapping[str, Sequence[Mapping[str, np.ndarray]]], *, dataset: str, backbone: str,
                   gamma: float, metrics: Sequence[str] = METRICS, part: str = "test") -> Table:
    """Every ablation beside the main run: +GlobalDiff's metrics (mean ± std over seeds), diffusion alone, and
    the paired p-value of each variant's fusion against the main run's on HR@20 (users paired).

    `reference` are the main run's metrics files for the same seeds, or empty when they were evaluated at
    another gamma than the ablations (then the main row reads "not run" and no p-value is computed).
    """
    name = backbone_label(backbone)
    header = ["variant", "changes", "seeds", *metrics, "diffusion alone HR@20", "p (HR@20)"]
    rows: list[list[Cell | str]] = []

    def row(label: str, described: str, runs: Sequence[Mapping], p: float | None) -> list[Cell | str]:
        if not runs:
            return [label, described, "", *[Cell(NOT_RUN)] * (len(metrics) + 2)]
        cells = [spread_cell(*mean_std([r[part]["fusion"][k] for r in runs])) for k in metrics]
        alone = spread_cell(*mean_std([r[part]["diffusion"]["HR@20"] for r in runs]))
        return [label, described, Cell(str(len(runs)), len(runs)), *cells, alone, Cell("") if p is None else p_cell(p)]

    rows.append(row("main run", "(params.yaml)", reference, None))
    for variant, runs in variants.items():
        mine = variant_ranks.get(variant)
        p = math.nan
        if reference_ranks and mine and len(mine) == len(reference_ranks):
            p = compare_runs([r["fusion"] for r in reference_ranks], [r["fusion"] for r in mine], "HR@20")
        rows.append(row(variant, describe_changes(overrides[variant]), runs, p))
    return Table(
        caption=f"Ablations: {part} metrics of {name}+GlobalDiff on {dataset} with one change each to the diffusion "
                f"side (the backbone is the main run's), fused at gamma = {gamma}.",
        header=header, rows=rows, align="lll" + "r" * (len(metrics) + 2), spread=(*metrics, "diffusion alone HR@20"),
        footnotes=["mean ± sample std over the seeds counted in column seeds (one seed: the mean alone). "
                   "p (HR@20): two-sided Wilcoxon signed-rank test of the variant's fusion against the main run's, "
                   "users paired, seeds averaged per user.",
                   f"{NOT_RUN}: the main run was evaluated at another gamma than the ablations (set gamma = "
                   "diffusion.select_gamma to compare), or the variant was not run."])


def ablation_groups(params: Mapping, names: Sequence[str]) -> dict[str, dict[str, str]]:
    """Which runs draw Figure 4, Figure 6 and Table 3: {"figure4" | "figure6" | "table3": {label: variant}},
    where variant "" is the main run. A variant joins a figure only when it changes nothing else: Figure 4
    takes those that change denoiser.guidance alone, Figure 6 those that change T alone, Table 3 those that
    switch the similarity to K-means (method and clusters only)."""
    variants = params["ablations"]["variants"]
    groups: dict[str, dict[str, str]] = {
        "figure4": {params["denoiser"]["guidance"]: ""},
        "figure6": {f"T = {params['T']}": ""},
        "table3": {"exact cosine": ""} if params["similarity"]["method"] == "cosine" else {},
    }
    for name in names:
        keys, values = changes(variants[name]), leaves(variants[name])
        if keys == {"denoiser.guidance"}:
            groups["figure4"][values["denoiser.guidance"]] = name
        elif keys == {"T"}:
            groups["figure6"][f"T = {values['T']}"] = name
        elif keys <= {"similarity.method", "similarity.clusters"} and \
                values.get("similarity.method", params["similarity"]["method"]) == "kmeans":
            groups["table3"][f"K={values.get('similarity.clusters', params['similarity']['clusters'])}"] = name
    return groups
