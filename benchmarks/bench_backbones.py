"""Print the training cost of each backbone on a processed dataset (default ML-1M): seconds per batch over
`--batches` batches, the projected time of one epoch, and one full-ranking validation pass.

Usage: python benchmarks/bench_backbones.py [--dataset ml-1m] [--backbones sasrec bert4rec cbit srgnn]
       [--batches 30] [--threads N]
Needs `dvc repro preprocess` first. Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from globaldiff import paths
from globaldiff.data.sequences import read_split
from globaldiff.run.backbone import new_backbone
from globaldiff.config.params import load_params
from globaldiff.run.backbone import backbone_outputs
from globaldiff.data.windows import evaluation_sets, sliding_windows
from globaldiff.run.device import seed_everything


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--backbones", nargs="+", default=["sasrec", "bert4rec", "cbit", "srgnn"])
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, threads {args.threads}")
    params = load_params()
    split = read_split(paths.processed(args.dataset), "loo")
    val, _ = evaluation_sets(split.train, split.val, split.test, params["max_len"])
    print(f"{'backbone':<10} {'windows':>8} {'batches':>8} {'s/batch':>8} {'epoch (s)':>10} {'val pass (s)':>13}")
    for name in args.backbones:
        generator = seed_everything(0)
        backbone = new_backbone(params, name, split.num_items)
        train = params["backbones"][name]["train"]
        windows = sliding_windows(split.train, params["max_len"] + 1, train["stride"])
        order = torch.randperm(len(windows), generator=generator)
        optim = torch.optim.Adam(backbone.parameters(), lr=train["lr"])
        backbone.train()
        size = train["batch_size"]
        start = time.perf_counter()
        for b in range(args.batches):
            loss = backbone.training_loss(windows[order[b * size:(b + 1) * size]], generator)
            optim.zero_grad()
            loss.backward()
            optim.step()
        per_batch = (time.perf_counter() - start) / args.batches
        batches = -(-len(windows) // size)
        start = time.perf_counter()
        backbone_outputs(backbone, val.windows, 1024, torch.device("cpu"))
        val_pass = time.perf_counter() - start
        print(f"{name:<10} {len(windows):>8} {batches:>8} {per_batch:>8.3f} {per_batch * batches:>10.0f} {val_pass:>13.2f}",
              flush=True)


if __name__ == "__main__":
    main()
