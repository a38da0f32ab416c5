"""Full-ranking evaluation (paper Section 4.2): exclusion masks, ranks, HR@K, NDCG@K, paired tests."""

from __future__ import annotations

import numpy as np
import torch

from globaldiff import ConfigError


EXCLUDE = ("window", "history", "none")


def exclusion_mask(num_items: int, windows: torch.Tensor, histories: list[np.ndarray] | None = None,
                   mode: str = "window") -> torch.Tensor:
    """Boolean [B, M+1]: True where an item must not be recommended.

    Padding (id 0) always; 'window' adds the items of the model's input window (the authors' protocol);
    'history' adds every item of the user's history; 'none' adds nothing.
    """
    mask = torch.zeros(len(windows), num_items + 1, dtype=torch.bool)
    if mode == "window":
        mask.scatter_(1, windows.cpu(), True)
    elif mode == "history":
        if histories is None:
            raise ValueError("exclude 'history' needs the users' histories")
        for row, items in enumerate(histories):
            mask[row, torch.as_tensor(items, dtype=torch.long)] = True
    elif mode != "none":
        raise ValueError(f"unknown exclusion {mode!r}: expected one of {EXCLUDE}")
    mask[:, 0] = True
    return mask


def target_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1-based rank of each target among all items: 1 + items scored higher + tied items with a lower id.

    Ties are broken by item id, so a constant score vector ranks the target by its id, never first for free.
    NaN scores are refused (ConfigError): a NaN compares false with everything, so it would rank anywhere.
    """
    if scores.numel() and torch.isnan(scores.amax()):   # amax propagates NaN: one pass, no [B, M+1] temporary
        nan = torch.isnan(scores).any(dim=1)
        raise ConfigError(f"scores: NaN in {int(nan.sum())} of {len(scores)} users' rows (a diverged model or a "
                          f"corrupt score matrix): NaN never becomes a metric; re-run the stage that made them")
    target_scores = scores.gather(1, targets[:, None])
    lower_id = torch.arange(scores.shape[1], device=scores.device)[None, :] < targets[:, None]
    # int32 sums (M < 2^31): summing the booleans as int64 would first copy them to an int64 matrix
    higher = (scores > target_scores).sum(dim=1, dtype=torch.int32)
    tied_below = ((scores == target_scores) & lower_id).sum(dim=1, dtype=torch.int32)
    return 1 + higher.long() + tied_below.long()


def hit_rate(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per-user HR@K: 1 when the target is in the top K."""
    return (np.asarray(ranks) <= k).astype(np.float64)


def ndcg(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per-user NDCG@K with one relevant item: 1 / log2(rank + 1) inside the top K, else 0."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return np.where(ranks <= k, 1.0 / np.log2(ranks + 1.0), 0.0)


def summarise(ranks: np.ndarray, ks=(10, 20)) -> dict[str, float]:
    """Mean HR@K and NDCG@K over every user (none dropped)."""
    out = {}
    for k in ks:
        out[f"HR@{k}"] = float(hit_rate(ranks, k).mean())
        out[f"NDCG@{k}"] = float(ndcg(ranks, k).mean())
    return out


def masked_ranks(scores: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """Ranks of the targets after setting excluded items to -inf; an excluded target is never a hit."""
    mask, targets = mask.to(scores.device), targets.to(scores.device)
    ranks = target_ranks(scores.masked_fill(mask, float("-inf")), targets)
    excluded = mask.gather(1, targets[:, None])[:, 0]
    return torch.where(excluded, torch.iinfo(torch.int64).max, ranks).cpu().numpy()
