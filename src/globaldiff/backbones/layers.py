"""A small transformer encoder shared by the attention backbones (SASRec, BERT4Rec, CBiT)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def attention_mask(seqs: torch.Tensor, causal: bool) -> torch.Tensor:
    """Boolean [B, 1, L, L], True = may attend: never to padding keys, only backwards if causal.

    Every query may attend to itself so that padding rows stay finite (their outputs are zeroed later).
    """
    length = seqs.shape[1]
    allowed = (seqs != 0)[:, None, None, :].expand(-1, 1, length, -1)
    if causal:
        allowed = allowed & torch.ones(length, length, dtype=torch.bool, device=seqs.device).tril()
    return allowed | torch.eye(length, dtype=torch.bool, device=seqs.device)


class Dropout(nn.Module):
    """nn.Dropout's operation (in training, each entry is zeroed with probability p and the others are scaled by
    1 / (1 - p); the identity in evaluation) with the keep mask drawn as float32 uniforms >= p from the global
    generator: the same distribution as torch's Bernoulli kernel, 1.6-1.8x faster forward and backward on CPU
    (one thread, [2048, 10, 256]: 30 against 49 ms), another random stream. Deterministic for a seed."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability {p}: expected a value in [0, 1]")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.p == 1.0:
            return x * 0.0
        scale = (torch.rand(x.shape, device=x.device) >= self.p).to(x.dtype).mul_(1.0 / (1.0 - self.p))
        return x * scale

    def extra_repr(self) -> str:
        return f"p={self.p}"


def _init_weights(module: nn.Module) -> None:
    """Small normal initialisation (BERT's 0.02) so that tied item embeddings start with small logits."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            nn.init.zeros_(module.weight[module.padding_idx])


class SelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, length, d = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, length, d))


class Block(nn.Module):
    """Pre-norm transformer block (SASRec's layout; BERT4Rec's GELU feed-forward when act='gelu')."""

    def __init__(self, hidden: int, heads: int, ffn: int, dropout: float, act: str = "relu"):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.attn = SelfAttention(hidden, heads, dropout)
        self.ffn = nn.Sequential(nn.Linear(hidden, ffn), nn.GELU() if act == "gelu" else nn.ReLU(),
                                 Dropout(dropout), nn.Linear(ffn, hidden))
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), mask))
        return x + self.drop(self.ffn(self.norm2(x)))


class TransformerEncoder(nn.Module):
    """Item + learned position embeddings -> blocks -> final norm; padding positions output zeros."""

    def __init__(self, num_items: int, max_len: int, hidden: int, blocks: int, heads: int, ffn: int,
                 dropout: float, causal: bool, act: str = "relu"):
        super().__init__()
        self.causal = causal
        self.items = nn.Embedding(num_items + 2, hidden, padding_idx=0)  # ids 0..M+1 ([MASK] = M+1)
        self.positions = nn.Embedding(max_len, hidden)
        self.drop = Dropout(dropout)
        self.blocks = nn.ModuleList(Block(hidden, heads, ffn, dropout, act) for _ in range(blocks))
        self.norm = nn.LayerNorm(hidden)
        self.apply(_init_weights)

    def forward(self, seqs: torch.Tensor) -> torch.Tensor:
        keep = (seqs != 0).unsqueeze(-1).to(self.items.weight.dtype)
        pos = torch.arange(seqs.shape[1], device=seqs.device)
        x = self.drop(self.items(seqs) + self.positions(pos)) * keep
        mask = attention_mask(seqs, self.causal)
        for block in self.blocks:
            x = block(x, mask) * keep
        return self.norm(x) * keep
