"""The causal self-attention backbone (SASRec's network, Kang & McAuley 2018) shared by SASRec, CL4SRec and DuoRec:
the causal counterpart of cloze.py. A backbone file builds on this module, never on another backbone's file (a
stage template's deps are the union of its backbones' code: tests/test_stage_deps.py).

Next-item prediction at every position; scores are dot products with the (tied) item embeddings. `loss: bce` is
the SASRec paper's objective (one sampled negative per position, as in the checkpoint the GlobalDiff authors
used); `loss: ce` is full softmax cross-entropy over all items.

`readout: mask` reproduces the GlobalDiff authors' evaluation: the window's last L-1 items are followed by a
[MASK] slot whose embedding is never trained, and the state read there predicts the next item (and, in
diffusion training, the hidden item). `readout: last` (SASRec paper) reads the state of the last real item.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from globaldiff.backbones.base import Backbone, right_align
from globaldiff.backbones.layers import TransformerEncoder


class CausalBackbone(Backbone):
    """Pre-norm causal transformer (ReLU feed-forward of width `hidden`) with tied item embeddings as the output
    layer, trained on next-item prediction at every position (SASRec's layout and objective)."""

    causal = True

    def __init__(self, num_items: int, max_len: int, hidden: int = 64, blocks: int = 2, heads: int = 1,
                 dropout: float = 0.2, loss: str = "ce", readout: str = "last"):
        super().__init__(num_items, max_len, hidden)
        what = type(self).__name__
        if loss not in ("ce", "bce"):
            raise ValueError(f"{what} loss {loss!r}: expected 'ce' or 'bce'")
        if readout not in ("last", "mask"):
            raise ValueError(f"{what} readout {readout!r}: expected 'last' or 'mask'")
        self.blocks, self.heads, self.loss, self.readout = blocks, heads, loss, readout
        self.encoder = TransformerEncoder(num_items, max_len, hidden, blocks, heads, hidden, dropout, causal=True)

    def encode(self, seqs: torch.Tensor) -> torch.Tensor:
        return self.encoder(seqs)

    def item_scores(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.encoder.items.weight[: self.num_items + 1].T

    def next_item_input(self, windows: torch.Tensor) -> torch.Tensor:
        if self.readout == "last":
            return windows
        return torch.cat([windows[:, 1:], torch.full_like(windows[:, :1], self.mask_id)], dim=1)

    def masked_input(self, windows: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.readout == "last":
            return super().masked_input(windows, pos)
        seqs = windows.clone()
        seqs[torch.arange(len(seqs), device=seqs.device), pos] = self.mask_id
        return right_align(seqs, pos + 1), torch.full_like(pos, windows.shape[1] - 1)

    def next_item_loss(self, windows: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """SASRec's objective on windows [B, L+1]: each position of windows[:, :-1] predicts the item after it."""
        inputs, targets = windows[:, :-1], windows[:, 1:]
        h = self.encode(inputs)
        keep = (inputs != 0) & (targets != 0)
        h, targets = h[keep], targets[keep]
        if self.loss == "ce":
            logits = self.item_scores(h)
            logits[:, 0] = float("-inf")
            return F.cross_entropy(logits, targets)
        negatives = torch.randint(1, self.num_items + 1, targets.shape, generator=generator,
                                  device=targets.device)
        # F.embedding, not emb[idx]: on CPU the backward of an index gather accumulates repeated ids with parallel
        # atomic adds, in a different order each run, so the same seed would not give the same model
        emb = self.encoder.items.weight
        pos_logit = (h * F.embedding(targets, emb)).sum(-1)
        neg_logit = (h * F.embedding(negatives, emb)).sum(-1)
        return F.binary_cross_entropy_with_logits(pos_logit, torch.ones_like(pos_logit)) + \
            F.binary_cross_entropy_with_logits(neg_logit, torch.zeros_like(neg_logit))

    def training_loss(self, windows: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.next_item_loss(windows, generator)

    def config(self) -> dict:
        return {**super().config(), "blocks": self.blocks, "heads": self.heads, "loss": self.loss,
                "readout": self.readout}
