"""CL4SRec (Xie et al., "Contrastive Learning for Sequential Recommendation", ICDE 2022): SASRec trained on its
next-item loss plus lambda * InfoNCE between two augmented views of each sequence.

Each view applies one of three augmentations to the sequence (two different ones per sequence, drawn uniformly):
- crop: keep a random contiguous run of floor(eta * n) of its n items;
- mask: replace floor(gamma * n) random items with [MASK];
- reorder: shuffle a random contiguous run of floor(beta * n) items.
The representation of a view is the state at its last position; InfoNCE (SimCLR form, dot-product similarity
over temperature tau) takes the other view of the same sequence as the positive and the 2B - 2 views of the
other sequences in the batch as negatives, averaged over all 2B anchors.

Adapted to this project's windows: the views augment the L-item input window of each training window (windows
[:, :-1], the sequence whose last state predicts the window's last item), a crop is right-aligned again (left
padding, as every window here), and a crop keeps at least one item. Defaults eta 0.6, gamma 0.3, beta 0.6,
tau 1, lambda 0.1 and the two-different-augmentations draw follow the public CL4SRec implementation of the
DuoRec authors (Qiu et al. 2022, RecBole-based; the CL4SRec authors released none, and their paper studies
the rates per dataset). Inference is SASRec's.
"""

from __future__ import annotations

import torch

from globaldiff.backbones.causal import CausalBackbone
from globaldiff.backbones.contrastive import info_nce

CROP, MASK, REORDER = 0, 1, 2


def _count(lengths: torch.Tensor, rate: float) -> torch.Tensor:
    # floor in float64, as Python's math.floor(rate * n) (float32 makes 0.7 * 10 = 6.99...)
    return torch.floor(lengths.double() * rate).long()


def crop_view(seqs: torch.Tensor, rate: float, u: torch.Tensor) -> torch.Tensor:
    """Keep floor(rate * n) (at least 1) consecutive of the n items of each right-aligned row of `seqs` [B, L],
    starting at item floor(u * (n - kept + 1)) for u [B] in [0, 1), right-aligned with left padding."""
    length = seqs.shape[1]
    n = (seqs != 0).sum(1)
    kept = torch.minimum(_count(n, rate).clamp(min=1), n)
    first = (length - n) + torch.floor(u * (n - kept + 1)).long().clamp(max=n - kept)
    cols = torch.arange(length, device=seqs.device)[None, :]
    src = first[:, None] + cols - (length - kept[:, None])
    keep = cols >= length - kept[:, None]
    return torch.where(keep, seqs.gather(1, src.clamp(0, length - 1)), torch.zeros_like(seqs))


def mask_view(seqs: torch.Tensor, rate: float, mask_id: int, noise: torch.Tensor) -> torch.Tensor:
    """Replace floor(rate * n) of the n items of each row with `mask_id`: those with the smallest `noise` [B, L]."""
    real = seqs != 0
    count = _count(real.sum(1), rate)
    rank = noise.masked_fill(~real, 2.0).argsort(dim=1, stable=True).argsort(1)     # padding ranks after every item
    return torch.where(rank < count[:, None], torch.full_like(seqs, mask_id), seqs)


def reorder_view(seqs: torch.Tensor, rate: float, u: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Shuffle floor(rate * n) consecutive items of each row, starting at item floor(u * (n - count + 1)) for
    u [B]; the run is put in the order of `noise` [B, L] (uniforms in [0, 1)), the rest stays."""
    length = seqs.shape[1]
    n = (seqs != 0).sum(1)
    count = _count(n, rate)
    first = ((length - n) + torch.floor(u * (n - count + 1)).long().clamp(max=n - count))[:, None]
    cols = torch.arange(length, device=seqs.device)[None, :]
    inside = (cols >= first) & (cols < first + count[:, None])
    # sort keys: a position outside the run keeps its index; inside, keys fall in [first - 0.5, first + count - 0.5),
    # between the outside neighbours, in random order
    keys = torch.where(inside, first - 0.5 + noise.double() * count[:, None], cols.double())
    return seqs.gather(1, keys.argsort(dim=1, stable=True))


def augment(seqs: torch.Tensor, rates: tuple[float, float, float], mask_id: int,
            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Two views of each row of `seqs` [B, L] by two different augmentations (crop, mask, reorder with rates
    (eta, gamma, beta)), the pair drawn uniformly per row. Each augmentation serves at most one view of a row, so
    each runs once over the batch."""
    batch, length = seqs.shape
    dev = seqs.device
    first = torch.randint(0, 3, (batch,), generator=generator, device=dev)
    second = (first + torch.randint(1, 3, (batch,), generator=generator, device=dev)) % 3
    u = torch.rand((2, batch), generator=generator, device=dev)
    noise = torch.rand((2, batch, length), generator=generator, device=dev)
    out = torch.stack([crop_view(seqs, rates[CROP], u[0]), mask_view(seqs, rates[MASK], mask_id, noise[0]),
                       reorder_view(seqs, rates[REORDER], u[1], noise[1])])                # [3, B, L]
    rows = torch.arange(batch, device=dev)
    return out[first, rows], out[second, rows]


class CL4SRec(CausalBackbone):
    def __init__(self, num_items: int, max_len: int, crop_rate: float = 0.6, mask_rate: float = 0.3,
                 reorder_rate: float = 0.6, temperature: float = 1.0, cl_weight: float = 0.1, **sasrec_options):
        super().__init__(num_items, max_len, **sasrec_options)
        if not 0.0 < crop_rate <= 1.0:
            raise ValueError(f"CL4SRec crop_rate {crop_rate}: expected a fraction in (0, 1]")
        for name, rate in (("mask_rate", mask_rate), ("reorder_rate", reorder_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"CL4SRec {name} {rate}: expected a fraction in [0, 1]")
        if not temperature > 0.0 or not cl_weight >= 0.0:
            raise ValueError(f"CL4SRec temperature {temperature} / cl_weight {cl_weight}: expected > 0 / >= 0")
        self.rates = (crop_rate, mask_rate, reorder_rate)
        self.temperature, self.cl_weight = temperature, cl_weight

    def training_loss(self, windows: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        loss = self.next_item_loss(windows, generator)
        first, second = augment(windows[:, :-1], self.rates, self.mask_id, generator)
        h = self.encode(torch.cat([first, second]))[:, -1]       # both views in one pass; last position's state
        return loss + self.cl_weight * info_nce(h[: len(windows)], h[len(windows):], self.temperature)
