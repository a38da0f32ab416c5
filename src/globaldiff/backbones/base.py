"""The one interface every backbone implements (paper Section 3.2: an encoder and a projection).

Ids: items 1..M, 0 = padding, M+1 = [MASK]. Windows are right-aligned (left padding), length L.
- `encode(seqs [B, L]) -> h [B, L, d]`: per-position hidden states.
- `item_scores(h [B, d]) -> [B, M+1]`: scores over item ids 0..M (the projection g of eq. 1).
- `training_loss(windows [B, L+1], generator) -> loss`: the backbone's own objective.
- `prepare_training(windows [W, L+1])`: called once with all training windows before the first epoch (default:
  nothing).
- `next_item_input(windows [B, L])`: the input whose last position (L-1) predicts the next item.
- `masked_input(windows [B, L], pos [B])`: the guidance input for a window whose item at `pos` is hidden
  (diffusion training, Section 3.3), and the position whose state is h_i.

Bidirectional (cloze) backbones hide `pos` with [MASK] and read h at `pos`. Causal backbones cannot see a
[MASK] in the middle, so they read the prefix before `pos`, right-aligned, and h at L-1 (the state that
predicts s_i): exactly the situation at inference, where the next item is unknown.
"""

from __future__ import annotations

import abc
import importlib

import torch
from torch import nn

from globaldiff import ConfigError
from globaldiff.backbones import REGISTRY


def right_align(prefix: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Move the first `lengths[b]` entries of each row of `prefix` [B, L] to its end, padding on the left with 0."""
    length = prefix.shape[1]
    cols = torch.arange(length, device=prefix.device)[None, :]
    src = cols - (length - lengths[:, None])
    valid = src >= 0
    return torch.where(valid, prefix.gather(1, src.clamp(min=0)), torch.zeros_like(prefix))


class Backbone(nn.Module, abc.ABC):
    causal: bool = False

    def __init__(self, num_items: int, max_len: int, hidden: int):
        super().__init__()
        self.num_items, self.max_len, self.hidden = num_items, max_len, hidden
        self.mask_id = num_items + 1

    @abc.abstractmethod
    def encode(self, seqs: torch.Tensor) -> torch.Tensor:
        """Hidden states [B, L, d] of a batch of windows [B, L]."""

    @abc.abstractmethod
    def item_scores(self, h: torch.Tensor) -> torch.Tensor:
        """Scores [B, M+1] over item ids 0..M from states h [B, d]."""

    @abc.abstractmethod
    def training_loss(self, windows: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The backbone's own training objective on windows [B, L+1] of consecutive train items."""

    def prepare_training(self, windows: torch.Tensor) -> None:
        """Called once by the training loop (run.backbone.train_backbone) before the first epoch, with all the
        training windows [W, L+1] on the training device: for an objective that looks beyond the batch (DuoRec's
        positives from other training sequences). Draws nothing at random; by default does nothing."""

    def next_item_input(self, windows: torch.Tensor) -> torch.Tensor:
        """Input whose position L-1 predicts the item after `windows` (the last L items of the history)."""
        if self.causal:
            return windows
        masked = torch.full_like(windows, self.mask_id)
        masked[:, :-1] = windows[:, 1:]
        return masked

    def masked_input(self, windows: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(input [B, L], target position [B]) for windows whose item at `pos` is to be predicted."""
        if self.causal:
            return right_align(windows, pos), torch.full_like(pos, windows.shape[1] - 1)
        seqs = windows.clone()
        seqs[torch.arange(len(seqs), device=seqs.device), pos] = self.mask_id
        return seqs, pos

    def valid_mask_positions(self, windows: torch.Tensor) -> torch.Tensor:
        """Boolean [B, L]: positions that may be hidden for diffusion training (a real item, and for a
        causal backbone at least one real item before it)."""
        valid = windows != 0
        if self.causal:
            valid[:, 0] = False
            valid[:, 1:] &= windows[:, :-1] != 0
        return valid

    def guidance(self, seqs: torch.Tensor, target_pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(h_i, mean_j h_j) of eq. (6): the state at the target position and the mean over non-padding positions."""
        h = self.encode(seqs)
        rows = torch.arange(len(seqs), device=seqs.device)
        keep = (seqs != 0).unsqueeze(-1).to(h.dtype)
        mean = (h * keep).sum(1) / keep.sum(1).clamp(min=1.0)
        return h[rows, target_pos], mean

    def predict(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Next-item scores [B, M+1] for history windows [B, L], with the guidance (h_L, mean h)."""
        seqs = self.next_item_input(windows)
        target = torch.full((len(seqs),), seqs.shape[1] - 1, device=seqs.device, dtype=torch.long)
        h_target, h_mean = self.guidance(seqs, target)
        return self.item_scores(h_target), h_target, h_mean

    def config(self) -> dict:
        """What a checkpoint must match to be reloaded (stored beside the weights)."""
        return {"class": type(self).__name__, "num_items": self.num_items, "max_len": self.max_len,
                "hidden": self.hidden}


def backbone_class(name: str) -> type[Backbone]:
    """The class registered as `name`, imported from `globaldiff.backbones.<name>` alone (never the others)."""
    if name not in REGISTRY:
        raise ConfigError(f"params.yaml: unknown backbone {name!r}: expected one of {sorted(REGISTRY)}")
    return getattr(importlib.import_module(f"globaldiff.backbones.{name}"), REGISTRY[name])


def build_backbone(name: str, num_items: int, max_len: int, options: dict) -> Backbone:
    """Instantiate the backbone `name` with its params.yaml model options."""
    return backbone_class(name)(num_items=num_items, max_len=max_len, **options)
