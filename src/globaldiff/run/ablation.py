"""One ablation run on a cached backbone: the variant's params (config.ablations), then diffusion and evaluation."""

from __future__ import annotations

from typing import Mapping

from globaldiff.backbones.base import backbone_class
from globaldiff.config.params import variant_params
from globaldiff.diffusion.similarity import build_similarity
from globaldiff.ranking.evaluation import evaluate_run
from globaldiff.run.backbone import load_backbone
from globaldiff.run.diffusion import fit_diffusion


def run_variant(params: Mapping, name: str, split, backbone_checkpoint: dict, source: str, seed: int, device,
                log, precision=None) -> tuple[dict, dict, dict]:
    """Train and evaluate ablation `name` for one seed on the cached backbone: (diffusion checkpoint, metrics
    {val|test: {model: {metric: value}}} at diffusion.select_gamma, test ranks {model: [users]})."""
    backbone_name = params["ablations"]["backbone"]
    merged = variant_params(params, name, {backbone_name: backbone_class(backbone_name)})
    ab = merged["ablations"]
    backbone = load_backbone(merged, ab["backbone"], backbone_checkpoint, split.num_items, source)
    similarity = build_similarity(split.train, split.num_items, **merged["similarity"])
    checkpoint, scores = fit_diffusion(merged, backbone, similarity, split, seed, device, log, precision)
    at_selection = {**merged, "gamma": merged["diffusion"]["select_gamma"], "controls": []}
    metrics, ranks = evaluate_run(at_selection, split, scores, similarity, seed)
    return checkpoint, metrics, ranks
