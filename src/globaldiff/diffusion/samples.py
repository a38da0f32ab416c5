"""Training samples for the diffusion model (paper Section 3.3 step 2, equations 2-3).

A window is a [B, L] tensor of item ids (0 = padding); `pos` [B] is the masked position i of each row.
"""

from __future__ import annotations

import torch


def position_weights(length: int, pos: torch.Tensor, zeta: float, delta: float, rule: str) -> torch.Tensor:
    """Eq. (3) re-weighting factor for every position j of a window masked at i = pos: [B, L].

    rule 'paper': zeta / |i - j| + delta (inf at j = i, which eq. (3) never uses).
    rule 'code':  zeta / (|i - j| + 1) + delta, applied at every j (the authors' implementation).
    """
    j = torch.arange(length, device=pos.device)
    distance = (j[None, :] - pos[:, None]).abs().to(torch.float32)
    if rule == "paper":
        return zeta / distance + delta
    if rule == "code":
        return zeta / (distance + 1.0) + delta
    raise ValueError(f"unknown sample rule {rule!r}: expected 'paper' or 'code'")


def target_probabilities(sim_rows: torch.Tensor, windows: torch.Tensor, pos: torch.Tensor,
                         zeta: float, delta: float, rule: str = "paper") -> torch.Tensor:
    """Equations (2)-(3): q^{u,i} over item ids 0..M for a batch of masked windows.

    sim_rows: A[s_i, :] for each row, [B, M+1] (eq. 2). For every window item s_j != s_i (padding skipped):
    q[s_j] = min((zeta/|i-j| + delta) * A[s_i, s_j], 1) (eq. 3); an item repeated in the window takes the
    largest of its values (its nearest occurrence). Rule 'paper' sets q[s_i] = 1 (A[s_i, s_i] = 1 for any
    item seen in training); rule 'code' re-weights every j including i, as the authors' code does.
    Returns q in [0, 1] with q[:, 0] = 0.
    """
    q = sim_rows.clone()
    rows = torch.arange(len(windows), device=windows.device)
    target = windows[rows, pos]
    weights = position_weights(windows.shape[1], pos, zeta, delta, rule)
    values = torch.clamp(weights * sim_rows.gather(1, windows), max=1.0)
    keep = windows != 0
    if rule == "paper":
        keep &= windows != target[:, None]
    values = torch.where(keep, values, torch.full_like(values, -1.0))
    # amax over repeated items; entries not kept carry -1 and are scattered to column 0, reset below.
    index = torch.where(keep, windows, torch.zeros_like(windows))
    q.scatter_reduce_(1, index, values, reduce="amax", include_self=False)
    q = q.clamp(0.0, 1.0)
    if rule == "paper":
        q[rows, target] = 1.0
    q[:, 0] = 0.0
    return q


def bernoulli_targets(q: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """x^0 ~ Bernoulli(q), redrawn every time a sample is used (Section 3.3)."""
    return torch.bernoulli(q, generator=generator)
