"""params.yaml: loading and validation, run before any training starts.

Every check names the key and what was expected, so a typo (`gama`) or a bad value fails in a second,
not after an hour of training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from . import ConfigError

TOP_LEVEL = {"gamma", "T", "study", "datasets", "max_len", "similarity", "backbones", "diffusion",
             "denoiser", "inference", "ensemble", "eval"}

CHOICES = {
    "similarity.method": ("cosine", "kmeans"),
    "diffusion.loss": ("mse", "ce"),
    "diffusion.rule": ("paper", "code"),
    "diffusion.select_metric": ("HR@10", "HR@20", "NDCG@10", "NDCG@20"),
    "denoiser.guidance": ("full", "target", "none"),
    "inference.input": ("softmax", "logits"),
    "inference.scale": ("max", "none"),
    "ensemble.norm": ("softmax", "l1", "l2"),
    "eval.exclude": ("window", "history", "none"),
}


def _get(params: dict, dotted: str) -> Any:
    node = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"params.yaml: missing key '{dotted}'")
        node = node[part]
    return node


def _number(params: dict, key: str, low: float | None = None, high: float | None = None, integer: bool = False):
    value = _get(params, key)
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"params.yaml: {key} = {value!r}: expected {'an integer' if integer else 'a number'}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        raise ConfigError(f"params.yaml: {key} = {value!r}: expected a value in {bounds}")
    return value


def validate(params: dict) -> dict:
    """Check the study-wide params; raise ConfigError naming the first bad key."""
    if not isinstance(params, dict):
        raise ConfigError("params.yaml: expected a mapping at the top level")
    unknown = sorted(set(params) - TOP_LEVEL)
    if unknown:
        raise ConfigError(f"params.yaml: unknown key '{unknown[0]}': expected one of {sorted(TOP_LEVEL)}")
    _number(params, "gamma", 0.0, 1.0)
    _number(params, "T", 1, integer=True)
    _number(params, "max_len", 2, integer=True)
    for key in ("diffusion.zeta", "diffusion.delta"):
        _number(params, key, 0.0)
    _number(params, "diffusion.select_gamma", 0.0, 1.0)
    _number(params, "diffusion.epochs", 1, integer=True)
    _number(params, "diffusion.eval_every", 1, integer=True)
    _number(params, "similarity.clusters", 1, integer=True)
    for key, allowed in CHOICES.items():
        if _get(params, key) not in allowed:
            raise ConfigError(f"params.yaml: {key} = {_get(params, key)!r}: expected one of {list(allowed)}")
    start = params["inference"].get("start_step")
    if start is not None and (isinstance(start, bool) or not (isinstance(start, int) and 1 <= start <= params["T"])):
        raise ConfigError(f"params.yaml: inference.start_step = {start!r}: expected null or an integer in [1, T = {params['T']}]")
    from .backbones import REGISTRY

    for name in _get(params, "study.backbones"):
        if name not in REGISTRY:
            raise ConfigError(f"params.yaml: study.backbones: unknown backbone {name!r}: expected one of {sorted(REGISTRY)}")
        if name not in _get(params, "backbones"):
            raise ConfigError(f"params.yaml: study.backbones: {name!r} has no entry under 'backbones'")
    for name in _get(params, "study.datasets"):
        if name not in _get(params, "datasets"):
            raise ConfigError(f"params.yaml: study.datasets: unknown dataset {name!r}: expected one of {sorted(params['datasets'])}")
    return params


def read_params(path: str | Path = "params.yaml") -> dict:
    """params.yaml as a dict, unvalidated; a missing or invalid file is a ConfigError."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (run from the repo root)") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None


def load_params(path: str | Path = "params.yaml") -> dict:
    """params.yaml, validated."""
    return validate(read_params(path))
