"""Training and inference loops: the backbone on its own objective, then the diffusion model on the frozen
backbone (paper Sections 3.2-3.5). Model selection uses validation data only."""

from __future__ import annotations

import contextlib
import copy
import random
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from . import diffusion as dm
from .backbones.base import Backbone
from .denoiser import guidance_vector
from .metrics import evaluate_all, exclusion_mask, masked_ranks, summarise
from .samples import bernoulli_targets, target_probabilities
from .similarity import ItemSimilarity


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch generator for the run's own sampling."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def pick_device(requested: str | None = None) -> torch.device:
    """'auto' (default) takes CUDA when present. Chosen at run time, never a DVC param."""
    if requested in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


PRECISIONS = ("auto", "fp32", "bf16")


def pick_precision(requested: str | None, device: torch.device) -> torch.dtype | None:
    """Autocast dtype of the training forward passes, chosen at run time like the device (never a DVC param).

    'auto' (default): bfloat16 on a CUDA card that supports it, else None (float32); 'fp32': None; 'bf16'.
    Only training is autocast: every score that is ranked (validation, inference) stays float32, because
    bfloat16's 8-bit mantissa would tie thousands of items and move the metrics.
    """
    if requested in (None, "", "auto"):
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    if requested not in PRECISIONS:
        raise ValueError(f"precision {requested!r}: expected one of {PRECISIONS}")
    return torch.bfloat16 if requested == "bf16" else None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed precision for a training step when `dtype` is set (bfloat16 needs no loss scaling)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# ----------------------------------------------------------------------------------------- windows

def last_windows(histories: list[np.ndarray], length: int) -> torch.Tensor:
    """The last `length` items of each history, right-aligned with 0 padding: [N, length]."""
    out = np.zeros((len(histories), length), dtype=np.int64)
    for row, items in enumerate(histories):
        tail = items[-length:]
        if len(tail):
            out[row, length - len(tail):] = tail
    return torch.from_numpy(out)


def sliding_windows(histories: list[np.ndarray], length: int, stride: int) -> torch.Tensor:
    """Windows of `length` consecutive items ending every `stride` items from each sequence's end
    (the first may be left-padded): [W, length]. stride 1 = every window."""
    rows = []
    for items in histories:
        items = np.asarray(items, dtype=np.int64)
        for end in range(len(items), 1, -stride):
            window = items[max(0, end - length):end]
            rows.append(np.pad(window, (length - len(window), 0)))
    return torch.from_numpy(np.stack(rows))


@dataclass
class EvalSet:
    """Users' input windows [N, L], the items to predict [N], and the full histories (for eval.exclude 'history')."""

    windows: torch.Tensor
    targets: torch.Tensor
    histories: list[np.ndarray] | None = None


def evaluation_sets(train: list[np.ndarray], val: np.ndarray, test: np.ndarray, length: int) -> tuple[EvalSet, EvalSet]:
    """Validation: history = train, target = val. Test: history = train + val, target = test[:, 0]."""
    val_t = torch.as_tensor(np.asarray(val), dtype=torch.long)
    test_t = torch.as_tensor(np.asarray(test).reshape(len(train), -1)[:, 0], dtype=torch.long)
    with_val = [np.append(items, v) for items, v in zip(train, np.asarray(val))]
    return (EvalSet(last_windows(train, length), val_t, train),
            EvalSet(last_windows(with_val, length), test_t, with_val))


# ---------------------------------------------------------------------------------------- backbone

@torch.no_grad()
def backbone_outputs(backbone: Backbone, windows: torch.Tensor, batch: int, device) -> tuple[torch.Tensor, ...]:
    """(scores [N, M+1], h_target [N, d], h_mean [N, d]) for history windows, on the CPU."""
    backbone.eval()
    outs = [backbone.predict(windows[i:i + batch].to(device)) for i in range(0, len(windows), batch)]
    return tuple(torch.cat([o[k].float().cpu() for o in outs]) for k in range(3))


def evaluate_scores(scores: torch.Tensor, evalset: EvalSet, exclude: str) -> dict[str, float]:
    mask = exclusion_mask(scores.shape[1] - 1, evalset.windows, evalset.histories, mode=exclude)
    return summarise(masked_ranks(scores, mask, evalset.targets))


@dataclass
class BackboneTraining:
    epochs: int = 200
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 10            # epochs without a better validation metric before stopping
    select_metric: str = "NDCG@10"
    exclude: str = "window"


def train_backbone(backbone: Backbone, windows: torch.Tensor, val: EvalSet, cfg: BackboneTraining, device,
                   generator: torch.Generator, log: Callable[[dict], None] = lambda row: None,
                   precision: torch.dtype | None = None) -> dict:
    """Train on `windows` [W, L+1] with early stopping on the validation metric; return the best state."""
    backbone.to(device)
    optim = torch.optim.Adam(backbone.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best, best_state, waited = -1.0, None, 0
    for epoch in range(1, cfg.epochs + 1):
        backbone.train()
        order = torch.randperm(len(windows), generator=generator)
        total = 0.0
        bar = tqdm(range(0, len(order), cfg.batch_size), desc=f"backbone epoch {epoch}", leave=False,
                   disable=None, mininterval=5.0)
        for start in bar:
            batch = windows[order[start:start + cfg.batch_size]].to(device)
            with autocast(device, precision):
                loss = backbone.training_loss(batch, generator=None if device.type != "cpu" else generator)
            optim.zero_grad()
            loss.backward()
            optim.step()
            total += loss.item() * len(batch)
            bar.set_postfix(loss=f"{loss.item():.4f}")
        scores, _, _ = backbone_outputs(backbone, val.windows, 1024, device)
        metrics = evaluate_scores(scores, val, cfg.exclude)
        row = {"epoch": epoch, "loss": total / len(windows), **{f"val_{k}": v for k, v in metrics.items()}}
        log(row)
        if metrics[cfg.select_metric] > best:
            best, best_state, waited = metrics[cfg.select_metric], copy.deepcopy(backbone.state_dict()), 0
        else:
            waited += 1
            if waited >= cfg.patience:
                break
    return best_state


# --------------------------------------------------------------------------------------- diffusion

@dataclass
class DiffusionTraining:
    epochs: int = 100
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    loss: str = "mse"             # eq. (7) 'mse' | authors' 'ce'
    zeta: float = 1.5
    delta: float = 1.0
    rule: str = "paper"           # eq. (3) 'paper' | authors' 'code'
    eval_every: int = 5           # epochs between validation passes (model selection)
    select_metric: str = "HR@10"  # of the fused validation scores
    select_gamma: float = 0.5     # gamma used for selection only (the reported gamma is applied later)
    norm: str = "l1"
    exclude: str = "window"


@dataclass
class Inference:
    input: str = "softmax"        # y = softmax of the backbone's logits (paper) | raw 'logits' (authors)
    scale: str = "max"            # 'max': y / max(y) puts y on x_0's 0..1 scale | 'none'
    start_step: int | None = None # T' (None: T)
    noise: bool = False           # sampling noise in the reverse chain
    batch_size: int = 1024


def diffusion_start(logits: torch.Tensor, inf: Inference) -> torch.Tensor:
    """x^{T'} from the backbone's next-item logits (Section 3.5); padding gets 0."""
    scores = logits.clone()
    scores[:, 0] = float("-inf")
    x = torch.softmax(scores, dim=1) if inf.input == "softmax" else scores.masked_fill(~torch.isfinite(scores), 0.0)
    if inf.scale == "max":
        x = x / x.abs().amax(dim=1, keepdim=True).clamp(min=1e-12)
    return x


@torch.no_grad()
def diffusion_predict(denoiser: nn.Module, schedule: dm.DiffusionSchedule, logits: torch.Tensor,
                      h_target: torch.Tensor, h_mean: torch.Tensor, inf: Inference, device,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """x0_hat [N, M+1] for every user: reverse chain from x^{T'} built from the backbone's output."""
    denoiser.eval()
    start = inf.start_step or schedule.steps
    outs = []
    for i in range(0, len(logits), inf.batch_size):
        cond = guidance_vector(h_target[i:i + inf.batch_size].to(device), h_mean[i:i + inf.batch_size].to(device),
                               denoiser.guidance)
        x = diffusion_start(logits[i:i + inf.batch_size], inf).to(device)
        outs.append(dm.reverse(schedule, lambda x_t, t: denoiser(x_t, t, cond), x, start,
                               noise=inf.noise, generator=generator).float().cpu())
    return torch.cat(outs)


def train_diffusion(backbone: Backbone, denoiser: nn.Module, schedule: dm.DiffusionSchedule,
                    similarity: ItemSimilarity, windows: torch.Tensor, val: EvalSet, cfg: DiffusionTraining,
                    inf: Inference, device, generator: torch.Generator,
                    log: Callable[[dict], None] = lambda row: None, precision: torch.dtype | None = None) -> dict:
    """Train f_theta on masked training windows [N, L] (one fresh mask and x_0 per window per epoch) with the
    backbone frozen; every `eval_every` epochs run the whole inference on validation and keep the best state."""
    backbone.to(device).eval()
    for p in backbone.parameters():
        p.requires_grad_(False)
    denoiser.to(device)
    similarity = similarity.to(device)
    optim = torch.optim.Adam(denoiser.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    valid = backbone.valid_mask_positions(windows)
    keep = valid.any(dim=1)
    windows, valid = windows[keep], valid[keep]
    val_logits, val_h, val_mean = backbone_outputs(backbone, val.windows, inf.batch_size, device)
    best, best_state = -1.0, None
    for epoch in range(1, cfg.epochs + 1):
        denoiser.train()
        order = torch.randperm(len(windows), generator=generator)
        total = 0.0
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            batch, ok = windows[idx], valid[idx].float()
            pos = torch.multinomial(ok, 1, generator=generator).squeeze(1)
            rows = torch.arange(len(batch))
            targets = batch[rows, pos]
            t = torch.randint(0, schedule.steps, (len(batch),), generator=generator)
            batch, pos, targets, t = batch.to(device), pos.to(device), targets.to(device), t.to(device)
            q = target_probabilities(similarity.rows(targets), batch, pos, cfg.zeta, cfg.delta, cfg.rule)
            x0 = bernoulli_targets(q.cpu(), generator).to(device)
            noise = torch.randn(x0.shape, generator=generator).to(device)
            x_t = dm.q_sample(schedule, x0, t, noise)
            with autocast(device, precision):
                with torch.no_grad():
                    seqs, target_pos = backbone.masked_input(batch, pos)
                    h_target, h_mean = backbone.guidance(seqs, target_pos)
                pred = denoiser(x_t, t, guidance_vector(h_target, h_mean, denoiser.guidance))
                loss = dm.diffusion_loss(pred.float(), x0, targets, cfg.loss)
            optim.zero_grad()
            loss.backward()
            optim.step()
            total += loss.item() * len(batch)
        row = {"epoch": epoch, "loss": total / len(windows)}
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            x0_hat = diffusion_predict(denoiser, schedule, val_logits, val_h, val_mean, inf, device)
            metrics = evaluate_all(val_logits, x0_hat, val, cfg.select_gamma, cfg.norm, cfg.exclude)
            row.update({f"val_{part}_{k}": v for part, m in metrics.items() for k, v in m.items()})
            if metrics["fusion"][cfg.select_metric] > best:
                best, best_state = metrics["fusion"][cfg.select_metric], copy.deepcopy(denoiser.state_dict())
                row["selected"] = True
        log(row)
    return best_state
