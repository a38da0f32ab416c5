"""GRU4Rec (Hidasi et al., ICLR 2016, "Session-based Recommendations with Recurrent Neural Networks").

A GRU reads the window item by item; its state after item i predicts item i+1. Layout as in the later GRU4Rec
papers and RecBole: item embedding -> dropout -> `blocks` stacked GRU layers of size `gru_hidden` -> a dense
layer back to the embedding size `hidden`. The scores are dot products with the item embeddings (tied, as in
RecBole; the original has a separate output layer), trained with full-softmax cross-entropy at every position
(the paper's session-parallel mini-batches also predict the next item at every step; its TOP1/BPR losses
over sampled negatives are not used).

Adapted to this repo's windows: the GRU has no biases (the paper's equations, Cho et al.'s GRU, and RecBole's
layer have none), so a zero input leaves a zero state exactly zero; padding embeddings are masked to zero,
hence the left padding of a window passes through the GRU without changing anything, and the state of each
real position depends only on the real items up to it (causal). Padding positions output exactly 0.
PyTorch's GRU applies the reset gate after the recurrent product (r * (U h)), not before (U (r * h)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from globaldiff.backbones.base import Backbone
from globaldiff.backbones.layers import Dropout


class GRU4Rec(Backbone):
    causal = True

    def __init__(self, num_items: int, max_len: int, hidden: int = 64, gru_hidden: int = 128, blocks: int = 1,
                 dropout: float = 0.3):
        super().__init__(num_items, max_len, hidden)
        if blocks < 1 or gru_hidden < 1:
            raise ValueError(f"GRU4Rec blocks {blocks}, gru_hidden {gru_hidden}: expected at least 1")
        self.gru_hidden, self.blocks = gru_hidden, blocks
        # ids 0..M: a causal backbone never receives [MASK], so an id beyond M is an error, not a silent row
        self.items = nn.Embedding(num_items + 1, hidden, padding_idx=0)
        self.drop = Dropout(dropout)                     # on the input embeddings (RecBole's emb_dropout)
        self.gru = nn.GRU(hidden, gru_hidden, num_layers=blocks, bias=False, batch_first=True)
        self.dense = nn.Linear(gru_hidden, hidden)
        # RecBole's initialisation (Glorot: the original Theano code's too), extended to every GRU layer
        nn.init.xavier_normal_(self.items.weight)
        for weight in self.gru.parameters():            # weights only: the layer has no biases
            nn.init.xavier_uniform_(weight)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def encode(self, seqs: torch.Tensor) -> torch.Tensor:
        keep = (seqs != 0).unsqueeze(-1).to(self.items.weight.dtype)
        # masked, not trusted to padding_idx: whatever row 0 holds, padding steps read an exact zero
        x = self.drop(self.items(seqs) * keep)
        out, _ = self.gru(x)
        return self.dense(out) * keep

    def item_scores(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.items.weight.T

    def training_loss(self, windows: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        inputs, targets = windows[:, :-1], windows[:, 1:]
        h = self.encode(inputs)
        keep = (inputs != 0) & (targets != 0)
        logits = self.item_scores(h[keep])
        logits[:, 0] = float("-inf")                     # padding is never a target
        return F.cross_entropy(logits, targets[keep])

    def config(self) -> dict:
        return {**super().config(), "gru_hidden": self.gru_hidden, "blocks": self.blocks}
