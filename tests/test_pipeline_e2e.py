"""End-to-end: the real dvc.yaml on tiny synthetic data in a temporary git repo.

`dvc repro` runs every stage; a second `dvc repro` runs nothing; `dvc exp run -S gamma=0.3` re-runs only
the evaluation and summary stages (nothing is retrained).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _tiny_params() -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["study"] = {"datasets": ["custom"], "backbones": ["sasrec"], "seeds": [0]}
    custom = params["datasets"]["custom"]
    custom["sources"][custom["source"]] = {"url": "file:data/custom/interactions.csv", "sha256": None}
    custom.update({"min_rating": 1, "min_uc": 6, "min_sc": 1})
    params["T"] = 5
    params["backbones"]["sasrec"]["model"].update({"hidden": 8})
    params["backbones"]["sasrec"]["train"].update({"epochs": 2, "patience": 1, "batch_size": 32})
    params["diffusion"].update({"epochs": 2, "eval_every": 1, "batch_size": 16})
    params["denoiser"].update({"hidden": 16, "time_dim": 8})
    return params


def _write_interactions(path: Path, users: int = 40, items: int = 30, per_user: int = 12) -> None:
    rng = np.random.default_rng(0)
    rows = ["user_id,item_id,rating,timestamp"]
    for user in range(users):
        for step, item in enumerate(rng.choice(items, size=per_user, replace=False)):
            rows.append(f"{user},{item + 100},{rng.integers(1, 6)},{1000 * user + step}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n")


def _run(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def _ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("tiny")
    for folder in ("pipeline", "src", "data/paper"):
        shutil.copytree(ROOT / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    (repo / "params.yaml").write_text(yaml.safe_dump(_tiny_params(), sort_keys=False))
    _write_interactions(repo / "data/custom/interactions.csv")
    _run(["git", "init", "-q"], repo)
    _run(["git", "config", "user.email", "test@example.invalid"], repo)
    _run(["git", "config", "user.name", "test"], repo)
    _run([sys.executable, "-m", "dvc", "init", "-q"], repo)
    return repo


def test_repro_runs_every_stage_then_nothing(tiny_repo: Path):
    first = _ran(_run([sys.executable, "-m", "dvc", "repro"], tiny_repo))
    assert {"download@custom", "preprocess@custom", "similarity@custom", "train_backbone@custom-sasrec-0",
            "train_diffusion@custom-sasrec-0", "evaluate@custom-sasrec-0", "summary"} <= first
    metrics = json.loads((tiny_repo / "reports/metrics/custom/sasrec/seed0.json").read_text())
    for part in ("val", "test"):
        for model in ("backbone", "diffusion", "fusion"):
            assert set(metrics[part][model]) == {"HR@10", "HR@20", "NDCG@10", "NDCG@20"}
            assert all(0.0 <= v <= 1.0 for v in metrics[part][model].values())
    assert "sasrec" in (tiny_repo / "reports/results.md").read_text().lower()
    assert _ran(_run([sys.executable, "-m", "dvc", "repro"], tiny_repo)) == set()
    assert "up to date" in _run([sys.executable, "-m", "dvc", "status"], tiny_repo)


def test_gamma_change_reruns_only_fusion(tiny_repo: Path):
    _run(["git", "add", "-A"], tiny_repo)
    _run(["git", "commit", "-qm", "tiny study"], tiny_repo)
    before = json.loads((tiny_repo / "reports/metrics/custom/sasrec/seed0.json").read_text())
    output = _run([sys.executable, "-m", "dvc", "exp", "run", "-S", "gamma=0.3"], tiny_repo)
    assert _ran(output) == {"evaluate@custom-sasrec-0", "summary"}
    after = json.loads((tiny_repo / "reports/metrics/custom/sasrec/seed0.json").read_text())
    assert after["gamma"] == 0.3 and before["gamma"] == 0.5
    assert after["test"]["backbone"] == before["test"]["backbone"]
