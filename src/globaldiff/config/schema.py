"""params.yaml: loading and validation against one schema, run at the start of every stage.

Every check names the full key path and what was expected, so a typo (`gama`, `diffusion.zeta_typo`,
`backbones.sasrec.model.hiden`) or a bad value fails in a second, not after an hour of training.

The schema is `SCHEMA` below (fixed sections), plus two families of entries whose keys depend on their name:
- `datasets.<name>`: the keys every loader shares (`DATASET_KEYS`) plus its own (`LOADER_KEYS[loader]`);
- `backbones.<name>`: `model` options are the backbone class's constructor arguments (its signature, minus
  num_items/max_len; a `**kwargs` that forwards to the parent class adds the parent's arguments), each within
  its range in `MODEL_RANGES` (by option name), and `train` options are the fixed set `TRAIN_KEYS`.
Every number is finite: NaN and inf are refused wherever a number is read.

`load_params` (the model stages) checks everything and requires every key the code reads; the model options of
a backbone are checked against its class, which a stage passes for the backbones it builds (`model_classes`),
so that no stage imports a model it does not run. `read_params` (the data stages, which must not import torch)
checks the same schema on the keys present.

This package imports no other part of the library but `ConfigError`: every stage runs it, so what it imports
would be a dependency of every stage.
"""

from __future__ import annotations

import difflib
import inspect
import math
import re
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from globaldiff import ConfigError

METRICS = ("HR@10", "HR@20", "NDCG@10", "NDCG@20")

CHOICES = {
    "similarity.method": ("cosine", "topk", "kmeans"),
    "diffusion.loss": ("mse", "ce"),
    "diffusion.rule": ("paper", "code"),
    "diffusion.select_metric": METRICS,
    "denoiser.guidance": ("full", "target", "none"),
    "denoiser.network": ("mlp", "unet"),
    "inference.input": ("softmax", "logits"),
    "inference.scale": ("max", "none"),
    "ensemble.norm": ("softmax", "l1", "l2"),
    "eval.exclude": ("window", "history", "none"),
    "precision": ("fp32", "bf16"),
    "controls": ("propagated", "popularity", "random"),   # ranking.controls.control_scores implements each
    "datasets.*.duplicates": ("drop_exact", "keep", "refuse"),  # ingest.preprocess (the first is the default)
}

Check = Callable[[str, Any], None]  # (dotted key, value) -> None, or ConfigError


# --- leaf checks ----------------------------------------------------------------------------------------

def _fail(key: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"params.yaml: {key} = {value!r}: expected {expected}")


def number(low: float | None = None, high: float | None = None, *, integer: bool = False,
           above: float | None = None, below: float | None = None) -> Check:
    """A finite number (an integer with `integer`) in [low, high], and > `above` and < `below` when given; never
    a bool, NaN or inf."""
    def check(key: str, value: Any) -> None:
        kind = int if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kind):
            raise _fail(key, value, "an integer" if integer else "a number")
        if not math.isfinite(value):
            raise _fail(key, value, "a finite number")
        if (low is not None and value < low) or (high is not None and value > high) \
                or (above is not None and not value > above) or (below is not None and not value < below):
            start = f"[{low}" if low is not None else f"({above if above is not None else '-inf'}"
            end = f"{high}]" if high is not None else f"{below if below is not None else 'inf'})"
            raise _fail(key, value, f"a value in {start}, {end}")
    return check


def choice(allowed: tuple) -> Check:
    def check(key: str, value: Any) -> None:
        if isinstance(value, bool) or value not in allowed:
            raise _fail(key, value, f"one of {list(allowed)}")
    return check


def optional(inner: Check) -> Check:
    """`inner`, or null."""
    def check(key: str, value: Any) -> None:
        if value is not None:
            inner(key, value)
    return check


def boolean(key: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise _fail(key, value, "true or false")


def text(key: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise _fail(key, value, "a non-empty string")


def list_of(inner: Check, nonempty: bool = True) -> Check:
    def check(key: str, value: Any) -> None:
        if not isinstance(value, list) or (nonempty and not value):
            raise _fail(key, value, "a non-empty list" if nonempty else "a list")
        for i, item in enumerate(value):
            inner(f"{key}[{i}]", item)
        if len({repr(v) for v in value}) != len(value):
            raise _fail(key, value, "a list without repeats")
    return check


def inside_raw_folder(key: str, value: Any) -> None:
    """`datasets.<name>.file`: a relative path that stays inside the dataset's raw folder (no '..', not absolute)."""
    path = value.replace("\\", "/") if isinstance(value, str) else ""
    if not path.strip("/. ") or path.startswith("/") or re.match(r"[A-Za-z]:", path) or ".." in path.split("/") \
            or any(ord(c) < 32 for c in path):
        raise _fail(key, value, f"a relative path inside data/raw/{key.split('.')[1]} (no '..', not absolute)")


def _sha256(key: str, value: Any) -> None:
    if value is not None and not (isinstance(value, str) and re.fullmatch(r"[0-9a-fA-F]{64}", value.strip())):
        raise _fail(key, value, "64 hex digits or null")


# --- the schema ---------------------------------------------------------------------------------------------
# A dict is a mapping whose keys must all be known; a function checks a leaf value. Keys in OPTIONAL may be
# left out (the code has a default for them); every other key is required by `load_params`.

SCHEMA: dict[str, Any] = {
    "gamma": number(0.0, 1.0),
    "T": number(1, integer=True),
    "max_len": number(2, integer=True),
    "precision": choice(CHOICES["precision"]),
    "study": {
        "datasets": list_of(text),
        "backbones": list_of(text),
        "seeds": list_of(number(0, integer=True)),
    },
    "datasets": None,    # DATASET_KEYS / LOADER_KEYS, checked by _check_datasets
    "backbones": None,   # constructor signatures / TRAIN_KEYS, checked by _check_backbones
    "similarity": {
        "method": choice(CHOICES["similarity.method"]),
        "clusters": number(1, integer=True),
        "last": optional(number(1, integer=True)),
        "seed": number(integer=True),
        "topk": number(1, integer=True),
        "memory_mb": number(above=0.0),
    },
    "diffusion": {
        "noise_scale": number(0.0),
        "noise_min": number(0.0),
        "noise_max": number(0.0),
        "beta_first": number(0.0),
        "loss": choice(CHOICES["diffusion.loss"]),
        "rule": choice(CHOICES["diffusion.rule"]),
        "zeta": number(0.0),
        "delta": number(0.0),
        "epochs": number(1, integer=True),
        "batch_size": number(1, integer=True),
        "lr": number(above=0.0),
        "weight_decay": number(0.0),
        "eval_every": number(1, integer=True),
        "select_metric": choice(METRICS),
        "select_gamma": number(0.0, 1.0),
    },
    "denoiser": {
        "network": choice(CHOICES["denoiser.network"]),
        "guidance": choice(CHOICES["denoiser.guidance"]),
        "hidden": number(1, integer=True),
        "channels": number(1, integer=True),
        "time_dim": number(1, integer=True),
        "dropout": number(0.0, below=1.0),
    },
    "inference": {
        "input": choice(CHOICES["inference.input"]),
        "scale": choice(CHOICES["inference.scale"]),
        "start_step": optional(number(1, integer=True)),   # <= T: checked in validate
        "noise": boolean,
        "batch_size": number(1, integer=True),
    },
    "ensemble": {"norm": choice(CHOICES["ensemble.norm"])},
    "eval": {"exclude": choice(CHOICES["eval.exclude"])},
    "controls": optional(list_of(text, nonempty=False)),  # evaluate's controls: names checked in validate
    "sweep": {                                             # fusion_sweep: eq. (8) over gamma x norm
        "gammas": list_of(number(0.0, 1.0)),
        "norms": list_of(choice(CHOICES["ensemble.norm"])),
        "select_metric": choice(METRICS),
    },
    "longterm": {                                          # Figure 3: dataset/backbone checked in validate
        "dataset": text,
        "backbone": text,
        "seeds": list_of(number(0, integer=True), nonempty=False),
    },
    "ablations": {                                         # checked against the study in ablation.check_ablations
        "dataset": text,
        "backbone": text,
        "seeds": list_of(number(0, integer=True)),
        "run": list_of(text, nonempty=False),              # the variants `dvc repro` runs (DVC matrix axis)
        "variants": None,                                  # name -> {dotted key: value}
    },
    "limits": {                                            # download: caps on what a source may bring in
        "download_mb": number(above=0.0),
        "unpacked_mb": number(above=0.0),
    },
}
TOP_LEVEL = set(SCHEMA)
OPTIONAL = {"diffusion.weight_decay", "inference.batch_size", "inference.start_step", "inference.noise", "controls",
            "ablations", "longterm", "sweep", "limits", "limits.download_mb", "limits.unpacked_mb"}

# datasets.<name>: the keys of every entry, then each loader's own (the loaders in data/loaders.py read them).
DATASET_KEYS: dict[str, Any] = {
    "loader": None,   # one of LOADER_KEYS: checked first, it decides the other keys
    "source": text,
    "sources": None,  # name -> {url, sha256}: checked by _check_sources
    "min_rating": number(),
    "min_uc": number(1, integer=True),
    "min_sc": number(1, integer=True),
    "iterate": boolean,
    "splits": list_of(choice(("loo", "longterm"))),
    "duplicates": choice(CHOICES["datasets.*.duplicates"]),
}
LOADER_KEYS: dict[str, dict[str, Any]] = {
    "ml-1m": {},
    "ml-100k": {},
    "beauty": {},
    "kuairec": {"positive": {"column": text, "min": number()}},
    "custom": {
        "file": optional(inside_raw_folder),
        "sep": text,
        "header": boolean,
        "columns": {"user": None, "item": None, "rating": None, "timestamp": None},  # names or positions
    },
}
SOURCE_KEYS = {"url": text, "sha256": _sha256}

# backbones.<name>.model: the range of each option, by name (an option means the same in every backbone that has
# it; one without an entry is checked for its default's type only), plus one rule across options: `heads` divides
# `hidden` (attention splits the hidden size across its heads). Checked before a model is built.
MODEL_RANGES: dict[str, Check] = {
    "hidden": number(1, integer=True),
    "blocks": number(1, integer=True),
    "heads": number(1, integer=True),
    "ffn": number(1, integer=True),
    "steps": number(1, integer=True),
    "views": number(2, integer=True),            # cbit: the contrastive loss needs pairs of views
    "dropout": number(0.0, below=1.0),
    "mask_prob": number(above=0.0, below=1.0),    # cloze backbones: some items masked, never all
    "temperature": number(above=0.0),
    "theta_alpha": number(0.0, 1.0),
    "theta_lambda": number(0.0),
    "gru_hidden": number(1, integer=True),       # gru4rec: size of the GRU state
    "n_v": number(1, integer=True),              # caser: vertical filters
    "n_h": number(1, integer=True),              # caser: horizontal filters per height 1..L
    "interests": number(1, integer=True),        # lightsans: latent interests k
    "crop_rate": number(above=0.0, high=1.0),    # cl4srec eta, the kept fraction (1 = no crop)
    "mask_rate": number(0.0, 1.0),               # cl4srec gamma
    "reorder_rate": number(0.0, 1.0),            # cl4srec beta
    "cl_weight": number(0.0),                    # cl4srec, duorec: lambda
    "positives": choice(("train", "batch")),     # duorec
    "mask_weight": number(0.0),                  # actsr: lambda of the perturbation-mask penalty
    "adversary": choice(("mask", "all")),        # actsr: what the adversarial loss trains
    "spatial": boolean,                          # actsr: the spatial calibrator on/off
    "adversarial": boolean,                      # actsr: the adversarial calibrator on/off
    "positions": boolean,                        # actsr, diffurec: learned position embeddings
    "emb_dropout": number(0.0, below=1.0),       # diffurec: dropout on the history's item embeddings
    "diffusion_steps": number(1, integer=True),  # diffurec: t, the length of the forward chain
    "sample_steps": number(1, integer=True),     # diffurec: reverse passes at inference (<= diffusion_steps)
    "lambda_uncertainty": number(0.0),           # diffurec: delta of lambda ~ N(delta, delta)
    "sample_seed": number(0, integer=True),      # diffurec: the reverse chain's seed
    "loss": choice(("ce", "bce")),               # sasrec, caser
    "readout": choice(("last", "mask")),         # sasrec
}

# backbones.<name>.train: what the training loop reads (train.BackboneTraining and the window stride).
TRAIN_KEYS: dict[str, Check] = {
    "epochs": number(1, integer=True),
    "patience": number(1, integer=True),
    "batch_size": number(1, integer=True),
    "lr": number(above=0.0),
    "stride": number(1, integer=True),
    "weight_decay": number(0.0),
    "select_metric": choice(METRICS),
    "lr_step": optional(number(1, integer=True)),
    "lr_decay": number(above=0.0, high=1.0),
}
# Keys a train entry may leave out: their defaults are run.backbone.BackboneTraining's (the one place).
TRAIN_OPTIONAL = {"weight_decay", "select_metric", "lr_step", "lr_decay"}
TRAIN_REQUIRED = set(TRAIN_KEYS) - TRAIN_OPTIONAL


# --- walking the schema --------------------------------------------------------------------------------

def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _mapping(key: str, value: Any) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"params.yaml: {key or 'top level'}: expected a mapping, got {type(value).__name__} "
                          f"{value!r}")
    return value


def _unknown(path: str, node: dict, known, what: str = "") -> None:
    """ConfigError naming the first key of `node` that is not in `known`, with its full dotted path."""
    known = [str(k) for k in known]
    for key in node:
        if str(key) not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            notes = [n for n in (what, f"did you mean '{close[0]}'?" if close else "") if n]
            note = f" ({'; '.join(notes)})" if notes else ""
            raise ConfigError(f"params.yaml: unknown key '{_join(path, key)}'{note}: expected one of {sorted(known)}")


def _walk(path: str, node: Any, schema: dict, required: bool, optional_keys=frozenset()) -> None:
    """Check `node` against `schema`: unknown keys anywhere, then each present value (and, with `required`,
    that every non-optional key is there)."""
    node = _mapping(path, node)
    _unknown(path, node, schema)
    for key, spec in schema.items():
        dotted = _join(path, key)
        if key not in node:
            if required and dotted not in optional_keys and key not in optional_keys:
                raise ConfigError(f"params.yaml: missing key '{dotted}'")
            continue
        value = node[key]
        if isinstance(spec, dict):
            _walk(dotted, value, spec, required, optional_keys)
        elif spec is not None:
            spec(dotted, value)


def _check_sources(path: str, value: Any) -> None:
    sources = _mapping(path, value)
    for name, entry in sources.items():
        _walk(_join(path, name), entry, SOURCE_KEYS, required=False)
        if "url" not in entry:
            raise ConfigError(f"params.yaml: missing key '{_join(_join(path, name), 'url')}'")


def _check_datasets(value: Any) -> None:
    datasets = _mapping("datasets", value)
    for name, entry in datasets.items():
        path = _join("datasets", name)
        entry = _mapping(path, entry)
        loader = entry.get("loader")
        if loader not in LOADER_KEYS:
            raise ConfigError(f"params.yaml: {path}.loader = {loader!r}: expected one of {sorted(LOADER_KEYS)}")
        schema = {**DATASET_KEYS, **LOADER_KEYS[loader]}
        _unknown(path, entry, schema, f"for loader '{loader}'")
        _walk(path, entry, schema, required=False)  # "loader" and "sources" are checked here, not by _walk
        if "sources" in entry:
            _check_sources(f"{path}.sources", entry["sources"])


def model_options(cls: type) -> dict[str, inspect.Parameter]:
    """The keyword options of a backbone class: its constructor's arguments minus num_items and max_len, plus
    those of each parent constructor that a `**kwargs` forwards to."""
    options: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        forwards = False
        for name, param in inspect.signature(klass.__init__).parameters.items():
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                forwards = True
            elif param.kind is not inspect.Parameter.VAR_POSITIONAL and name not in ("self", "num_items", "max_len"):
                options.setdefault(name, param)
        if not forwards or klass.__name__ == "Backbone" or klass.__base__ is object:
            break
    return options


def _check_option_type(key: str, value: Any, default: Any) -> None:
    """A model option must have its default's type (an int is fine where the default is a float)."""
    if default is inspect.Parameter.empty or default is None:
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and not math.isfinite(value):
            raise _fail(key, value, "a finite number")
    elif isinstance(default, str):
        ok = isinstance(value, str)
    else:
        return
    if not ok:
        raise _fail(key, value, f"{'a number' if isinstance(default, float) else type(default).__name__} "
                                f"(like the default {default!r})")


def check_model_ranges(path: str, model: Mapping, defaults: Mapping | None = None) -> None:
    """The options of `model` (at dotted `path`) against MODEL_RANGES, and `heads` divides `hidden` (either taken
    from `defaults`, the constructor's, when the model leaves it out)."""
    for key, value in model.items():
        if key in MODEL_RANGES:
            MODEL_RANGES[key](f"{path}.{key}", value)
    values = {**(defaults or {}), **model}
    hidden, heads = values.get("hidden"), values.get("heads")
    if isinstance(hidden, int) and isinstance(heads, int) and hidden % heads:
        raise _fail(f"{path}.heads", heads, f"a divisor of {path}.hidden = {hidden} (attention splits the hidden "
                                            "size across its heads)")


def check_model_options(name: str, model: Any, cls: type, required: bool = True) -> None:
    """`backbones.<name>.model` against the constructor of `cls`: no unknown option, each of its default's type
    and within MODEL_RANGES, and (with `required`) every option without a default present."""
    path = f"backbones.{name}.model"
    model = _mapping(path, model)
    options = model_options(cls)
    _unknown(path, model, options, f"not an argument of {cls.__name__}.__init__")
    for key, param in options.items():
        if key in model:
            _check_option_type(f"{path}.{key}", model[key], param.default)
        elif required and param.default is inspect.Parameter.empty:
            raise ConfigError(f"params.yaml: missing key '{path}.{key}'")
    defaults = {k: p.default for k, p in options.items() if p.default is not inspect.Parameter.empty}
    check_model_ranges(path, model, defaults)


def _check_backbones(value: Any, required: bool, classes: Mapping[str, type]) -> None:
    from globaldiff.backbones import REGISTRY  # pure data: the names, no model code

    backbones = _mapping("backbones", value)
    _unknown("backbones", backbones, REGISTRY, "not a registered backbone")
    for name, entry in backbones.items():
        path = _join("backbones", name)
        entry = _mapping(path, entry)
        _unknown(path, entry, ("model", "train"))
        for part in ("model", "train"):
            if part not in entry and required:
                raise ConfigError(f"params.yaml: missing key '{path}.{part}'")
        if "train" in entry:
            _walk(f"{path}.train", entry["train"], TRAIN_KEYS, required=False)
            if required:
                for key in sorted(TRAIN_REQUIRED - set(entry["train"])):
                    raise ConfigError(f"params.yaml: missing key '{path}.train.{key}'")
        if "model" in entry:
            model = _mapping(f"{path}.model", entry["model"])
            if name in classes:
                check_model_options(name, model, classes[name], required)
            else:
                check_model_ranges(f"{path}.model", model)


def check_schema(params: Any, *, required: bool = False, model_classes: Mapping[str, type] | None = None) -> dict:
    """Check `params` against the schema: unknown keys anywhere, the type and range of every value present;
    with `required`, also that every key the code reads is there. The model options of each backbone in
    `model_classes` (name -> class) are checked against its constructor."""
    if not isinstance(params, dict):
        raise ConfigError("params.yaml: expected a mapping at the top level")
    _walk("", params, SCHEMA, required, OPTIONAL)
    if "datasets" in params:
        _check_datasets(params["datasets"])
    if "backbones" in params:
        _check_backbones(params["backbones"], required, model_classes or {})
    return params


def _get(params: dict, dotted: str) -> Any:
    node = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"params.yaml: missing key '{dotted}'")
        node = node[part]
    return node


def check_references(params: dict) -> None:
    """The checks across keys: start_step <= T, the study's names have entries, controls and long-term run."""
    from globaldiff.backbones import REGISTRY  # pure data: the names, no model code

    start = params["inference"].get("start_step")
    if start is not None and start > params["T"]:
        raise ConfigError(f"params.yaml: inference.start_step = {start!r}: expected null or an integer in [1, T = {params['T']}]")
    for name in _get(params, "study.backbones"):
        if name not in REGISTRY:
            raise ConfigError(f"params.yaml: study.backbones: unknown backbone {name!r}: expected one of {sorted(REGISTRY)}")
        if name not in _get(params, "backbones"):
            raise ConfigError(f"params.yaml: study.backbones: {name!r} has no entry under 'backbones'")
    for name in _get(params, "study.datasets"):
        if name not in _get(params, "datasets"):
            raise ConfigError(f"params.yaml: study.datasets: unknown dataset {name!r}: expected one of {sorted(params['datasets'])}")
    if params.get("controls"):
        for i, name in enumerate(params["controls"]):
            if name not in CHOICES["controls"]:
                raise ConfigError(f"params.yaml: controls[{i}] = {name!r}: expected one of {list(CHOICES['controls'])}")
    if "longterm" in params:
        lt = params["longterm"]
        if lt["seeds"] and lt["dataset"] not in _get(params, "study.datasets"):
            raise ConfigError(f"params.yaml: longterm.dataset = {lt['dataset']!r}: expected one of study.datasets "
                              f"{params['study']['datasets']} (the study preprocesses it); or -S 'longterm.seeds=[]'")
        if lt["backbone"] not in REGISTRY or lt["backbone"] not in params["backbones"]:
            raise ConfigError(f"params.yaml: longterm.backbone = {lt['backbone']!r}: expected a backbone with an "
                              f"entry under 'backbones' ({sorted(params['backbones'])})")


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader plus YAML 1.2 floats without a dot (`1e-05`), as `dvc exp run -S` writes them."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9]+[eE][-+]?[0-9]+$"),
                              list("-+0123456789"))


def read_yaml(path: Path) -> Any:
    try:
        loader = _Loader(path.read_text())
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (run from the repo root)") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read ({e})") from None


