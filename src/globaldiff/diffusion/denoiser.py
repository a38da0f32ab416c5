"""The reverse approximator f_theta(x_t, t, c) of eq. (6), its guidance variants (Figure 4) and its two
networks.

guidance 'full':   c = [h_i, mean_j h_j]   (eq. 6)
guidance 'target': c = h_i                 (Figure 4, "target representation only")
guidance 'none':   no c                    (Figure 4, "without guided representation")

network 'mlp':  the paper's description, a multi-layer perceptron (the default);
network 'unet': the authors' code, a small two-level convolutional U-Net on a 16 x 16 map in the middle.
"""

from __future__ import annotations

import math

import torch
from torch import nn

GUIDANCE = ("full", "target", "none")
NETWORKS = ("mlp", "unet")


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

    @property
    def embed(self) -> nn.Linear:
        """The first layer, linear in x_t (after the input dropout)."""
        return self.embed_x[1]

    @property
    def head(self) -> nn.Linear:
        """The last layer, linear in the core's output: f = head(core(embed(x_t), t, c))."""
        return self.net[2]

    def core(self, e: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """Everything between the two linear ends, from e = embed(x_t) to the head's input."""
        parts = [e, self.embed_t(timestep_embedding(t, self.time_dim))]
        if cond is not None:
            parts.append(cond)
        return self.net[1](self.net[0](torch.cat(parts, dim=1)))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        return self.head(self.core(self.embed_x(x_t), t, cond))


class UNetDenoiser(nn.Module):
    """f_theta as the authors' code builds it: x_t -> Linear(M+1, d) ++ c ++ time embedding -> Linear -> a
    1 x 16 x 16 map -> two-level U-Net (BatchNorm, LeakyReLU, dropout, one skip, sigmoid) -> Linear(256, d)
    -> Linear(d, M+1), where d is the backbone's hidden size."""

    side = 16

    def __init__(self, num_items: int, hidden_dim: int, guidance: str, time_dim: int = 64, dropout: float = 0.1,
                 channels: int = 16, unet_dropout: tuple[float, float] = (0.3, 0.4)):
        super().__init__()
        if guidance not in GUIDANCE:
            raise ValueError(f"unknown guidance {guidance!r}: expected one of {GUIDANCE}")
        self.guidance, self.time_dim = guidance, time_dim
        cond_dim = {"full": 2 * hidden_dim, "target": hidden_dim, "none": 0}[guidance]
        area = self.side * self.side
        self.embed_x = nn.Sequential(nn.Dropout(dropout), nn.Linear(num_items + 1, hidden_dim))
        self.to_map = nn.Linear(hidden_dim + cond_dim + time_dim, area)

        def block(c_in: int, c_out: int, p: float) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2),
                                 nn.Dropout(p))

        self.down = block(1, channels, 0.0)
        self.bottom = nn.Sequential(nn.MaxPool2d(2), block(channels, 2 * channels, unet_dropout[0]))
        self.up = nn.ConvTranspose2d(2 * channels, channels, 2, stride=2)
        self.merge = block(2 * channels, channels, unet_dropout[1])
        self.to_one = nn.Sequential(nn.Conv2d(channels, 1, 1), nn.Sigmoid())
        self.out = nn.Sequential(nn.Linear(area, hidden_dim), nn.Linear(hidden_dim, num_items + 1))

    @property
    def embed(self) -> nn.Linear:
        """The first layer, linear in x_t (after the input dropout)."""
        return self.embed_x[1]

    @property
    def head(self) -> nn.Linear:
        """The last layer, linear in the core's output: f = head(core(embed(x_t), t, c))."""
        return self.out[1]

    def core(self, e: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """Everything between the two linear ends, from e = embed(x_t) to the head's input."""
        parts = [e, timestep_embedding(t, self.time_dim).to(e.dtype)]
        if cond is not None:
            parts.append(cond)
        grid = self.to_map(torch.cat(parts, dim=1)).view(-1, 1, self.side, self.side)
        skip = self.down(grid)
        merged = self.merge(torch.cat([self.up(self.bottom(skip)), skip], dim=1))
        return self.out[0](self.to_one(merged).flatten(1))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        return self.head(self.core(self.embed_x(x_t), t, cond))


def build_denoiser(network: str, num_items: int, hidden_dim: int, guidance: str, hidden: int = 512,
                   time_dim: int = 64, dropout: float = 0.1, channels: int = 16) -> nn.Module:
    """The denoiser named by params `denoiser.network` ('mlp' uses `hidden`; 'unet' uses `channels`)."""
    if network == "mlp":
        return MLPDenoiser(num_items, hidden_dim, guidance, hidden, time_dim, dropout)
    if network == "unet":
        return UNetDenoiser(num_items, hidden_dim, guidance, time_dim, dropout, channels)
    raise ValueError(f"unknown denoiser network {network!r}: expected one of {NETWORKS}")
