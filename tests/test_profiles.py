"""profiles/paper-scale.yaml: the paper's and the authors' configuration, valid by the project's own checks, every
model buildable at its sizes, and the `dvc exp run -S` line it prints applied by dvc itself gives the same params
as the device runner's own application (tools/device/params_profile.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import yaml

from conftest import REPO

sys.path.insert(0, str(REPO / "tools" / "device"))

import params_profile as pp  # noqa: E402

PROFILE = REPO / "profiles" / "paper-scale.yaml"
TOOL = REPO / "tools" / "device" / "params_profile.py"


def committed() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def paper_scale() -> dict:
    return pp.apply(committed(), pp.load_profile(PROFILE))


def test_paper_scale_passes_the_projects_validation():
    from globaldiff.config.params import validate, variant_params
    from globaldiff.run.backbone import check_backbone_params

    params = paper_scale()
    validate(params)
    for name in params["backbones"]:
        check_backbone_params(params, name)
    for name in params["ablations"]["run"]:
        variant_params(params, name)


def test_paper_scale_is_the_authors_configuration():
    p = paper_scale()
    b = p["backbones"]
    assert b["sasrec"]["model"]["hidden"] == 128                       # the authors' SASRec checkpoint
    for name in ("bert4rec", "cbit"):                                  # authors: 2 blocks, 4 heads, 256, FFN 1024
        model = b[name]["model"]
        assert (model["hidden"], model["heads"], model["ffn"], model["blocks"]) == (256, 4, 1024, 2)
    assert b["srgnn"]["model"]["hidden"] == 256
    for name, model in ((n, e["model"]) for n, e in b.items() if "heads" in e["model"]):
        assert model["hidden"] % model["heads"] == 0, name
    assert (b["cbit"]["train"]["lr"], b["cbit"]["train"]["lr_step"], b["cbit"]["train"]["lr_decay"]) == (0.005, 15, 0.5)
    assert b["cbit"]["train"]["epochs"] == 250 and b["bert4rec"]["train"]["epochs"] == 200
    assert p["diffusion"]["epochs"] == 100
    assert p["denoiser"]["network"] == "mlp"                            # the paper's MLP in the main runs ...
    assert "unet" in p["ablations"]["run"]                              # ... and the authors' U-Net as a variant
    assert p["ablations"]["variants"]["unet"] == {"denoiser": {"network": "unet"}}
    assert p["ablations"]["backbone"] == "cbit"
    assert p["study"] == committed()["study"] and p["precision"] == committed()["precision"]


def test_every_model_builds_and_trains_a_step_at_paper_scale():
    """Heads dividing hidden, FFN and views are checked by running the models, not only by the schema."""
    from globaldiff.config.params import variant_params
    from globaldiff.diffusion.denoiser import guidance_vector
    from globaldiff.run.backbone import new_backbone
    from globaldiff.run.diffusion import new_denoiser

    params = paper_scale()
    items = 20
    gen = torch.Generator().manual_seed(0)
    windows = torch.randint(1, items + 1, (4, params["max_len"] + 1), generator=gen)
    for name in params["study"]["backbones"]:
        torch.manual_seed(0)
        backbone = new_backbone(params, name, items)
        loss = backbone.training_loss(windows, generator=gen)
        loss.backward()
        assert torch.isfinite(loss), name
        assert backbone.hidden == params["backbones"][name]["model"]["hidden"]
    backbone = new_backbone(params, params["ablations"]["backbone"], items).eval()
    history = windows[:, :-1]
    with torch.no_grad():
        _, h_target, h_mean = backbone.predict(history)
    for variant in (None, "unet"):
        p = params if variant is None else variant_params(params, variant)
        denoiser = new_denoiser(p, backbone).eval()
        with torch.no_grad():
            x0 = denoiser(torch.rand(4, items + 1), torch.zeros(4, dtype=torch.long),
                          guidance_vector(h_target, h_mean, denoiser.guidance))
        assert x0.shape == (4, items + 1) and torch.isfinite(x0).all()
        assert type(denoiser).__name__ == ("UNetDenoiser" if variant else "MLPDenoiser")


def test_dvc_applies_the_printed_line_as_the_runner_does(tmp_path):
    """dvc's own `-S` code (dvc.utils.hydra.apply_overrides, what `dvc exp run -S` calls) on params.yaml."""
    from dvc.utils.hydra import apply_overrides

    base = committed()
    overrides = pp.load_profile(PROFILE)
    overrides.update(pp.parse_set(["study.seeds=[0]", "ablations.run=[]", "similarity.last=null",
                                   "inference.noise=true", "denoiser.network=unet"]))
    line = pp.exp_run_line(base, overrides, name="paper-scale")
    assert line.startswith("GLOBALDIFF_DEVICE=cuda dvc exp run -n paper-scale -S ")
    assert "+backbones.cbit.train.lr_step=15" in line                  # a key params.yaml lacks: Hydra's append
    target = tmp_path / "params.yaml"
    target.write_text((REPO / "params.yaml").read_text())
    apply_overrides(str(target), pp.exp_run_args(base, overrides)[1::2])
    assert yaml.safe_load(target.read_text()) == pp.apply(base, overrides)


def test_cli_prints_the_line_and_applies_the_profile(tmp_path):
    result = subprocess.run([sys.executable, str(TOOL), str(PROFILE), "--exp-run", "--check"], capture_output=True,
                            text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1 and "-S diffusion.epochs=100" in result.stdout
    assert "pass the project's validation" in result.stderr
    out = tmp_path / "p.yaml"
    result = subprocess.run([sys.executable, str(TOOL), str(PROFILE), "--apply", str(REPO / "params.yaml"),
                             "--output", str(out), "--set", "diffusion.epochs=1"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    written = yaml.safe_load(out.read_text())
    assert written["diffusion"]["epochs"] == 1 and written["backbones"]["cbit"]["model"]["hidden"] == 256


@pytest.mark.parametrize("overrides, message", [
    ({"backbones.nope.model.hidden": 1}, "no mapping 'backbones.nope'"),
    ({"gamma.x": 1}, "no mapping 'gamma'"),
])
def test_overrides_of_missing_parents_are_refused(overrides, message):
    with pytest.raises(pp.ProfileError, match=message):
        pp.apply(committed(), overrides)


def test_a_profile_the_validation_refuses_is_refused():
    from globaldiff import ConfigError
    from globaldiff.config.params import validate

    with pytest.raises(ConfigError, match="heads = 3: expected a divisor"):
        validate(pp.apply(paper_scale(), {"backbones.bert4rec.model.heads": 3}))


def test_profile_file_form(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("set: {}\n")
    with pytest.raises(pp.ProfileError, match="non-empty"):
        pp.load_profile(bad)
    bad.write_text("set: {'not a key': 1}\nextra: 2\n")
    with pytest.raises(pp.ProfileError, match="unknown top-level"):
        pp.load_profile(bad)
