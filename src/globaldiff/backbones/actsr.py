"""AC-TSR (Zhou et al., "Attention Calibration for Transformer-based Sequential Recommendation", CIKM 2023) on
SASRec's causal transformer (causal.py): each block's attention weights pass through two calibrators.

- Spatial calibrator: a linear map of [q_i; k_j] (per head) gives an order logit o_ij and a distance estimate
  d_ij; the score q_i.k_j gains log p(the true order) (j after i or not, o_ij through a sigmoid) and the Gaussian
  log-likelihood -s^2 (log(1 + |i - j|) - d_ij)^2 / 2 of the true log-distance (s learned), before the
  1/sqrt(d) scaling and the softmax: weights A.
- Adversarial calibrator: a perturbation mask M = softmax((q W_q)(k W_k)^T / sqrt(d)) over the same keys. The
  perturbed weights softmax(A * M + eps * (1 - M)), eps ~ N(0, 1), replace A where M is small; the adversary's
  loss -L_rec(perturbed) + lambda * ||1 - M||_2 makes M small on the items whose perturbation hurts most (the
  useful ones) at little perturbation. The calibrated weights softmax(A * exp(1 - M)) raise those items
  (relatively lowering the unhelpful ones), mixed with A by a gate g = sigmoid(Linear(query)) per (query, key
  slot): softmax(g * A + (1 - g) * calibrated) is the block's attention.
Training loss: SASRec's next-item loss through the calibrated attention, plus the adversary's loss. Inference
is SASRec's (the calibrated stream; the perturbed one exists in training only).

Details follow the authors' RecBole code (AIM-SE/AC-TSR) and its configs, but for these choices:
- pre-norm blocks, ReLU FFN of width hidden, tied item embeddings: SASRec's layout here (the authors use
  RecBole's post-norm GELU blocks); attention dropout once, on the final weights.
- positions: false by default: the authors' configs switch learned position embeddings off (the spatial
  calibrator carries order and distance); true adds SASRec's.
- A, M, the perturbation and the mix act on softmax weights, as in the authors' code (not on raw scores), and
  the gate and the final renormalising softmax are theirs (combine_option 'gate'); their code's other combine
  options and their two_level: false variant are left out.
- the perturbed stream is the authors': the calibrated stream up to the last block, whose attention is
  perturbed; L_rec of both streams is SASRec's, at every position. ||1 - M||_2 is the Frobenius norm over the
  (query, key) pairs attention may use (the authors': over the whole tensor, padding and future pairs included,
  where M = 0 is a constant), averaged over blocks. The order term uses log-sigmoid (the authors:
  log(p + 1e-24)); s starts at 1 (the authors draw it from N(0, 1)).
- adversary: mask (default, ours): a min-max reading of the adversary: its loss reaches only the mask's W_q,
  W_k (M reads detached queries and keys; the perturbed branch uses detached weights), which also get L_rec's
  gradient through exp(1 - M); the rest of the network minimises L_rec alone. adversary: all is the authors'
  code, one optimiser on the sum, where every parameter also descends -L_rec(perturbed), i.e. learns to be
  hurt by the perturbation: a term unbounded below.
With spatial: false, adversarial: false and positions: true, the model is SASRec on the same seed (the same
weights, states and loss).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from globaldiff.backbones.causal import CausalBackbone
from globaldiff.backbones.layers import Dropout, _init_weights, attention_mask


def masked_softmax(scores: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    return torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)


def call(module: nn.Module, frozen: bool, *args):
    """module(*args); with `frozen`, through detached copies of its parameters (no gradient reaches them)."""
    if not frozen:
        return module(*args)
    return functional_call(module, {n: p.detach() for n, p in module.named_parameters()}, args)


class Calibrator(nn.Module):
    """One block's calibrator parameters; none for a calibrator that is off."""

    def __init__(self, hidden: int, heads: int, max_len: int, spatial: bool, adversarial: bool):
        super().__init__()
        self.heads, dh = heads, hidden // heads
        if spatial:
            self.pair = nn.Linear(2 * dh, 2)              # [q_i; k_j] -> (order logit, log-distance estimate)
            self.spread = nn.Parameter(torch.ones(1))     # s of the distance term
        if adversarial:
            self.mask_q, self.mask_k = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)
            self.gate = nn.Linear(hidden, max_len)
        self.apply(_init_weights)

    def spatial_terms(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """log p(order) + log p(distance) [B, H, L, L] of queries, keys [B, H, L, dh] (the map of [q_i; k_j] is
        linear: its q part plus its k part)."""
        dh, length = q.shape[-1], q.shape[-2]
        w = self.pair.weight
        pair = (q @ w[:, :dh].T)[..., :, None, :] + (k @ w[:, dh:].T)[..., None, :, :] + self.pair.bias
        order, dist = pair.unbind(-1)
        idx = torch.arange(length, device=q.device)
        after = idx[None, :] > idx[:, None]                                      # key j after query i
        gap = torch.log1p((idx[None, :] - idx[:, None]).abs().to(q.dtype))
        order_term = torch.where(after, F.logsigmoid(order), F.logsigmoid(-order))
        return order_term - 0.5 * self.spread ** 2 * (gap - dist) ** 2

    def mask(self, mq: torch.Tensor, mk: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """Perturbation mask M [B, H, L, L] from the (all-head) query and key projections [B, L, d]."""
        b, length, d = mq.shape
        qa, ka = (lin(x).view(b, length, self.heads, -1).transpose(1, 2)
                  for lin, x in ((self.mask_q, mq), (self.mask_k, mk)))
        return masked_softmax(qa @ ka.transpose(-1, -2) / math.sqrt(d // self.heads), allowed)


class CalibratedBlock(nn.Module):
    """SASRec's block (layers.Block: its modules, under their names) with calibrated attention weights."""

    def __init__(self, block: nn.Module, cal: Calibrator, frozen: bool):
        super().__init__()
        self.norm1, self.norm2 = block.norm1, block.norm2          # Block's order: the same state_dict keys
        self.attn, self.ffn, self.drop = block.attn, block.ffn, block.drop
        self.cal, self.frozen, self.attn_drop = cal, frozen, Dropout(block.attn.dropout)

    def output(self, x, weights, v, frozen=False):
        y = (self.attn_drop(weights) @ v).transpose(1, 2).reshape(x.shape)
        x = x + self.drop(call(self.attn.out, frozen, y))
        return x + self.drop(call(self.ffn, frozen, call(self.norm2, frozen, x)))

    def forward(self, x, allowed, perturb=False, generator=None):
        """(output, perturbed output or None, mask M or None) of x [B, L, d] under `allowed` [B, 1, L, L]."""
        b, length, d = x.shape
        mixed = self.attn.qkv(self.norm1(x))
        q, k, v = mixed.view(b, length, 3, self.attn.heads, -1).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2)
        if hasattr(self.cal, "pair"):
            scores = scores + self.cal.spatial_terms(q, k)
        weights = masked_softmax(scores / math.sqrt(q.shape[-1]), allowed)
        if not hasattr(self.cal, "gate"):
            return self.output(x, weights, v), None, None
        sg = torch.Tensor.detach if self.frozen else (lambda t: t)
        m = self.cal.mask(sg(mixed[..., :d]), sg(mixed[..., d:2 * d]), allowed)
        gate = torch.sigmoid(self.cal.gate(mixed[..., :d])[..., :length]).unsqueeze(1)
        mix = gate * weights + (1 - gate) * masked_softmax(weights * torch.exp(1 - m), allowed)
        out = self.output(x, masked_softmax(mix, allowed), v)
        if not perturb:
            return out, None, m
        noise = torch.randn(m.shape, generator=generator, device=m.device, dtype=m.dtype)
        perturbed = masked_softmax(sg(weights) * m + noise * (1 - m), allowed)
        return out, self.output(sg(x), perturbed, sg(v), self.frozen), m


class ACTSR(CausalBackbone):
    def __init__(self, num_items: int, max_len: int, spatial: bool = True, adversarial: bool = True,
                 positions: bool = False, mask_weight: float = 0.03, adversary: str = "mask", **sasrec_options):
        super().__init__(num_items, max_len, **sasrec_options)
        if adversary not in ("mask", "all"):
            raise ValueError(f"ACTSR adversary {adversary!r}: expected 'mask' or 'all'")
        if not mask_weight >= 0.0:
            raise ValueError(f"ACTSR mask_weight {mask_weight}: expected >= 0")
        self.spatial, self.adversarial, self.positions = spatial, adversarial, positions
        self.mask_weight, self.adversary = mask_weight, adversary
        enc = self.encoder                     # SASRec's, drawn first: the calibrators' weights come after
        cals = [Calibrator(self.hidden, self.heads, max_len, spatial, adversarial) for _ in enc.blocks]
        enc.blocks = nn.ModuleList(CalibratedBlock(b, c, adversary == "mask") for b, c in zip(enc.blocks, cals))
        if not positions:
            enc.positions = None

    def run(self, seqs: torch.Tensor, perturb: bool = False, generator: torch.Generator | None = None):
        """(states [B, L, d], perturbed states (with `perturb` and the adversarial calibrator) or None, the
        blocks' masks M) of windows [B, L]."""
        enc, perturb = self.encoder, perturb and self.adversarial
        keep = (seqs != 0).unsqueeze(-1).to(enc.items.weight.dtype)
        x = enc.items(seqs)
        if enc.positions is not None:
            x = x + enc.positions(torch.arange(seqs.shape[1], device=seqs.device))
        x = enc.drop(x) * keep
        allowed, masks = attention_mask(seqs, causal=True), []
        for n, block in enumerate(enc.blocks):
            x, x_adv, m = block(x, allowed, perturb=perturb and n == len(enc.blocks) - 1, generator=generator)
            x, masks = x * keep, masks + [m]
        frozen = self.adversary == "mask"
        h_adv = None if not perturb else call(enc.norm, frozen, x_adv) * keep
        return enc.norm(x) * keep, h_adv, masks

    def encode(self, seqs: torch.Tensor) -> torch.Tensor:
        return self.run(seqs)[0]

    def rec_loss(self, h, targets, emb, generator=None):
        """SASRec's next-item loss (causal.py) of states h [N, d] with item embeddings `emb`."""
        if self.loss == "ce":
            logits = h @ emb[: self.num_items + 1].T
            logits[:, 0] = float("-inf")
            return F.cross_entropy(logits, targets)
        negatives = torch.randint(1, self.num_items + 1, targets.shape, generator=generator, device=targets.device)
        pos_logit, neg_logit = (h * F.embedding(targets, emb)).sum(-1), (h * F.embedding(negatives, emb)).sum(-1)
        return F.binary_cross_entropy_with_logits(pos_logit, torch.ones_like(pos_logit)) + \
            F.binary_cross_entropy_with_logits(neg_logit, torch.zeros_like(neg_logit))

    def mask_penalty(self, masks, seqs):
        """||1 - M||_2 over the pairs attention may use (real queries), averaged over blocks."""
        valid = attention_mask(seqs, causal=True) & (seqs != 0)[:, None, :, None]
        return torch.stack([torch.linalg.vector_norm((1 - m) * valid) for m in masks]).mean()

    def training_loss(self, windows: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        inputs, targets = windows[:, :-1], windows[:, 1:]
        h, h_adv, masks = self.run(inputs, perturb=self.adversarial, generator=generator)
        keep = (inputs != 0) & (targets != 0)
        emb = self.encoder.items.weight
        loss = self.rec_loss(h[keep], targets[keep], emb, generator)
        if not self.adversarial:
            return loss
        emb = emb.detach() if self.adversary == "mask" else emb
        adversary = -self.rec_loss(h_adv[keep], targets[keep], emb, generator)
        return loss + adversary + self.mask_weight * self.mask_penalty(masks, inputs)

    def config(self) -> dict:
        return {**super().config(), "spatial": self.spatial, "adversarial": self.adversarial,
                "positions": self.positions, "mask_weight": self.mask_weight, "adversary": self.adversary}
