"""End-to-end: the real dvc.yaml on tiny synthetic data in a temporary git repo, all four backbones.

`dvc repro` runs every stage; a second `dvc repro` runs nothing; `dvc exp run -S gamma=0.3` re-runs only
the evaluation and summary stages (nothing is retrained).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import make_tiny_repo, ran_stages as _ran, run_cmd as _run, tiny_params

pytestmark = pytest.mark.slow

BACKBONES = ["sasrec", "bert4rec", "cbit", "srgnn"]
TINY_MODELS = {"sasrec": {"hidden": 8}, "bert4rec": {"hidden": 8, "ffn": 16}, "cbit": {"hidden": 8, "ffn": 16, "views": 2},
               "srgnn": {"hidden": 8}}


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory) -> Path:
    params = tiny_params()
    params["study"]["backbones"] = BACKBONES
    for name, model in TINY_MODELS.items():
        params["backbones"][name]["model"].update(model)
        params["backbones"][name]["train"].update({"epochs": 2, "patience": 1, "batch_size": 32})
    return make_tiny_repo(tmp_path_factory.mktemp("tiny"), params)


def metrics_of(repo: Path, backbone: str) -> dict:
    return json.loads((repo / f"reports/metrics/custom/{backbone}/seed0.json").read_text())


def test_repro_runs_every_stage_then_nothing(tiny_repo: Path):
    first = _ran(_run([sys.executable, "-m", "dvc", "repro"], tiny_repo))
    assert {"download@custom", "preprocess@custom", "similarity@custom", "summary"} <= first
    for backbone in BACKBONES:
        assert {f"{stage}@custom-{backbone}-0" for stage in ("train_backbone", "train_diffusion", "evaluate")} <= first
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


def test_pushed_results_pulled_elsewhere_retrain_nothing(tiny_repo: Path, tmp_path: Path):
    """The GPU-machine workflow: repro + push there; clone + pull here; repro then runs no stage at all."""
    remote = tmp_path / "remote"
    _run([sys.executable, "-m", "dvc", "remote", "add", "-d", "shared", str(remote)], tiny_repo)
    _run(["git", "add", "-A"], tiny_repo)
    _run(["git", "commit", "-qm", "tiny study"], tiny_repo)
    _run([sys.executable, "-m", "dvc", "push"], tiny_repo)
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(tiny_repo), str(clone)], tmp_path)
    assert not (clone / "models/custom/cbit/seed0/backbone.pt").exists()    # git carries no model
    _run([sys.executable, "-m", "dvc", "pull"], clone)
    assert (clone / "models/custom/cbit/seed0/backbone.pt").read_bytes() == \
        (tiny_repo / "models/custom/cbit/seed0/backbone.pt").read_bytes()
    assert _ran(_run([sys.executable, "-m", "dvc", "repro"], clone)) == set()
    assert "up to date" in _run([sys.executable, "-m", "dvc", "status"], clone)


def test_gamma_change_reruns_only_fusion(tiny_repo: Path):
    _run(["git", "add", "-A"], tiny_repo)
    _run(["git", "commit", "-qm", "tiny study", "--allow-empty"], tiny_repo)
    before = json.loads((tiny_repo / "reports/metrics/custom/sasrec/seed0.json").read_text())
    output = _run([sys.executable, "-m", "dvc", "exp", "run", "-S", "gamma=0.3"], tiny_repo)
    assert _ran(output) == {f"evaluate@custom-{b}-0" for b in BACKBONES} | {"summary"}
    after = json.loads((tiny_repo / "reports/metrics/custom/sasrec/seed0.json").read_text())
    assert after["gamma"] == 0.3 and before["gamma"] == 0.5
    assert after["test"]["backbone"] == before["test"]["backbone"]


def test_figures_runs_left_out_rerun_only_the_summary(tiny_repo: Path):
    """README's way to run Table 2 without the long-term and ablation stages."""
    output = _run([sys.executable, "-m", "dvc", "exp", "run", "-S", "ablations.run=[]", "-S", "longterm.seeds=[]"],
                  tiny_repo)
    assert _ran(output) == {"summary"}
    assert (tiny_repo / "reports/tables/table2.md").stat().st_size > 0
