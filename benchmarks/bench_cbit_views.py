"""CBiT's training step against its number of views m, fp32 and bf16: the cost behind `backbones.cbit.model.views`.

Usage: python benchmarks/bench_cbit_views.py [--views 8 4 2] [--threads 1] [--repeat 4]

Times the library's CBiT (backbones/cbit.py, the committed sizes: hidden 64, 2 blocks, 2 heads, FFN 256) on one
batch of 256 random ML-1M-shaped windows (3,527 items, L = 10) through the training loop's own Adam
(run.device.adam) and autocast. Reports the minimum CPU time (`time.thread_time`, robust to other jobs on the
machine) over --repeat steps after two warm-up steps, per (views, precision), and each against m = 8. Prints only.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from globaldiff.backbones.cbit import CBiT  # noqa: E402
from globaldiff.run.device import adam, keep_freed_memory  # noqa: E402

ITEMS, LENGTH, BATCH = 3527, 10, 256


def step_cpu_time(views: int, precision: str, repeat: int) -> float:
    torch.manual_seed(0)
    model = CBiT(num_items=ITEMS, max_len=LENGTH, views=views, hidden=64, blocks=2, heads=2, ffn=256, dropout=0.2,
                 mask_prob=0.15)
    optim = adam(model.parameters(), 1e-3, 0.0, torch.device("cpu"))
    windows = torch.randint(1, ITEMS + 1, (BATCH, LENGTH + 1))
    draws = torch.Generator().manual_seed(0)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model.training_loss(windows, generator=draws)
        optim.zero_grad()
        loss.backward()
        optim.step()

    for _ in range(2):
        step()
    best = float("inf")
    for _ in range(repeat):
        start = time.thread_time()
        step()
        best = min(best, time.thread_time() - start)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--views", type=int, nargs="+", default=[8, 4, 2])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    print(f"torch {torch.__version__}, {args.threads} thread(s); CPU time per CBiT training step, batch {BATCH}")
    print("| views | fp32 | bf16 | fp32 vs m = 8 | bf16 vs m = 8 |\n|---:|---:|---:|---:|---:|")
    times = {(v, p): step_cpu_time(v, p, args.repeat) for v in args.views for p in ("fp32", "bf16")}
    base = {p: times.get((8, p)) for p in ("fp32", "bf16")}
    for v in args.views:
        rel = [f"{times[v, p] / base[p]:.2f}x" if base[p] else "" for p in ("fp32", "bf16")]
        print(f"| {v} | {times[v, 'fp32'] * 1000:.0f} ms | {times[v, 'bf16'] * 1000:.0f} ms | {rel[0]} | {rel[1]} |")


if __name__ == "__main__":
    main()
