"""The fusion sweep (beyond the paper): eq. (8) over a grid of gamma x normalisation of x0_hat, on the cached
score matrices of one run, no training.

The paper fixes gamma = 0.5 and does not say how x0_hat is normalised (the authors' scripts use L2 for CBiT and
SRGNN, softmax for BERT4Rec and SASRec). How much GlobalDiff can add depends on both, so the sweep reports the
whole grid on validation and test, and one "tuned" setting chosen on validation alone, whose test metrics and
per-user ranks are what a researcher tuning the fusion honestly would report.
"""

from __future__ import annotations

import numpy as np
import torch

from globaldiff.ranking.ensemble import NORMS, check_gamma
from globaldiff.ranking.fused import user_chunks
from globaldiff.ranking.metrics import masked_ranks, summarise
from globaldiff.run.device import keep_freed_memory


def fusion_grid_ranks(logits: torch.Tensor, x0_hat: torch.Tensor, evalset, gammas, norms, exclude: str,
                      chunk: int = 2048) -> dict[tuple[str, float], np.ndarray]:
    """{(norm, gamma): each user's 1-based target rank under eq. (8) fusion}, plus ("backbone", 1.0) for the
    backbone alone. Users go in chunks; the backbone's Borda term is computed once per chunk, x0_hat's
    normalisation and Borda ranks once per chunk and norm (gamma only weighs the two terms)."""
    for gamma in gammas:
        check_gamma(gamma)
    for norm in norms:
        if norm not in NORMS:
            raise ValueError(f"unknown normalisation {norm!r}: expected one of {NORMS}")
    parts: dict[tuple[str, float], list[np.ndarray]] = {}
    for c in user_chunks(logits, evalset, exclude, chunk):
        parts.setdefault(("backbone", 1.0), []).append(masked_ranks(logits[c.rows], c.mask, c.targets))
        for norm in norms:
            second = c.backbone.second(x0_hat[c.rows], norm)
            for gamma in gammas:
                fused = c.backbone.combine(second, gamma)
                parts.setdefault((norm, gamma), []).append(masked_ranks(fused, c.mask, c.targets))
    return {key: np.concatenate(chunks) for key, chunks in parts.items()}


def choose_setting(val_metrics: dict[tuple[str, float], dict[str, float]], metric: str) -> tuple[str, float]:
    """The (norm, gamma) with the best validation `metric`; ties go to the larger gamma (more weight on the
    backbone, the smaller change), then to the earlier norm in the grid's order."""
    grid = [key for key in val_metrics if key[0] != "backbone"]
    if not grid:
        raise ValueError("the sweep grid is empty: expected at least one (norm, gamma)")
    order = {key: i for i, key in enumerate(grid)}
    return max(grid, key=lambda key: (val_metrics[key][metric], key[1], -order[key]))


def run_sweep(logits: dict[str, torch.Tensor], x0_hat: dict[str, torch.Tensor], evalsets: dict, *, gammas, norms,
              exclude: str, select_metric: str) -> tuple[dict, np.ndarray]:
    """(summary for sweep.json, the tuned setting's per-user test ranks) for one run.

    `logits`, `x0_hat`, `evalsets` are keyed by "val" and "test". The setting is chosen on validation only;
    test metrics of every setting are reported for description, never for choosing.
    """
    keep_freed_memory()            # the [users, M+1] temporaries from the heap, not fresh mmaps (run.device)
    metrics: dict[str, dict[tuple[str, float], dict[str, float]]] = {}
    test_ranks: dict[tuple[str, float], np.ndarray] = {}
    for part in ("val", "test"):
        ranks = fusion_grid_ranks(logits[part], x0_hat[part], evalsets[part], gammas, norms, exclude)
        metrics[part] = {key: summarise(r) for key, r in ranks.items()}
        if part == "test":
            test_ranks = ranks
    norm, gamma = choose_setting(metrics["val"], select_metric)
    summary = {
        "select_metric": select_metric,
        "exclude": exclude,
        "backbone": {part: metrics[part][("backbone", 1.0)] for part in ("val", "test")},
        "grid": [{"norm": n, "gamma": g, "val": metrics["val"][(n, g)], "test": metrics["test"][(n, g)]}
                 for n in norms for g in gammas],
        "tuned": {"norm": norm, "gamma": gamma, "val": metrics["val"][(norm, gamma)],
                  "test": metrics["test"][(norm, gamma)]},
    }
    return summary, test_ranks[(norm, gamma)]
