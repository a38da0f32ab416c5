"""Full-ranking evaluation: exclusion masks, ranks, HR@K, NDCG@K and evaluate_all (hand-made cases)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from globaldiff.ranking.metrics import exclusion_mask, hit_rate, masked_ranks, ndcg, summarise, target_ranks
from globaldiff.ranking.fused import evaluate_all

WINDOWS = torch.tensor([[0, 0, 2, 5], [1, 3, 3, 4]])


def test_exclusion_mask_window():
    m = exclusion_mask(6, WINDOWS, mode="window")
    assert m.shape == (2, 7) and m.dtype == torch.bool
    assert m.tolist() == [
        [True, False, True, False, False, True, False],
        [True, True, False, True, True, False, False],
    ]


def test_exclusion_mask_history_and_none():
    histories = [np.array([6, 1, 2, 5]), np.array([], dtype=np.int64)]
    m = exclusion_mask(6, WINDOWS, histories=histories, mode="history")
    assert m.tolist() == [
        [True, True, True, False, False, True, True],
        [True, False, False, False, False, False, False],
    ]
    none = exclusion_mask(6, WINDOWS, mode="none")
    assert none[:, 0].all() and not none[:, 1:].any()
    with pytest.raises(ValueError):
        exclusion_mask(6, WINDOWS, mode="history")  # histories missing
    with pytest.raises(ValueError):
        exclusion_mask(6, WINDOWS, mode="all")


def test_target_ranks_counts_strictly_higher():
    scores = torch.tensor([[9.0, 0.1, 0.7, 0.3, 0.7, 0.9],
                           [0.0, 0.5, 0.5, 0.5, 0.5, 0.5]])
    # row 0: target 3 (.3): higher are .7, .7, .9 and padding's 9 -> rank 5 ; target 2 (.7): 9 and .9 -> rank 3
    # row 1: all items tie at .5; ties go by item id, so target 2 is behind item 1 -> rank 2
    assert target_ranks(scores, torch.tensor([3, 2])).tolist() == [5, 2]
    assert target_ranks(scores, torch.tensor([2, 4])).tolist() == [3, 4]  # tie with item 4 (higher id) does not count; row 1: items 1-3 tie below id 4


def test_hr_and_ndcg_on_hand_made_ranks():
    ranks = np.array([1, 2, 3, 10, 11, 20, 21])
    assert hit_rate(ranks, 10).tolist() == [1, 1, 1, 1, 0, 0, 0]
    expected = [1.0, 1 / math.log2(3), 0.5, 1 / math.log2(11), 0.0, 0.0, 0.0]
    np.testing.assert_allclose(ndcg(ranks, 10), expected)
    out = summarise(ranks, ks=(10, 20))
    assert out["HR@10"] == pytest.approx(4 / 7)
    assert out["HR@20"] == pytest.approx(6 / 7)
    assert out["NDCG@10"] == pytest.approx(sum(expected) / 7)
    assert out["NDCG@20"] == pytest.approx((sum(expected[:4]) + 1 / math.log2(12) + 1 / math.log2(21)) / 7)
    assert set(out) == {"HR@10", "NDCG@10", "HR@20", "NDCG@20"}


def test_excluded_target_ranks_beyond_k():
    m_items = 30
    scores = torch.linspace(1.0, 0.0, m_items + 1)[None, :].repeat(2, 1)  # item 1 best, then 2, ...
    windows = torch.tensor([[0, 1, 2], [0, 7, 8]])
    mask = exclusion_mask(m_items, windows, mode="window")
    targets = torch.tensor([1, 3])
    ranks = masked_ranks(scores, mask, targets)
    # row 0: target 1 is in the window: excluded, so a rank beyond any K (never a hit)
    # row 1: target 3: items 1, 2 higher (padding excluded) -> rank 3
    assert ranks.tolist() == [np.iinfo(np.int64).max, 3]
    assert hit_rate(ranks, 10).tolist() == [0.0, 1.0]
    assert ndcg(ranks, 20)[0] == 0.0
    # the padding column never counts, even with the highest raw score
    scores[:, 0] = 100.0
    assert masked_ranks(scores, mask, targets).tolist() == [np.iinfo(np.int64).max, 3]


def _evalset(n=40, m=25, length=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, m + 1, generator=gen)
    x0_hat = torch.rand(n, m + 1, generator=gen)
    windows = torch.randint(1, m + 1, (n, length), generator=gen)
    windows[:3, :2] = 0
    targets = torch.randint(1, m + 1, (n,), generator=gen)
    return logits, x0_hat, SimpleNamespace(windows=windows, targets=targets, histories=None)


def test_evaluate_all_structure_and_gamma_one_equals_backbone():
    logits, x0_hat, evalset = _evalset()
    out = evaluate_all(logits, x0_hat, evalset, gamma=1.0, norm="l1", exclude="window")
    assert set(out) == {"backbone", "diffusion", "fusion"}
    for part in out.values():
        assert set(part) == {"HR@10", "NDCG@10", "HR@20", "NDCG@20"}
        assert all(0.0 <= v <= 1.0 for v in part.values())
    assert out["fusion"] == out["backbone"]
    # the backbone part is exactly the masked ranks of the logits
    mask = exclusion_mask(logits.shape[1] - 1, evalset.windows, mode="window")
    assert out["backbone"] == summarise(masked_ranks(logits, mask, evalset.targets))
    # gamma = 0 with l1 normalisation ranks like the diffusion model (x0_hat >= 0 here)
    out0 = evaluate_all(logits, x0_hat, evalset, gamma=0.0, norm="l1", exclude="window")
    assert out0["fusion"] == out0["diffusion"]


def test_evaluate_all_none_exclusion():
    logits, x0_hat, evalset = _evalset(seed=1)
    out = evaluate_all(logits, x0_hat, evalset, gamma=0.5, norm="softmax", exclude="none")
    mask = exclusion_mask(logits.shape[1] - 1, evalset.windows, mode="none")
    assert out["diffusion"] == summarise(masked_ranks(x0_hat, mask, evalset.targets))


def test_evaluate_all_history_exclusion():
    logits, x0_hat, evalset = _evalset(seed=2)
    histories = [np.unique(w[w > 0].numpy()) for w in evalset.windows]
    evalset = SimpleNamespace(windows=evalset.windows, targets=evalset.targets, histories=histories)
    out = evaluate_all(logits, x0_hat, evalset, gamma=0.5, norm="l1", exclude="history")
    mask = exclusion_mask(logits.shape[1] - 1, evalset.windows, histories=histories, mode="history")
    assert out["backbone"] == summarise(masked_ranks(logits, mask, evalset.targets))


def test_excluded_target_is_never_a_hit_even_with_few_items():
    scores = torch.tensor([[0.0, 0.9, 0.8, 0.7, 0.6, 0.5]])   # M = 5 < K = 10
    mask = exclusion_mask(5, torch.tensor([[0, 3, 4]]), mode="window")
    ranks = masked_ranks(scores, mask, torch.tensor([3]))     # target 3 is in the input window
    assert hit_rate(ranks, 10).tolist() == [0.0]


@pytest.mark.parametrize("exclude", ["window", "history", "none"])
def test_user_ranks_in_chunks_equal_one_pass(exclude):
    """Chunking over users (the memory bound) changes nothing: every model's and control's ranks are identical."""
    from globaldiff.ranking.fused import user_ranks

    gen = torch.Generator().manual_seed(3)
    users, items = 11, 9
    logits, x0 = torch.randn(users, items + 1, generator=gen), torch.rand(users, items + 1, generator=gen)
    windows = torch.randint(0, items + 1, (users, 4), generator=gen)
    histories = [np.unique(np.append(w.numpy(), [1, 2])) for w in windows]
    targets = torch.randint(1, items + 1, (users,), generator=gen)
    evalset = SimpleNamespace(windows=windows, targets=targets, histories=histories)
    controls = {"noise": torch.rand(users, items + 1, generator=gen)}
    whole = user_ranks(logits, x0, evalset, 0.5, "l1", exclude, controls, chunk=users)
    for chunk in (1, 3, 4):
        parts = user_ranks(logits, x0, evalset, 0.5, "l1", exclude, controls, chunk=chunk)
        assert parts.keys() == whole.keys() == {"backbone", "diffusion", "fusion", "fusion_noise"}
        for name in whole:
            np.testing.assert_array_equal(parts[name], whole[name])


@pytest.mark.parametrize("exclude", ["window", "history", "none"])
def test_fused_validation_caches_the_backbone_and_equals_evaluate_all(exclude):
    """train_diffusion's validation (the backbone's half computed once) gives evaluate_all's numbers exactly."""
    from globaldiff.ranking.fused import FusedValidation

    logits, x0_hat, evalset = _evalset(n=23, m=15, seed=4)
    histories = [np.unique(np.append(w.numpy(), [1, 2])) for w in evalset.windows]
    evalset = SimpleNamespace(windows=evalset.windows, targets=evalset.targets, histories=histories)
    validation = FusedValidation(logits, evalset, exclude, chunk=5)
    for seed in range(3):
        x0 = torch.rand(x0_hat.shape, generator=torch.Generator().manual_seed(seed))
        for gamma, norm in ((0.5, "l1"), (0.2, "softmax")):
            assert validation.metrics(x0, gamma, norm) == evaluate_all(logits, x0, evalset, gamma, norm, exclude)


def _history_evalset(n: int, m: int, seed: int):
    logits, x0_hat, evalset = _evalset(n=n, m=m, seed=seed)
    histories = [np.unique(np.append(w.numpy(), [1, 2])) for w in evalset.windows]
    return logits, x0_hat, SimpleNamespace(windows=evalset.windows, targets=evalset.targets, histories=histories)


@pytest.mark.parametrize("exclude", ["window", "history"])
def test_halves_saved_and_fused_later_equal_one_pass_at_every_gamma(exclude, tmp_path):
    """The opinions stage's halves, written to .npy and read back by evaluate, rank exactly as the one-pass fusion,
    and rounding ties (scores on a coarse grid) fall the same way: gamma only weighs two saved terms."""
    from globaldiff.io import load_npy, save_npy
    from globaldiff.ranking.fused import fused_ranks, opinion_halves, user_ranks

    logits, x0, evalset = _history_evalset(n=19, m=12, seed=6)
    x0 = (x0 * 4).round() / 4                                   # many ties among x0_hat's scores
    control = torch.rand(x0.shape, generator=torch.Generator().manual_seed(8))
    halves, alone = opinion_halves(logits, {"diffusion": x0, "noise": control}, evalset, "l1", exclude, chunk=7)
    assert set(halves) == {"backbone", "diffusion", "noise"} and set(alone) == {"backbone", "diffusion"}
    assert all(h.dtype == np.float32 and h.shape == tuple(x0.shape) for h in halves.values())
    for name, half in halves.items():
        save_npy(tmp_path / f"{name}.npy", half)
    saved = {name: load_npy(tmp_path / f"{name}.npy") for name in halves}
    for gamma in (0.0, 0.3, 0.5, 1.0):
        later = fused_ranks(saved, evalset, gamma, exclude, chunk=4)
        once = user_ranks(logits, x0, evalset, gamma, "l1", exclude, {"noise": control}, chunk=19)
        assert set(later) == {"fusion", "fusion_noise"}
        for name in later:
            np.testing.assert_array_equal(later[name], once[name])
        for name in alone:
            np.testing.assert_array_equal(alone[name], once[name])


def test_sweep_validation_and_evaluation_fuse_to_the_same_ranks():
    """The fusion sweep's grid, train_diffusion's validation and the evaluate stage all go through fuse_halves:
    at the same (norm, gamma) they give the same per-user ranks, not merely close metrics."""
    from globaldiff.ranking.fused import FusedValidation, fused_ranks, opinion_halves
    from globaldiff.ranking.metrics import summarise
    from globaldiff.ranking.sweep import fusion_grid_ranks

    logits, x0, evalset = _history_evalset(n=17, m=11, seed=9)
    gammas, norms = (0.0, 0.25, 0.5, 0.9), ("softmax", "l1", "l2")
    grid = fusion_grid_ranks(logits, x0, evalset, gammas, norms, "window", chunk=6)
    validation = FusedValidation(logits, evalset, "window", chunk=5)
    for norm in norms:
        halves, _ = opinion_halves(logits, {"diffusion": x0}, evalset, norm, "window", chunk=8)
        for gamma in gammas:
            evaluated = fused_ranks(halves, evalset, gamma, "window", chunk=3)["fusion"]
            np.testing.assert_array_equal(grid[(norm, gamma)], evaluated)
            assert validation.metrics(x0, gamma, norm)["fusion"] == summarise(evaluated)


def test_fuse_halves_is_eq8_by_hand():
    from globaldiff.ranking.ensemble import borda_half, fuse_halves

    y, x = torch.tensor([[0.0, 0.5, 0.3, 0.2]]), torch.tensor([[0.0, 0.1, 0.2, 0.7]])
    np.testing.assert_allclose(borda_half(y).numpy(), [[0.0, 1.5, 0.6, 0.2]], rtol=1e-6)   # r(y) = 3, 2, 1
    np.testing.assert_allclose(borda_half(x).numpy(), [[0.0, 0.1, 0.4, 2.1]], rtol=1e-6)   # r(x) = 1, 2, 3
    np.testing.assert_allclose(fuse_halves(borda_half(y), borda_half(x), 0.25).numpy(),
                               [[0.0, 0.25 * 1.5 + 0.75 * 0.1, 0.25 * 0.6 + 0.75 * 0.4, 0.25 * 0.2 + 0.75 * 2.1]],
                               rtol=1e-6)
