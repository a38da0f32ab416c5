"""Caser (Tang & Wang, WSDM 2018, "Personalized Top-N Sequential Recommendation via Convolutional Sequence
Embedding").

The last L items form an L x d "image" of their embeddings. Horizontal convolutions (n_h filters of each
height 1..L, spanning all d columns, ReLU) are max-pooled over time; vertical convolutions (n_v filters of
L x 1) take weighted sums of the L rows. Both are concatenated -> dropout -> fully connected + ReLU -> z, and
the scores are W' z + b', with output item embeddings W' and biases b' separate from the input ones (the
paper's output layer).

Adaptations to this repo:
- No user embedding: the interface sees windows, not user ids, so the paper's [z ; P_u] is just z (as in
  sequence-only evaluations of Caser); W' is d-dimensional instead of 2d.
- One next item (T = 1, as RecBole), not the paper's T = 3 targets.
- Per-position states (what `encode` returns): h_i is Caser run on the last L items up to position i,
  right-aligned in its L slots with zero rows before the window's start, so h_{L-1} is Caser's z for the
  window and every h_i sees only the past (causal). All L prefixes share one pass: the window gets L-1 zero
  rows in front, the vertical filter slides over it, and each horizontal map is max-pooled over the L-h+1
  spans that lie inside each prefix. Padding rows are zero (masked), like the zero rows of a short prefix;
  padding positions output exactly 0, and the guidance mean is the mean of the prefix states.
- Training: each window [L+1] gives L (prefix, next item) pairs, the paper's sliding windows of length L
  truncated at the window start. `loss: ce` (default) is full-softmax cross-entropy, as every other backbone
  here, so that the Table 2 comparison differs in the encoder only; `loss: bce` is the paper's objective,
  log-sigmoid of the target and of 3 negatives (the authors' code's count), drawn uniformly from all items
  (theirs: from the items the user never rated; the interface has no user).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from globaldiff.backbones.base import Backbone
from globaldiff.backbones.layers import Dropout

NEGATIVES = 3  # per target, loss bce (the authors' code: neg_samples = 3)


class Caser(Backbone):
    causal = True

    def __init__(self, num_items: int, max_len: int, hidden: int = 64, n_v: int = 4, n_h: int = 16,
                 dropout: float = 0.5, loss: str = "ce"):
        super().__init__(num_items, max_len, hidden)
        if loss not in ("ce", "bce"):
            raise ValueError(f"Caser loss {loss!r}: expected 'ce' or 'bce'")
        if n_v < 1 or n_h < 1:
            raise ValueError(f"Caser n_v {n_v}, n_h {n_h}: expected at least 1 filter of each kind")
        self.n_v, self.n_h, self.loss = n_v, n_h, loss
        self.items = nn.Embedding(num_items + 1, hidden, padding_idx=0)      # input E (ids 0..M; no [MASK])
        self.vertical = nn.Conv1d(1, n_v, max_len)                           # over time, per embedding column
        self.horizontal = nn.ModuleList(nn.Conv1d(hidden, n_h, h) for h in range(1, max_len + 1))
        self.drop = Dropout(dropout)
        self.fc = nn.Linear(n_v * hidden + n_h * max_len, hidden)
        self.out_items = nn.Embedding(num_items + 1, hidden)                 # W'
        self.out_bias = nn.Embedding(num_items + 1, 1)                       # b'
        # the authors' initialisation: N(0, 1/d) embeddings, zero output biases, torch defaults elsewhere
        for emb in (self.items, self.out_items):
            nn.init.normal_(emb.weight, std=1.0 / hidden)
        nn.init.zeros_(self.out_bias.weight)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def encode(self, seqs: torch.Tensor) -> torch.Tensor:
        batch, length = seqs.shape
        keep = (seqs != 0).unsqueeze(-1).to(self.items.weight.dtype)
        e = self.items(seqs) * keep                                           # padding rows exactly zero
        # L-1 zero rows before the window: prefix i occupies columns i .. i+L-1 of `ext` (its L slots)
        ext = F.pad(e.transpose(1, 2), (self.max_len - 1, 0))                 # [B, d, L-1+len]
        v = self.vertical(ext.reshape(batch * self.hidden, 1, -1))            # [B*d, n_v, len]
        v = v.view(batch, self.hidden, self.n_v, length).permute(0, 3, 2, 1).reshape(batch, length, -1)
        pooled = []
        for h, conv in enumerate(self.horizontal, start=1):
            spans = F.relu(conv(ext))                                         # every h-row span of ext
            # the spans inside prefix i start at columns i .. i+L-h: a sliding max of width L-h+1
            pooled.append(F.max_pool1d(spans, self.max_len - h + 1, stride=1))
        feats = torch.cat([v, torch.cat(pooled, 1).transpose(1, 2)], -1)      # [B, len, n_v*d + n_h*L]
        return F.relu(self.fc(self.drop(feats))) * keep

    def item_scores(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, self.out_items.weight, self.out_bias.weight[:, 0])

    def training_loss(self, windows: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        inputs, targets = windows[:, :-1], windows[:, 1:]
        h = self.encode(inputs)
        keep = (inputs != 0) & (targets != 0)
        h, targets = h[keep], targets[keep]
        if self.loss == "ce":
            logits = self.item_scores(h)
            logits[:, 0] = float("-inf")
            return F.cross_entropy(logits, targets)
        negatives = torch.randint(1, self.num_items + 1, (len(targets), NEGATIVES), generator=generator,
                                  device=targets.device)
        items = torch.cat([targets[:, None], negatives], 1)
        # F.embedding, not weight[idx]: a deterministic backward on CPU for repeated ids (see sasrec.py)
        logits = (h[:, None] * F.embedding(items, self.out_items.weight)).sum(-1) + \
            F.embedding(items, self.out_bias.weight).squeeze(-1)
        pos, neg = logits[:, 0], logits[:, 1:]
        return F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos)) + \
            F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg))

    def config(self) -> dict:
        return {**super().config(), "n_v": self.n_v, "n_h": self.n_h, "loss": self.loss}
