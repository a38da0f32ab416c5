"""Mixed precision: a params choice (part of the recipe, never the device's), bfloat16 autocast of training steps only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from globaldiff.backbones.base import build_backbone
from globaldiff.run.backbone import BackboneTraining, train_backbone
from globaldiff.run.device import autocast, autocast_dtype, seed_everything
from globaldiff.data.windows import evaluation_sets, sliding_windows

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models: conftest.one_thread


def test_autocast_dtype_follows_the_param_not_the_device():
    assert autocast_dtype("fp32", CPU) is None
    assert autocast_dtype("fp32", torch.device("cuda")) is None   # no silent bf16 on a GPU
    assert autocast_dtype("bf16", CPU) is torch.bfloat16
    with pytest.raises(ValueError, match="precision 'fp16'"):
        autocast_dtype("fp16", CPU)


def test_autocast_casts_inside_and_is_a_no_op_without_a_dtype():
    layer, x = torch.nn.Linear(3, 2), torch.randn(4, 3)
    with autocast(CPU, None):
        assert layer(x).dtype == torch.float32
    with autocast(CPU, torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16
    assert layer(x).dtype == torch.float32


@pytest.mark.parametrize("name", ["sasrec", "bert4rec"])
def test_training_in_bf16_runs_and_keeps_float32_weights(name):
    rng = np.random.default_rng(0)
    train = [rng.integers(1, 13, size=12) for _ in range(16)]
    val, test = rng.integers(1, 13, size=16), rng.integers(1, 13, size=(16, 1))
    options = {"hidden": 8, "ffn": 16} if name == "bert4rec" else {"hidden": 8}
    backbone = build_backbone(name, 12, 4, options)
    windows = sliding_windows(train, 5, 1)
    val_set, _ = evaluation_sets(train, val, test, 4)
    cfg = BackboneTraining(epochs=2, batch_size=8, lr=1e-3, patience=5, exclude="window")
    rows = []
    state = train_backbone(backbone, windows, val_set, cfg, CPU, seed_everything(0), rows.append, torch.bfloat16)
    assert all(np.isfinite(row["loss"]) for row in rows) and len(rows) == 2
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())


def test_every_training_stage_keys_its_cache_on_precision():
    import yaml
    from pathlib import Path

    stages = yaml.safe_load((Path(__file__).resolve().parents[1] / "dvc.yaml").read_text())["stages"]
    training = [name for name, stage in stages.items()
                if any(s in stage["cmd"] for s in ("train_backbone.py", "train_diffusion.py", "longterm.py", "ablation.py"))]
    assert len(training) == 4
    for name in training:
        assert "precision" in stages[name]["params"], name
