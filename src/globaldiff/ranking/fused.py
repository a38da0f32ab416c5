"""Per-user ranks of a run's three opinions, the backbone, the diffusion model and their eq. (8) fusion."""

from __future__ import annotations

import numpy as np
import torch

from globaldiff.ranking.ensemble import BackboneOpinion
from globaldiff.ranking.metrics import exclusion_mask, masked_ranks, summarise


def user_ranks(logits: torch.Tensor, x0_hat: torch.Tensor, evalset, gamma: float, norm: str, exclude: str,
               controls: dict[str, torch.Tensor] | None = None, chunk: int = 2048) -> dict[str, np.ndarray]:
    """Each user's 1-based rank of the held-out item under the backbone, the diffusion model and their eq. (8)
    fusion, and the fusion with each control {name: scores} as 'fusion_<name>' (an excluded target gets
    int64 max: never a hit).

    Users go in chunks of `chunk`, so the masks and fused scores held at once are O(chunk x M) whatever the
    number of users. Counting the items scored above the target gives the exact rank for every K at the cost
    of one pass over the scores, as a top-K would, with ties broken by item id.
    """
    num_items = logits.shape[1] - 1
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(evalset.targets), chunk):
        rows = slice(start, start + chunk)
        histories = evalset.histories[rows] if evalset.histories is not None else None
        mask = exclusion_mask(num_items, evalset.windows[rows], histories, mode=exclude)
        targets, y = evalset.targets[rows], logits[rows]
        backbone = BackboneOpinion(y, mask)
        scores = {"backbone": y, "diffusion": x0_hat[rows], "fusion": backbone.fuse(x0_hat[rows], gamma, norm)}
        for name, second in (controls or {}).items():
            scores[f"fusion_{name}"] = backbone.fuse(second[rows], gamma, norm)
        for name, matrix in scores.items():
            parts.setdefault(name, []).append(masked_ranks(matrix, mask, targets))
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def evaluate_all(logits: torch.Tensor, x0_hat: torch.Tensor, evalset, gamma: float, norm: str,
                 exclude: str) -> dict[str, dict[str, float]]:
    """Metrics of the backbone alone, the diffusion model alone and their fusion."""
    return {name: summarise(ranks) for name, ranks in user_ranks(logits, x0_hat, evalset, gamma, norm, exclude).items()}
