"""Print the training cost of the competitors GRU4Rec, Caser and LightSANs on a processed dataset (default ML-1M):
seconds per batch over `--batches` batches (after 2 warm-up batches), the projected time of one epoch at the
given stride, and one full-ranking validation pass.

Usage: python benchmarks/bench_competitors_a.py [--dataset ml-1m] [--batches 20] [--threads N] [--stride 10]
Needs data/processed/<dataset> (`dvc repro preprocess`). The model and train options are those proposed for
params.yaml (PROPOSED below, until the backbones are registered there); LightSANs is also timed at its own
stride 1 (it predicts one item per window). Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from globaldiff import paths
from globaldiff.backbones import REGISTRY
from globaldiff.backbones.base import backbone_class, build_backbone
from globaldiff.config.params import load_params
from globaldiff.config.schema import check_model_options
from globaldiff.data.sequences import read_split
from globaldiff.data.windows import evaluation_sets, sliding_windows
from globaldiff.run.backbone import backbone_outputs
from globaldiff.run.device import seed_everything

CLASSES = {"gru4rec": "GRU4Rec", "caser": "Caser", "lightsans": "LightSANs"}
PROPOSED = {
    "gru4rec": {"model": {"hidden": 64, "gru_hidden": 128, "blocks": 1, "dropout": 0.3},
                "train": {"batch_size": 256, "lr": 0.001, "stride": 10}},
    "caser": {"model": {"hidden": 64, "n_v": 4, "n_h": 16, "dropout": 0.5, "loss": "ce"},
              "train": {"batch_size": 256, "lr": 0.001, "stride": 10}},
    "lightsans": {"model": {"hidden": 64, "blocks": 2, "heads": 2, "interests": 5, "ffn": 256, "dropout": 0.2},
                  "train": {"batch_size": 256, "lr": 0.001, "stride": 1}},
}


def seconds_per_batch(backbone, windows: torch.Tensor, size: int, lr: float, batches: int,
                      generator: torch.Generator) -> float:
    order = torch.randperm(len(windows), generator=generator)
    optim = torch.optim.Adam(backbone.parameters(), lr=lr)
    backbone.train()
    start = None
    for b in range(batches + 2):
        if b == 2:                       # the first batches build kernels and allocator pools
            start = time.perf_counter()
        rows = order[(b * size) % len(windows):][:size]
        loss = backbone.training_loss(windows[rows], generator)
        optim.zero_grad()
        loss.backward()
        optim.step()
    return (time.perf_counter() - start) / batches


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--backbones", nargs="+", default=list(CLASSES))
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--stride", type=int, default=10, help="the committed stride of the other backbones")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.backbones:
        REGISTRY.setdefault(name, CLASSES[name])          # this process only: params.yaml is not touched
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, threads {args.threads}")
    max_len = load_params()["max_len"]
    split = read_split(paths.processed(args.dataset), "loo")
    val, _ = evaluation_sets(split.train, split.val, split.test, max_len)
    print(f"{args.dataset}: {split.num_items} items, {len(split.train)} users, L = {max_len}")
    print(f"{'backbone':<10} {'stride':>6} {'windows':>8} {'batches':>8} {'s/batch':>8} {'epoch (s)':>10} "
          f"{'val pass (s)':>13}")
    for name in args.backbones:
        entry = PROPOSED[name]
        strides = sorted({args.stride, entry["train"]["stride"]}, reverse=True)
        for stride in strides:
            generator = seed_everything(0)
            check_model_options(name, entry["model"], backbone_class(name))
            backbone = build_backbone(name, split.num_items, max_len, entry["model"])
            windows = sliding_windows(split.train, max_len + 1, stride)
            size = entry["train"]["batch_size"]
            per_batch = seconds_per_batch(backbone, windows, size, entry["train"]["lr"], args.batches, generator)
            batches = -(-len(windows) // size)
            start = time.perf_counter()
            backbone_outputs(backbone, val.windows, 1024, torch.device("cpu"))
            val_pass = time.perf_counter() - start
            print(f"{name:<10} {stride:>6} {len(windows):>8} {batches:>8} {per_batch:>8.3f} "
                  f"{per_batch * batches:>10.0f} {val_pass:>13.2f}", flush=True)


if __name__ == "__main__":
    main()
