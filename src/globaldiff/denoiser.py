"""The reverse approximator f_theta(x_t, t, c) of eq. (6), and its guidance variants (Figure 4).

guidance 'full':   c = [h_i, mean_j h_j]   (eq. 6)
guidance 'target': c = h_i                 (Figure 4, "target representation only")
guidance 'none':   no c                    (Figure 4, "without guided representation")
"""

from __future__ import annotations

import math

import torch
from torch import nn

GUIDANCE = ("full", "target", "none")


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer steps t [B] -> [B, dim] (as in DDPM/DiffRec)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    return nn.functional.pad(emb, (0, dim - 2 * half))


def guidance_vector(h_target: torch.Tensor, h_mean: torch.Tensor, guidance: str) -> torch.Tensor | None:
    """c^{u,i} of eq. (6) for the chosen variant."""
    if guidance == "full":
        return torch.cat([h_target, h_mean], dim=1)
    if guidance == "target":
        return h_target
    if guidance == "none":
        return None
    raise ValueError(f"unknown guidance {guidance!r}: expected one of {GUIDANCE}")


class MLPDenoiser(nn.Module):
    """f_theta: [x_t -> Linear(M+1, H)] ++ [time embedding] ++ [c] -> MLP -> M+1 scores (a prediction of x_0)."""

    def __init__(self, num_items: int, hidden_dim: int, guidance: str, hidden: int = 512,
                 time_dim: int = 64, dropout: float = 0.1):
        super().__init__()
        if guidance not in GUIDANCE:
            raise ValueError(f"unknown guidance {guidance!r}: expected one of {GUIDANCE}")
        self.guidance, self.time_dim = guidance, time_dim
        cond_dim = {"full": 2 * hidden_dim, "target": hidden_dim, "none": 0}[guidance]
        self.embed_x = nn.Sequential(nn.Dropout(dropout), nn.Linear(num_items + 1, hidden))
        self.embed_t = nn.Linear(time_dim, time_dim)
        self.net = nn.Sequential(
            nn.Linear(hidden + time_dim + cond_dim, hidden), nn.Tanh(),
            nn.Linear(hidden, num_items + 1),
        )

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        parts = [self.embed_x(x_t), self.embed_t(timestep_embedding(t, self.time_dim))]
        if cond is not None:
            parts.append(cond)
        return self.net(torch.cat(parts, dim=1))
