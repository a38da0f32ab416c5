"""Controls without diffusion (controls.py) and their fusion in the evaluate stage (evaluation.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from globaldiff.ranking.controls import control_scores, popularity_scores, propagated_scores, random_scores
from globaldiff.ranking.fused import user_ranks
from globaldiff.ranking.metrics import summarise
from globaldiff.diffusion.similarity import ItemSimilarity
from globaldiff.data.windows import EvalSet

A5 = torch.tensor([                       # ids 0..5, padding row/column 0
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [0.0, 1.0, 0.5, 0.0, 0.0, 0.2],
    [0.0, 0.5, 1.0, 0.3, 0.0, 0.0],
    [0.0, 0.0, 0.3, 1.0, 0.4, 0.0],
    [0.0, 0.0, 0.0, 0.4, 1.0, 0.1],
    [0.0, 0.2, 0.0, 0.0, 0.1, 1.0],
])


def test_propagated_equals_direct_dense_product():
    logits = torch.tensor([[0.0, 2.0, 1.0, 0.0, -1.0, 0.5], [0.0, -1.0, 0.0, 3.0, 0.0, 1.0]])
    got = propagated_scores(logits, ItemSimilarity(A5), batch=1)
    y = torch.exp(logits) / torch.exp(logits).sum(1, keepdim=True)
    for b in range(2):
        for m in range(1, 6):
            want = sum(y[b, i] * A5[i, m] for i in range(6))
            torch.testing.assert_close(got[b, m], want)
    assert torch.all(got[:, 0] == 0)


def test_propagated_cluster_form_reads_the_item_cluster_column():
    a_ic = torch.tensor([[0.0, 0.0], [1.0, 0.2], [0.9, 0.1], [0.1, 1.0]])   # 3 items, 2 clusters
    assign = torch.tensor([0, 0, 0, 1])
    logits = torch.tensor([[0.0, 1.0, 0.0, 2.0]])
    got = propagated_scores(logits, ItemSimilarity(a_ic, assign))
    y = torch.softmax(logits, 1)[0]
    dense = torch.stack([a_ic[:, assign[m]] for m in range(4)], 1)            # A[i, m] = A_ic[i, c(m)]
    want = y @ dense
    want[0] = 0.0
    torch.testing.assert_close(got[0], want)


def test_popularity_counts_train_interactions():
    train = [np.array([1, 2, 2]), np.array([3, 1])]
    got = popularity_scores(train, 4, users=3)
    assert got.shape == (3, 5)
    assert got[0].tolist() == [0.0, 2.0, 2.0, 1.0, 0.0]
    assert torch.equal(got[0], got[2])


def test_random_control_hit_rate_is_k_over_m():
    users, items = 4000, 200
    scores = random_scores(users, items, seed=0)
    targets = torch.randint(1, items + 1, (users,), generator=torch.Generator().manual_seed(1))
    windows = torch.zeros(users, 1, dtype=torch.long)                      # nothing excluded but padding
    ranks = user_ranks(scores, scores, EvalSet(windows, targets), 0.5, "l1", "window")["backbone"]
    hr = summarise(ranks)
    assert abs(hr["HR@10"] - 10 / items) < 3 * np.sqrt(10 / items / users)
    assert abs(hr["HR@20"] - 20 / items) < 3 * np.sqrt(20 / items / users)


def test_controls_join_the_fusion_and_unknown_is_refused():
    logits = torch.tensor([[0.0, 3.0, 2.0, 1.0, 0.0, -1.0]])
    x0 = torch.tensor([[0.0, 0.1, 0.2, 0.3, 0.4, 0.5]])
    evalset = EvalSet(torch.tensor([[0, 1]]), torch.tensor([5]))
    controls = {"popularity": torch.tensor([[0.0, 1.0, 1.0, 1.0, 1.0, 9.0]])}
    ranks = user_ranks(logits, x0, evalset, 0.5, "l1", "window", controls)
    assert set(ranks) == {"backbone", "diffusion", "fusion", "fusion_popularity"}
    assert ranks["backbone"][0] == 4 and ranks["diffusion"][0] == 1
    # by hand (item 1 excluded): y = softmax(2, 1, 0, -1) over items 2..5 = (.644, .237, .087, .032), Borda
    # ranks 5, 4, 3, 2; popularity l1 = (1, 1, 1, 9)/12, ranks 2, 3, 4, 5 (ties by id). Fused item 5:
    # .5 (2 x .032 + 5 x .75) = 1.91 > item 2: .5 (5 x .644 + 2 x .083) = 1.69, so item 5 is first
    assert ranks["fusion_popularity"][0] == 1
    unseen = user_ranks(logits, x0, evalset, 0.5, "l1", "window",
                        {"popularity": torch.tensor([[0.0, 1.0, 1.0, 1.0, 1.0, 0.0]])})
    assert unseen["fusion_popularity"][0] == 4         # a never-seen target gains nothing from popularity
    with pytest.raises(ValueError, match="unknown control"):
        control_scores("oracle", logits, ItemSimilarity(A5), [np.array([1])], 0)
