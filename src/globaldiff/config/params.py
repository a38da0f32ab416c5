"""params.yaml in, a validated dict out: what every stage calls first (the schema is in `schema`)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Mapping

from globaldiff import ConfigError
from globaldiff.config.ablations import apply_overrides, check_ablations
from globaldiff.config.schema import check_references, check_schema, read_yaml


def validate(params: dict, model_classes: Mapping[str, type] | None = None) -> dict:
    """Check the whole params file (every key; the model options of the backbones in `model_classes`); raise
    ConfigError naming the first bad key by its full path."""
    check_schema(params, required=True, model_classes=model_classes)
    check_references(params)
    if "ablations" in params:
        check_ablations(params)
    return params


def read_params(path: str | Path = "params.yaml") -> dict:
    """params.yaml as a dict, for the data stages: the keys present are checked against the schema (unknown
    keys anywhere, types and ranges), without requiring the model sections or importing the backbones."""
    params = read_yaml(Path(path))
    return check_schema({} if params is None else params)


def load_params(path: str | Path = "params.yaml", model_classes: Mapping[str, type] | None = None) -> dict:
    """params.yaml, fully validated (the model stages; `model_classes`: the backbones the stage builds)."""
    params = read_yaml(Path(path))
    return validate({} if params is None else params, model_classes)


def variant_params(params: Mapping, name: str, model_classes: Mapping[str, type] | None = None) -> dict:
    """params with ablation `name`'s overrides applied and the result validated like params.yaml."""
    variants = params["ablations"]["variants"]
    if name not in variants:
        raise ConfigError(f"params.yaml: ablations.variants: no variant {name!r} (have: {', '.join(variants)})")
    merged = apply_overrides(params, variants[name], f"ablations.variants.{name}")
    try:
        return validate(merged, model_classes)
    except ConfigError as e:
        raise ConfigError(f"{e} (after ablations.variants.{name})") from None


def dataclass_from(cls: type, options: Mapping, **extra):
    """`cls` built from the params keys it has fields for (validated params in, one settings object out)."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in {**options, **extra}.items() if k in names})
