"""Ablation variants: overrides applied to a copy of params, checked like params.yaml, sorted into figures."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from globaldiff import ConfigError
from globaldiff.config.ablations import apply_overrides, changes, check_ablations
from globaldiff.config.params import variant_params
from globaldiff.config.params import validate
from globaldiff.report.ablations import ablation_groups, describe_changes

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def params() -> dict:
    return validate(yaml.safe_load((REPO / "params.yaml").read_text()))


def test_overrides_change_a_copy_only(params):
    before = copy.deepcopy(params)
    merged = apply_overrides(params, {"T": 100, "similarity": {"method": "kmeans", "clusters": 7}})
    assert merged["T"] == 100 and merged["similarity"]["method"] == "kmeans" and merged["similarity"]["clusters"] == 7
    assert merged["similarity"]["topk"] == params["similarity"]["topk"]          # siblings kept
    assert params == before


@pytest.mark.parametrize("overrides, message", [
    ({"gamma": 0.3}, "'gamma' cannot be overridden"),
    ({"backbones": {"sasrec": {"model": {"hidden": 8}}}}, "'backbones.sasrec.model.hidden' cannot be overridden"),
    ({"study": {"seeds": [5]}}, "'study.seeds' cannot be overridden"),
    ({"denoiser": {"guidanse": "none"}}, "unknown key 'denoiser.guidanse'"),
    ({"T": {"steps": 5}}, "'T.steps' cannot be overridden"),
])
def test_bad_overrides_are_named(params, overrides, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(params, overrides, "ablations.variants.x")


def test_optional_keys_may_be_added(params):
    params["inference"].pop("start_step", None)
    assert apply_overrides(params, {"inference": {"start_step": 5}})["inference"]["start_step"] == 5


def test_variant_params_are_validated_like_params_yaml(params):
    params["ablations"]["variants"]["bad"] = {"denoiser": {"guidance": "partial"}}
    with pytest.raises(ConfigError, match=r"denoiser.guidance = 'partial'.*ablations.variants.bad"):
        variant_params(params, "bad")
    params["ablations"]["variants"]["late"] = {"T": 5, "inference": {"start_step": 9}}
    with pytest.raises(ConfigError, match="start_step"):
        variant_params(params, "late")
    with pytest.raises(ConfigError, match="no variant 'nope'"):
        variant_params(params, "nope")
    assert variant_params(params, "T200")["T"] == 200


@pytest.mark.parametrize("change, message", [
    (("dataset", "beauty"), "ablations.dataset = 'beauty'"),
    (("backbone", "cbit"), "ablations.backbone = 'cbit'"),
    (("seeds", [0, 7]), r"ablations.seeds: \[7\] not in study.seeds"),
    (("run", ["T100", "T300"]), r"ablations.run\[1\] = 'T300'"),
])
def test_ablations_must_fit_the_study(params, change, message):
    params["study"]["backbones"] = ["sasrec"]      # a study without CBiT, whatever params.yaml commits
    params["ablations"][change[0]] = change[1]
    with pytest.raises(ConfigError, match=message):
        check_ablations(params)


def test_no_ablation_run_needs_nothing_from_the_study(params):
    params["study"]["backbones"] = ["cbit"]
    with pytest.raises(ConfigError, match=r"ablations.backbone = 'sasrec'.*-S 'ablations.run=\[\]'"):
        check_ablations(params)
    params["ablations"]["run"] = []
    check_ablations(params)


def test_variant_names_and_bodies_checked(params):
    params["ablations"]["variants"]["T 300"] = {"T": 300}
    with pytest.raises(ConfigError, match="name 'T 300'"):
        check_ablations(params)
    del params["ablations"]["variants"]["T 300"]
    params["ablations"]["variants"]["empty"] = {}
    with pytest.raises(ConfigError, match="ablations.variants.empty: expected a non-empty mapping"):
        check_ablations(params)


def test_committed_ablations_sort_into_the_papers_figures(params):
    groups = ablation_groups(params, params["ablations"]["run"])
    assert groups["figure4"] == {"full": "", "target": "guidance_target", "none": "guidance_none"}
    assert groups["figure6"] == {"T = 20": "", "T = 100": "T100", "T = 200": "T200"}
    assert groups["table3"] == {"exact cosine": "", "K=100": "kmeans100", "K=500": "kmeans500", "K=1000": "kmeans1000"}
    # a variant that changes two things joins no figure
    assert not any("authors_diffusion" in g.values() for g in ablation_groups(params, ["authors_diffusion"]).values())
    assert changes(params["ablations"]["variants"]["kmeans100"]) == {"similarity.method", "similarity.clusters"}
    assert describe_changes({"T": 5, "similarity": {"last": 10}}) == "T = 5; similarity.last = 10"
