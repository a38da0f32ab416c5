"""Two precisions of one recipe, seed by seed: is every test metric of B inside A's seed spread, and A's in B's?

Usage: python benchmarks/compare_precision.py A_REPO B_REPO [--dataset ml-1m] [--backbone sasrec]
                                              [--models backbone fusion diffusion]

A_REPO and B_REPO are two checkouts that ran `dvc repro evaluate` with the same study (datasets, backbone, seeds),
with params.yaml differing only in `precision` (read from each repo's params.yaml and printed). For each model and
test metric it prints mean +- std (sample std over seeds) and min..max of each, the difference of the means, and
whether each mean lies inside the other's min..max (the rule for adopting a precision: docs/speed.md).
Prints a Markdown table; nothing is asserted.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

import yaml

METRICS = ("HR@10", "NDCG@10", "HR@20", "NDCG@20")


def seed_metrics(repo: Path, dataset: str, backbone: str) -> dict[int, dict]:
    folder = repo / "reports" / "metrics" / dataset / backbone
    runs = {}
    for path in sorted(folder.glob("seed*.json")):
        record = json.loads(path.read_text())
        runs[int(record["seed"])] = record["test"]
    if not runs:
        sys.exit(f"{folder}: no seed*.json (run the evaluate stage there first)")
    return runs


def stopping(repo: Path, dataset: str, backbone: str, seed: int) -> str:
    """'best epoch / epochs run' of the backbone's training curve (models/.../backbone_curve.csv)."""
    path = repo / "models" / dataset / backbone / f"seed{seed}" / "backbone_curve.csv"
    if not path.exists():
        return "?"
    with open(path) as f:
        rows = list(csv.DictReader(f))
    best = max(rows, key=lambda r: float(r["val_NDCG@10"]))
    return f"{best['epoch']}/{rows[-1]['epoch']}"


def spread(values: list[float]) -> tuple[float, float, float, float]:
    return (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0, min(values), max(values))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--dataset", default="ml-1m")
    ap.add_argument("--backbone", default="sasrec")
    ap.add_argument("--models", nargs="+", default=["backbone", "fusion", "diffusion"])
    args = ap.parse_args()
    names = [f"{yaml.safe_load((repo / 'params.yaml').read_text()).get('precision', 'fp32')} ({repo.name})"
             for repo in (args.a, args.b)]
    a, b = (seed_metrics(repo, args.dataset, args.backbone) for repo in (args.a, args.b))
    if sorted(a) != sorted(b):
        sys.exit(f"different seeds: {sorted(a)} against {sorted(b)}")
    print(f"{args.dataset}, {args.backbone}, seeds {sorted(a)}: {names[0]} ({args.a}) against {names[1]} ({args.b})\n")
    print(f"| model | metric | {names[0]} mean ± std | {names[0]} min..max | {names[1]} mean ± std | "
          f"{names[1]} min..max | difference | each mean inside the other's spread |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    inside_all = True
    for model in args.models:
        for metric in METRICS:
            sa = spread([a[s][model][metric] for s in sorted(a)])
            sb = spread([b[s][model][metric] for s in sorted(b)])
            inside = sa[2] <= sb[0] <= sa[3] and sb[2] <= sa[0] <= sb[3]
            inside_all &= inside
            print(f"| {model} | {metric} | {sa[0]:.4f} ± {sa[1]:.4f} | {sa[2]:.4f}..{sa[3]:.4f} | "
                  f"{sb[0]:.4f} ± {sb[1]:.4f} | {sb[2]:.4f}..{sb[3]:.4f} | {sb[0] - sa[0]:+.4f} | "
                  f"{'yes' if inside else 'NO'} |")
    print(f"\nevery mean inside the other's seed spread: {'yes' if inside_all else 'no'}")
    print("\n| seed | " + " | ".join(f"{n}: best epoch / epochs run, test HR@10 (backbone)" for n in names) + " |")
    print("|---:|---|---|")
    for seed in sorted(a):
        cells = [f"{stopping(repo, args.dataset, args.backbone, seed)}, {runs[seed]['backbone']['HR@10']:.4f}"
                 for repo, runs in ((args.a, a), (args.b, b))]
        print(f"| {seed} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
