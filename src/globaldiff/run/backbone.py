"""The backbone side of a run (paper Section 3.2): build a backbone from params, train it on its own objective
with early stopping on validation, and read its outputs. Nothing here knows a path or the diffusion model."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from globaldiff import ConfigError
from globaldiff.backbones.base import Backbone, backbone_class, build_backbone
from globaldiff.config.params import dataclass_from
from globaldiff.config.schema import check_model_options
from globaldiff.data.sequences import Split
from globaldiff.data.windows import EvalSet, evaluation_sets, sliding_windows
from globaldiff.ranking.metrics import exclusion_mask, masked_ranks, summarise
from globaldiff.run.device import adam, autocast, device_generator, keep_freed_memory, seed_everything


@torch.no_grad()
def backbone_outputs(backbone: Backbone, windows: torch.Tensor, batch: int, device) -> tuple[torch.Tensor, ...]:
    """(scores [N, M+1], h_target [N, d], h_mean [N, d]) for history windows, on the CPU."""
    backbone.eval()
    outs = [backbone.predict(windows[i:i + batch].to(device)) for i in range(0, len(windows), batch)]
    return tuple(torch.cat([o[k].float().cpu() for o in outs]) for k in range(3))


def evaluate_scores(scores: torch.Tensor, evalset: EvalSet, exclude: str) -> dict[str, float]:
    mask = exclusion_mask(scores.shape[1] - 1, evalset.windows, evalset.histories, mode=exclude)
    return summarise(masked_ranks(scores, mask, evalset.targets))


class BackboneValidation:
    """The per-epoch model-selection metrics of train_backbone on a fixed evaluation set: the exclusion mask is
    built once, and each pass ranks the targets batch by batch on the training device (no [N, M+1] score
    matrix is gathered on the host). The same numbers as evaluate_scores(backbone_outputs(...))."""

    def __init__(self, evalset: EvalSet, num_items: int, exclude: str, batch: int = 1024):
        self.evalset, self.batch = evalset, batch
        self.mask = exclusion_mask(num_items, evalset.windows, evalset.histories, mode=exclude)

    @torch.no_grad()
    def __call__(self, backbone: Backbone, device) -> dict[str, float]:
        backbone.eval()
        ranks = []
        for i in range(0, len(self.evalset.targets), self.batch):
            rows = slice(i, i + self.batch)
            scores = backbone.predict(self.evalset.windows[rows].to(device))[0].float()
            ranks.append(masked_ranks(scores, self.mask[rows], self.evalset.targets[rows]))
        return summarise(np.concatenate(ranks))


class NonFiniteLoss(ConfigError):
    """A training loss became NaN or inf (one line in a stage, like any ConfigError)."""


def check_epoch_loss(loss: float, epoch: int, what: str) -> None:
    """Stop training when an epoch's mean loss is NaN or inf (checked once per epoch: no per-step sync)."""
    if not math.isfinite(loss):
        raise NonFiniteLoss(f"{what}: training loss is {loss} in epoch {epoch}: the model diverged (a learning rate "
                            f"too high for these params, or bf16 overflow: try precision fp32); nothing was saved")


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
    """Train on `windows` [W, L+1] with early stopping on the validation metric; return the best state.

    The windows go to `device` once; the model's own draws (cloze masks, negatives) come from a generator on
    that device (run.device.device_generator: on the CPU the run's own); the loss is summed on the device and
    read once per epoch, when a NaN or inf loss stops the run (NonFiniteLoss). The backbone's prepare_training
    hook sees the windows once, on the device, before the first epoch."""
    keep_freed_memory()
    backbone.to(device)
    optim = adam(backbone.parameters(), cfg.lr, cfg.weight_decay, device)
    schedule = torch.optim.lr_scheduler.StepLR(optim, cfg.lr_step, cfg.lr_decay) if cfg.lr_step else None
    windows = windows.to(device)
    backbone.prepare_training(windows)       # once, before the first epoch (DuoRec indexes its positives)
    draws = device_generator(generator, device)
    validate = BackboneValidation(val, backbone.num_items, cfg.exclude)
    best, best_state, waited = -1.0, None, 0
    for epoch in range(1, cfg.epochs + 1):
        backbone.train()
        order = torch.randperm(len(windows), generator=generator).to(device)
        total = torch.zeros((), dtype=torch.float64, device=device)   # as a Python float: the same sum
        bar = tqdm(range(0, len(order), cfg.batch_size), desc=f"backbone epoch {epoch}", leave=False,
                   disable=None, mininterval=5.0)
        for start in bar:
            batch = windows[order[start:start + cfg.batch_size]]
            with autocast(device, precision):
                loss = backbone.training_loss(batch, generator=draws)
            optim.zero_grad()
            loss.backward()
            optim.step()
            total += loss.detach().double() * len(batch)
        row = {"epoch": epoch, "loss": float(total) / len(windows)}
        check_epoch_loss(row["loss"], epoch, f"backbone {type(backbone).__name__}")
        metrics = validate(backbone, device)
        row.update({f"val_{k}": v for k, v in metrics.items()})
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
    """Rebuild a backbone from its checkpoint, refusing one trained for another dataset or configuration, and a
    state_dict that is missing, misshaped or not finite (ConfigError naming `source`)."""
    from globaldiff.io import check_finite_tensors

    backbone = new_backbone(params, name, num_items)
    if checkpoint.get("config") != backbone.config():
        raise ConfigError(f"{source}: checkpoint config {checkpoint.get('config')} does not match this run's "
                          f"{backbone.config()} (another dataset's item count, or changed params): re-run its stage")
    state, expected = checkpoint.get("state_dict"), backbone.state_dict()
    if not isinstance(state, dict):
        raise ConfigError(f"{source}: expected a 'state_dict' of tensors, got {type(state).__name__}: re-run its stage")
    problems = [f"missing {k}" for k in expected if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in expected]
    for k, want in expected.items():
        got = state.get(k, want)
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            problems.append(f"{k} is {shape}, expected {tuple(want.shape)}")
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ConfigError(f"{source}: state_dict does not fit {type(backbone).__name__}: "
                          f"{'; '.join(problems[:3])}{more}: re-run its stage")
    check_finite_tensors(source, state)
    backbone.load_state_dict(state)
    return backbone
