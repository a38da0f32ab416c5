"""Training cost of CL4SRec and DuoRec against SASRec at the committed sizes: hidden 64, batch 256, L 10, on the
ML-1M training windows at stride 10 (data/processed/ml-1m, ~57k windows over 3,526 items) or, without them (or
with --synthetic), as many synthetic windows with Zipf-distributed item ids.

Usage: python benchmarks/bench_competitors_b.py [--steps 5] [--repeat 3] [--threads N] [--synthetic]
Per model: seconds per training step (forward, backward, Adam; the minimum over --repeat runs of --steps
steps, the models taking turns), the projected epoch, and the ratio to SASRec's; the same for the process's CPU
seconds (all its threads), which a busy shared machine disturbs less than the wall time. It also prints how many
windows of a batch have another window of their target in that batch (all DuoRec's `positives: batch` can
use). Prints figures only. On a shared, busy machine --threads 1 gives the steadiest ratios (two threads there
wait on each other: wall and CPU time both swell, by up to 3x between runs).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from globaldiff.backbones import REGISTRY  # noqa: E402
from globaldiff.backbones.base import build_backbone  # noqa: E402
from globaldiff.data.windows import sliding_windows  # noqa: E402

L, BATCH, ITEMS = 10, 256, 3526
ENCODER = {"hidden": 64, "blocks": 2, "heads": 1, "dropout": 0.2, "loss": "ce"}   # params.yaml's sasrec
MODELS = [("sasrec", {}), ("sasrec", {"heads": 2}), ("cl4srec", {"heads": 2}),
          ("duorec", {"heads": 2, "positives": "train"}), ("duorec", {"heads": 2, "positives": "batch"})]


def training_windows(synthetic: bool) -> tuple[torch.Tensor, int, str]:
    processed = ROOT / "data" / "processed" / "ml-1m"
    if not synthetic and (processed / "stats.json").exists():
        from globaldiff.data.sequences import read_split

        split = read_split(processed, "loo")
        return sliding_windows(split.train, L + 1, 10), split.num_items, "ML-1M train windows"
    rng = np.random.default_rng(0)
    weights = 1.0 / np.arange(1, ITEMS + 1) ** 1.0
    ids = 1 + rng.permutation(ITEMS)[rng.choice(ITEMS, size=(57_000, L + 1), p=weights / weights.sum())]
    return torch.from_numpy(ids), ITEMS, "synthetic Zipf windows"


def step_time(model, optim, windows: torch.Tensor, order: torch.Tensor, steps: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process over all its threads) per step."""
    generator = torch.Generator().manual_seed(0)
    model.train()
    start, cpu = time.perf_counter(), time.process_time()
    for step in range(steps):
        loss = model.training_loss(windows[order[step * BATCH:(step + 1) * BATCH]], generator)
        optim.zero_grad()
        loss.backward()
        optim.step()
    return (time.perf_counter() - start) / steps, (time.process_time() - cpu) / steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--synthetic", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    REGISTRY.setdefault("cl4srec", "CL4SRec")        # until the registry lists them
    REGISTRY.setdefault("duorec", "DuoRec")
    windows, items, source = training_windows(args.synthetic)
    batches = -(-len(windows) // BATCH)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, threads {args.threads}")
    print(f"{source}: {len(windows)} windows, {items} items, {batches} batches of {BATCH} per epoch")
    order = torch.randperm(len(windows), generator=torch.Generator().manual_seed(0))
    targets = windows[order[: 20 * BATCH], -1].view(20, BATCH)
    partner = ((targets[:, :, None] == targets[:, None, :]).sum(-1) > 1).float().mean().item()
    print(f"windows with another of their target in the same batch: {partner:.1%} (20 batches)")
    models = []
    for name, extra in MODELS:
        torch.manual_seed(0)
        model = build_backbone(name, items, L, {**ENCODER, **extra})
        if extra.get("positives") == "train":
            model.prepare_training(windows)
        model.training_loss(windows[order[:BATCH]], torch.Generator().manual_seed(0)).backward()   # warm-up
        label = name + "".join(f" {k} {v}" for k, v in extra.items())
        models.append((label, model, torch.optim.Adam(model.parameters(), lr=1e-3)))
    # the models take turns in every repetition, so that a busy spell on a shared machine hits them all alike
    wall = {label: float("inf") for label, _, _ in models}
    cpu = dict(wall)
    for _ in range(args.repeat):
        for label, model, optim in models:
            w, c = step_time(model, optim, windows, order, args.steps)
            wall[label], cpu[label] = min(wall[label], w), min(cpu[label], c)
    first = models[0][0]
    print(f"{'model':<30} {'s/step':>8} {'epoch (s)':>10} {'x SASRec':>9} {'CPU s/step':>11} {'x SASRec':>9}")
    for label in wall:
        print(f"{label:<30} {wall[label]:>8.3f} {wall[label] * batches:>10.0f} {wall[label] / wall[first]:>9.2f} "
              f"{cpu[label]:>11.3f} {cpu[label] / cpu[first]:>9.2f}")


if __name__ == "__main__":
    main()
