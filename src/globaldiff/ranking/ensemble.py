"""Inference ensemble (paper Section 3.5, equation 8): normalisation and Borda-count fusion.

Score vectors are [B, M+1] over item ids 0..M; excluded items (padding, window items) carry -inf.
"""

from __future__ import annotations

import torch

NORMS = ("softmax", "l1", "l2")


def normalise(scores: torch.Tensor, kind: str) -> torch.Tensor:
    """Map scores to a distribution-like vector ('softmax', 'l1' or 'l2'); -inf entries become 0."""
    if kind == "softmax":
        return torch.softmax(scores, dim=1)
    finite = torch.where(torch.isfinite(scores), scores, torch.zeros_like(scores))
    if kind == "l1":
        return finite / finite.abs().sum(dim=1, keepdim=True).clamp(min=1e-12)
    if kind == "l2":
        return finite / finite.norm(dim=1, keepdim=True).clamp(min=1e-12)
    raise ValueError(f"unknown normalisation {kind!r}: expected one of {NORMS}")


def borda_ranks(scores: torch.Tensor) -> torch.Tensor:
    """r(.) of eq. (8) over the items 1..M: the highest-scored item gets M, the next M - 1, ..., the lowest 1.

    Column 0 (padding) gets rank 0. Ties are broken by item id (lower id ranks lower), deterministically.
    """
    items = scores[:, 1:]
    order = torch.argsort(items, dim=1, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(1, items.shape[1] + 1, device=scores.device).expand_as(order))
    return torch.cat([torch.zeros_like(ranks[:, :1]), ranks], dim=1).to(scores.dtype)


def check_gamma(gamma: float) -> None:
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma = {gamma}: expected a value in [0, 1]")


def borda_fusion(y: torch.Tensor, x0: torch.Tensor, gamma: float) -> torch.Tensor:
    """Eq. (8): score(i) = gamma * r(y_i) * y_i + (1 - gamma) * r(x_i) * x_i, for normalised y and x0_hat."""
    check_gamma(gamma)
    return gamma * borda_ranks(y) * y + (1.0 - gamma) * borda_ranks(x0) * x0


class BackboneOpinion:
    """The backbone's half of eq. (8) for a batch of users: the exclusion-masked softmax y and its Borda
    ranks r(y), computed once and fused with any number of second opinions (x0_hat, the controls)."""

    def __init__(self, logits: torch.Tensor, mask: torch.Tensor):
        self.mask = mask
        self.y = normalise(logits.masked_fill(mask, float("-inf")), "softmax")
        self.ranks = borda_ranks(self.y)

    def fuse(self, second: torch.Tensor, gamma: float, norm: str) -> torch.Tensor:
        """Eq. (8) with `second` normalised by `norm`; excluded items end at -inf."""
        check_gamma(gamma)
        x = normalise(second.masked_fill(self.mask, float("-inf")), norm)
        fused = gamma * self.ranks * self.y + (1.0 - gamma) * borda_ranks(x) * x
        return fused.masked_fill(self.mask, float("-inf"))


def fused_scores(logits: torch.Tensor, x0_hat: torch.Tensor, mask: torch.Tensor, gamma: float, norm: str) -> torch.Tensor:
    """Eq. (8) on normalised, exclusion-masked y and x0_hat; excluded items end at -inf."""
    return BackboneOpinion(logits, mask).fuse(x0_hat, gamma, norm)
