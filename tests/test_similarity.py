"""Global item structure, paper Section 3.3 step 1 and Section 4.5: O, cosine A, cluster-item A_ic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from globaldiff import ConfigError
from globaldiff.similarity import (ItemSimilarity, build_similarity, cluster_similarity, cosine_similarity,
                                   interaction_matrix)

# 4 users, M = 6 items; item 5 has no train interaction; user 0 repeats item 2.
TRAIN = [np.array([1, 2, 2, 3]), np.array([2, 3, 6]), np.array([1, 4]), np.array([6, 4, 1, 3])]
M = 6


def dense_o(train, m, last=None):
    o = np.zeros((len(train), m + 1))
    for u, seq in enumerate(train):
        for item in (seq[-last:] if last else seq):
            o[u, item] = 1.0
    return o


def dense_cosine(o):
    norms = np.linalg.norm(o, axis=0)
    a = np.zeros((o.shape[1], o.shape[1]))
    for i in range(o.shape[1]):
        for j in range(o.shape[1]):
            if norms[i] > 0 and norms[j] > 0:
                a[i, j] = o[:, i] @ o[:, j] / (norms[i] * norms[j])
    return a


def test_interaction_matrix_binary_and_last():
    o = interaction_matrix(TRAIN, M)
    assert o.shape == (4, 7)
    expected = np.array([
        [0, 1, 1, 1, 0, 0, 0],
        [0, 0, 1, 1, 0, 0, 1],
        [0, 1, 0, 0, 1, 0, 0],
        [0, 1, 0, 1, 1, 0, 1],
    ], dtype=np.float32)
    np.testing.assert_array_equal(o.toarray(), expected)   # repeated (user 0, item 2) counted once
    last2 = interaction_matrix(TRAIN, M, last=2).toarray()
    np.testing.assert_array_equal(last2, dense_o(TRAIN, M, last=2))
    assert last2[0].tolist() == [0, 0, 1, 1, 0, 0, 0]      # user 0's last two items: 2, 3
    assert last2[3].tolist() == [0, 1, 0, 1, 0, 0, 0]      # user 3's last two: 1, 3


def test_cosine_similarity_matches_dense_numpy():
    a = cosine_similarity(interaction_matrix(TRAIN, M))
    assert a.shape == (7, 7) and a.dtype == np.float32
    np.testing.assert_allclose(a, dense_cosine(dense_o(TRAIN, M)), atol=1e-6)
    # by hand: items 2 = users {0, 1}, 3 = {0, 1, 3}: cos = 2 / sqrt(2 * 3)
    assert a[2, 3] == pytest.approx(2 / np.sqrt(6), abs=1e-6)
    np.testing.assert_array_equal(a[5], 0.0)                # no interactions: zero row and column
    np.testing.assert_array_equal(a[:, 5], 0.0)
    np.testing.assert_array_equal(a[0], 0.0)                # padding
    np.testing.assert_allclose(np.diag(a)[[1, 2, 3, 4, 6]], 1.0, atol=1e-6)
    np.testing.assert_allclose(a, a.T, atol=1e-7)


def test_cosine_similarity_chunking_does_not_change_result():
    o = interaction_matrix(TRAIN, M)
    np.testing.assert_allclose(cosine_similarity(o, chunk=2), cosine_similarity(o, chunk=4096), atol=1e-7)


def test_cluster_similarity_shapes_and_ranges():
    o = interaction_matrix(TRAIN, M)
    a_ic, assign = cluster_similarity(o, clusters=3, seed=0)
    assert a_ic.shape == (7, 3) and a_ic.dtype == np.float32
    assert assign.shape == (7,) and assign.dtype == np.int64
    assert assign[0] == 0 and ((assign[1:] >= 0) & (assign[1:] < 3)).all()
    np.testing.assert_array_equal(a_ic[0], 0.0)
    np.testing.assert_array_equal(a_ic[5], 0.0)             # zero item vector: cos 0 with every centroid
    assert (a_ic >= -1e-6).all() and (a_ic <= 1 + 1e-6).all()
    again = cluster_similarity(o, clusters=3, seed=0)
    np.testing.assert_array_equal(again[1], assign)


@pytest.mark.parametrize("k", [0, 7, 100])
def test_cluster_similarity_bad_k_raises(k):
    with pytest.raises(ConfigError):
        cluster_similarity(interaction_matrix(TRAIN, M), clusters=k, seed=0)


def test_item_similarity_rows_dense():
    a = torch.from_numpy(cosine_similarity(interaction_matrix(TRAIN, M)))
    sim = ItemSimilarity(a)
    assert sim.num_items == 6
    rows = sim.rows(torch.tensor([3, 1]))
    torch.testing.assert_close(rows, a[[3, 1]])
    rows[0, 1] = 42.0
    assert a[3, 1] != 42.0                                  # rows are a copy


def test_item_similarity_rows_cluster_form():
    a_ic = torch.tensor([[0.0, 0.0], [0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]])  # M = 4, K = 2
    assign = torch.tensor([0, 0, 1, 0, 1])
    original = a_ic.clone()
    sim = ItemSimilarity(a_ic, assign)
    assert sim.num_items == 4
    rows = sim.rows(torch.tensor([2, 3]))
    assert rows.shape == (2, 5)
    for r, i in enumerate([2, 3]):
        for m in range(1, 5):
            assert rows[r, m].item() == a_ic[i, assign[m]].item()
    assert (rows[:, 0] == 0).all()
    torch.testing.assert_close(rows, torch.tensor([[0.0, 0.2, 0.8, 0.2, 0.8], [0.0, 0.7, 0.3, 0.7, 0.3]]))
    assert torch.equal(a_ic, original)                      # the stored matrix is untouched


def test_item_similarity_state_dict_round_trip(tmp_path):
    dense = ItemSimilarity(torch.rand(5, 5))
    cluster = ItemSimilarity(torch.rand(5, 2), torch.tensor([0, 1, 0, 1, 1]))
    for sim in (dense, cluster):
        path = tmp_path / "sim.pt"
        torch.save(sim.state_dict(), path)
        back = ItemSimilarity.from_state_dict(torch.load(path))
        assert torch.equal(back.matrix, sim.matrix)
        assert (back.assign is None) == (sim.assign is None)
        if sim.assign is not None:
            assert torch.equal(back.assign, sim.assign)
        items = torch.tensor([1, 4])
        assert torch.equal(back.rows(items), sim.rows(items))
    assert "assign" not in dense.state_dict()


def test_build_similarity_methods():
    cos = build_similarity(TRAIN, M, "cosine")
    assert cos.assign is None and cos.matrix.shape == (7, 7)
    km = build_similarity(TRAIN, M, "kmeans", clusters=2)
    assert km.matrix.shape == (7, 2) and km.assign.shape == (7,)
    with pytest.raises(ConfigError):
        build_similarity(TRAIN, M, "jaccard")
