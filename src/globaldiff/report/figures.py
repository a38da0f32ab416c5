"""The paper's figures, redrawn from files the pipeline wrote (curves, metrics); matplotlib only, PNG + PDF.

Figure 3 (long-term prediction) is drawn from the longterm stage, Figures 4 (guidance) and 6 (diffusion
steps) from the ablation stages; Figure 5 (voting performance across diffusion epochs) is drawn from the
validation passes that train_diffusion logs every `diffusion.eval_every` epochs (curves as
`readers.read_curve` parses them): the paper plots test metrics, but looking at test
data during training would be choosing on test, so ours is the validation curve (the caption says so).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from globaldiff.io import atomic_path  # noqa: E402

SERIES = (("backbone", "backbone alone"), ("diffusion", "diffusion alone"), ("fusion", "+GlobalDiff (fusion)"))


def validation_points(curves: Sequence[list[dict[str, float]]], column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(epochs, mean, std over curves) of `column` at the epochs every curve validated."""
    per_curve = [{int(r["epoch"]): r[column] for r in curve if column in r} for curve in curves]
    epochs = sorted(set.intersection(*(set(c) for c in per_curve))) if per_curve else []
    values = np.array([[c[e] for e in epochs] for c in per_curve], dtype=np.float64)
    if not epochs:
        return np.array([]), np.array([]), np.array([])
    std = values.std(axis=0, ddof=1) if len(per_curve) > 1 else np.zeros(len(epochs))
    return np.array(epochs), values.mean(axis=0), std


def save_figure(fig, stem: str | Path) -> list[Path]:
    """Write `stem`.png and `stem`.pdf atomically (no timestamps in the PDF, so reruns give the same bytes)."""
    paths = []
    for suffix, extra in ((".png", {"dpi": 150, "metadata": {"Software": None}}),
                          (".pdf", {"metadata": {"CreationDate": None, "ModDate": None, "Producer": None,
                                                 "Creator": None}})):
        path = Path(str(stem) + suffix)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=suffix[1:], **extra)
        paths.append(path)
    plt.close(fig)
    return paths


def curve_panel(ax, lines: Sequence[tuple[Sequence[list[dict[str, float]]], str, str]], title: str,
                ylabel: str) -> None:
    """One panel of validation curves across diffusion epochs: for each (curves, column, label), the mean over
    the curves as a line and +- one std as a band."""
    for curves, column, label in lines:
        epochs, mean, std = validation_points(curves, column)
        if len(epochs):
            ax.plot(epochs, mean, marker="o", label=label)
            ax.fill_between(epochs, mean - std, mean + std, alpha=0.2)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("diffusion epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def figure5(curves_by_backbone: Mapping[str, Sequence[list[dict[str, float]]]], stem: str | Path,
            dataset: str, metrics: Sequence[str] = ("HR@20", "NDCG@20")) -> list[Path]:
    """Figure 5: backbone, diffusion alone and fusion across diffusion epochs, one column per metric and one
    row per backbone; lines are means over seeds, bands +- one std."""
    backbones = list(curves_by_backbone)
    fig, axes = plt.subplots(len(backbones), len(metrics), figsize=(4.2 * len(metrics), 3.0 * len(backbones)),
                             squeeze=False)
    for row, backbone in enumerate(backbones):
        curves = curves_by_backbone[backbone]
        for col, metric in enumerate(metrics):
            lines = [(curves, f"val_{model}_{metric}", label) for model, label in SERIES]
            curve_panel(axes[row][col], lines, f"{backbone} on {dataset}: validation {metric} ({len(curves)} seeds)",
                        metric)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, stem)


def figure4(runs_by_guidance: Mapping[str, Sequence[Mapping]], stem: str | Path, dataset: str, backbone: str,
            metrics: Sequence[str] = ("HR@20", "NDCG@20"), part: str = "test") -> list[Path]:
    """Figure 4: +GlobalDiff with full, target-only and no guidance; bars are means over seeds, whiskers +- one
    std (none for one seed)."""
    labels = list(runs_by_guidance)
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.0), squeeze=False)
    for col, metric in enumerate(metrics):
        ax = axes[0][col]
        values = [np.array([r[part]["fusion"][metric] for r in runs_by_guidance[g]], dtype=np.float64) for g in labels]
        means = [v.mean() for v in values]
        stds = [v.std(ddof=1) if len(v) > 1 else 0.0 for v in values]
        ax.bar(range(len(labels)), means, yerr=stds, capsize=4, color=plt.cm.tab10(np.arange(len(labels))))
        ax.set_xticks(range(len(labels)), labels)
        low = min(means) if means else 0.0
        ax.set_ylim(low * 0.9, max(m + s for m, s in zip(means, stds)) * 1.03 if means else 1.0)
        seeds = min((len(v) for v in values), default=0)
        ax.set_title(f"{backbone}+GlobalDiff on {dataset}: {part} {metric} ({seeds} seed{'s' if seeds != 1 else ''})",
                     fontsize=9)
        ax.set_xlabel("guidance")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, stem)


def figure6(curves_by_steps: Mapping[str, Sequence[list[dict[str, float]]]], stem: str | Path, dataset: str,
            backbone: str, metric: str = "HR@20") -> list[Path]:
    """Figure 6: validation `metric` of the fusion across diffusion epochs, one line per number of diffusion
    steps T (means over seeds, bands +- one std)."""
    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    lines = [(curves, f"val_fusion_{metric}", label) for label, curves in curves_by_steps.items()]
    curve_panel(ax, lines, f"{backbone}+GlobalDiff on {dataset}: validation {metric} by diffusion steps", metric)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, stem)


def figure3(runs: Sequence[Mapping], stem: str | Path, dataset: str, backbone: str,
            metrics: Sequence[str] = ("HR@20", "NDCG@20")) -> list[Path]:
    """Figure 3: long-term prediction, test `metrics` of the P-th future item (P = 1..4) for the backbone and
    +GlobalDiff from one fixed input; points are means over seeds, whiskers +- one std."""
    horizons = sorted(runs[0]["test"], key=lambda h: int(h[1:])) if runs else []
    steps = [int(h[1:]) for h in horizons]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.0 * len(metrics), 3.0), squeeze=False)
    for col, metric in enumerate(metrics):
        ax = axes[0][col]
        for model, label in (("backbone", backbone), ("fusion", f"{backbone}+GlobalDiff")):
            values = np.array([[r["test"][h][model][metric] for h in horizons] for r in runs], dtype=np.float64)
            std = values.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros(len(steps))
            ax.errorbar(steps, values.mean(axis=0), yerr=std, marker="o", capsize=3, label=label)
        ax.set_xticks(steps)
        ax.set_title(f"{dataset}: test {metric} of the P-th next item ({len(runs)} seed{'s' if len(runs) != 1 else ''})",
                     fontsize=9)
        ax.set_xlabel("P")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, stem)


def fusion_sweep_figure(sweeps: Mapping[str, Sequence[Mapping]], stem: str | Path, dataset: str,
                        metric: str = "HR@10") -> list[Path]:
    """Beyond the paper: `metric` of eq. (8)'s fusion against gamma, one colour per normalisation of x0_hat,
    validation dashed and test solid, the backbone alone as grey lines; one panel per backbone, means over
    seeds (`sweeps`: {backbone: one sweep.json per seed})."""
    backbones = list(sweeps)
    fig, axes = plt.subplots(1, len(backbones), figsize=(4.4 * len(backbones), 3.2), squeeze=False)
    for col, backbone in enumerate(backbones):
        ax, runs = axes[0][col], sweeps[backbone]
        norms = list(dict.fromkeys(cell["norm"] for cell in runs[0]["grid"]))
        for i, norm in enumerate(norms):
            gammas = sorted({cell["gamma"] for cell in runs[0]["grid"] if cell["norm"] == norm})
            for part, style in (("val", "--"), ("test", "-")):
                values = [np.mean([c[part][metric] for r in runs for c in r["grid"] if c["norm"] == norm and c["gamma"] == g])
                          for g in gammas]
                ax.plot(gammas, values, style, color=plt.cm.tab10(i), marker="o", markersize=3,
                        label=f"{norm} ({part})")
        for part, style in (("val", "--"), ("test", "-")):
            ax.axhline(np.mean([r["backbone"][part][metric] for r in runs]), color="grey", linestyle=style,
                       linewidth=1, label=f"backbone alone ({part})")
        ax.set_title(f"{backbone} on {dataset}: fusion {metric} by gamma ({len(runs)} seed{'s' if len(runs) != 1 else ''})",
                     fontsize=9)
        ax.set_xlabel("gamma (weight of the backbone in eq. 8)")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, stem)
