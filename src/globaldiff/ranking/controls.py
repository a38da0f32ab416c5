"""Controls for GlobalDiff's second opinion (beyond the paper): score vectors that use the global item
structure, or none, WITHOUT diffusion. Each takes the place of x0_hat in the same eq. (8) fusion, so a gain
that a control matches is not evidence for the diffusion model.

- `propagated`: y A, the backbone's softmax spread over the item-item similarity A in one step;
- `popularity`: each item's number of train interactions, the same for every user;
- `random`: uniform noise (a sanity check: fusing it must not help).
"""

from __future__ import annotations

import numpy as np
import torch

from globaldiff.config.schema import CHOICES
from globaldiff.diffusion.similarity import ItemSimilarity

CONTROLS = CHOICES["controls"]


def propagated_scores(logits: torch.Tensor, similarity: ItemSimilarity, batch: int = 1024) -> torch.Tensor:
    """softmax(y) A as [B, M+1] (padding column 0), in any form of A (dense, top-k, cluster-item)."""
    return torch.cat([similarity.propagate(torch.softmax(logits[start:start + batch], dim=1)).to(logits.dtype)
                      for start in range(0, len(logits), batch)])


def popularity_scores(train: list[np.ndarray], num_items: int, users: int) -> torch.Tensor:
    """Train interaction counts per item id (padding 0), repeated for `users` rows: [users, M+1]."""
    counts = np.bincount(np.concatenate([np.asarray(s, dtype=np.int64) for s in train]), minlength=num_items + 1)
    counts[0] = 0
    return torch.from_numpy(counts.astype(np.float32))[None, :].expand(users, -1)


def random_scores(users: int, num_items: int, seed: int) -> torch.Tensor:
    """Uniform(0, 1) scores [users, M+1] from their own generator (padding column 0)."""
    scores = torch.rand(users, num_items + 1, generator=torch.Generator().manual_seed(seed))
    scores[:, 0] = 0.0
    return scores


def control_scores(name: str, logits: torch.Tensor, similarity: ItemSimilarity, train: list[np.ndarray],
                   seed: int) -> torch.Tensor:
    """The control `name`'s score matrix for the users behind `logits` [N, M+1]."""
    users, num_items = logits.shape[0], logits.shape[1] - 1
    if name == "propagated":
        return propagated_scores(logits, similarity)
    if name == "popularity":
        return popularity_scores(train, num_items, users)
    if name == "random":
        return random_scores(users, num_items, seed)
    raise ValueError(f"unknown control {name!r}: expected one of {CONTROLS}")
