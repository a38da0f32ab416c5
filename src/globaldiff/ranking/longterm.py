"""Long-term prediction (paper Figure 3): on the `longterm` split (train [:-5], val [-5], test [-4:]) the
backbone and the diffusion model are trained and selected as in the main run; then, from the one fixed input
window that ends at the validation item, the P-th future item (P = 1..4) is ranked among all items.

The authors' code does not implement this; the protocol follows the paper's description.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from globaldiff.data.sequences import Split
from globaldiff.ranking.metrics import summarise
from globaldiff.ranking.fused import user_ranks
from globaldiff.data.windows import EvalSet, evaluation_sets


def horizon_sets(split: Split, length: int) -> list[EvalSet]:
    """One EvalSet per horizon P = 1..4: the same fixed input windows (the last `length` items up to and
    including the validation item), target = test[:, P-1]."""
    _, test = evaluation_sets(split.train, split.val, split.test, length)
    return [EvalSet(test.windows, torch.as_tensor(split.test[:, p], dtype=torch.long), test.histories)
            for p in range(split.test.shape[1])]


def evaluate_horizons(scores: Mapping[str, np.ndarray], split: Split, length: int, gamma: float, norm: str,
                      exclude: str) -> dict[str, dict[str, dict[str, float]]]:
    """{"P1".."P4": {backbone | diffusion | fusion: {metric: value}}} from the cached test score matrices."""
    logits, x0_hat = torch.from_numpy(scores["test_logits"]), torch.from_numpy(scores["test_x0"])
    return {f"P{p + 1}": {model: summarise(r) for model, r in
                          user_ranks(logits, x0_hat, evalset, gamma, norm, exclude).items()}
            for p, evalset in enumerate(horizon_sets(split, length))}
