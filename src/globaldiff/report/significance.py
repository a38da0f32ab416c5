"""Paired significance of +GlobalDiff over its backbone, from per-user test ranks (no training).

The unit of the test is the user: every user has one held-out test item, scored by the backbone and by the
fusion, so the two per-user metric values form a pair and the users are the independent observations. The
seeds are not extra observations of the same user: they are averaged per user first, so that a user is
counted once, not once per seed, and seed-to-seed noise is smoothed out of each pair instead of inflating
the sample size.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np
from scipy import stats

from globaldiff.ranking.metrics import hit_rate, ndcg


def paired_test(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Two-sided p-value of the Wilcoxon signed-rank test of paired per-user values `a` against `b`.

    Wilcoxon rather than a paired t-test because per-user HR is 0/1 and NDCG is bounded and very skewed
    (most users score 0), so the differences are far from normal. Users whose difference is zero are
    dropped ("wilcox" zero method, scipy's default) since they carry no evidence of direction.

    Returns 1.0 when every difference is zero (no evidence of any difference; scipy cannot compute a
    statistic there) and NaN for fewer than 2 users (no test is possible).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired values must be two 1-d arrays of one length, got shapes {a.shape} and {b.shape}")
    if len(a) < 2:
        return math.nan
    if not np.any(a - b):
        return 1.0
    return float(stats.wilcoxon(a, b, alternative="two-sided").pvalue)


def per_user_metric(ranks: Sequence[int] | np.ndarray, metric: str) -> np.ndarray:
    """Each user's value of `metric` ("HR@10", "NDCG@20", ...) from 1-based target ranks.

    An excluded target carries rank int64 max, which is never inside the top K: it scores 0 for both
    metrics, exactly as in metrics.summarise.
    """
    name, sep, k = metric.partition("@")
    if not sep or not k.isdigit() or int(k) < 1:
        raise ValueError(f"metric {metric!r}: expected NAME@K such as 'HR@10' or 'NDCG@20'")
    ranks = np.asarray(ranks)
    if name.upper() == "HR":
        return hit_rate(ranks, int(k))
    if name.upper() == "NDCG":
        return ndcg(ranks, int(k))
    raise ValueError(f"metric {metric!r}: only HR@K and NDCG@K are known")


def _seed_mean(ranks_by_seed: Iterable[np.ndarray] | Mapping[object, np.ndarray], metric: str) -> np.ndarray:
    runs = list(ranks_by_seed.values()) if isinstance(ranks_by_seed, Mapping) else list(ranks_by_seed)
    if not runs:
        raise ValueError("no runs to compare")
    values = [per_user_metric(r, metric) for r in runs]
    if len({v.shape for v in values}) != 1 or values[0].ndim != 1:
        raise ValueError(f"runs rank different user sets: shapes {sorted({v.shape for v in values})}")
    return np.mean(values, axis=0)


def compare_runs(backbone_ranks_by_seed: Iterable[np.ndarray] | Mapping[object, np.ndarray],
                 fusion_ranks_by_seed: Iterable[np.ndarray] | Mapping[object, np.ndarray], metric: str) -> float:
    """p-value of +GlobalDiff against its backbone on `metric`, users paired across the two models.

    Each argument holds one rank array per seed (a list, or a dict keyed by seed), all over the same users in
    the same order. Each user's metric is averaged over the seeds of each model, then the two per-user
    averages are compared with `paired_test`: the users are the independent units, and averaging the seeds
    keeps one pair per user instead of counting every user once per seed (which would treat repeated,
    correlated measurements of one user as new evidence and shrink the p-value).
    """
    backbone = _seed_mean(backbone_ranks_by_seed, metric)
    fusion = _seed_mean(fusion_ranks_by_seed, metric)
    if backbone.shape != fusion.shape:
        raise ValueError(f"backbone ranks cover {len(backbone)} users, fusion ranks {len(fusion)}")
    return paired_test(fusion, backbone)


def run_pvalues(ranks_by_seed: Sequence[Mapping[str, np.ndarray]], metrics: Sequence[str]) -> dict[str, float]:
    """{metric: p} of fusion against backbone for one (dataset, backbone), from one {model: ranks} per seed."""
    return {m: compare_runs([r["backbone"] for r in ranks_by_seed], [r["fusion"] for r in ranks_by_seed], m)
            for m in metrics}


def pvalues_by_run(ranks: Mapping[tuple[str, str], Sequence[Mapping[str, np.ndarray]]],
                   metrics: Sequence[str]) -> dict[tuple[str, str], dict[str, float]]:
    """{(dataset, backbone): {metric: p}}: +GlobalDiff against the backbone, users paired, seeds averaged
    (`ranks` as `readers.collect_ranks`)."""
    return {key: run_pvalues(runs, metrics) for key, runs in ranks.items()}


def opinion_pvalues(ranks: Mapping[tuple[str, str], Sequence[Mapping[str, np.ndarray]]], models: Sequence[str],
                    metrics: Sequence[str]) -> dict[tuple[str, str], dict[str, dict[str, float]]]:
    """{(dataset, backbone): {model: {metric: p}}}: each fused `model` against the backbone alone, for the
    models whose ranks every seed of the run has (a model missing from one seed gets no p-value)."""
    return {key: {model: {m: compare_runs([s["backbone"] for s in runs], [s[model] for s in runs], m) for m in metrics}
                  for model in models if all(model in s for s in runs)}
            for key, runs in ranks.items()}
