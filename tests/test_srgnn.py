"""SR-GNN backbone (Wu et al. 2019): session graph, gated GNN, attention readout, padding safety, training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from globaldiff.backbones.srgnn import SRGNN, session_graph

M, L, D = 9, 6, 8


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: extra intra-op threads only contend with whatever else runs on the CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def srgnn(seed: int = 0, **kw) -> SRGNN:
    torch.manual_seed(seed)
    opts = dict(hidden=D, steps=1, dropout=0.0)
    opts.update(kw)
    return SRGNN(num_items=M, max_len=L, **opts).eval()


def padded(rows: list[list[float]], size: int = L) -> torch.Tensor:
    """A [size, size] matrix with `rows` in its top-left corner, zeros elsewhere."""
    out = torch.zeros(size, size)
    out[: len(rows), : len(rows)] = torch.tensor(rows)
    return out


# ------------------------------------------------------------------------------------------- graph

def test_session_graph_by_hand():
    seqs = torch.tensor([[0, 0, 3, 5, 3, 7],
                         [0, 1, 2, 1, 2, 2],      # 1 -> 2 twice (one edge), 2 -> 2 self-loop
                         [0, 0, 0, 0, 0, 4],      # one item, no edge
                         [0, 0, 0, 0, 0, 0]])
    nodes, alias, a_in, a_out = session_graph(seqs)
    assert nodes.tolist() == [[3, 5, 7, 0, 0, 0], [1, 2, 0, 0, 0, 0], [4, 0, 0, 0, 0, 0], [0] * 6]
    assert alias.tolist() == [[0, 0, 0, 1, 0, 2], [0, 0, 1, 0, 1, 1], [0] * 6, [0] * 6]
    # row 0, slots 3, 5, 7: edges 3->5, 5->3, 3->7. Out-degrees 2, 1, 0; in-degrees 1, 1, 1.
    torch.testing.assert_close(a_out[0], padded([[0, .5, .5], [1, 0, 0], [0, 0, 0]]))
    torch.testing.assert_close(a_in[0], padded([[0, 1, 0], [1, 0, 0], [1, 0, 0]]))
    # row 1, slots 1, 2: edges 1->2, 2->1, 2->2 (counted as 1->2 twice, A_in[2] would be [2/3, 1/3])
    torch.testing.assert_close(a_out[1], padded([[0, 1], [.5, .5]]))
    torch.testing.assert_close(a_in[1], padded([[0, 1], [.5, .5]]))
    assert torch.all(a_in[2:] == 0) and torch.all(a_out[2:] == 0)


def test_session_graph_rows_are_independent():
    seqs = torch.tensor([[0, 0, 3, 5, 3, 7], [4, 3, 4, 8, 8, 1], [0, 0, 0, 9, 2, 9]])
    together = session_graph(seqs)
    for b in range(len(seqs)):
        alone = session_graph(seqs[b:b + 1])
        for x, y in zip(together, alone):
            assert torch.equal(x[b:b + 1], y)


# ------------------------------------------------------------------------------------------- GNN and readout

def reference_states(model: SRGNN, items: list[int]) -> torch.Tensor:
    """Node states of one session written out per node (eq. 1-5), with the graph of [3, 5, 3, 7] by hand."""
    assert items == [3, 5, 3, 7] and model.steps == 1
    a_in = torch.tensor([[0, 1, 0], [1, 0, 0], [1, 0, 0]], dtype=torch.float32)
    a_out = torch.tensor([[0, .5, .5], [1, 0, 0], [0, 0, 0]])
    g = model.gnn
    v = model.items.weight[[3, 5, 7]]
    d = v.shape[1]
    new = []
    for i in range(3):
        msg_in = sum(a_in[i, j] * (g.edge_in.weight @ v[j] + g.edge_in.bias) for j in range(3)) + g.bias_in
        msg_out = sum(a_out[i, j] * (g.edge_out.weight @ v[j] + g.edge_out.bias) for j in range(3)) + g.bias_out
        a = torch.cat([msg_in, msg_out])
        w, b, u = g.gates_a.weight, g.gates_a.bias, g.gates_v.weight
        z = torch.sigmoid(w[:d] @ a + b[:d] + u[:d] @ v[i])
        r = torch.sigmoid(w[d:2 * d] @ a + b[d:2 * d] + u[d:] @ v[i])
        cand = torch.tanh(w[2 * d:] @ a + b[2 * d:] + g.cand_v.weight @ (r * v[i]))
        new.append((1 - z) * v[i] + z * cand)
    return torch.stack(new)


def test_encode_matches_per_node_reference():
    model = srgnn()
    with torch.no_grad():
        h = model.encode(torch.tensor([[0, 0, 3, 5, 3, 7]]))[0]
        ref = reference_states(model, [3, 5, 3, 7])
    torch.testing.assert_close(h[2:], ref[[0, 1, 0, 2]])
    assert torch.all(h[:2] == 0)


def test_session_vector_by_hand():
    model = srgnn()
    seqs = torch.tensor([[0, 0, 3, 5, 3, 7]])
    with torch.no_grad():
        h = model.encode(seqs)[0, 2:]
        last = h[-1]
        alpha = [model.att_q.weight @ torch.sigmoid(model.att_last(last) + model.att_pos.weight @ v) for v in h]
        s_g = sum(a * v for a, v in zip(alpha, h))
        expected = model.combine.weight @ torch.cat([last, s_g])
        torch.testing.assert_close(model.session_vector(seqs)[0], expected)


def test_steps_reuse_the_layer():
    one, two = srgnn(steps=1), srgnn(steps=2)
    seqs = torch.tensor([[0, 0, 3, 5, 3, 7]])
    with torch.no_grad():
        assert not torch.allclose(one.encode(seqs), two.encode(seqs))
        nodes, alias, a_in, a_out = session_graph(seqs)
        v = two.gnn(two.gnn(two.items(nodes), a_in, a_out), a_in, a_out)
        torch.testing.assert_close(two.encode(seqs)[0, 2:], v[0, alias[0, 2:]])
    assert two.config() == {"class": "SRGNN", "num_items": M, "max_len": L, "hidden": D, "steps": 2}
    with pytest.raises(ValueError):
        SRGNN(M, L, hidden=D, steps=0)


# ------------------------------------------------------------------------------------------- padding

def test_padding_is_zero_and_never_influences_real_positions():
    model = srgnn()
    seqs = torch.tensor([[0, 0, 3, 5, 3, 7], [0, 0, 0, 0, 2, 9]])
    with torch.no_grad():
        ref, ref_s = model.encode(seqs), model.session_vector(seqs)
    assert torch.all(ref[0, :2] == 0) and torch.all(ref[1, :4] == 0)
    assert torch.all(ref[0, 2:].abs().sum(-1) > 0)

    # the same sessions without padding slots (SR-GNN has no positions, so any length works)
    with torch.no_grad():
        torch.testing.assert_close(model.encode(torch.tensor([[3, 5, 3, 7]]))[0], ref[0, 2:])
        torch.testing.assert_close(model.encode(torch.tensor([[2, 9]]))[0], ref[1, 4:])
        torch.testing.assert_close(model.session_vector(torch.tensor([[3, 5, 3, 7]]))[0], ref_s[0])

    # garbage in the padding embedding (what unused node slots start from) changes nothing
    with torch.no_grad():
        model.items.weight[0] = 10.0 * torch.randn(D)
        moved, moved_s = model.encode(seqs), model.session_vector(seqs)
    torch.testing.assert_close(moved, ref)
    torch.testing.assert_close(moved_s, ref_s)
    assert torch.all(moved[0, :2] == 0)

    # a real item in a former padding slot is part of the session and does change it
    model = srgnn()
    with torch.no_grad():
        a, b = model.encode(torch.tensor([[0, 0, 3, 5]])), model.encode(torch.tensor([[0, 9, 3, 5]]))
    assert torch.all(a[0, :2] == 0) and not torch.allclose(a[0, 2:], b[0, 2:])


def test_all_padding_window_is_finite():
    model = srgnn()
    scores, h_t, h_mean = model.predict(torch.zeros(2, L, dtype=torch.long))
    assert torch.isfinite(scores).all() and torch.all(h_t == 0) and torch.all(h_mean == 0)


# ------------------------------------------------------------------------------------------- interface

def test_shapes_and_predict_uses_session_vector():
    model = srgnn()
    windows = torch.tensor([[0, 0, 1, 2, 3, 1], [4, 5, 6, 7, 8, 9], [0, 0, 0, 0, 0, 9]])
    with torch.no_grad():
        h = model.encode(windows)
        s = model.session_vector(windows)
        scores, h_t, h_mean = model.predict(windows)
    assert h.shape == (3, L, D) and s.shape == (3, D)
    assert model.item_scores(s).shape == (3, M + 1) and scores.shape == (3, M + 1)
    assert h_t.shape == (3, D) and h_mean.shape == (3, D)
    torch.testing.assert_close(scores, model.item_scores(s))
    assert torch.all(scores[:, 0] == 0)                        # padding embedding is zero
    # guidance: last item's node state and the mean over the real positions (repeated item 1 counted twice)
    torch.testing.assert_close(h_t, h[:, -1])
    torch.testing.assert_close(h_mean[0], h[0, 2:].mean(0))
    torch.testing.assert_close(h_mean[2], h[2, -1])
    # the scores are SR-GNN's session vector, not the last state alone
    assert not torch.allclose(scores, model.item_scores(h_t))
    assert model.causal and torch.equal(model.next_item_input(windows), windows)


def test_training_loss_is_next_item_cross_entropy_and_drops_empty_rows():
    model = srgnn()
    good = torch.tensor([[0, 0, 3, 5, 3, 7, 2], [1, 2, 3, 4, 5, 6, 7]])
    bad = torch.tensor([[0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 4]])   # no target / no input
    with torch.no_grad():
        logits = model.predict(good[:, :-1])[0]
        logits[:, 0] = float("-inf")
        expected = F.cross_entropy(logits, good[:, -1])
        torch.testing.assert_close(model.training_loss(good), expected)
        torch.testing.assert_close(model.training_loss(torch.cat([bad[:1], good, bad[1:]])), expected)
    empty = model.training_loss(bad)
    assert empty.item() == 0.0 and empty.requires_grad


def small_data(seed: int) -> torch.Tensor:
    """64 windows [64, L+1] over 20 items that follow item k with k + 1 or k + 2 (mod 20), some padded."""
    gen = torch.Generator().manual_seed(seed)
    start = torch.randint(1, 21, (64, 1), generator=gen)
    steps = torch.randint(1, 3, (64, L + 1), generator=gen).cumsum(1) - 1
    windows = (start - 1 + steps) % 20 + 1
    cut = torch.randint(0, 4, (64, 1), generator=gen)
    return windows.masked_fill(torch.arange(L + 1)[None, :] < cut, 0)


def test_smoke_training_lowers_the_loss():
    torch.manual_seed(0)
    model = SRGNN(num_items=20, max_len=L, hidden=16, steps=1, dropout=0.1)
    windows = small_data(0)
    optim = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(30):
        loss = model.training_loss(windows)
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


def test_same_seed_same_loss():
    windows = small_data(1)

    def loss(seed: int) -> float:
        torch.manual_seed(seed)
        model = SRGNN(num_items=20, max_len=L, hidden=16, steps=2, dropout=0.3).train()
        return model.training_loss(windows).item()

    assert loss(3) == loss(3)
    assert loss(3) != loss(4)
