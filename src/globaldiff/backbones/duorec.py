"""DuoRec (Qiu et al., "Contrastive Learning for Representation Degeneration Problem in Sequential
Recommendation", WSDM 2022): SASRec trained on its next-item loss plus lambda * a contrastive regularisation.

The regularisation (paper eq. 14) is InfoNCE between two views, both read at the last position:
- h'_i: the sequence through the encoder again, with another dropout mask (model-level, "unsupervised"
  augmentation: the recommendation loss's own pass is the first);
- h'_i,s: another training sequence with the same target item (the "supervised" positive), through the encoder
  with its own dropout mask.
Negatives are the other 2B - 2 views of the batch, less both views of every sequence with the same target
(paper 4.3.3: they are positives in disguise; the authors' code keeps them). Similarity = dot product / tau;
the mean over the 2B anchors, as the authors' code (eq. 14 sums the two directions: twice that). Defaults
tau 1 and lambda 0.1 are the authors' (their run script; the paper picks lambda from 0.1..0.5).

The supervised positive of a window (its target = its last item) is drawn uniformly from
- `positives: train` (the paper, the authors' code): every training window with that target but itself, from an
  index target -> windows built by `prepare_training(windows)`, which the training loop calls once before
  the first epoch (not part of the weights);
- `positives: batch`: the other windows of the batch with that target.
A window with no other one of its target is its own positive (then only the dropout view differs), as the
authors do. All draws use the training generator. Inference is SASRec's.
"""

from __future__ import annotations

import torch

from globaldiff.backbones.causal import CausalBackbone
from globaldiff.backbones.contrastive import info_nce


class DuoRec(CausalBackbone):
    def __init__(self, num_items: int, max_len: int, temperature: float = 1.0, cl_weight: float = 0.1,
                 positives: str = "train", **sasrec_options):
        super().__init__(num_items, max_len, **sasrec_options)
        if positives not in ("train", "batch"):
            raise ValueError(f"DuoRec positives {positives!r}: expected 'train' or 'batch'")
        if not temperature > 0.0 or not cl_weight >= 0.0:
            raise ValueError(f"DuoRec temperature {temperature} / cl_weight {cl_weight}: expected > 0 / >= 0")
        self.temperature, self.cl_weight, self.positives = temperature, cl_weight, positives
        self.pool = None          # (windows sorted by target [W, L+1], first row of each target [M+1], counts [M+1])

    def prepare_training(self, windows: torch.Tensor) -> None:
        """Index the training windows [W, L+1] by target (their last item), for `positives: train` (nothing to do
        for `positives: batch`)."""
        if self.positives != "train":
            return
        targets = windows[:, -1]
        counts = torch.bincount(targets, minlength=self.num_items + 1)
        self.pool = (windows[torch.argsort(targets, stable=True)], torch.cumsum(counts, 0) - counts, counts)

    def supervised_positives(self, windows: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """For each window [B, L+1], another window with the same target (itself where there is none)."""
        targets, dev = windows[:, -1], windows.device
        if self.positives == "batch":
            others = (targets[:, None] == targets[None, :]) & ~torch.eye(len(windows), dtype=torch.bool, device=dev)
            # uniform among the candidates: the largest of iid uniforms; -1 where there is none
            score = torch.rand(others.shape, generator=generator, device=dev).masked_fill(~others, -1.0)
            best, pick = score.max(1)
            pick = torch.where(best >= 0, pick, torch.arange(len(windows), device=dev))
            return windows[pick]
        if self.pool is None:
            raise RuntimeError("DuoRec positives 'train': call prepare_training(train windows) before training")
        pool, starts, counts = (t.to(dev) for t in self.pool)
        count, start = counts[targets], starts[targets]
        k = torch.floor(torch.rand(len(windows), generator=generator, device=dev) * count).long()
        k = torch.minimum(k, (count - 1).clamp(min=0))
        pick = pool[(start + k).clamp(max=len(pool) - 1)]
        # the draw hit the window itself (or a copy of it): take the next window of that target instead
        again = (pick == windows).all(1) & (count > 1)
        pick = torch.where(again[:, None], pool[(start + (k + 1) % count.clamp(min=1)).clamp(max=len(pool) - 1)], pick)
        return torch.where((count > 1)[:, None], pick, windows)

    def training_loss(self, windows: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        loss = self.next_item_loss(windows, generator)
        positives = self.supervised_positives(windows, generator)
        h = self.encode(torch.cat([windows[:, :-1], positives[:, :-1]]))[:, -1]   # fresh dropout masks for both
        targets = windows[:, -1]
        same = targets[:, None] == targets[None, :]
        return loss + self.cl_weight * info_nce(h[: len(windows)], h[len(windows):], self.temperature, same)
