"""The InfoNCE objective shared by the contrastive causal backbones (CL4SRec, DuoRec)."""

from __future__ import annotations

import torch


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float, same: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE over the 2B views (a [B, d], b [B, d]): anchor a_i's positive is b_i and b_i's is a_i; every other
    view is a negative, except both views of each j != i with same[i, j] (false negatives, e.g. the same target
    item). Similarity = dot product / temperature. The mean over the 2B anchors."""
    batch = len(a)
    z = torch.cat([a, b])
    sim = (z @ z.T) / temperature
    drop = torch.eye(2 * batch, dtype=torch.bool, device=z.device)             # an anchor is not its own negative
    if same is not None:
        others = same & ~torch.eye(batch, dtype=torch.bool, device=z.device)
        drop = drop | others.repeat(2, 2)
    # diagonals, not sim[rows, cols]: a view's backward, no index accumulation (deterministic on CPU)
    positive = torch.cat([torch.diagonal(sim, batch), torch.diagonal(sim, -batch)])
    return (torch.logsumexp(sim.masked_fill(drop, float("-inf")), dim=1) - positive).mean()
