"""One run of the study, stage by stage: params dict in, models and score matrices out.

The stage scripts in pipeline/ call these functions and write what they return; nothing here knows a path.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Callable

import numpy as np
import torch

from . import ConfigError
from .backbones import build_backbone
from .backbones.base import Backbone
from .data.sequences import Split
from .denoiser import build_denoiser
from .diffusion import DiffusionSchedule
from .similarity import ItemSimilarity
from .train import (BackboneTraining, DiffusionTraining, Inference, backbone_outputs, diffusion_predict,
                    evaluation_sets, last_windows, seed_everything, sliding_windows, train_backbone,
                    train_diffusion)


def _pick(cls, options: dict, **extra):
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in {**options, **extra}.items() if k in names})


def new_backbone(params: dict, name: str, num_items: int) -> Backbone:
    return build_backbone(name, num_items, params["max_len"], params["backbones"][name]["model"])


def fit_backbone(params: dict, name: str, split: Split, seed: int, device, log: Callable[[dict], None],
                 precision: torch.dtype | None = None) -> dict:
    """Train backbone `name` on the train split with early stopping on validation; returns its checkpoint."""
    generator = seed_everything(seed)
    backbone = new_backbone(params, name, split.num_items)
    train_cfg = params["backbones"][name]["train"]
    cfg = _pick(BackboneTraining, train_cfg, exclude=params["eval"]["exclude"])
    windows = sliding_windows(split.train, params["max_len"] + 1, train_cfg["stride"])
    val, _ = evaluation_sets(split.train, split.val, split.test, params["max_len"])
    state = train_backbone(backbone, windows, val, cfg, device, generator, log, precision)
    return {"config": backbone.config(), "state_dict": state}


def load_backbone(params: dict, name: str, checkpoint: dict, num_items: int, source: str) -> Backbone:
    """Rebuild a backbone from its checkpoint, refusing one trained for another dataset or configuration."""
    backbone = new_backbone(params, name, num_items)
    if checkpoint.get("config") != backbone.config():
        raise ConfigError(f"{source}: checkpoint config {checkpoint.get('config')} does not match this run's "
                          f"{backbone.config()} (another dataset's item count, or changed params): re-run its stage")
    backbone.load_state_dict(checkpoint["state_dict"])
    return backbone


def schedule_from_params(params: dict) -> DiffusionSchedule:
    d = params["diffusion"]
    return DiffusionSchedule.linear_variance(params["T"], d["noise_scale"], d["noise_min"], d["noise_max"], d["beta_first"])


def new_denoiser(params: dict, backbone: Backbone) -> torch.nn.Module:
    d = params["denoiser"]
    return build_denoiser(d["network"], backbone.num_items, backbone.hidden, d["guidance"], d["hidden"], d["time_dim"],
                          d["dropout"], d["channels"])


def inference_from_params(params: dict) -> Inference:
    return _pick(Inference, params["inference"])


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
    cfg = _pick(DiffusionTraining, params["diffusion"], norm=params["ensemble"]["norm"],
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

