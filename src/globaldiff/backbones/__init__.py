"""Backbone registry: params name -> class. Adding a backbone is one file and one line here."""

from __future__ import annotations

from .. import ConfigError
from .base import Backbone
from .bert4rec import BERT4Rec
from .cbit import CBiT
from .sasrec import SASRec
from .srgnn import SRGNN

REGISTRY: dict[str, type[Backbone]] = {
    "sasrec": SASRec,
    "bert4rec": BERT4Rec,
    "cbit": CBiT,
    "srgnn": SRGNN,
}


def build_backbone(name: str, num_items: int, max_len: int, options: dict) -> Backbone:
    """Instantiate the backbone `name` with its params.yaml options (training-only keys removed)."""
    if name not in REGISTRY:
        raise ConfigError(f"params.yaml: unknown backbone {name!r}: expected one of {sorted(REGISTRY)}")
    return REGISTRY[name](num_items=num_items, max_len=max_len, **options)
