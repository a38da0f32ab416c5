"""The report's inputs read from files: the paper's tables, dataset statistics, per-user ranks, curves.

Pure functions of the paths they are given: where a file lives is the stage script's business
(globaldiff.paths), never this module's.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Hashable, Mapping, Sequence

import numpy as np

STATS = ("users", "items", "interactions", "avg_len", "sparsity")
COUNTS = ("users", "items", "interactions")


def read_paper_table1(path: str | Path) -> dict[str, dict[str, float]]:
    """{dataset: {users, items, interactions, avg_len, sparsity}} from the paper's Table 1 CSV."""
    with open(path, newline="") as f:
        return {r["dataset"]: {k: (int(r[k]) if k in COUNTS else float(r[k])) for k in STATS}
                for r in csv.DictReader(f)}


def read_paper_table2(path: str | Path) -> dict[tuple[str, str, str], float]:
    """{(method, dataset, metric): value} from the paper's Table 2 CSV (method,dataset,metric,value)."""
    with open(path, newline="") as f:
        return {(r["method"], r["dataset"], r["metric"]): float(r["value"]) for r in csv.DictReader(f)}


def read_paper_table3(path: str | Path) -> dict[str, dict[str, float]]:
    """{variant: {metric: value}} from the paper's Table 3 CSV (variant,HR@10,...), in the paper's order."""
    with open(path, newline="") as f:
        return {r["variant"]: {k: float(v) for k, v in r.items() if k != "variant"} for r in csv.DictReader(f)}


def read_stats(files: Mapping[str, str | Path]) -> dict[str, dict]:
    """{dataset: its stats.json} for each {dataset: path} whose file exists (a dataset not preprocessed is
    left out, so Table 1 says "not run" for it)."""
    return {dataset: json.loads(Path(path).read_text()) for dataset, path in files.items() if Path(path).is_file()}


def load_ranks(path: str | Path) -> dict[str, np.ndarray]:
    """{model: per-user test ranks} of one run from a folder of `<model>.npy` (or one `.npz`); no pickle."""
    path = Path(path)
    if path.is_dir():
        return {p.stem: np.load(p, allow_pickle=False) for p in sorted(path.glob("*.npy"))}
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def collect_ranks(runs: Mapping[Hashable, Sequence[str | Path]]) -> dict[Hashable, list[dict[str, np.ndarray]]]:
    """{key: one {model: ranks} per seed} for each {key: one ranks path per seed}, only where every seed's
    ranks exist with both the backbone's and the fusion's arrays. A run whose ranks are incomplete is left
    out, so its p-values read "n/a" rather than use fewer seeds."""
    out = {}
    for key, seed_paths in runs.items():
        loaded = []
        for path in seed_paths:
            ranks = load_ranks(path) if Path(path).exists() else {}
            if not {"backbone", "fusion"} <= ranks.keys():
                break
            loaded.append(ranks)
        else:
            if loaded:
                out[key] = loaded
    return out


def read_curve(path: str | Path) -> list[dict[str, float]]:
    """Rows of a curve CSV with numbers parsed; empty cells (epochs without validation) are dropped."""
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None) and k != "selected"}
                for row in csv.DictReader(f)]
