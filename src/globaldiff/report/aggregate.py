"""Metrics files of many seeds to the numbers a table shows: means, sample stds, relative changes, names.

A run is one metrics file (dataset, backbone, seed; part -> model -> metric). Which backbones and datasets
exist is never listed here: they come from the runs, the study params and the backbone registry.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from globaldiff.backbones import REGISTRY

METRICS = ("HR@10", "HR@20", "NDCG@10", "NDCG@20")
MODELS = ("backbone", "fusion", "diffusion")


def backbone_label(backbone: str) -> str:
    """A backbone's name in the tables: its registry class name, which is also the paper's name for it
    ("sasrec" -> "SASRec"); a name the registry lacks is shown as it is."""
    return REGISTRY.get(backbone, backbone)


def backbone_key(label: str) -> str:
    """The inverse of `backbone_label`: the params name of a backbone the paper names (or the name itself)."""
    return next((key for key, value in REGISTRY.items() if value == label), label)


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample std, n); the std of one value is 0 (a spread cell then shows the mean alone)."""
    values = np.asarray(values, dtype=np.float64)
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return float(values.mean()), std, len(values)


def group_runs(runs: Sequence[Mapping]) -> dict[tuple[str, str], list[Mapping]]:
    """{(dataset, backbone): its runs}, keys sorted."""
    grouped: dict[tuple[str, str], list[Mapping]] = {}
    for run in runs:
        grouped.setdefault((run["dataset"], run["backbone"]), []).append(run)
    return dict(sorted(grouped.items()))


def aggregate(runs: list[dict], part: str = "test") -> dict:
    """{(dataset, backbone): {model: {metric: (mean, std, n)}}} over the seeds present (std: sample std)."""
    return {key: {model: {metric: mean_std([r[part][model][metric] for r in group]) for metric in METRICS}
                  for model in MODELS}
            for key, group in group_runs(runs).items()}


def improvement(new: float, old: float) -> float:
    """Relative change in percent, 100 (new / old - 1); NaN when old is 0."""
    return 100.0 * (new / old - 1.0) if old else math.nan


def results_json(summary: dict) -> dict:
    """Nested plain dict for `dvc metrics show`: dataset -> backbone -> model -> metric -> mean."""
    out: dict = {}
    for (dataset, backbone), models in summary.items():
        for model, metrics in models.items():
            means = {k: round(v[0], 6) for k, v in metrics.items()}
            out.setdefault(dataset, {}).setdefault(backbone, {})[model] = means
    return out
