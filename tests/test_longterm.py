"""Long-term prediction (Figure 3): one fixed input, the P-th future item as target, hand-made scores."""

from __future__ import annotations

import numpy as np
import torch

from globaldiff.data.sequences import Split
from globaldiff.ranking.longterm import evaluate_horizons, horizon_sets


def split() -> Split:
    # two users, items 1..9; train, then val, then four test items
    return Split(users=np.arange(2), num_items=9,
                 train=[np.array([1, 2, 3]), np.array([4, 5])], val=np.array([6, 7]),
                 test=np.array([[7, 8, 9, 1], [2, 3, 9, 6]]))


def test_horizon_sets_share_one_input_and_walk_the_targets():
    sets = horizon_sets(split(), length=3)
    assert len(sets) == 4
    for evalset in sets:
        assert evalset.windows.tolist() == [[2, 3, 6], [4, 5, 7]]       # train + val, the last 3 items
    assert [s.targets.tolist() for s in sets] == [[7, 2], [8, 3], [9, 9], [1, 6]]


def test_evaluate_horizons_ranks_each_future_item():
    # scores: item i gets score i for both users (9 best), window items excluded
    scores = np.tile(np.arange(10, dtype=np.float32), (2, 1))
    out = evaluate_horizons({"test_logits": scores, "test_x0": scores}, split(), 3, 0.5, "l1", "window")
    assert list(out) == ["P1", "P2", "P3", "P4"]
    # user 0 excludes 2, 3, 6: ranking 9, 8, 7, 5, 4, 1 -> P1 target 7 at rank 3; user 1 excludes 4, 5, 7: ranking
    # 9, 8, 6, 3, 2, 1 -> P1 target 2 at rank 5; both inside the top 10
    assert out["P1"]["backbone"]["HR@10"] == 1.0
    np.testing.assert_allclose(out["P1"]["backbone"]["NDCG@10"], (1 / np.log2(4) + 1 / np.log2(6)) / 2)
    assert out["P3"]["fusion"]["NDCG@10"] == 1.0                          # item 9 first for both users
    assert set(out["P4"]) == {"backbone", "diffusion", "fusion"}
    assert torch.is_tensor(horizon_sets(split(), 3)[0].targets)
