"""Table 3 (item similarity variants): +GlobalDiff of each of our variants beside the paper's row."""

from __future__ import annotations

from typing import Mapping, Sequence

from globaldiff.report.aggregate import METRICS, backbone_label, mean_std
from globaldiff.report.table import NOT_REPORTED, NOT_RUN, Cell, Table, spread_cell, value_cell

_PAIRWISE = {"exactcosine", "cosine", "pairwise", "exact"}


def _norm(name: str) -> str:
    """Case and white space do not matter: "K = 100" is "K=100"."""
    return "".join(name.lower().split())


def _paper_variant(ours: str, paper: Mapping[str, Mapping]) -> str | None:
    for theirs in paper:
        if _norm(theirs) == _norm(ours):
            return theirs
        if _norm(ours) in _PAIRWISE and _norm(theirs).startswith("pairwise"):
            return theirs
    return None


def table3(variants: Sequence[Mapping], paper: Mapping[str, Mapping[str, float]], *, dataset: str, backbone: str,
           metrics: Sequence[str] = METRICS, part: str = "test") -> Table:
    """Table 3 (item similarity variants): +GlobalDiff of each of our variants beside the paper's row.

    `variants`: [{"variant": "K=100" | "exact cosine" | ..., "runs": [metrics dicts]}]. Our variants match
    the paper's by name (K=100, K=500, K=1000; "exact cosine" is the paper's pairwise row); our backbone
    alone (its metrics from the runs, one per seed) sits beside the paper's "(no GlobalDiff)" row. The paper
    ran CBiT on Beauty; `dataset` and `backbone` say what we ran, in the caption.
    """
    name = backbone_label(backbone)
    header = ["variant", "source", "seeds", *metrics]
    rows: list[list[Cell | str]] = []

    def ours_row(label: str, runs: Sequence[Mapping], model: str) -> list[Cell | str]:
        if not runs:
            return [label, "ours", "", *[Cell(NOT_RUN)] * len(metrics)]
        stats = [mean_std([r[part][model][k] for r in runs]) for k in metrics]
        return [label, "ours", Cell(str(len(runs)), len(runs)), *(spread_cell(*s) for s in stats)]

    def paper_row(label: str, values: Mapping[str, float] | None) -> list[Cell | str]:
        return [label, "paper", "", *(value_cell(None if values is None else values.get(k)) for k in metrics)]

    by_seed: dict = {}
    for variant in variants:
        for run in variant["runs"]:
            by_seed.setdefault(run.get("seed"), run)
    no_diff = next((v for v in paper if "no globaldiff" in v.lower()), None)
    rows.append(ours_row(f"{name} (no GlobalDiff)", list(by_seed.values()), "backbone"))
    if no_diff is not None:
        rows.append(paper_row(no_diff, paper[no_diff]))
    matched = {v["variant"]: _paper_variant(v["variant"], paper) for v in variants}
    for theirs in paper:
        if theirs == no_diff:
            continue
        mine = [v for v in variants if matched[v["variant"]] == theirs]
        if mine:
            rows += [ours_row(v["variant"], v["runs"], "fusion") for v in mine]
        else:
            rows.append(ours_row(theirs, [], "fusion"))
        rows.append(paper_row(theirs, paper[theirs]))
    for v in variants:
        if matched[v["variant"]] is None:
            rows.append(ours_row(v["variant"], v["runs"], "fusion"))
            rows.append(paper_row(v["variant"], None))
    return Table(
        caption=f"Table 3: item similarity variants, {part} metrics of +GlobalDiff; ours on {dataset} with "
                f"{name}, the paper's on beauty with CBiT.",
        header=header, rows=rows, align="lll" + "r" * len(metrics), spread=tuple(metrics),
        footnotes=["Ours: mean ± sample std over the seeds counted in column seeds (one seed: the mean alone). "
                   "K=k: K-means similarity with k clusters; pairwise: exact cosine similarity of all item pairs.",
                   f"{NOT_RUN}: a variant we did not run; {NOT_REPORTED}: the paper gives no number."])
