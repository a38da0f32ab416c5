"""The diffusion side of a run (paper Sections 3.3-3.5): the denoiser trained on the frozen backbone, its
epoch selected on fused validation scores, and the reverse chain's x0_hat for every user."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

import globaldiff.diffusion.schedule as dm
from globaldiff import ConfigError
from globaldiff.backbones.base import Backbone
from globaldiff.config.params import dataclass_from
from globaldiff.data.sequences import Split
from globaldiff.data.windows import EvalSet, evaluation_sets, last_windows
from globaldiff.diffusion.denoiser import build_denoiser, guidance_vector
from globaldiff.diffusion.samples import bernoulli_targets, target_probabilities
from globaldiff.diffusion.similarity import ItemSimilarity
from globaldiff.ranking.fused import FusedValidation
from globaldiff.run.backbone import backbone_outputs, check_epoch_loss
from globaldiff.run.device import adam, autocast, device_generator, keep_freed_memory, seed_everything


@dataclass
class DiffusionTraining:
    """`diffusion` (with ensemble.norm and eval.exclude): params.yaml is the one source of the values; the one
    default is that of the key params may leave out (config.schema.OPTIONAL)."""

    epochs: int
    batch_size: int
    lr: float
    loss: str                     # eq. (7) 'mse' | authors' 'ce'
    zeta: float
    delta: float
    rule: str                     # eq. (3) 'paper' | authors' 'code'
    eval_every: int               # epochs between validation passes (model selection)
    select_metric: str            # of the fused validation scores
    select_gamma: float           # gamma used for selection only (the reported gamma is applied later)
    norm: str
    exclude: str
    weight_decay: float = 0.0


@dataclass
class Inference:
    """`inference`: y from the backbone, then the reverse chain (Section 3.5)."""

    input: str                    # y = softmax of the backbone's logits (paper) | raw 'logits' (authors)
    scale: str                    # 'max': y / max(y) puts y on x_0's 0..1 scale | 'none'
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
    """x0_hat [N, M+1] for every user: reverse chain from x^{T'} built from the backbone's output.

    Without sampling noise the chain runs in the denoiser's embedding space (schedule.reverse_embedded: the same
    x_0, two products with the [M+1, H] weights instead of two per step); with noise, step by step."""
    keep_freed_memory()
    denoiser.eval()
    start = inf.start_step or schedule.steps
    linear_ends = not inf.noise and hasattr(denoiser, "core")
    weights = dm.embedded_weights(denoiser.embed, denoiser.head) if linear_ends else None
    outs = []
    for i in range(0, len(logits), inf.batch_size):
        cond = guidance_vector(h_target[i:i + inf.batch_size].to(device), h_mean[i:i + inf.batch_size].to(device),
                               denoiser.guidance)
        x = diffusion_start(logits[i:i + inf.batch_size].to(device), inf)
        if linear_ends:
            x0 = dm.reverse_embedded(schedule, lambda e, t: denoiser.core(e, t, cond), denoiser.embed,
                                     denoiser.head, x, start, weights)
        else:
            x0 = dm.reverse(schedule, lambda x_t, t: denoiser(x_t, t, cond), x, start, noise=inf.noise,
                            generator=generator)
        outs.append(x0.float().cpu())
    return torch.cat(outs)


def training_batch(windows: torch.Tensor, valid: torch.Tensor, idx: torch.Tensor, similarity: ItemSimilarity,
                   schedule: dm.DiffusionSchedule, cfg: DiffusionTraining, generator: torch.Generator
                   ) -> tuple[torch.Tensor, ...]:
    """One training batch's draws (Section 3.3 step 2, Section 3.4): for the windows `idx` of `windows` [N, L]
    (`valid` [N, L] float: the positions that may be hidden), a hidden position i, its item, a step t, x_0 ~
    Bernoulli(q) from eq. (2)-(3) and x_t by eq. (4). Returns (windows, pos, targets, t, x0, x_t), every draw
    from `generator` on the windows' device."""
    device = windows.device
    batch, ok = windows[idx], valid[idx]
    pos = torch.multinomial(ok, 1, generator=generator).squeeze(1)
    targets = batch[torch.arange(len(batch), device=device), pos]
    t = torch.randint(0, schedule.steps, (len(batch),), generator=generator, device=device)
    q = target_probabilities(similarity.rows(targets), batch, pos, cfg.zeta, cfg.delta, cfg.rule)
    x0 = bernoulli_targets(q, generator)
    noise = torch.randn(x0.shape, generator=generator, device=device)
    return batch, pos, targets, t, x0, dm.q_sample(schedule, x0, t, noise)


def train_diffusion(backbone: Backbone, denoiser: nn.Module, schedule: dm.DiffusionSchedule,
                    similarity: ItemSimilarity, windows: torch.Tensor, val: EvalSet, cfg: DiffusionTraining,
                    inf: Inference, device, generator: torch.Generator,
                    log: Callable[[dict], None] = lambda row: None, precision: torch.dtype | None = None) -> dict:
    """Train f_theta on masked training windows [N, L] (one fresh mask and x_0 per window per epoch) with the
    backbone frozen; every `eval_every` epochs run the whole inference on validation and keep the best state.

    Every draw of a step is made on `device` (run.device.device_generator: on the CPU the run's own generator),
    so nothing is copied back to the host but the loss, once per epoch."""
    keep_freed_memory()
    backbone.to(device).eval()
    for p in backbone.parameters():
        p.requires_grad_(False)
    denoiser.to(device)
    similarity = similarity.to(device)
    optim = adam(denoiser.parameters(), cfg.lr, cfg.weight_decay, device)
    valid = backbone.valid_mask_positions(windows)
    keep = valid.any(dim=1)
    windows, valid = windows[keep].to(device), valid[keep].float().to(device)
    draws = device_generator(generator, device)
    val_logits, val_h, val_mean = backbone_outputs(backbone, val.windows, inf.batch_size, device)
    validation = FusedValidation(val_logits, val, cfg.exclude)
    best, best_state = -1.0, None
    for epoch in range(1, cfg.epochs + 1):
        denoiser.train()
        order = torch.randperm(len(windows), generator=generator).to(device)
        total = torch.zeros((), dtype=torch.float64, device=device)   # as a Python float: the same sum
        for start in range(0, len(order), cfg.batch_size):
            batch, pos, targets, t, x0, x_t = training_batch(windows, valid, order[start:start + cfg.batch_size],
                                                             similarity, schedule, cfg, draws)
            with autocast(device, precision):
                with torch.no_grad():
                    seqs, target_pos = backbone.masked_input(batch, pos)
                    h_target, h_mean = backbone.guidance(seqs, target_pos)
                pred = denoiser(x_t, t, guidance_vector(h_target, h_mean, denoiser.guidance))
                loss = dm.diffusion_loss(pred.float(), x0, targets, cfg.loss)
            optim.zero_grad()
            loss.backward()
            optim.step()
            total += loss.detach().double() * len(batch)
        row = {"epoch": epoch, "loss": float(total) / len(windows)}
        check_epoch_loss(row["loss"], epoch, "diffusion")
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            x0_hat = diffusion_predict(denoiser, schedule, val_logits, val_h, val_mean, inf, device)
            metrics = validation.metrics(x0_hat, cfg.select_gamma, cfg.norm)
            row.update({f"val_{part}_{k}": v for part, m in metrics.items() for k, v in m.items()})
            if metrics["fusion"][cfg.select_metric] > best:
                best, best_state = metrics["fusion"][cfg.select_metric], copy.deepcopy(denoiser.state_dict())
                row["selected"] = True
        log(row)
    return best_state


def schedule_from_params(params: dict) -> dm.DiffusionSchedule:
    d = params["diffusion"]
    return dm.DiffusionSchedule.linear_variance(params["T"], d["noise_scale"], d["noise_min"], d["noise_max"], d["beta_first"])


def new_denoiser(params: dict, backbone: Backbone) -> torch.nn.Module:
    d = params["denoiser"]
    return build_denoiser(d["network"], backbone.num_items, backbone.hidden, d["guidance"], d["hidden"], d["time_dim"],
                          d["dropout"], d["channels"])


def inference_from_params(params: dict) -> Inference:
    return dataclass_from(Inference, params["inference"])


def fit_diffusion(params: dict, backbone: Backbone, similarity: ItemSimilarity, split: Split, seed: int, device,
                  log: Callable[[dict], None], precision: torch.dtype | None = None
                  ) -> tuple[dict, dict[str, np.ndarray]]:
    """Train the denoiser on the frozen backbone (one masked window per user per epoch: each user's last L train
    items), select the epoch on fused validation, and return (checkpoint, score matrices for val and test)."""
    if similarity.num_items != split.num_items:
        raise ConfigError(f"similarity has {similarity.num_items} items, the dataset {split.num_items}: re-run similarity")
    generator = seed_everything(seed)
    schedule = schedule_from_params(params)
    denoiser = new_denoiser(params, backbone)
    cfg = dataclass_from(DiffusionTraining, params["diffusion"], norm=params["ensemble"]["norm"],
                exclude=params["eval"]["exclude"])
    inf = inference_from_params(params)
    windows = last_windows(split.train, params["max_len"])
    val, test = evaluation_sets(split.train, split.val, split.test, params["max_len"])
    state = train_diffusion(backbone, denoiser, schedule, similarity, windows, val, cfg, inf, device, generator, log,
                            precision)
    denoiser.load_state_dict(state)
    scores = {}
    for part, evalset in (("val", val), ("test", test)):
        logits, h_target, h_mean = backbone_outputs(backbone, evalset.windows, inf.batch_size, device)
        x0_hat = diffusion_predict(denoiser, schedule, logits, h_target, h_mean, inf, device)
        scores[f"{part}_logits"], scores[f"{part}_x0"] = logits.numpy(), x0_hat.numpy()
    checkpoint = {"config": {"backbone": backbone.config(), "network": params["denoiser"]["network"],
                             "guidance": denoiser.guidance}, "state_dict": state}
    return checkpoint, scores
