"""Per-user ranks of a run's three opinions, the backbone, the diffusion model and their eq. (8) fusion."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from globaldiff.ranking.ensemble import BackboneOpinion, fuse_halves
from globaldiff.ranking.metrics import exclusion_mask, masked_ranks, summarise


@dataclass
class UserChunk:
    """One chunk of users: their rows, exclusion mask, targets and the backbone's half of eq. (8)."""

    rows: slice
    mask: torch.Tensor
    targets: torch.Tensor
    backbone: BackboneOpinion


def chunk_masks(num_items: int, evalset, exclude: str, chunk: int = 2048) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor]]:
    """(rows, exclusion mask, targets) of the users of `evalset`, in chunks of `chunk`."""
    for start in range(0, len(evalset.targets), chunk):
        rows = slice(start, start + chunk)
        histories = evalset.histories[rows] if evalset.histories is not None else None
        yield rows, exclusion_mask(num_items, evalset.windows[rows], histories, mode=exclude), evalset.targets[rows]


def user_chunks(logits: torch.Tensor, evalset, exclude: str, chunk: int = 2048) -> Iterator[UserChunk]:
    """The users of `evalset` in chunks of `chunk`, each with what does not depend on the second opinion."""
    for rows, mask, targets in chunk_masks(logits.shape[1] - 1, evalset, exclude, chunk):
        yield UserChunk(rows, mask, targets, BackboneOpinion(logits[rows], mask))


def fused_name(second: str) -> str:
    """The name of the backbone's fusion with a second opinion: 'fusion' with x0_hat, 'fusion_<control>'."""
    return "fusion" if second == "diffusion" else f"fusion_{second}"


def opinion_halves(logits: torch.Tensor, seconds: dict[str, torch.Tensor], evalset, norm: str, exclude: str,
                   chunk: int = 2048) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """What eq. (8) needs of each opinion whatever gamma, and the ranks that do not depend on it: (halves, alone).

    halves: 'backbone' -> r(y) y of the masked softmax, and each second opinion {name: scores} -> r(x) x of its
    masked scores normalised by `norm`, float32 [users, M+1] (excluded items 0); alone: each user's target rank
    under the backbone alone and, when a second opinion is named 'diffusion', under x0_hat alone. The sorts (Borda
    ranks) are all here, so fused_ranks at any gamma is one weighted sum and one count per opinion."""
    halves: dict[str, list[np.ndarray]] = {}
    alone: dict[str, list[np.ndarray]] = {}
    for c in user_chunks(logits, evalset, exclude, chunk):
        halves.setdefault("backbone", []).append(c.backbone.half.cpu().numpy())
        alone.setdefault("backbone", []).append(masked_ranks(logits[c.rows], c.mask, c.targets))
        for name, scores in seconds.items():
            halves.setdefault(name, []).append(c.backbone.second(scores[c.rows], norm).cpu().numpy())
            if name == "diffusion":
                alone.setdefault(name, []).append(masked_ranks(scores[c.rows], c.mask, c.targets))
    return ({name: np.concatenate(parts) for name, parts in halves.items()},
            {name: np.concatenate(parts) for name, parts in alone.items()})


def fused_ranks(halves: dict[str, np.ndarray], evalset, gamma: float, exclude: str,
                chunk: int = 2048) -> dict[str, np.ndarray]:
    """Each user's 1-based target rank under eq. (8) at `gamma`, the backbone's half fused with each second
    opinion's (opinion_halves): {fused_name(name): ranks}. Excluded items never rank; an excluded target gets
    int64 max (never a hit)."""
    backbone = torch.from_numpy(halves["backbone"])
    seconds = {name: torch.from_numpy(half) for name, half in halves.items() if name != "backbone"}
    parts: dict[str, list[np.ndarray]] = {}
    for rows, mask, targets in chunk_masks(backbone.shape[1] - 1, evalset, exclude, chunk):
        for name, half in seconds.items():
            fused = fuse_halves(backbone[rows], half[rows], gamma)      # masked_ranks sets the excluded to -inf
            parts.setdefault(fused_name(name), []).append(masked_ranks(fused, mask, targets))
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def user_ranks(logits: torch.Tensor, x0_hat: torch.Tensor, evalset, gamma: float, norm: str, exclude: str,
               controls: dict[str, torch.Tensor] | None = None, chunk: int = 2048) -> dict[str, np.ndarray]:
    """Each user's 1-based rank of the held-out item under the backbone, the diffusion model and their eq. (8)
    fusion, and the fusion with each control {name: scores} as 'fusion_<name>' (an excluded target gets
    int64 max: never a hit): opinion_halves, then fused_ranks, as the opinions and evaluate stages do.

    Users go in chunks of `chunk`, so the masks and fused scores held at once are O(chunk x M) on top of the
    halves. Counting the items scored above the target gives the exact rank for every K at the cost of one pass
    over the scores, as a top-K would, with ties broken by item id.
    """
    halves, alone = opinion_halves(logits, {"diffusion": x0_hat, **(controls or {})}, evalset, norm, exclude, chunk)
    return {**alone, **fused_ranks(halves, evalset, gamma, exclude, chunk)}


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
