"""A stage's deps are exactly the code it runs: dvc.yaml against the import closure of each stage's script
(tools/stage_deps.py), on the committed dvc.yaml and on edited copies that must fail."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import stage_deps  # noqa: E402


def copy_repo(tmp_path: Path) -> Path:
    """The files the check reads: code, dvc.yaml, params.yaml and the .dvc folder."""
    root = tmp_path / "repo"
    for name in ("src", "pipeline"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(REPO / name, root / name)
    (root / ".dvc").mkdir()
    (root / ".dvc" / "config").write_text("[core]\n    no_scm = true\n")
    return root


def test_committed_deps_are_exactly_the_code_each_stage_runs():
    report = stage_deps.check(REPO)
    assert len(report) >= 10
    problems = {name: found for name, found in report.items() if found["missing"] or found["extra"]}
    assert not problems


def test_a_dropped_dep_is_named(tmp_path):
    root = copy_repo(tmp_path)
    text = (root / "dvc.yaml").read_text()
    assert text.count("      - src/globaldiff/ranking/metrics.py\n") >= 3
    (root / "dvc.yaml").write_text(text.replace("      - src/globaldiff/ranking/metrics.py\n", ""))
    report = stage_deps.check(root)
    missing = {name for name, found in report.items() if "src/globaldiff/ranking/metrics.py" in found["missing"]}
    assert "train_backbone@ml-1m-sasrec-0" in missing and "evaluate" in missing


def test_a_new_import_without_its_dep_is_named(tmp_path):
    # An edit to the code, not to dvc.yaml: evaluation starts to use the denoiser module.
    root = copy_repo(tmp_path)
    path = root / "src/globaldiff/ranking/evaluation.py"
    path.write_text(path.read_text() + "\n\ndef _late():\n    from globaldiff.diffusion.denoiser import guidance_vector\n")
    report = stage_deps.check(root)
    assert report["evaluate"]["missing"] == ["src/globaldiff/diffusion/denoiser.py"]


def test_a_stale_dep_is_named(tmp_path):
    root = copy_repo(tmp_path)
    text = (root / "dvc.yaml").read_text()
    (root / "dvc.yaml").write_text(text.replace("      - pipeline/evaluate.py\n",
                                                "      - pipeline/evaluate.py\n      - src/globaldiff/run/diffusion.py\n"))
    assert stage_deps.check(root)["evaluate"]["extra"] == ["src/globaldiff/run/diffusion.py"]


def test_the_registry_left_out_of_the_deps_is_pure_data(tmp_path):
    assert stage_deps.registry_is_data(REPO)
    root = copy_repo(tmp_path)
    registry = root / stage_deps.REGISTRY_FILE
    registry.write_text(registry.read_text() + "\nimport torch\n")
    assert not stage_deps.registry_is_data(root)


def test_a_new_backbone_changes_no_other_stage(tmp_path):
    root = copy_repo(tmp_path)
    before = stage_deps.check(root)
    registry = root / stage_deps.REGISTRY_FILE
    registry.write_text(registry.read_text().replace('    "srgnn": "SRGNN",\n', '    "srgnn": "SRGNN",\n    "gru": "GRU",\n'))
    (root / "src/globaldiff/backbones/gru.py").write_text(
        '"""A test backbone."""\nfrom globaldiff.backbones.base import Backbone\n\n\nclass GRU(Backbone):\n    pass\n')
    assert stage_deps.check(root) == before
    # and no existing stage imports the new file
    for name in before:
        script, backbone = stage_deps.stage_backbone(
            "python pipeline/train_backbone.py --backbone sasrec" if "sasrec" in name else "python pipeline/evaluate.py",
            {})
        assert Path("src/globaldiff/backbones/gru.py") not in stage_deps.closure(script, backbone, root)


@pytest.mark.parametrize("script, backbone, absent", [
    ("pipeline/train_backbone.py", "sasrec", ["diffusion/denoiser.py", "ranking/ensemble.py", "backbones/cbit.py"]),
    ("pipeline/evaluate.py", None, ["backbones/base.py", "run/backbone.py", "diffusion/denoiser.py"]),
    ("pipeline/download.py", None, ["data/sequences.py", "ingest/loaders.py", "backbones/base.py"]),
])
def test_stages_do_not_drag_in_code_they_never_run(script, backbone, absent):
    files = {str(p) for p in stage_deps.closure(Path(script), backbone)}
    for name in absent:
        assert f"src/globaldiff/{name}" not in files


def test_no_registered_backbone_imports_another():
    # A stage template lists the union of its backbones' code, so a backbone built on another registered
    # backbone's file would make that file a dep of every backbone's stages: shared code goes in base/layers/cloze.
    names = stage_deps.registered_backbones()
    own = {name: Path(f"src/globaldiff/backbones/{name}.py") for name in names}
    for name in names:
        files = stage_deps.closure(own[name])
        assert not {path for other, path in own.items() if other != name} & files, name
