"""Training cost of Table 2's competitors against SASRec, with the model and train options of params.yaml.

Usage: python benchmarks/bench_competitors.py [--backbones sasrec gru4rec ...] [--steps 5] [--repeat 3]
                                              [--threads N] [--dataset ml-1m]
Needs data/processed/<dataset> (`dvc repro preprocess@ml-1m`). For each backbone: its training windows at its
params stride, seconds per training step (forward, backward, the training loops' fused Adam; the minimum over
--repeat runs of --steps steps, the models taking turns so that a busy spell on a shared machine hits them all
alike) as wall time and as this process's CPU time (all its threads: steadier on a busy machine), the
projected epoch, one full validation pass (every user's scores), and the ceiling of one (model, seed) run:
`train.epochs` epochs with a validation pass each, against issue 17's budget of 10 minutes. Early stopping
usually ends a run well before `train.epochs`; epochs to convergence come from real runs (the stage's
backbone_curve.csv), not from here. Also prints how many windows of a batch share their target with another
window of that batch (what DuoRec's `positives: batch` can use). Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from globaldiff import paths  # noqa: E402
from globaldiff.backbones.base import build_backbone  # noqa: E402
from globaldiff.config.params import load_params  # noqa: E402
from globaldiff.data.sequences import read_split  # noqa: E402
from globaldiff.data.windows import evaluation_sets, sliding_windows  # noqa: E402
from globaldiff.run.backbone import backbone_outputs  # noqa: E402
from globaldiff.run.device import adam, keep_freed_memory, seed_everything  # noqa: E402

COMPETITORS = ["gru4rec", "caser", "lightsans", "cl4srec", "duorec", "actsr", "diffurec"]
BUDGET_S = 600          # issue 17: at most 10 minutes per (model, seed) on this CPU


@dataclass
class Run:
    """One backbone ready to train: its model, optimiser, training windows and order, params train options."""
    name: str
    model: torch.nn.Module
    optim: torch.optim.Optimizer
    windows: torch.Tensor
    order: torch.Tensor
    train: dict
    generator: torch.Generator

    def step_time(self, steps: int) -> tuple[float, float]:
        return step_time(self.model, self.optim, self.windows, self.order, self.train["batch_size"], steps,
                         self.generator)


def step_time(model, optim, windows: torch.Tensor, order: torch.Tensor, batch: int, steps: int,
              generator: torch.Generator) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process over all its threads) per training step."""
    model.train()
    start, cpu = time.perf_counter(), time.process_time()
    for step in range(steps):
        rows = order[(step * batch) % len(windows):][:batch]
        loss = model.training_loss(windows[rows], generator)
        optim.zero_grad()
        loss.backward()
        optim.step()
    return (time.perf_counter() - start) / steps, (time.process_time() - cpu) / steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbones", nargs="+", default=["sasrec", *COMPETITORS])
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    params = load_params()
    max_len = params["max_len"]
    split = read_split(paths.processed(args.dataset), "loo")
    val, _ = evaluation_sets(split.train, split.val, split.test, max_len)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, threads {args.threads}")
    print(f"{args.dataset}: {split.num_items} items, {len(split.train)} users, L = {max_len}, precision fp32")

    runs = []
    for name in args.backbones:
        entry = params["backbones"][name]
        train = entry["train"]
        generator = seed_everything(0)
        model = build_backbone(name, split.num_items, max_len, entry["model"])
        windows = sliding_windows(split.train, max_len + 1, train["stride"])
        model.prepare_training(windows)
        optim = adam(model.parameters(), train["lr"], train.get("weight_decay", 0.0), torch.device("cpu"))
        run = Run(name, model, optim, windows, torch.randperm(len(windows), generator=generator), train, generator)
        run.step_time(1)                                                                     # warm-up
        runs.append(run)

    sasrec = next((run for run in runs if run.name == "sasrec"), None)
    if sasrec is not None:
        order = torch.randperm(len(sasrec.windows), generator=torch.Generator().manual_seed(0))
        targets = sasrec.windows[order[: 20 * 256], -1].view(20, 256)
        shared = ((targets[:, :, None] == targets[:, None, :]).sum(-1) > 1).float().mean().item()
        print(f"windows sharing their target with another of the same batch of 256: {shared:.1%} (20 batches, "
              f"stride-10 windows)")

    wall = {run.name: float("inf") for run in runs}
    cpu = dict(wall)
    for _ in range(args.repeat):
        for run in runs:
            w, c = run.step_time(args.steps)
            wall[run.name], cpu[run.name] = min(wall[run.name], w), min(cpu[run.name], c)

    first = runs[0].name
    print(f"\n| backbone | stride | windows | steps/epoch | s/step | CPU s/step | x {first} (CPU) | epoch (s) "
          f"| val pass (s) | ceiling: epochs x (epoch + val) | epochs in {BUDGET_S // 60} min |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for run in runs:
        name, train = run.name, run.train
        steps = -(-len(run.windows) // train["batch_size"])
        start = time.perf_counter()
        with torch.no_grad():
            backbone_outputs(run.model, val.windows, 1024, torch.device("cpu"))
        val_pass = time.perf_counter() - start
        epoch = wall[name] * steps
        ceiling = train["epochs"] * (epoch + val_pass)
        fits = int(BUDGET_S // (epoch + val_pass))
        print(f"| {name} | {train['stride']} | {len(run.windows):,} | {steps:,} | {wall[name]:.3f} | {cpu[name]:.3f} "
              f"| {cpu[name] / cpu[first]:.2f} | {epoch:.0f} | {val_pass:.1f} | {ceiling / 60:.0f} min "
              f"({train['epochs']} epochs) | {fits} |", flush=True)


if __name__ == "__main__":
    main()
