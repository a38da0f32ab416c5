"""A synthetic tree of every file the summary stage reads, for the study a params dict describes.

`build_tree(root, params)` writes params.yaml, data/paper (the committed copy), each dataset's stats.json,
and for each (dataset, backbone, seed) of `study` a metrics file, per-user ranks, a diffusion curve and a
fusion sweep; the ablation and long-term runs of `ablations` and `longterm`. Numbers are random (seeded), so
the same call writes the same bytes; nothing is trained.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
METRICS = ("HR@10", "HR@20", "NDCG@10", "NDCG@20")
MODELS = ("backbone", "diffusion", "fusion", "fusion_propagated", "fusion_popularity", "fusion_random")
USERS, ITEMS = 40, 300


def committed_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def _metrics(rng, models=("backbone", "diffusion", "fusion")) -> dict:
    return {m: {k: float(np.round(rng.uniform(0.05, 0.3), 6)) for k in METRICS} for m in models}


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _ranks(rng, folder: Path, models) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for model in models:
        np.save(folder / f"{model}.npy", rng.integers(1, ITEMS, size=USERS, dtype=np.int64))


def _curve(rng, path: Path, epochs=(5, 10, 15)) -> None:
    columns = ["epoch", "loss"] + [f"val_{m}_{k}" for m in ("backbone", "diffusion", "fusion") for k in METRICS]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*columns, "selected"])
        for epoch in range(1, max(epochs) + 1):
            if epoch in epochs:
                writer.writerow([epoch, 0.5 / epoch, *np.round(rng.uniform(0.05, 0.3, len(columns) - 2), 6), True])
            else:
                writer.writerow([epoch, 0.5 / epoch, *[""] * (len(columns) - 2), ""])


def _sweep(rng, folder: Path, params: dict, dataset: str, backbone: str, seed: int) -> None:
    sweep = params["sweep"]
    grid = [{"norm": n, "gamma": g, "val": _metrics(rng, ("x",))["x"], "test": _metrics(rng, ("x",))["x"]}
            for n in sweep["norms"] for g in sweep["gammas"]]
    tuned = grid[int(rng.integers(len(grid)))]
    _write_json(folder / "sweep.json", {"dataset": dataset, "backbone": backbone, "seed": seed,
                                        "select_metric": sweep["select_metric"], "exclude": "window",
                                        "backbone": {p: _metrics(rng, ("x",))["x"] for p in ("val", "test")},
                                        "grid": grid, "tuned": tuned})
    np.save(folder / "tuned_ranks.npy", rng.integers(1, ITEMS, size=USERS, dtype=np.int64))


def build_tree(root: Path, params: dict, seed: int = 0) -> Path:
    """Every input of pipeline/summary.py under `root` for `params` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copytree(REPO / "data/paper", root / "data/paper", dirs_exist_ok=True)
    study = params["study"]
    for dataset in study["datasets"]:
        users, items = int(rng.integers(1000, 9000)), int(rng.integers(1000, 9000))
        interactions = int(users * rng.integers(20, 100))
        _write_json(root / "data/processed" / dataset / "stats.json",
                    {"users": users, "items": items, "interactions": interactions,
                     "avg_len": interactions / users, "sparsity": 1 - interactions / (users * items)})
        for backbone in study["backbones"]:
            for s in study["seeds"]:
                run = {"dataset": dataset, "backbone": backbone, "seed": s, "gamma": params["gamma"],
                       "exclude": params["eval"]["exclude"], "val": _metrics(rng, MODELS), "test": _metrics(rng, MODELS)}
                _write_json(root / "reports/metrics" / dataset / backbone / f"seed{s}.json", run)
                _ranks(rng, root / "ranks" / dataset / backbone / f"seed{s}", MODELS)
                _curve(rng, root / "models" / dataset / backbone / f"seed{s}" / "diffusion_curve.csv")
                _sweep(rng, root / "sweeps" / dataset / backbone / f"seed{s}", params, dataset, backbone, s)
    ab = params["ablations"]
    for variant in ab["run"]:
        for s in ab["seeds"]:
            folder = root / "models" / ab["dataset"] / ab["backbone"] / "ablations" / variant / f"seed{s}"
            _write_json(folder / "metrics.json", {"dataset": ab["dataset"], "backbone": ab["backbone"], "seed": s,
                                                  "variant": variant, "overrides": ab["variants"][variant],
                                                  "val": _metrics(rng), "test": _metrics(rng)})
            _ranks(rng, folder / "ranks", ("backbone", "diffusion", "fusion"))
            _curve(rng, folder / "diffusion_curve.csv")
    lt = params["longterm"]
    for s in lt["seeds"]:
        _write_json(root / "models" / lt["dataset"] / lt["backbone"] / "longterm" / f"seed{s}" / "metrics.json",
                    {"dataset": lt["dataset"], "backbone": lt["backbone"], "seed": s,
                     "test": {f"P{p}": _metrics(rng, ("backbone", "fusion")) for p in (1, 2, 3, 4)}})
    return root


def written_files(root: Path) -> dict[str, bytes]:
    """{relative path: bytes} of everything the summary stage writes under `root`."""
    out = {}
    for folder in ("reports/tables", "reports/figures"):
        for path in sorted((root / folder).glob("*")):
            out[str(path.relative_to(root))] = path.read_bytes()
    for name in ("reports/results.md", "reports/results.json"):
        if (root / name).is_file():
            out[name] = (root / name).read_bytes()
    return out
