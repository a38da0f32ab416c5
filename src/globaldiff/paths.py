"""Where each stage reads and writes (the same layout dvc.yaml declares)."""

from __future__ import annotations

from pathlib import Path


def processed(dataset: str) -> Path:
    return Path("data/processed") / dataset


def similarity(dataset: str) -> Path:
    return Path("models") / dataset / "similarity.pt"


def run_dir(dataset: str, backbone: str, seed: int) -> Path:
    return Path("models") / dataset / backbone / f"seed{seed}"


def scores_dir(dataset: str, backbone: str, seed: int) -> Path:
    return Path("scores") / dataset / backbone / f"seed{seed}"


def opinions_dir(dataset: str, backbone: str, seed: int) -> Path:
    """One run's gamma-free part of eq. (8) (opinions stage): <part>_<opinion>.npy, <part>_ranks_<model>.npy."""
    return Path("opinions") / dataset / backbone / f"seed{seed}"


def metrics_file(dataset: str, backbone: str, seed: int) -> Path:
    return Path("reports/metrics") / dataset / backbone / f"seed{seed}.json"


def ranks_dir(dataset: str, backbone: str, seed: int) -> Path:
    """Per-user test ranks of one run (backbone.npy, diffusion.npy, fusion.npy): the paired tests' input."""
    return Path("ranks") / dataset / backbone / f"seed{seed}"


def ablation_dir(dataset: str, backbone: str, variant: str, seed: int) -> Path:
    """One ablation run: diffusion.pt, diffusion_curve.csv, metrics.json and ranks/ (per-user test ranks)."""
    return Path("models") / dataset / backbone / "ablations" / variant / f"seed{seed}"


def longterm_dir(dataset: str, backbone: str, seed: int) -> Path:
    """One long-term run (Figure 3): backbone.pt, diffusion.pt, their curves and metrics.json (P1..P4)."""
    return Path("models") / dataset / backbone / "longterm" / f"seed{seed}"


def sweep_dir(dataset: str, backbone: str, seed: int) -> Path:
    """One run's fusion sweep: sweep.json (the gamma x norm grid, the validation-tuned setting) and
    tuned_ranks.npy (that setting's per-user test ranks)."""
    return Path("sweeps") / dataset / backbone / f"seed{seed}"
