"""The evaluate stage's computation: eq. (8) fusion at `gamma` on cached score matrices, then per-user
ranks and the leave-one-out metrics of backbone, diffusion and fusion (no training, no model), and of
the backbone fused with each control of controls.py in place of the diffusion model."""

from __future__ import annotations

import numpy as np
import torch

from globaldiff import ConfigError
from globaldiff.data.sequences import Split
from globaldiff.ranking.controls import control_scores
from globaldiff.ranking.metrics import summarise
from globaldiff.ranking.fused import user_ranks
from globaldiff.diffusion.similarity import ItemSimilarity
from globaldiff.data.windows import evaluation_sets
from globaldiff.run.device import keep_freed_memory


def evaluate_run(params: dict, split: Split, scores: dict[str, np.ndarray], similarity: ItemSimilarity,
                 seed: int) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, np.ndarray]]:
    """(metrics {val|test: {model: {metric: value}}}, test ranks {model: [users]}) at the params' gamma,
    for backbone, diffusion, fusion and the fusion with each control in params `controls`."""
    keep_freed_memory()            # the [users, M+1] temporaries from the heap, not fresh mmaps (run.device)
    val, test = evaluation_sets(split.train, split.val, split.test, params["max_len"])
    metrics, test_ranks = {}, {}
    for part, evalset in (("val", val), ("test", test)):
        logits = torch.from_numpy(scores[f"{part}_logits"])
        x0_hat = torch.from_numpy(scores[f"{part}_x0"])
        if logits.shape != (len(evalset.targets), split.num_items + 1) or x0_hat.shape != logits.shape:
            raise ConfigError(f"score matrices of shape {tuple(logits.shape)} / {tuple(x0_hat.shape)} do not fit "
                              f"{len(evalset.targets)} users x {split.num_items + 1} item ids: re-run train_diffusion")
        # controls are a test-time comparison only (nothing is selected on them): skipping them on validation
        # keeps `dvc exp run -S gamma=...` fast
        controls = {name: control_scores(name, logits, similarity, split.train, seed)
                    for name in params.get("controls") or []} if part == "test" else {}
        ranks = user_ranks(logits, x0_hat, evalset, params["gamma"], params["ensemble"]["norm"],
                           params["eval"]["exclude"], controls)
        metrics[part] = {name: summarise(r) for name, r in ranks.items()}
        if part == "test":
            test_ranks = ranks
    return metrics, test_ranks
