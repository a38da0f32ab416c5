"""The backbone side of a run (paper Section 3.2): build a backbone from params, train it on its own objective
with early stopping on validation, and read its outputs. Nothing here knows a path or the diffusion model."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
from tqdm import tqdm

from globaldiff import ConfigError
from globaldiff.backbones.base import Backbone, backbone_class, build_backbone
from globaldiff.config.params import dataclass_from
from globaldiff.config.schema import check_model_options
from globaldiff.data.sequences import Split
from globaldiff.data.windows import EvalSet, evaluation_sets, sliding_windows
from globaldiff.ranking.metrics import exclusion_mask, masked_ranks, summarise
from globaldiff.run.device import autocast, seed_everything


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
    """`backbones.<name>.train` (params.yaml is the one source of the values; the defaults below are those of
    the keys params may leave out, config.schema.TRAIN_OPTIONAL)."""

    epochs: int                   # upper bound: early stopping decides
    batch_size: int
    lr: float
    patience: int                 # epochs without a better validation metric before stopping
    exclude: str                  # eval.exclude
    weight_decay: float = 0.0
    select_metric: str = "NDCG@10"
    lr_step: int | None = None    # StepLR: multiply the learning rate by `lr_decay` every `lr_step` epochs
    lr_decay: float = 0.5


def train_backbone(backbone: Backbone, windows: torch.Tensor, val: EvalSet, cfg: BackboneTraining, device,
                   generator: torch.Generator, log: Callable[[dict], None] = lambda row: None,
                   precision: torch.dtype | None = None) -> dict:
    """Train on `windows` [W, L+1] with early stopping on the validation metric; return the best state."""
    backbone.to(device)
    optim = torch.optim.Adam(backbone.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.StepLR(optim, cfg.lr_step, cfg.lr_decay) if cfg.lr_step else None
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
        if schedule is not None:
            row["lr"] = optim.param_groups[0]["lr"]
            schedule.step()
        log(row)
        if metrics[cfg.select_metric] > best:
            best, best_state, waited = metrics[cfg.select_metric], copy.deepcopy(backbone.state_dict()), 0
        else:
            waited += 1
            if waited >= cfg.patience:
                break
    return best_state


def check_backbone_params(params: dict, name: str) -> None:
    """The model options of backbone `name` against its constructor (load_params leaves them to the stage that
    builds the model, so that no stage imports a model it does not run)."""
    entry = params["backbones"].get(name) if isinstance(params.get("backbones"), dict) else None
    if not isinstance(entry, dict) or "model" not in entry:
        raise ConfigError(f"params.yaml: missing key 'backbones.{name}.model'")
    check_model_options(name, entry["model"], backbone_class(name))


def new_backbone(params: dict, name: str, num_items: int) -> Backbone:
    check_backbone_params(params, name)
    return build_backbone(name, num_items, params["max_len"], params["backbones"][name]["model"])


def fit_backbone(params: dict, name: str, split: Split, seed: int, device, log: Callable[[dict], None],
                 precision: torch.dtype | None = None) -> dict:
    """Train backbone `name` on the train split with early stopping on validation; returns its checkpoint."""
    generator = seed_everything(seed)
    backbone = new_backbone(params, name, split.num_items)
    train_cfg = params["backbones"][name]["train"]
    cfg = dataclass_from(BackboneTraining, train_cfg, exclude=params["eval"]["exclude"])
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
