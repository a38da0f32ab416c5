"""Inference ensemble, paper Section 3.5, equation (8): normalisation and Borda-count fusion (hand-computed)."""

from __future__ import annotations

import math

import pytest
import torch

from globaldiff.ranking.ensemble import borda_fusion, borda_ranks, fused_scores, normalise

INF = float("inf")

# M = 5 items, column 0 = padding.
Y = torch.tensor([[0.0, 0.05, 0.40, 0.25, 0.20, 0.10]])   # r(y)  = [0, 1, 5, 4, 3, 2]
X = torch.tensor([[0.0, 0.30, 0.10, 0.15, 0.40, 0.05]])   # r(x)  = [0, 4, 2, 3, 5, 1]


def test_borda_ranks_top_gets_M_lowest_1_padding_0():
    scores = torch.tensor([[99.0, 0.1, 0.5, 0.3, 0.9, 0.2]])
    assert borda_ranks(scores).tolist() == [[0.0, 1.0, 4.0, 3.0, 5.0, 2.0]]
    assert borda_ranks(Y).tolist() == [[0.0, 1.0, 5.0, 4.0, 3.0, 2.0]]
    assert borda_ranks(X).tolist() == [[0.0, 4.0, 2.0, 3.0, 5.0, 1.0]]
    assert borda_ranks(scores).dtype == scores.dtype


def test_borda_ranks_ties_by_item_id_and_rows_independent():
    scores = torch.tensor([[0.0, 0.5, 0.5, 0.1, 0.5, 0.9],
                           [0.0, -INF, 2.0, -INF, 1.0, 3.0]])
    # row 0: .1 (3) -> 1 ; the tie .5 at items 1, 2, 4 -> 2, 3, 4 (lower id lower) ; .9 (5) -> 5
    # row 1: -inf at items 1, 3 -> 1, 2 ; 1.0 (4) -> 3 ; 2.0 (2) -> 4 ; 3.0 (5) -> 5
    assert borda_ranks(scores).tolist() == [[0.0, 2.0, 3.0, 1.0, 4.0, 5.0], [0.0, 1.0, 4.0, 2.0, 3.0, 5.0]]


@pytest.mark.parametrize("gamma, expected", [
    # gamma * r(y) * y + (1 - gamma) * r(x) * x with r(y) y = [0, .05, 2.0, 1.0, .6, .2], r(x) x = [0, 1.2, .2, .45, 2.0, .05]
    (1.0, [0.0, 0.05, 2.0, 1.0, 0.6, 0.2]),
    (0.0, [0.0, 1.2, 0.2, 0.45, 2.0, 0.05]),
    (0.5, [0.0, 0.625, 1.1, 0.725, 1.3, 0.125]),
])
def test_borda_fusion_by_hand(gamma, expected):
    torch.testing.assert_close(borda_fusion(Y, X, gamma), torch.tensor([expected]))


def test_borda_fusion_changes_the_winner_with_gamma():
    assert borda_fusion(Y, X, 1.0).argmax().item() == 2   # backbone's favourite
    assert borda_fusion(Y, X, 0.0).argmax().item() == 4   # diffusion's favourite
    assert borda_fusion(Y, X, 0.5).argmax().item() == 4   # 1.3 > 1.1


@pytest.mark.parametrize("gamma", [-0.01, 1.01, 2.0])
def test_borda_fusion_gamma_out_of_range_raises(gamma):
    with pytest.raises(ValueError):
        borda_fusion(Y, X, gamma)


def test_normalise_l1_l2_softmax_with_minus_inf():
    s = torch.tensor([[-INF, 1.0, 3.0, -INF, 4.0]])
    torch.testing.assert_close(normalise(s, "l1"), torch.tensor([[0.0, 0.125, 0.375, 0.0, 0.5]]))
    r = math.sqrt(26.0)
    torch.testing.assert_close(normalise(s, "l2"), torch.tensor([[0.0, 1 / r, 3 / r, 0.0, 4 / r]]))
    z = math.exp(1) + math.exp(3) + math.exp(4)
    torch.testing.assert_close(normalise(s, "softmax"),
                               torch.tensor([[0.0, math.exp(1) / z, math.exp(3) / z, 0.0, math.exp(4) / z]]))
    for kind in ("l1", "l2", "softmax"):
        assert torch.isfinite(normalise(s, kind)).all()


def test_normalise_l1_uses_absolute_values_and_zero_row_is_safe():
    s = torch.tensor([[0.0, -1.0, 3.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(normalise(s, "l1"), torch.tensor([[0.0, -0.25, 0.75], [0.0, 0.0, 0.0]]))
    assert torch.isfinite(normalise(s, "l2")).all()
    with pytest.raises(ValueError):
        normalise(s, "max")


def test_fused_scores_keeps_excluded_items_at_minus_inf():
    logits = torch.tensor([[5.0, 1.0, 2.0, 0.5, 3.0, -1.0]])
    x0_hat = torch.tensor([[7.0, 0.2, 0.9, 0.4, 0.1, 0.3]])
    mask = torch.tensor([[True, False, True, False, False, False]])  # padding and item 2 excluded
    out = fused_scores(logits, x0_hat, mask, gamma=0.5, norm="l1")
    assert torch.isinf(out[0, 0]) and out[0, 0] < 0
    assert torch.isinf(out[0, 2]) and out[0, 2] < 0
    assert torch.isfinite(out[0, [1, 3, 4, 5]]).all()
    # the finite entries are eq. (8) on softmax(y) and l1(x0_hat), both computed over the allowed items only
    y = torch.zeros(1, 6)
    y[0, [1, 3, 4, 5]] = torch.softmax(logits[0, [1, 3, 4, 5]], 0)
    x = torch.zeros(1, 6)
    x[0, [1, 3, 4, 5]] = x0_hat[0, [1, 3, 4, 5]] / x0_hat[0, [1, 3, 4, 5]].sum()
    expected = borda_fusion(y, x, 0.5)
    torch.testing.assert_close(out[0, [1, 3, 4, 5]], expected[0, [1, 3, 4, 5]])


def test_fused_scores_gamma_one_orders_like_backbone():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 12, generator=gen)
    x0_hat = torch.randn(4, 12, generator=gen)
    mask = torch.zeros(4, 12, dtype=torch.bool)
    mask[:, 0] = True
    mask[1, 5] = True
    out = fused_scores(logits, x0_hat, mask, gamma=1.0, norm="softmax")
    masked = logits.masked_fill(mask, -INF)
    assert torch.equal(out.argsort(dim=1, descending=True, stable=True)[:, :-2],
                       masked.argsort(dim=1, descending=True, stable=True)[:, :-2])


# ------------------------------------------------------------------------------ the packed-key sort

def _stable_argsort_ranks(scores: torch.Tensor) -> torch.Tensor:
    """The reference r(.): a stable argsort of the items' scores (what borda_ranks did before its key sort)."""
    items = scores[:, 1:]
    order = torch.argsort(items, dim=1, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(1, items.shape[1] + 1).expand_as(order))
    return torch.cat([torch.zeros_like(ranks[:, :1]), ranks], dim=1).to(scores.dtype)


def test_borda_ranks_packed_keys_equal_the_stable_argsort():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(600, 300, generator=gen) * 10.0 ** torch.randint(-30, 30, (600, 1), generator=gen)
    scores[:, 5:40] = scores[:, 5:6]                                       # long ties at every magnitude
    scores[::3, 50:60] = float("-inf")
    scores[::5, 60:70] = 0.0
    scores[::5, 70:80] = -0.0                                              # -0.0 ties with 0.0, as a comparison sort
    scores[::7, 80:90] = torch.tensor([-1e-45, 1e-45, -3.4e38, 3.4e38, float("inf"), -2.0, 2.0, -0.5, 0.5, 1.0])
    scores[1] = 1.0                                                        # a constant row
    # 600 rows: the sort is split over threads (256 rows or more each) when torch has several
    assert torch.equal(borda_ranks(scores), _stable_argsort_ranks(scores))
    assert torch.equal(borda_ranks(scores[:7]), _stable_argsort_ranks(scores[:7]))


def test_borda_ranks_and_target_ranks_refuse_nan():
    from globaldiff import ConfigError
    from globaldiff.ranking.metrics import masked_ranks, target_ranks

    scores = torch.rand(3, 6)
    scores[1, 2] = float("nan")
    with pytest.raises(ConfigError, match="NaN in 1 of 3"):
        borda_ranks(scores)
    with pytest.raises(ConfigError, match="NaN"):
        target_ranks(scores, torch.tensor([1, 1, 1]))
    # a NaN target would otherwise rank first (nothing compares above it): never a metric
    with pytest.raises(ConfigError, match="NaN"):
        masked_ranks(scores, torch.zeros(3, 6, dtype=torch.bool), torch.tensor([1, 2, 1]))
    # an excluded item can never be recommended: its score, NaN or not, is dropped before ranking
    mask = torch.zeros(3, 6, dtype=torch.bool)
    mask[1, 2] = True
    assert masked_ranks(scores, mask, torch.tensor([1, 1, 1])).shape == (3,)


def test_second_opinion_prepared_once_fuses_as_fuse_at_every_gamma():
    from globaldiff.ranking.ensemble import BackboneOpinion

    gen = torch.Generator().manual_seed(1)
    logits, x0 = torch.randn(9, 12, generator=gen), torch.rand(9, 12, generator=gen)
    mask = torch.rand(9, 12, generator=gen) < 0.2
    mask[:, 0] = True
    opinion = BackboneOpinion(logits, mask)
    for norm in ("softmax", "l1", "l2"):
        second = opinion.second(x0, norm)
        for gamma in (0.0, 0.3, 0.5, 1.0):
            assert torch.equal(opinion.combine(second, gamma), opinion.fuse(x0, gamma, norm))
