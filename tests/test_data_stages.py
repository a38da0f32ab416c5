"""End to end: `dvc repro` of the data stages (download, preprocess) in a temporary git repo.

The repo's dvc.yaml also holds the model stages, whose inputs do not exist here: only the data stages are
targeted (a matrix stage's name targets all its members). ml-100k comes from the local HTTP server as a
GroupLens-layout zip; ml-1m is the embedded file. A second repro must run nothing and `dvc status` be clean.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, zip_bytes

pytestmark = pytest.mark.slow


def dvc(repo, *args, env) -> str:
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


@pytest.fixture
def repo(tmp_path, server, ml100k_udata):
    """A git+dvc repo with this repo's dvc.yaml, params.yaml (datasets: ml-1m, ml-100k), pipeline/, src/."""
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, root / name)
    for name in ("pipeline", "src", "data/embedded", "data/custom"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["study"]["datasets"] = ["ml-1m", "ml-100k"]
    source = params["datasets"]["ml-100k"]["sources"][params["datasets"]["ml-100k"]["source"]]
    source["url"] = server.add("ml-100k.zip", zip_bytes({"ml-100k/u.data": ml100k_udata}))
    source["sha256"] = None
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(tmp_path / "site-cache"),
           "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}",
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(["git", "init", "-q", "."], cwd=root, check=True, env=env)
    dvc(root, "init", "-q", env=env)
    return root, env, server


def test_repro_data_stages(repo):
    root, env, server = repo
    out = dvc(root, "repro", "preprocess", env=env)
    for stage in ("download@ml-1m", "download@ml-100k", "preprocess@ml-1m", "preprocess@ml-100k"):
        assert f"Running stage '{stage}'" in out
    stats = {d: json.loads((root / f"data/processed/{d}/stats.json").read_text()) for d in ("ml-1m", "ml-100k")}
    assert [stats["ml-1m"][k] for k in ("users", "items", "interactions")] == [5180, 3526, 562800]
    # ml-100k through ML-1M's filters (4/20/1): the figures README quotes.
    assert [stats["ml-100k"][k] for k in ("users", "items", "interactions")] == [703, 1439, 52244]
    assert json.loads((root / "data/checksums.json").read_text()).keys() == {server.url("ml-100k.zip")}

    again = dvc(root, "repro", "preprocess", env=env)
    assert "Running stage" not in again
    status = dvc(root, "status", "download", "preprocess", env=env)
    assert "Data and pipelines are up to date" in status

    # A filter change re-runs only that dataset's preprocess.
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["datasets"]["ml-100k"]["min_uc"] = 30
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = dvc(root, "repro", "preprocess", env=env)
    assert [line for line in third.splitlines() if line.startswith("Running stage")] == [
        "Running stage 'preprocess@ml-100k':"]
    assert json.loads((root / "data/processed/ml-100k/stats.json").read_text())["users"] < 703
