"""CBiT (Du et al. 2022): BERT4Rec's cloze backbone trained on several masked views of each window, with a
contrastive loss that pulls the views of one window together.

loss = sum over views of the cloze cross-entropy + theta * sum over ordered view pairs of NT-Xent, where
theta follows the ratio of the two losses (dynamic loss reweighting):
theta <- alpha * L_ce / (L_ce + lambda * L_cl) + (1 - alpha) * theta, from 0. The contrastive
representation of a view is its flattened [L, d] states, compared by cosine, with no projection head (as
the GlobalDiff authors' code).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from globaldiff.backbones.cloze import ClozeBackbone


class _Gram(torch.autograd.Function):
    """G = Z Z^T for Z [n, D], with the backward of a symmetric product: dZ = (dG + dG^T) Z, one matrix product
    where autograd through Z @ Z.T takes two."""

    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(z)
        return z @ z.T

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (z,) = ctx.saved_tensors
        grad = grad + grad.T                     # bfloat16 under autocast, as the product was
        return (grad @ z.to(grad.dtype)).to(z.dtype)


def nt_xent_pairs(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent for every ordered pair of views: z [m, B, D] -> losses [m, m] (diagonal 0).

    For anchor i of view a and view b != a, the positive is b's i and the negatives are every other row of
    both views (2B - 2 of them); entry [a, b] is the mean over i of -log softmax at the positive.
    """
    views, batch, _ = z.shape
    z = F.normalize(z, dim=-1)
    sim = _Gram.apply(z.reshape(views * batch, -1)).view(views, batch, views, batch) / temperature  # [m, B, m, B]
    eye = torch.eye(batch, dtype=torch.bool, device=z.device)
    within = torch.diagonal(sim, dim1=0, dim2=2).permute(2, 0, 1).masked_fill(eye, float("-inf"))
    within_lse = torch.logsumexp(within, dim=-1)                                   # [m, B]: a's own rows
    across_lse = torch.logsumexp(sim, dim=-1)                                      # [m, B, m]: all of b's rows
    positive = torch.diagonal(sim, dim1=1, dim2=3)                                 # [m, m, B]: sim[a, i, b, i]
    loss = torch.logaddexp(across_lse, within_lse[:, :, None]).permute(0, 2, 1) - positive
    return loss.mean(-1) * (1 - torch.eye(views, device=z.device))


class CBiT(ClozeBackbone):
    def __init__(self, num_items: int, max_len: int, views: int = 8, temperature: float = 0.3,
                 theta_alpha: float = 0.1, theta_lambda: float = 5.0, **cloze_options):
        super().__init__(num_items, max_len, **cloze_options)
        if views < 2:
            raise ValueError(f"CBiT views {views}: expected at least 2 (the contrastive loss needs pairs)")
        self.views, self.temperature = views, temperature
        self.theta_alpha, self.theta_lambda = theta_alpha, theta_lambda
        self.register_buffer("theta", torch.zeros(()))

    def training_loss(self, windows: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        seqs = windows[:, 1:]
        batch = len(seqs)
        # all views in one forward pass: rows v*B .. (v+1)*B - 1 are view v
        losses, rows, h = self.cloze_losses(seqs.repeat(self.views, 1), generator)
        view = torch.div(rows, batch, rounding_mode="floor")
        per_view = torch.zeros(self.views, device=h.device).index_add(0, view, losses)
        counts = torch.zeros(self.views, device=h.device).index_add(0, view, torch.ones_like(losses))
        ce = (per_view / counts.clamp(min=1)).sum()
        cl = nt_xent_pairs(h.reshape(self.views, batch, -1), self.temperature).sum()
        if self.training:
            with torch.no_grad():
                ratio = ce / (ce + self.theta_lambda * cl)
                self.theta.mul_(1 - self.theta_alpha).add_(self.theta_alpha * ratio)
        return ce + self.theta * cl

    def config(self) -> dict:
        return {**super().config(), "views": self.views}
