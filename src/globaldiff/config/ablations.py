"""Ablation variants as params (paper Figures 4 and 6, Table 3) (paper Figures 4 and 6, Table 3): the diffusion model retrained with a few
params overridden, everything else as in the main run.

A variant is a name and a nested mapping of the params it changes, e.g. `T200: {T: 200}` or
`kmeans100: {similarity: {method: kmeans, clusters: 100}}`. Only the diffusion side may change (the backbone
is reused as trained), and the merged params must pass the same schema as params.yaml. Metrics are taken at `diffusion.select_gamma`, not `gamma`, so that changing `gamma` never
retrains an ablation.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Mapping

from globaldiff import ConfigError
from globaldiff.config.schema import OPTIONAL

# params an ablation may override: everything that shapes the diffusion model, nothing upstream of it
OVERRIDABLE = ("T", "similarity.", "diffusion.", "denoiser.", "inference.", "ensemble.")
NAME = re.compile(r"^[A-Za-z0-9_]+$")


def leaves(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{dotted key: value} of every non-mapping value of a nested mapping."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(leaves(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def apply_overrides(params: Mapping, overrides: Mapping[str, Any], where: str = "ablations.variants") -> dict:
    """A deep copy of `params` with every leaf of the nested `overrides` set; a key outside OVERRIDABLE, or one
    that params.yaml does not have, is a ConfigError naming its dotted path."""
    merged = copy.deepcopy(dict(params))
    for dotted, value in leaves(overrides).items():
        if not (dotted in OVERRIDABLE or dotted.startswith(tuple(k for k in OVERRIDABLE if k.endswith(".")))):
            raise ConfigError(f"params.yaml: {where}: {dotted!r} cannot be overridden by an ablation "
                              f"(allowed: {', '.join(k + '*' if k.endswith('.') else k for k in OVERRIDABLE)})")
        *parents, leaf = dotted.split(".")
        node = merged
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"params.yaml: {where}: unknown key {dotted!r}")
            node = node[part]
        if leaf not in node and dotted not in OPTIONAL:
            raise ConfigError(f"params.yaml: {where}: unknown key {dotted!r}")
        node[leaf] = value
    return merged


def check_ablations(params: Mapping) -> None:
    """The ablations section fits the study: when any variant is run, its dataset, backbone and seeds are run
    by the study (their backbones are what the ablations reuse); every variant has a plain name and valid
    overrides, and every name in `run` is a variant."""
    ab = params["ablations"]
    study = params["study"]
    if ab["run"]:
        fix = "; or -S 'ablations.run=[]' to run no ablation"
        if ab["dataset"] not in study["datasets"]:
            raise ConfigError(f"params.yaml: ablations.dataset = {ab['dataset']!r}: expected one of study.datasets "
                              f"{study['datasets']} (the ablations reuse its trained backbones){fix}")
        if ab["backbone"] not in study["backbones"]:
            raise ConfigError(f"params.yaml: ablations.backbone = {ab['backbone']!r}: expected one of study.backbones "
                              f"{study['backbones']} (the ablations reuse its trained models){fix}")
        missing = [s for s in ab["seeds"] if s not in study["seeds"]]
        if missing:
            raise ConfigError(f"params.yaml: ablations.seeds: {missing} not in study.seeds {study['seeds']}{fix}")
    if not isinstance(ab["variants"], dict):
        raise ConfigError("params.yaml: ablations.variants: expected a mapping of name -> {dotted key: value}")
    for name, overrides in ab["variants"].items():
        if not isinstance(name, str) or not NAME.match(name):
            raise ConfigError(f"params.yaml: ablations.variants: name {name!r}: expected letters, digits and _")
        if not isinstance(overrides, dict) or not overrides:
            raise ConfigError(f"params.yaml: ablations.variants.{name}: expected a non-empty mapping of dotted "
                              f"keys to values")
        apply_overrides(params, overrides, f"ablations.variants.{name}")
    for i, name in enumerate(ab["run"]):
        if name not in ab["variants"]:
            raise ConfigError(f"params.yaml: ablations.run[{i}] = {name!r}: expected one of ablations.variants "
                              f"({', '.join(ab['variants'])})")


def changes(overrides: Mapping[str, Any]) -> set[str]:
    """The dotted keys a variant sets (how the report sorts variants into figures and tables)."""
    return set(leaves(overrides))
