"""LightSANs (Fan et al., SIGIR 2021, "Lighter and Better: Low-Rank Decomposed Self-Attention Networks for
Next-Item Recommendation").

A post-norm transformer (RecBole's layout: residual, dropout, LayerNorm; GELU feed-forward) whose attention
has two parts, summed before the output projection:
- low-rank decomposed self-attention: the keys and the values of the L positions are each aggregated into
  k latent interests (item-to-interest aggregation: a softmax over the positions of (K theta), one theta of
  d x k for the keys and one for the values), and each position's query attends over the k interests
  instead of the L items;
- decoupled position encoding: the position embeddings alone (LayerNorm, their own query/key projections,
  scale 1/sqrt(2 d_head): the authors' attn_scale_factor 2; their code divides by sqrt(d_head) once more)
  give a position-to-position attention over the per-position values. Positions never enter the item
  embeddings.
Scores are dot products with the (tied) item embeddings; full-softmax cross-entropy.

Causality, as in the paper and RecBole: no mask inside the window (the interests mix all its items), the
state of the last position predicts the next item, and training feeds each prefix as its own sequence
(RecBole's prefix augmentation). Here that is the item after each training window, predicted from h at L-1,
so `train.stride: 1` makes every train item a target once per epoch (as SR-GNN). The class is `causal` for
the base class (next-item readout at L-1, guidance from the prefix before the hidden item), but its earlier
positions see later items of the same window. Adaptations: padding (id 0) is excluded from the aggregation
softmax and is never a key of the position attention, and padding positions output exactly 0; softmaxes are
row-wise (each query's weights sum to 1, as the paper writes them; the authors' code normalises over the
query axis instead); with right-aligned windows position L-1 is always the last item.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from globaldiff.backbones.base import Backbone
from globaldiff.backbones.layers import Dropout

EPS = 1e-12  # LayerNorm epsilon of the authors and RecBole


def masked_softmax(logits: torch.Tensor, allowed: torch.Tensor, dim: int) -> torch.Tensor:
    """Softmax over `dim` with weight exactly 0 where not `allowed` (a row with nothing allowed: all 0)."""
    weights = torch.softmax(logits.masked_fill(~allowed, torch.finfo(logits.dtype).min), dim)
    return weights.masked_fill(~allowed, 0.0)


class LightAttention(nn.Module):
    """Low-rank item attention + decoupled position attention, then residual and LayerNorm."""

    def __init__(self, hidden: int, heads: int, interests: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.theta = nn.Parameter(torch.randn(2, hidden, interests))     # keys, values (authors: N(0, 1))
        self.pos_norm = nn.LayerNorm(hidden, eps=EPS)
        self.pos_qk = nn.Linear(hidden, 2 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.attn_drop, self.drop = Dropout(dropout), Dropout(dropout)
        self.norm = nn.LayerNorm(hidden, eps=EPS)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        dh = d // self.heads
        heads = lambda t: t.reshape(t.shape[0], -1, self.heads, dh).transpose(1, 2)   # [B, h, *, dh]
        q, k, v = self.qkv(x).chunk(3, -1)
        # item-to-interest: interest c = sum_j softmax_j(k_j theta_c) k_j over the real positions j
        interests = [masked_softmax(t @ theta, real[:, :, None], 1).transpose(1, 2) @ t
                     for t, theta in ((k, self.theta[0]), (v, self.theta[1]))]      # [B, k, d] each
        ki, vi = heads(interests[0]), heads(interests[1])
        att = self.attn_drop(torch.softmax(heads(q) @ ki.transpose(-1, -2) / dh ** 0.5, -1))  # [B, h, L, k]
        pq, pk = (heads(t[None]) for t in self.pos_qk(self.pos_norm(pos)).chunk(2, -1))     # [1, h, L, dh]
        pos_att = masked_softmax(pq @ pk.transpose(-1, -2) / (2 * dh) ** 0.5, real[:, None, None, :], -1)
        ctx = att @ vi + pos_att @ heads(v)                                  # [B, h, L, dh]
        return self.norm(x + self.drop(self.out(ctx.transpose(1, 2).reshape(b, n, d))))


class Block(nn.Module):
    def __init__(self, hidden: int, heads: int, interests: int, ffn: int, dropout: float):
        super().__init__()
        self.attn = LightAttention(hidden, heads, interests, dropout)
        self.ffn = nn.Sequential(nn.Linear(hidden, ffn), nn.GELU(), nn.Linear(ffn, hidden), Dropout(dropout))
        self.norm = nn.LayerNorm(hidden, eps=EPS)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        x = self.attn(x, pos, real)
        return self.norm(x + self.ffn(x))


class LightSANs(Backbone):
    causal = True

    def __init__(self, num_items: int, max_len: int, hidden: int = 64, blocks: int = 2, heads: int = 2,
                 interests: int = 5, ffn: int = 256, dropout: float = 0.2):
        super().__init__(num_items, max_len, hidden)
        if interests < 1 or blocks < 1 or hidden % heads:
            raise ValueError(f"LightSANs interests {interests}, blocks {blocks}: expected at least 1; "
                             f"heads {heads} must divide hidden {hidden}")
        self.blocks, self.heads, self.interests, self.ffn = blocks, heads, interests, ffn
        self.items = nn.Embedding(num_items + 1, hidden, padding_idx=0)     # ids 0..M (no [MASK])
        self.positions = nn.Embedding(max_len, hidden)
        self.norm, self.drop = nn.LayerNorm(hidden, eps=EPS), Dropout(dropout)
        self.layers = nn.ModuleList(Block(hidden, heads, interests, ffn, dropout) for _ in range(blocks))
        # RecBole's initialisation: N(0, 0.02) weights, zero biases (theta keeps its N(0, 1))
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def encode(self, seqs: torch.Tensor) -> torch.Tensor:
        real = seqs != 0
        keep = real.unsqueeze(-1).to(self.items.weight.dtype)
        x = self.drop(self.norm(self.items(seqs))) * keep
        pos = self.positions.weight[: seqs.shape[1]]
        for layer in self.layers:
            x = layer(x, pos, real) * keep
        return x

    def item_scores(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.items.weight.T

    def training_loss(self, windows: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        inputs, targets = windows[:, :-1], windows[:, -1]
        keep = (targets != 0) & (inputs[:, -1] != 0)      # right-aligned: a real last input = a real window
        logits = self.item_scores(self.encode(inputs[keep])[:, -1])
        logits[:, 0] = float("-inf")
        return F.cross_entropy(logits, targets[keep])

    def config(self) -> dict:
        return {**super().config(), "blocks": self.blocks, "heads": self.heads, "interests": self.interests,
                "ffn": self.ffn}
