"""Global item structure, paper Section 3.3 step 1 and Section 4.5: O, cosine A, cluster-item A_ic."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from globaldiff import ConfigError
from globaldiff.diffusion.similarity import (ItemSimilarity, build_similarity, cluster_similarity, cosine_similarity,
                                   interaction_matrix, topk_similarity)

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
    values, indices = topk_similarity(interaction_matrix(TRAIN, M), 3)
    topk = ItemSimilarity(values=torch.from_numpy(values), indices=torch.from_numpy(indices))
    for sim, form in ((dense, "dense"), (cluster, "cluster"), (topk, "topk")):
        path = tmp_path / "sim.pt"
        torch.save(sim.state_dict(), path)
        back = ItemSimilarity.from_state_dict(torch.load(path, weights_only=True))
        assert back.form == sim.form == form
        for name in ("matrix", "assign", "values", "indices"):
            mine, theirs = getattr(sim, name), getattr(back, name)
            assert (mine is None) == (theirs is None)
            if mine is not None:
                assert torch.equal(mine, theirs) and mine.dtype == theirs.dtype
        assert back.num_items == sim.num_items
        items = torch.tensor([1, 4])
        assert torch.equal(back.rows(items), sim.rows(items))
    assert set(dense.state_dict()) == {"matrix"}             # the dense form's state dict is unchanged
    assert set(cluster.state_dict()) == {"matrix", "assign"}
    assert set(topk.state_dict()) == {"values", "indices"}


def test_item_similarity_old_dense_state_dict_still_loads():
    a = torch.from_numpy(cosine_similarity(interaction_matrix(TRAIN, M)))
    sim = ItemSimilarity.from_state_dict({"matrix": a})
    assert sim.form == "dense" and sim.assign is None and sim.values is None
    assert torch.equal(sim.rows(torch.tensor([2])), a[[2]])


def test_item_similarity_rejects_mixed_forms():
    with pytest.raises(ValueError):
        ItemSimilarity()
    with pytest.raises(ValueError):
        ItemSimilarity(torch.rand(3, 3), values=torch.rand(3, 2), indices=torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError):
        ItemSimilarity(values=torch.rand(3, 2))
    with pytest.raises(ValueError):
        ItemSimilarity(values=torch.rand(3, 2), indices=torch.zeros(3, 1, dtype=torch.long))


def test_build_similarity_methods():
    cos = build_similarity(TRAIN, M, "cosine")
    assert cos.assign is None and cos.matrix.shape == (7, 7)
    km = build_similarity(TRAIN, M, "kmeans", clusters=2)
    assert km.matrix.shape == (7, 2) and km.assign.shape == (7,)
    with pytest.raises(ConfigError):
        build_similarity(TRAIN, M, "jaccard")
    assert build_similarity(TRAIN, M, "topk", topk=2).indices.shape == (7, 2)


# ------------------------------------------------------------------------------------------------ top-k

def random_train(rng, users, items, max_len):
    return [rng.integers(1, items + 1, rng.integers(1, max_len + 1)) for _ in range(users)]


def expected_topk(a, k):
    """Each row's k largest entries of the dense A, by decreasing value then increasing item id."""
    ids = np.broadcast_to(np.arange(a.shape[1]), a.shape)
    order = np.lexsort((ids, -a), axis=1)[:, :k]
    return np.take_along_axis(a, order, 1), order


@pytest.mark.parametrize("seed", range(4))
def test_topk_rows_are_the_dense_rows_k_largest_entries(seed):
    rng = np.random.default_rng(seed)
    items = 40
    train = random_train(rng, 60, items, 12)
    o = interaction_matrix(train, items)
    a = cosine_similarity(o)
    for k in (1, 5, 17):
        values, indices = topk_similarity(o, k)
        assert values.shape == indices.shape == (items + 1, k)
        assert values.dtype == np.float32 and indices.dtype == np.int64
        want_values, want_indices = expected_topk(a, k)
        np.testing.assert_array_equal(indices, want_indices)
        np.testing.assert_array_equal(values, want_values)        # the exact dense entries, not recomputed
        sim = ItemSimilarity(values=torch.from_numpy(values), indices=torch.from_numpy(indices))
        rows = sim.rows(torch.tensor([3, 0, 17, 3])).numpy()
        for r, item in enumerate([3, 0, 17, 3]):
            kept = np.zeros(items + 1, dtype=bool)
            kept[want_indices[item]] = True
            np.testing.assert_array_equal(rows[r][kept], a[item][kept])
            assert (rows[r][~kept] == 0).all()                      # every other entry is 0
            assert rows[r].max() == a[item].max()
        if k >= 2:
            present = values[:, 0] > 0                               # the diagonal A_ii = 1 is kept
            assert np.allclose(values[present, 0], 1.0, atol=1e-6)


def test_topk_ties_go_to_the_lower_item_id():
    # items 2..7 have the same users, so row 1 ties between them; user 2 has item 9 only
    train = [np.array([1, 2, 3, 4, 5, 6, 7]), np.array([2, 3, 4, 5, 6, 7, 8]), np.array([9])]
    o = interaction_matrix(train, 9)
    a = cosine_similarity(o)
    assert len(set(a[1, 2:8].tolist())) == 1                        # a genuine six-way tie
    values, indices = topk_similarity(o, 3)
    assert indices[1].tolist() == [1, 2, 3]                         # itself, then the two lowest of the tie
    assert indices[2].tolist() == [2, 3, 4]                         # 2..7 tie at 1.0: lowest ids first
    assert indices[9].tolist() == [9, 0, 1]                         # one positive entry, then zeros by id
    assert indices[0].tolist() == [0, 1, 2] and (values[0] == 0).all()   # padding: all zero, lowest ids
    runs = [topk_similarity(o, 3, chunk=chunk, backend=backend)
            for chunk in (1, 2, 3, 64) for backend in ("dense", "sparse")]
    for values_b, indices_b in runs:
        np.testing.assert_array_equal(indices_b, indices)
        np.testing.assert_array_equal(values_b, values)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), users=st.integers(1, 30), items=st.integers(1, 25),
       chunk=st.integers(1, 30), extra=st.integers(0, 3), backend=st.sampled_from(["dense", "sparse"]))
def test_topk_with_k_over_m_is_exactly_dense_cosine(seed, users, items, chunk, extra, backend):
    rng = np.random.default_rng(seed)
    o = interaction_matrix(random_train(rng, users, items, 8), items)
    a = cosine_similarity(o)
    values, indices = topk_similarity(o, items + 1 + extra, chunk=chunk, backend=backend)
    assert values.shape == (items + 1, items + 1)                   # k is capped at M+1
    sim = ItemSimilarity(values=torch.from_numpy(values), indices=torch.from_numpy(indices))
    np.testing.assert_array_equal(sim.dense().numpy(), a)           # bit for bit
    np.testing.assert_array_equal(np.sort(indices, axis=1), np.broadcast_to(np.arange(items + 1), indices.shape))
    np.testing.assert_array_equal(cosine_similarity(o, chunk=chunk, backend=backend), a)


@pytest.mark.parametrize("backend", ["dense", "sparse"])
def test_cosine_backends_and_chunks_agree_bit_for_bit(backend):
    rng = np.random.default_rng(7)
    o = interaction_matrix(random_train(rng, 50, 30, 10), 30)
    a = cosine_similarity(o)
    o64 = o.toarray().astype(np.float64)
    norms = np.linalg.norm(o64, axis=0)
    ref = o64.T @ o64 / np.outer(np.where(norms > 0, norms, 1), np.where(norms > 0, norms, 1))
    np.testing.assert_allclose(a, ref, atol=2e-7)
    np.testing.assert_array_equal(a, a.T)                           # exactly symmetric
    for chunk in (1, 4, 7, 31):
        np.testing.assert_array_equal(cosine_similarity(o, chunk=chunk, backend=backend), a)


def test_one_user_and_wide_products_are_exact():
    # torch._int_mm (int8) is wrong for an inner dimension of 1; the code must not depend on it there
    o = interaction_matrix([np.array([1, 2])], 3)
    for backend in ("dense", "sparse"):
        a = cosine_similarity(o, chunk=1, backend=backend)
        np.testing.assert_array_equal(a[1:3, 1:3], np.ones((2, 2), dtype=np.float32))
        assert a.sum() == 4.0
    rng = np.random.default_rng(11)
    o = interaction_matrix(random_train(rng, 40, 200, 30), 200)   # >= 16 users: the int8 product
    np.testing.assert_array_equal(cosine_similarity(o, chunk=64, backend="dense"),
                                  cosine_similarity(o, chunk=64, backend="sparse"))


def test_dense_cosine_refused_over_the_memory_budget():
    # M = 600: (M+1)^2 * 4 bytes = 1.38 MB
    with pytest.raises(ConfigError) as info:
        build_similarity(TRAIN, 600, "cosine", memory_mb=1)
    message = str(info.value)
    for key in ("similarity.method", "similarity.topk", "similarity.memory_mb"):
        assert key in message
    assert re.search(r"\b1 MB\b", message)                         # the size it would need: 1.38 MB, rounded
    with pytest.raises(ConfigError, match="similarity.memory_mb"):
        cosine_similarity(interaction_matrix(TRAIN, 600), memory_mb=1)
    assert build_similarity(TRAIN, 600, "cosine", memory_mb=2).matrix.shape == (601, 601)
    with pytest.raises(ConfigError, match="similarity.memory_mb"):  # top-k: not even one row fits
        build_similarity(TRAIN, 600, "topk", topk=5, memory_mb=0.001)


def test_dense_cosine_refusal_reports_the_size_in_mb():
    with pytest.raises(ConfigError, match=r"42830 MB"):             # the 10x KuaiRec catalogue: 105,961^2 * 4 B
        build_similarity(TRAIN, 105_960, "cosine", memory_mb=2048)


def test_topk_chunks_follow_the_memory_budget(monkeypatch):
    import globaldiff.diffusion.similarity as similarity

    seen = []
    original = similarity._CosineBlocks.strip

    def spy(self, start, stop):
        strip = original(self, start, stop)
        seen.append(strip.numel())
        return strip

    monkeypatch.setattr(similarity._CosineBlocks, "strip", spy)
    rng = np.random.default_rng(3)
    items = 300
    o = interaction_matrix(random_train(rng, 80, items, 40), items)
    budget_mb = 0.3
    values, indices = topk_similarity(o, 10, memory_mb=budget_mb)
    assert len(seen) > 1                                             # the budget forced several chunks
    assert max(seen) * 4 <= budget_mb * 2 ** 20                      # no strip above the budget
    want_values, want_indices = topk_similarity(o, 10, memory_mb=2048)
    np.testing.assert_array_equal(indices, want_indices)
    np.testing.assert_array_equal(values, want_values)


@pytest.mark.parametrize("k", [0, -3])
def test_topk_bad_k_raises(k):
    with pytest.raises(ConfigError, match="similarity.topk"):
        build_similarity(TRAIN, M, "topk", topk=k)


def test_build_similarity_topk():
    sim = build_similarity(TRAIN, M, "topk", topk=3)
    assert sim.form == "topk" and sim.assign is None and sim.matrix is None
    assert sim.values.shape == sim.indices.shape == (7, 3) and sim.num_items == 6
    a = cosine_similarity(interaction_matrix(TRAIN, M))
    values, indices = expected_topk(a, 3)
    np.testing.assert_array_equal(sim.indices.numpy(), indices)
    whole = build_similarity(TRAIN, M, "topk", topk=100)
    np.testing.assert_array_equal(whole.dense().numpy(), a)
    last = build_similarity(TRAIN, M, "topk", topk=100, last=2)
    np.testing.assert_array_equal(last.dense().numpy(), cosine_similarity(interaction_matrix(TRAIN, M, last=2)))


def test_propagate_matches_the_dense_product_in_every_form():
    rng = np.random.default_rng(5)
    items = 20
    o = interaction_matrix(random_train(rng, 30, items, 8), items)
    a = torch.from_numpy(cosine_similarity(o))
    values, indices = topk_similarity(o, 4)
    topk = ItemSimilarity(values=torch.from_numpy(values), indices=torch.from_numpy(indices))
    a_ic, assign = cluster_similarity(o, clusters=3, seed=0)
    cluster = ItemSimilarity(torch.from_numpy(a_ic), torch.from_numpy(assign))
    y = torch.rand(5, items + 1)
    for sim in (ItemSimilarity(a), topk, cluster):
        want = y @ sim.dense()
        want[:, 0] = 0.0
        torch.testing.assert_close(sim.propagate(y), want)


def test_topk_rows_are_a_copy():
    sim = build_similarity(TRAIN, M, "topk", topk=2)
    before = sim.values.clone()
    rows = sim.rows(torch.tensor([1, 1]))
    rows[0, 1] = 42.0
    assert torch.equal(sim.values, before)
    assert torch.equal(rows[1], sim.rows(torch.tensor([1]))[0])
