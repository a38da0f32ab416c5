"""Print wall time and peak memory of each step of one run on a processed dataset (default: ML-1M).

Usage: python benchmarks/bench_stages.py [--dataset ml-1m] [--backbone sasrec] [--threads N]
Needs `dvc repro preprocess` first. Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import platform
import resource
import time

import torch

from globaldiff import paths
from globaldiff.data.sequences import read_split
from globaldiff.run.backbone import new_backbone
from globaldiff.run.diffusion import inference_from_params, new_denoiser, schedule_from_params
from globaldiff.config.params import dataclass_from, load_params
from globaldiff.diffusion.similarity import build_similarity
from globaldiff.run.backbone import BackboneTraining, backbone_outputs, train_backbone
from globaldiff.run.diffusion import DiffusionTraining, diffusion_predict, train_diffusion
from globaldiff.data.windows import evaluation_sets, last_windows, sliding_windows
from globaldiff.run.device import seed_everything


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(label: str, fn):
    start = time.perf_counter()
    out = fn()
    print(f"{label:<42} {time.perf_counter() - start:8.2f} s   peak RSS {peak_mib():8.0f} MiB", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--backbone", default="sasrec")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, threads {args.threads}")
    params = load_params()
    split = read_split(paths.processed(args.dataset), "loo")
    device = torch.device("cpu")
    generator = seed_everything(0)
    similarity = timed("similarity (exact cosine)", lambda: build_similarity(split.train, split.num_items,
                                                                             **params["similarity"]))
    backbone = new_backbone(params, args.backbone, split.num_items)
    train_cfg = params["backbones"][args.backbone]["train"]
    windows = sliding_windows(split.train, params["max_len"] + 1, train_cfg["stride"])
    val, test = evaluation_sets(split.train, split.val, split.test, params["max_len"])
    one_epoch = dataclass_from(BackboneTraining, {**train_cfg, "epochs": 1, "patience": 1},
                               exclude=params["eval"]["exclude"])
    timed(f"backbone: 1 epoch ({len(windows)} windows) + val", lambda: train_backbone(
        backbone, windows, val, one_epoch, device, generator))
    inf = inference_from_params(params)
    denoiser = new_denoiser(params, backbone)
    schedule = schedule_from_params(params)
    cfg = dataclass_from(DiffusionTraining, {**params["diffusion"], "epochs": 1}, norm=params["ensemble"]["norm"],
                         exclude=params["eval"]["exclude"])
    user_windows = last_windows(split.train, params["max_len"])
    # train_diffusion always validates after its last epoch: this line is one epoch plus one validation pass
    # (the reverse chain for every user, timed alone below).
    timed(f"diffusion: 1 epoch ({len(user_windows)} samples) + val", lambda: train_diffusion(
        backbone, denoiser, schedule, similarity, user_windows, val, cfg, inf, device, generator))
    logits, h, mean = timed("backbone: full ranking, all users", lambda: backbone_outputs(
        backbone, test.windows, inf.batch_size, device))
    timed(f"diffusion: reverse chain T={params['T']}, all users", lambda: diffusion_predict(
        denoiser, schedule, logits, h, mean, inf, device))


if __name__ == "__main__":
    main()
