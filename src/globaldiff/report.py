"""Tables from metrics files only (no training): our numbers, mean +- std over seeds, beside the paper's."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

METRICS = ("HR@10", "HR@20", "NDCG@10", "NDCG@20")
PAPER_NAMES = {"sasrec": "SASRec", "bert4rec": "BERT4Rec", "cbit": "CBiT", "srgnn": "SRGNN"}


def read_paper_table2(path: str | Path) -> dict[tuple[str, str, str], float]:
    """{(method, dataset, metric): value} from the paper's Table 2 CSV (method,dataset,metric,value)."""
    with open(path, newline="") as f:
        return {(r["method"], r["dataset"], r["metric"]): float(r["value"]) for r in csv.DictReader(f)}


def aggregate(runs: list[dict], part: str = "test") -> dict:
    """{(dataset, backbone): {model: {metric: (mean, std, n)}}} over the seeds present."""
    grouped: dict[tuple[str, str], list[dict]] = {}
    for run in runs:
        grouped.setdefault((run["dataset"], run["backbone"]), []).append(run)
    out = {}
    for key, group in sorted(grouped.items()):
        out[key] = {}
        for model in ("backbone", "fusion", "diffusion"):
            out[key][model] = {}
            for metric in METRICS:
                values = np.array([r[part][model][metric] for r in group])
                std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
                out[key][model][metric] = (float(values.mean()), std, len(values))
    return out


def _cell(mean: float, std: float, n: int) -> str:
    return f"{mean:.4f} ± {std:.4f}" if n > 1 else f"{mean:.4f}"


def results_markdown(summary: dict, paper: dict, gamma: float, exclude: str) -> str:
    """Markdown table: per (dataset, backbone) our backbone / +GlobalDiff / diffusion alone beside the paper."""
    header = "| dataset | model | seeds | " + " | ".join(METRICS) + " |"
    lines = [f"Test metrics, full ranking over all items, every user; gamma = {gamma}, excluded items: {exclude}.",
             "Ours: mean ± sample std over seeds. Paper: Table 2. Improv.: +GlobalDiff over the backbone.", "",
             header, "|" + "---|" * (len(METRICS) + 3)]
    for (dataset, backbone), models in summary.items():
        name = PAPER_NAMES.get(backbone, backbone)
        n = models["backbone"][METRICS[0]][2]
        rows = [(f"{name} (ours)", models["backbone"]), (f"{name}+GlobalDiff (ours)", models["fusion"]),
                ("diffusion alone (ours)", models["diffusion"])]
        for label, m in rows:
            lines.append(f"| {dataset} | {label} | {n} | " + " | ".join(_cell(*m[k]) for k in METRICS) + " |")
        gain = [100 * (models["fusion"][k][0] / models["backbone"][k][0] - 1) if models["backbone"][k][0] else float("nan")
                for k in METRICS]
        lines.append(f"| {dataset} | Improv. (ours) | | " + " | ".join(f"{g:+.2f}%" for g in gain) + " |")
        for label, method in ((f"{name} (paper)", name), (f"{name}+GlobalDiff (paper)", f"{name}+GlobalDiff")):
            values = [paper.get((method, dataset, k)) for k in METRICS]
            cells = ["not reported" if v is None else f"{v:.4f}" for v in values]
            lines.append(f"| {dataset} | {label} | | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def results_json(summary: dict) -> dict:
    """Nested plain dict for `dvc metrics show`: dataset -> backbone -> model -> metric -> mean."""
    out: dict = {}
    for (dataset, backbone), models in summary.items():
        for model, metrics in models.items():
            out.setdefault(dataset, {}).setdefault(backbone, {})[model] = {k: round(v[0], 6) for k, v in metrics.items()}
    return out
