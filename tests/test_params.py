"""params.yaml validation: the shipped file passes; each bad value fails with a ConfigError naming its key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from globaldiff import ConfigError
from globaldiff.config.params import load_params, validate

PARAMS_FILE = Path(__file__).resolve().parents[1] / "params.yaml"


@pytest.fixture(scope="module")
def base() -> dict:
    return yaml.safe_load(PARAMS_FILE.read_text())


@pytest.fixture
def params(base) -> dict:
    return copy.deepcopy(base)


def rejects(params: dict, *words: str) -> str:
    with pytest.raises(ConfigError) as err:
        validate(params)
    message = str(err.value)
    for word in words:
        assert word in message, message
    return message


def test_shipped_params_are_valid(params):
    assert validate(params) is params
    assert load_params(PARAMS_FILE)["T"] == params["T"]


def test_load_params_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("gamma: [0.5\n")
    with pytest.raises(ConfigError):
        load_params(bad)


def test_not_a_mapping():
    with pytest.raises(ConfigError):
        validate([1, 2])


def test_unknown_top_level_key_is_named(params):
    params["gama"] = 0.3
    rejects(params, "gama")


@pytest.mark.parametrize("value", [-0.1, 1.5, "0.5", True])
def test_gamma_outside_unit_interval_or_not_a_number(params, value):
    params["gamma"] = value
    rejects(params, "gamma")


@pytest.mark.parametrize("value", [0, 1.0])
def test_gamma_bounds_are_inclusive(params, value):
    params["gamma"] = value
    validate(params)


@pytest.mark.parametrize("value", [0, -5, 2.5, None])
def test_bad_T(params, value):
    params["T"] = value
    rejects(params, "T")


@pytest.mark.parametrize("key", ["zeta", "delta"])
def test_negative_zeta_delta(params, key):
    params["diffusion"][key] = -0.5
    rejects(params, f"diffusion.{key}")


def test_zero_zeta_delta_allowed(params):
    params["diffusion"]["zeta"] = 0
    params["diffusion"]["delta"] = 0.0
    validate(params)


def test_unknown_backbone_in_study(params):
    params["study"]["backbones"] = ["sasrec", "nextitnet"]
    rejects(params, "nextitnet", "study.backbones")


def test_study_backbone_without_entry(params):
    del params["backbones"]["sasrec"]
    rejects(params, "sasrec", "backbones")


def test_study_dataset_without_entry(params):
    params["study"]["datasets"] = ["ml-1m", "ml-20m"]
    rejects(params, "ml-20m", "study.datasets")


@pytest.mark.parametrize("dotted, value", [
    ("similarity.method", "jaccard"),
    ("denoiser.guidance", "partial"),
    ("diffusion.loss", "l1"),
    ("diffusion.rule", "other"),
    ("diffusion.select_metric", "HR@5"),
    ("inference.input", "probs"),
    ("inference.scale", "sum"),
    ("ensemble.norm", "linf"),
    ("eval.exclude", "all"),
    ("sweep.select_metric", "MRR"),
])
def test_unknown_choice(params, dotted, value):
    section, key = dotted.split(".")
    params[section][key] = value
    rejects(params, dotted, repr(value))


@pytest.mark.parametrize("dotted", ["diffusion.zeta", "similarity.method", "study.datasets", "eval.exclude"])
def test_missing_key_is_named(params, dotted):
    section, key = dotted.split(".")
    del params[section][key]
    rejects(params, dotted)


@pytest.mark.parametrize("value", [21, 0, -1, 2.5, "5"])
def test_bad_start_step(params, value):
    params["inference"]["start_step"] = value
    rejects(params, "inference.start_step")


@pytest.mark.parametrize("value", [None, 1, 20])
def test_good_start_step(params, value):
    params["inference"]["start_step"] = value
    validate(params)


def test_start_step_checked_against_T(params):
    params["T"] = 10
    params["inference"]["start_step"] = 15
    rejects(params, "inference.start_step")


def test_start_step_bool_rejected(params):
    params["inference"]["start_step"] = True
    rejects(params, "inference.start_step")


@pytest.mark.parametrize("dotted, value", [
    ("diffusion.select_gamma", 1.2),
    ("diffusion.epochs", 0),
    ("diffusion.eval_every", 0),
    ("similarity.clusters", 0),
])
def test_other_numeric_bounds(params, dotted, value):
    section, key = dotted.split(".")
    params[section][key] = value
    rejects(params, dotted)


@pytest.mark.parametrize("key, value", [("gammas", [0.5, 1.5]), ("gammas", []), ("norms", ["l1", "linf"])])
def test_bad_sweep_grid_is_named(params, key, value):
    params["sweep"][key] = value
    rejects(params, f"sweep.{key}")


def test_max_len_must_be_at_least_two(params):
    params["max_len"] = 1
    rejects(params, "max_len")


def test_floats_as_dvc_exp_run_writes_them_are_numbers(tmp_path):
    # `dvc exp run -S diffusion.lr=0.00001` writes `lr: 1e-05`, which YAML 1.1 (PyYAML) reads as a string.
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS_FILE.read_text().replace("weight_decay: 1.0e-5", "weight_decay: 1e-05"))
    assert "1e-05" in path.read_text()
    assert load_params(path)["backbones"]["srgnn"]["train"]["weight_decay"] == 1e-05
