"""The opinions and evaluate stages' computation, on cached score matrices (no training, no model).

`run_opinions` does everything that does not depend on `gamma`: the exclusion-masked, normalised opinions'
eq. (8) terms r(x) x with their Borda sorts (the backbone, the diffusion model, and on test each control of
controls.py in the diffusion model's place), and the ranks of backbone and diffusion model alone.
`fuse_run` weighs them at `gamma` (eq. 8) and counts each target's rank: the only part a gamma change re-runs.
`evaluate_run` is the two in one process (the ablation runs), with the same numbers.
"""

from __future__ import annotations

import numpy as np
import torch

from globaldiff import ConfigError
from globaldiff.data.sequences import Split
from globaldiff.ranking.controls import control_scores
from globaldiff.ranking.metrics import summarise
from globaldiff.ranking.fused import fused_ranks, opinion_halves
from globaldiff.diffusion.similarity import ItemSimilarity
from globaldiff.data.windows import evaluation_sets
from globaldiff.run.device import keep_freed_memory

PARTS = ("val", "test")
ALONE = ("backbone", "diffusion")   # the models whose own ranks run_opinions saves beside the halves


def opinion_names(params: dict, part: str) -> list[str]:
    """The opinions run_opinions prepares for `part`: backbone, diffusion, and on test each control. The
    controls are a test-time comparison only (nothing is selected on them): none on validation."""
    return [*ALONE, *((params.get("controls") or []) if part == "test" else [])]


def opinion_keys(params: dict) -> list[str]:
    """The keys of run_opinions' result (the opinions stage's file names): halves, then the ranks alone."""
    return ([f"{part}_{name}" for part in PARTS for name in opinion_names(params, part)]
            + [f"{part}_ranks_{model}" for part in PARTS for model in ALONE])


def run_opinions(params: dict, split: Split, scores: dict[str, np.ndarray], similarity: ItemSimilarity,
                 seed: int) -> dict[str, np.ndarray]:
    """{'<part>_<opinion>': r(x) x as float32 [users, M+1]} for each opinion of opinion_names, and
    {'<part>_ranks_<model>': int64 [users]} for the backbone and the diffusion model alone."""
    keep_freed_memory()            # the [users, M+1] temporaries from the heap, not fresh mmaps (run.device)
    out = {}
    for part, evalset in zip(PARTS, evaluation_sets(split.train, split.val, split.test, params["max_len"])):
        logits = torch.from_numpy(scores[f"{part}_logits"])
        x0_hat = torch.from_numpy(scores[f"{part}_x0"])
        if logits.shape != (len(evalset.targets), split.num_items + 1) or x0_hat.shape != logits.shape:
            raise ConfigError(f"score matrices of shape {tuple(logits.shape)} / {tuple(x0_hat.shape)} do not fit "
                              f"{len(evalset.targets)} users x {split.num_items + 1} item ids: re-run train_diffusion")
        seconds = {"diffusion": x0_hat}
        seconds.update({name: control_scores(name, logits, similarity, split.train, seed)
                        for name in opinion_names(params, part) if name not in ALONE})
        halves, alone = opinion_halves(logits, seconds, evalset, params["ensemble"]["norm"], params["eval"]["exclude"])
        out.update({f"{part}_{name}": half for name, half in halves.items()})
        out.update({f"{part}_ranks_{name}": ranks for name, ranks in alone.items()})
    return out


def fuse_run(params: dict, split: Split, opinions: dict[str, np.ndarray],
             source: str = "opinions") -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, np.ndarray]]:
    """(metrics {val|test: {model: {metric: value}}}, test ranks {model: [users]}) at the params' gamma, for
    backbone, diffusion, fusion and the fusion with each control, from run_opinions' arrays (read from `source`)."""
    keep_freed_memory()
    metrics, test_ranks = {}, {}
    for part, evalset in zip(PARTS, evaluation_sets(split.train, split.val, split.test, params["max_len"])):
        shape = (len(evalset.targets), split.num_items + 1)
        halves = {name: opinions[f"{part}_{name}"] for name in opinion_names(params, part)}
        alone = {name: opinions[f"{part}_ranks_{name}"] for name in ALONE}
        bad = [name for name, half in halves.items() if half.shape != shape or half.dtype != np.float32]
        bad += [f"ranks_{name}" for name, ranks in alone.items() if ranks.shape != shape[:1]]
        if bad:
            raise ConfigError(f"{source}: {part}_{bad[0]} does not fit {shape[0]} users x {shape[1]} item ids "
                              f"(float32 halves, one rank per user): re-run the opinions stage")
        ranks = {**alone, **fused_ranks(halves, evalset, params["gamma"], params["eval"]["exclude"])}
        metrics[part] = {name: summarise(r) for name, r in ranks.items()}
        if part == "test":
            test_ranks = ranks
    return metrics, test_ranks


def evaluate_run(params: dict, split: Split, scores: dict[str, np.ndarray], similarity: ItemSimilarity,
                 seed: int) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, np.ndarray]]:
    """fuse_run(run_opinions(...)): the opinions and evaluate stages in one call, for one run's score matrices."""
    return fuse_run(params, split, run_opinions(params, split, scores, similarity, seed))
