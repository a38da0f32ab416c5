"""Cloze (masked-item) training shared by the bidirectional backbones, BERT4Rec and CBiT (Sun et al. 2019).

The encoder attends both ways; training hides random items and predicts them from both sides; at
inference the next item is a [MASK] appended after the last L-1 items (Backbone.next_item_input).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from globaldiff.backbones.base import Backbone
from globaldiff.backbones.layers import TransformerEncoder


def cloze_mask(seqs: torch.Tensor, prob: float, mask_id: int, num_items: int,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT4Rec's corruption of windows [B, L]: (inputs [B, L], labels [B, L]).

    Each real item is chosen with probability `prob`; a chosen item becomes [MASK] 80% of the time, a
    random item 10% and stays itself 10%. labels hold the chosen items' ids and 0 elsewhere. A window in
    which nothing was chosen gets its last item chosen, so that no window is wasted (with L = 10 and
    prob 0.15 that is one window in five).
    """
    real = seqs != 0
    draw = torch.rand(seqs.shape, generator=generator, device=seqs.device)
    chosen = real & (draw < prob)
    none = ~chosen.any(1) & real[:, -1]
    chosen[:, -1] |= none
    action = torch.rand(seqs.shape, generator=generator, device=seqs.device)
    random_items = torch.randint(1, num_items + 1, seqs.shape, generator=generator, device=seqs.device)
    inputs = torch.where(chosen & (action < 0.8), torch.full_like(seqs, mask_id), seqs)
    inputs = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_items, inputs)
    return inputs, torch.where(chosen, seqs, torch.zeros_like(seqs))


class ClozeBackbone(Backbone):
    """Bidirectional transformer (GELU feed-forward) with an untied output layer Linear(d -> M+1), the
    layout of the GlobalDiff authors' BERT4Rec/CBiT; trained with the cloze loss."""

    causal = False

    def __init__(self, num_items: int, max_len: int, hidden: int = 64, blocks: int = 2, heads: int = 2,
                 ffn: int = 256, dropout: float = 0.2, mask_prob: float = 0.15):
        super().__init__(num_items, max_len, hidden)
        if not 0.0 < mask_prob < 1.0:
            raise ValueError(f"mask_prob {mask_prob}: expected a probability in (0, 1)")
        self.blocks, self.heads, self.ffn, self.mask_prob = blocks, heads, ffn, mask_prob
        self.encoder = TransformerEncoder(num_items, max_len, hidden, blocks, heads, ffn, dropout,
                                          causal=False, act="gelu")
        self.head = nn.Linear(hidden, num_items + 1)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def encode(self, seqs: torch.Tensor) -> torch.Tensor:
        return self.encoder(seqs)

    def item_scores(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(h)

    def cloze_losses(self, seqs: torch.Tensor, generator: torch.Generator | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(per-label cross-entropy [n], the row of each label [n], hidden states [B, L, d]) for one cloze
        corruption of windows `seqs` [B, L]."""
        inputs, labels = cloze_mask(seqs, self.mask_prob, self.mask_id, self.num_items, generator)
        h = self.encode(inputs)
        chosen = labels != 0
        logits = self.item_scores(h[chosen])
        logits[:, 0] = float("-inf")
        rows = chosen.nonzero()[:, 0]
        return F.cross_entropy(logits, labels[chosen], reduction="none"), rows, h

    def training_loss(self, windows: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        losses, _, _ = self.cloze_losses(windows[:, 1:], generator)
        return losses.mean()

    def config(self) -> dict:
        return {**super().config(), "blocks": self.blocks, "heads": self.heads, "ffn": self.ffn}
