"""End-to-end: the real dvc.yaml on tiny synthetic data in a temporary git repo, all four backbones.

`dvc repro` runs every stage; a second `dvc repro` runs nothing; `dvc exp run -S gamma=0.3` re-runs only
the evaluation and summary stages (nothing is retrained).

The first `dvc repro` is the session's `built_study` (conftest: built once, in the background, and shared with
test_guarantees); this module checks its output, and each test works on its own copy of that repo.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import (BACKGROUND, STUDY_BACKBONES as BACKBONES, STUDY_ENV, background_fixture, copy_study,
                      ran_stages as _ran, run_cmd)

pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path) -> str:
    """run_cmd in the environment the study was built in (CPU, one thread a stage)."""
    return run_cmd(args, cwd, STUDY_ENV)


@pytest.fixture(scope="module")
def tiny_repo(built_study, tmp_path_factory) -> Path:
    return copy_study(built_study[0], tmp_path_factory.mktemp("tiny") / "repo")


def metrics_of(repo: Path, backbone: str) -> dict:
    return json.loads((repo / f"reports/metrics/custom/{backbone}/seed0.json").read_text())


def test_repro_runs_every_stage_then_nothing(built_study, tiny_repo: Path):
    first = _ran(built_study[1])  # the output of the study's first `dvc repro`; tiny_repo is a copy of its repo
    assert {"download@custom", "preprocess@custom", "similarity@custom", "evaluate", "summary"} <= first
    for backbone in BACKBONES:
        assert {f"{stage}@custom-{backbone}-0" for stage in ("train_backbone", "train_diffusion", "opinions")} <= first
        metrics = json.loads((tiny_repo / f"reports/metrics/custom/{backbone}/seed0.json").read_text())
        controls = ("fusion_propagated", "fusion_popularity", "fusion_random")
        for part, models in (("val", ()), ("test", controls)):
            assert set(metrics[part]) == {"backbone", "diffusion", "fusion", *models}
            for model in metrics[part]:
                assert set(metrics[part][model]) == {"HR@10", "HR@20", "NDCG@10", "NDCG@20"}
                assert all(0.0 <= v <= 1.0 for v in metrics[part][model].values())
        assert (tiny_repo / f"ranks/custom/{backbone}/seed0/fusion.npy").is_file()
        assert f"fusion_sweep@custom-{backbone}-0" in first
        sweep = json.loads((tiny_repo / f"sweeps/custom/{backbone}/seed0/sweep.json").read_text())
        assert sweep["tuned"]["norm"] in {"softmax", "l1", "l2"} and len(sweep["grid"]) == 33
    results = (tiny_repo / "reports/results.md").read_text()
    assert all(name in results for name in ("SASRec", "BERT4Rec", "CBiT", "SRGNN"))
    for name in ("tables/table1.md", "tables/table2.tex", "tables/table2.csv", "figures/figure5_custom.png",
                 "tables/attribution.md", "tables/ablations.csv", "tables/table3.tex",
                 "figures/figure4_custom_sasrec.pdf", "figures/figure6_custom_sasrec.png",
                 "tables/longterm.md", "figures/figure3_custom_sasrec.png", "tables/fusion_sweep.md",
                 "tables/fusion_tuned.tex", "figures/fusion_sweep_custom.png"):
        assert (tiny_repo / "reports" / name).stat().st_size > 0
    # one stage per ablation variant, on the main run's cached backbone; its metrics at diffusion.select_gamma
    assert {"ablation@guidance_none-0", "ablation@T3-0", "ablation@kmeans2-0"} <= first
    ablation = json.loads((tiny_repo / "models/custom/sasrec/ablations/T3/seed0/metrics.json").read_text())
    assert ablation["overrides"] == {"T": 3} and ablation["gamma"] == 0.5
    assert ablation["test"]["backbone"] == metrics_of(tiny_repo, "sasrec")["test"]["backbone"]
    assert "longterm@0" in first
    longterm = json.loads((tiny_repo / "models/custom/sasrec/longterm/seed0/metrics.json").read_text())
    assert list(longterm["test"]) == ["P1", "P2", "P3", "P4"]
    table3 = (tiny_repo / "reports/tables/table3.md").read_text()
    assert "K=2" in table3 and "exact cosine" in table3
    assert _ran(_run([sys.executable, "-m", "dvc", "repro"], tiny_repo)) == set()
    assert "up to date" in _run([sys.executable, "-m", "dvc", "status"], tiny_repo)


# The three tests below change their repo with `git commit`, `dvc push`, `dvc exp run`: each one's commands run on
# its own copy of the study, as a background job (conftest.background_fixture) from the start of the session, and
# the test asserts on what they printed and wrote.

def _dvc(*args: str, cwd: Path) -> str:
    return BACKGROUND.run([sys.executable, "-m", "dvc", *args], cwd, STUDY_ENV)


def _git(*args: str, cwd: Path) -> str:
    return BACKGROUND.run(["git", *args], cwd)


CBIT_MODEL = "models/custom/cbit/seed0/backbone.pt"


@background_fixture("built_study")
def pushed_and_pulled(tmp: Path, built_study) -> dict:
    """repro + push on one machine (the study, committed); clone + pull on another; repro and status there."""
    repo = copy_study(built_study[0], tmp / "repo")
    remote, clone = tmp / "remote", tmp / "clone"
    _dvc("remote", "add", "-d", "shared", str(remote), cwd=repo)
    _git("add", "-A", cwd=repo)
    _git("commit", "-qm", "tiny study", cwd=repo)
    _dvc("push", cwd=repo)
    _git("clone", "-q", str(repo), str(clone), cwd=tmp)
    model_before_pull = (clone / CBIT_MODEL).exists()
    _dvc("pull", cwd=clone)
    return {"repo": repo, "clone": clone, "model_before_pull": model_before_pull,
            "repro": _dvc("repro", cwd=clone), "status": _dvc("status", cwd=clone)}


def test_pushed_results_pulled_elsewhere_retrain_nothing(pushed_and_pulled):
    """The GPU-machine workflow: repro + push there; clone + pull here; repro then runs no stage at all."""
    run = pushed_and_pulled
    assert not run["model_before_pull"]    # git carries no model
    assert (run["clone"] / CBIT_MODEL).read_bytes() == (run["repo"] / CBIT_MODEL).read_bytes()
    assert _ran(run["repro"]) == set()
    assert "up to date" in run["status"]


@background_fixture("built_study")
def gamma_changed(tmp: Path, built_study) -> dict:
    """The study committed, then `dvc exp run -S gamma=0.3`; sasrec's metrics before and after."""
    repo = copy_study(built_study[0], tmp / "repo")
    _git("add", "-A", cwd=repo)
    _git("commit", "-qm", "tiny study", "--allow-empty", cwd=repo)
    before = metrics_of(repo, "sasrec")
    output = _dvc("exp", "run", "-S", "gamma=0.3", cwd=repo)
    return {"output": output, "before": before, "after": metrics_of(repo, "sasrec")}


def test_gamma_change_reruns_only_fusion(gamma_changed):
    output, before, after = gamma_changed["output"], gamma_changed["before"], gamma_changed["after"]
    assert _ran(output) == {"evaluate", "summary"}
    assert after["gamma"] == 0.3 and before["gamma"] == 0.5
    assert after["test"]["backbone"] == before["test"]["backbone"]


@background_fixture("built_study")
def figures_runs_left_out(tmp: Path, built_study) -> dict:
    """The study committed (`dvc exp run` needs a commit), then the exp run that leaves out ablations and longterm."""
    repo = copy_study(built_study[0], tmp / "repo")
    _git("add", "-A", cwd=repo)
    _git("commit", "-qm", "tiny study", cwd=repo)
    return {"repo": repo, "output": _dvc("exp", "run", "-S", "ablations.run=[]", "-S", "longterm.seeds=[]", cwd=repo)}


def test_figures_runs_left_out_rerun_only_the_summary(figures_runs_left_out):
    """README's way to run Table 2 without the long-term and ablation stages."""
    assert _ran(figures_runs_left_out["output"]) == {"summary"}
    assert (figures_runs_left_out["repo"] / "reports/tables/table2.md").stat().st_size > 0
