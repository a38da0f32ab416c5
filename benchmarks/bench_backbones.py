"""Print the training cost of each backbone on a processed dataset (default ML-1M): seconds per batch over
`--batches` batches of the library's train_backbone, the projected time of one epoch, and one of its validation
passes (benchmarks/bench_study.py adds FLOPs, floors, bf16 and every other stage).

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
from globaldiff.config.params import dataclass_from, load_params
from globaldiff.data.windows import EvalSet, evaluation_sets, sliding_windows
from globaldiff.run.backbone import BackboneTraining, BackboneValidation, new_backbone, train_backbone
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
        size = train["batch_size"]
        cfg = dataclass_from(BackboneTraining, {**train, "epochs": 1, "patience": 1}, exclude=params["eval"]["exclude"])
        small = EvalSet(val.windows[:64], val.targets[:64], val.histories[:64])    # a few ms: the steps dominate
        train_backbone(backbone, windows[order[:size]], small, cfg, torch.device("cpu"), generator)   # warm-up
        start = time.perf_counter()
        train_backbone(backbone, windows[order[:args.batches * size]], small, cfg, torch.device("cpu"), generator)
        per_batch = (time.perf_counter() - start) / args.batches
        batches = -(-len(windows) // size)
        validate = BackboneValidation(val, split.num_items, cfg.exclude)
        start = time.perf_counter()
        validate(backbone, torch.device("cpu"))
        val_pass = time.perf_counter() - start
        print(f"{name:<10} {len(windows):>8} {batches:>8} {per_batch:>8.3f} {per_batch * batches:>10.0f} {val_pass:>13.2f}",
              flush=True)


if __name__ == "__main__":
    main()
