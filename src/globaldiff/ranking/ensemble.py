"""Inference ensemble (paper Section 3.5, equation 8): normalisation and Borda-count fusion.

Score vectors are [B, M+1] over item ids 0..M; excluded items (padding, window items) carry -inf.
"""

from __future__ import annotations

import numpy as np
import torch

from globaldiff import ConfigError

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


def check_no_nan(scores: torch.Tensor, what: str = "scores") -> None:
    """Refuse NaN scores (a diverged model or a corrupt score matrix): a NaN compares false with everything,
    so it would rank silently anywhere and become a metric."""
    if scores.numel() and torch.isnan(scores.amax()):   # amax propagates NaN: one pass, no [B, M+1] temporary
        rows = int(torch.isnan(scores).any(dim=1).sum())
        raise ConfigError(f"{what}: NaN in {rows} of {len(scores)} rows (a diverged model or a corrupt score "
                          f"matrix): re-run the stage that made them")


def order_keys(items: torch.Tensor) -> np.ndarray:
    """int64 sort keys [B, n] (numpy) of float32 scores [B, n]: the score's IEEE bits mapped to an order-preserving
    signed int32 in the high half, the column index in the low half. Ascending keys = ascending scores, equal
    scores by column; -0.0 counts as 0.0 and -inf lowest, as in a comparison sort. No NaN (check_no_nan first)."""
    values = (items.detach().to("cpu") + 0.0).numpy()                       # + 0.0: -0.0 -> 0.0
    if values.dtype != np.float32:
        raise TypeError(f"order_keys: float32 scores expected, got {values.dtype}")
    bits = values.view(np.int32)
    keys = np.empty(values.shape, dtype=np.int64)
    halves = keys.view(np.int32).reshape(*values.shape, 2)                  # little-endian: [low, high]
    np.bitwise_xor(bits, np.right_shift(bits, 31) & 0x7FFFFFFF, out=halves[..., 1])  # negatives: reverse order
    halves[..., 0] = np.arange(values.shape[1], dtype=np.int32)
    return keys


def _sort_rows(keys: np.ndarray) -> None:
    """Sort each row of `keys` in place, the rows split over torch's thread count (numpy's sort is one thread
    and releases the GIL; the result does not depend on the split)."""
    workers = min(torch.get_num_threads(), len(keys) // 256)
    if workers < 2:
        keys.sort(axis=1)
        return
    from concurrent.futures import ThreadPoolExecutor

    bounds = np.linspace(0, len(keys), workers + 1).astype(int)
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda i: keys[bounds[i]:bounds[i + 1]].sort(axis=1), range(workers)))


def borda_ranks(scores: torch.Tensor) -> torch.Tensor:
    """r(.) of eq. (8) over the items 1..M: the highest-scored item gets M, the next M - 1, ..., the lowest 1.

    Column 0 (padding) gets rank 0. Ties are broken by item id (lower id ranks lower), deterministically.
    One sort of packed (score, item id) int64 keys (order_keys) gives exactly the order of a stable argsort of
    the scores, in about a third of its time. NaN scores are refused (ConfigError).
    """
    check_no_nan(scores)
    items = scores[:, 1:]
    if scores.dtype == torch.float32:
        keys = order_keys(items)
        _sort_rows(keys)
        order = torch.from_numpy(keys.view(np.int32)[:, 0::2].astype(np.int64))  # columns, lowest score first
    else:                                        # other dtypes (tests): the stable argsort it replaces
        order = torch.argsort(items, dim=1, stable=True).cpu()
    ranks = torch.zeros(scores.shape, dtype=scores.dtype)
    ranks[:, 1:].scatter_(1, order, torch.arange(1, items.shape[1] + 1, dtype=scores.dtype).expand_as(order))
    return ranks.to(scores.device)


def check_gamma(gamma: float) -> None:
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma = {gamma}: expected a value in [0, 1]")


def borda_half(x: torch.Tensor) -> torch.Tensor:
    """One opinion's term of eq. (8) before its weight: r(x_i) * x_i for a normalised score vector x (excluded
    items, 0 after the normalisation, stay 0). It does not depend on gamma, so it can be computed once."""
    return borda_ranks(x) * x


def fuse_halves(backbone: torch.Tensor, second: torch.Tensor, gamma: float) -> torch.Tensor:
    """Eq. (8) from the two opinions' borda_half terms: gamma * r(y) y + (1 - gamma) * r(x) x. Every fusion of
    the study (validation, evaluation, the sweep) goes through this one expression, so they agree to the bit."""
    check_gamma(gamma)
    return gamma * backbone + (1.0 - gamma) * second


def borda_fusion(y: torch.Tensor, x0: torch.Tensor, gamma: float) -> torch.Tensor:
    """Eq. (8): score(i) = gamma * r(y_i) * y_i + (1 - gamma) * r(x_i) * x_i, for normalised y and x0_hat."""
    check_gamma(gamma)
    return fuse_halves(borda_half(y), borda_half(x0), gamma)


def opinion_half(scores: torch.Tensor, mask: torch.Tensor, norm: str) -> torch.Tensor:
    """A second opinion's borda_half: its scores with the excluded items masked, normalised by `norm`."""
    return borda_half(normalise(scores.masked_fill(mask, float("-inf")), norm))


class BackboneOpinion:
    """The backbone's half of eq. (8) for a batch of users, r(y) y of the exclusion-masked softmax y, computed
    once and fused with any number of second opinions (x0_hat, the controls), each prepared once (`second`) and
    fused at any number of gammas (`combine`)."""

    def __init__(self, logits: torch.Tensor, mask: torch.Tensor):
        self.mask = mask.to(logits.device)
        self.half = opinion_half(logits, self.mask, "softmax")

    def second(self, scores: torch.Tensor, norm: str) -> torch.Tensor:
        """A second opinion's half r(x) x (opinion_half, with this batch's exclusions): what eq. (8) needs of
        it whatever gamma."""
        return opinion_half(scores, self.mask, norm)

    def combine(self, second: torch.Tensor, gamma: float) -> torch.Tensor:
        """Eq. (8) at `gamma` with a prepared second opinion's half; excluded items end at -inf."""
        return fuse_halves(self.half, second, gamma).masked_fill(self.mask, float("-inf"))

    def fuse(self, second: torch.Tensor, gamma: float, norm: str) -> torch.Tensor:
        """Eq. (8) with `second` normalised by `norm`; excluded items end at -inf."""
        check_gamma(gamma)
        return self.combine(self.second(second, norm), gamma)


def fused_scores(logits: torch.Tensor, x0_hat: torch.Tensor, mask: torch.Tensor, gamma: float, norm: str) -> torch.Tensor:
    """Eq. (8) on normalised, exclusion-masked y and x0_hat; excluded items end at -inf."""
    return BackboneOpinion(logits, mask).fuse(x0_hat, gamma, norm)
