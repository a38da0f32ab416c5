"""Per-user ranks of a run's three opinions, the backbone, the diffusion model and their eq. (8) fusion."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from globaldiff.ranking.ensemble import BackboneOpinion
from globaldiff.ranking.metrics import exclusion_mask, masked_ranks, summarise


@dataclass
class UserChunk:
    """One chunk of users: their rows, exclusion mask, targets and the backbone's half of eq. (8)."""

    rows: slice
    mask: torch.Tensor
    targets: torch.Tensor
    backbone: BackboneOpinion


def user_chunks(logits: torch.Tensor, evalset, exclude: str, chunk: int = 2048) -> Iterator[UserChunk]:
    """The users of `evalset` in chunks of `chunk`, each with what does not depend on the second opinion."""
    num_items = logits.shape[1] - 1
    for start in range(0, len(evalset.targets), chunk):
        rows = slice(start, start + chunk)
        histories = evalset.histories[rows] if evalset.histories is not None else None
        mask = exclusion_mask(num_items, evalset.windows[rows], histories, mode=exclude)
        yield UserChunk(rows, mask, evalset.targets[rows], BackboneOpinion(logits[rows], mask))


def user_ranks(logits: torch.Tensor, x0_hat: torch.Tensor, evalset, gamma: float, norm: str, exclude: str,
               controls: dict[str, torch.Tensor] | None = None, chunk: int = 2048) -> dict[str, np.ndarray]:
    """Each user's 1-based rank of the held-out item under the backbone, the diffusion model and their eq. (8)
    fusion, and the fusion with each control {name: scores} as 'fusion_<name>' (an excluded target gets
    int64 max: never a hit).

    Users go in chunks of `chunk`, so the masks and fused scores held at once are O(chunk x M) whatever the
    number of users. Counting the items scored above the target gives the exact rank for every K at the cost
    of one pass over the scores, as a top-K would, with ties broken by item id.
    """
    parts: dict[str, list[np.ndarray]] = {}
    for c in user_chunks(logits, evalset, exclude, chunk):
        scores = {"backbone": logits[c.rows], "diffusion": x0_hat[c.rows],
                  "fusion": c.backbone.fuse(x0_hat[c.rows], gamma, norm)}
        for name, second in (controls or {}).items():
            scores[f"fusion_{name}"] = c.backbone.fuse(second[c.rows], gamma, norm)
        for name, matrix in scores.items():
            parts.setdefault(name, []).append(masked_ranks(matrix, c.mask, c.targets))
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def evaluate_all(logits: torch.Tensor, x0_hat: torch.Tensor, evalset, gamma: float, norm: str,
                 exclude: str) -> dict[str, dict[str, float]]:
    """Metrics of the backbone alone, the diffusion model alone and their fusion."""
    return {name: summarise(ranks) for name, ranks in user_ranks(logits, x0_hat, evalset, gamma, norm, exclude).items()}


class FusedValidation:
    """evaluate_all for a fixed backbone and evaluation set, against any number of x0_hat (train_diffusion's
    validation passes): the masks, the backbone's masked softmax, its Borda ranks and its own ranks are
    computed once, so each pass only normalises, ranks and fuses x0_hat. Same numbers as evaluate_all."""

    def __init__(self, logits: torch.Tensor, evalset, exclude: str, chunk: int = 2048):
        self.chunks = list(user_chunks(logits, evalset, exclude, chunk))
        self.backbone = summarise(np.concatenate([masked_ranks(logits[c.rows], c.mask, c.targets)
                                                  for c in self.chunks]))

    def metrics(self, x0_hat: torch.Tensor, gamma: float, norm: str) -> dict[str, dict[str, float]]:
        diffusion, fusion = [], []
        for c in self.chunks:
            diffusion.append(masked_ranks(x0_hat[c.rows], c.mask, c.targets))
            fusion.append(masked_ranks(c.backbone.fuse(x0_hat[c.rows], gamma, norm), c.mask, c.targets))
        return {"backbone": dict(self.backbone), "diffusion": summarise(np.concatenate(diffusion)),
                "fusion": summarise(np.concatenate(fusion))}
