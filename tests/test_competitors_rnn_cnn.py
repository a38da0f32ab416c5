"""Table 2 competitors GRU4Rec, Caser and LightSANs behind the Backbone interface: shapes, padding, causality,
hand-checked forward passes and losses, a training smoke run, bit-reproducibility and the config validator."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from globaldiff import ConfigError
from globaldiff.backbones import REGISTRY
from globaldiff.backbones.base import build_backbone, right_align
from globaldiff.backbones.caser import NEGATIVES, Caser
from globaldiff.backbones.gru4rec import GRU4Rec
from globaldiff.backbones.lightsans import LightSANs
from globaldiff.config.schema import check_model_options, model_options

M, L, D = 9, 5, 8
CLASSES = {"gru4rec": GRU4Rec, "caser": Caser, "lightsans": LightSANs}
SMALL = {"gru4rec": dict(gru_hidden=12), "caser": dict(n_v=2, n_h=3), "lightsans": dict(heads=2, interests=3, ffn=16)}
SEQS = torch.tensor([[0, 0, 3, 5, 3], [1, 2, 3, 4, 5], [0, 0, 0, 0, 7], [0, 0, 0, 0, 0]])


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: extra intra-op threads only contend with whatever else runs on the CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def registered(monkeypatch):
    for name, cls in CLASSES.items():
        monkeypatch.setitem(REGISTRY, name, cls.__name__)


def model(name: str, seed: int = 0, **kw):
    torch.manual_seed(seed)
    return CLASSES[name](num_items=M, max_len=L, hidden=D, **{**SMALL[name], "dropout": 0.0, **kw}).eval()


def pad_embedding(m) -> torch.nn.Parameter:
    return m.items.weight


# ------------------------------------------------------------------------------------------- interface

@pytest.mark.parametrize("name", CLASSES)
def test_shapes_padding_zero_and_predict_reads_the_last_position(name):
    m = model(name)
    with torch.no_grad():
        h = m.encode(SEQS)
        scores, h_t, h_mean = m.predict(SEQS)
    assert h.shape == (4, L, D) and scores.shape == (4, M + 1) and h_t.shape == h_mean.shape == (4, D)
    assert torch.all(h[SEQS == 0] == 0) and torch.all(h[SEQS != 0].abs().sum(-1) > 0)
    torch.testing.assert_close(h_t, h[:, -1])
    torch.testing.assert_close(scores, m.item_scores(h[:, -1]))
    torch.testing.assert_close(h_mean[0], h[0, 2:].mean(0))
    assert torch.isfinite(scores).all() and torch.all(h[3] == 0) and torch.all(h_mean[3] == 0)
    assert m.causal and torch.equal(m.next_item_input(SEQS), SEQS)


@pytest.mark.parametrize("name", CLASSES)
def test_padding_never_changes_the_real_positions(name):
    m = model(name)
    with torch.no_grad():
        ref = m.encode(SEQS)
        pad_embedding(m)[0] = 10.0 * torch.randn(D)          # garbage in the padding row
        if name == "lightsans":                               # and in the position slots of padding
            m.positions.weight[:2] += 5.0 * torch.randn(2, D)
        noisy = m.encode(SEQS)
    torch.testing.assert_close(noisy[:, 2:], ref[:, 2:])      # positions 2.. are real or padding in both
    assert torch.all(noisy[SEQS == 0] == 0)
    if name != "lightsans":   # no positions: a window without its padding slots has the same states
        with torch.no_grad():
            torch.testing.assert_close(m.encode(SEQS[:1, 2:]), ref[:1, 2:])
            torch.testing.assert_close(m.encode(SEQS[2:3, 4:]), ref[2:3, 4:])
    with torch.no_grad():     # a real item in a former padding slot is part of the window
        other = m.encode(torch.tensor([[0, 6, 3, 5, 3]]))
    assert not torch.allclose(other[0, -1], ref[0, -1])


@pytest.mark.parametrize("name", ["gru4rec", "caser"])
def test_causal_states_see_only_the_past(name):
    m = model(name)
    a, b = torch.tensor([[0, 1, 2, 3, 4]]), torch.tensor([[0, 1, 2, 3, 6]])
    c = torch.tensor([[0, 1, 7, 3, 4]])
    with torch.no_grad():
        ha, hb, hc = m.encode(a), m.encode(b), m.encode(c)
        torch.testing.assert_close(ha[:, :4], hb[:, :4])
        torch.testing.assert_close(ha[:, :2], hc[:, :2])
        assert not torch.allclose(ha[:, 4], hb[:, 4]) and not torch.allclose(ha[:, 2:], hc[:, 2:])
        # h_i is the model run on the prefix up to i, right-aligned: what masked_input feeds for diffusion
        for i in range(L):
            prefix = right_align(SEQS, torch.full((len(SEQS),), i + 1))
            torch.testing.assert_close(m.encode(prefix)[:, -1], m.encode(SEQS)[:, i])


def test_lightsans_mixes_the_window_but_never_sees_the_target():
    m = model("lightsans")
    with torch.no_grad():
        ha, hb = m.encode(torch.tensor([[0, 1, 2, 3, 4]])), m.encode(torch.tensor([[0, 1, 2, 3, 6]]))
        windows = torch.tensor([[0, 0, 3, 5, 3, 7], [1, 2, 3, 4, 5, 6]])
        loss = m.training_loss(windows)
        changed = m.training_loss(torch.cat([windows[:, :-1], torch.tensor([[2], [2]])], 1))
        logits = m.predict(windows[:, :-1])[0]
    assert not torch.allclose(ha[:, 0:4], hb[:, 0:4])        # no mask inside the window (paper, RecBole)
    logits[:, 0] = float("-inf")
    torch.testing.assert_close(loss, F.cross_entropy(logits, windows[:, -1]))
    torch.testing.assert_close(changed, F.cross_entropy(logits, torch.tensor([2, 2])))


# ------------------------------------------------------------------------------------------- by hand

def test_gru4rec_states_follow_the_bias_free_gru_equations():
    m = model("gru4rec")
    g, e = m.gru, m.items.weight
    w_r, w_z, w_n = g.weight_ih_l0.chunk(3)
    u_r, u_z, u_n = g.weight_hh_l0.chunk(3)
    state, expected = torch.zeros(12), []
    for item in [3, 5, 3]:
        x = e[item]
        r, z = torch.sigmoid(w_r @ x + u_r @ state), torch.sigmoid(w_z @ x + u_z @ state)
        n = torch.tanh(w_n @ x + r * (u_n @ state))
        state = (1 - z) * n + z * state
        expected.append(m.dense(state))
    with torch.no_grad():
        torch.testing.assert_close(m.encode(SEQS[:1])[0, 2:], torch.stack(expected).detach())


def caser_by_hand(m: Caser, window: list[int]) -> torch.Tensor:
    """Caser's z (paper Section 3) for one window of L items: explicit horizontal and vertical filters."""
    e = m.items.weight[window] * (torch.tensor(window) != 0)[:, None]              # [L, d]
    vert = [(m.vertical.weight[c, 0] @ e) + m.vertical.bias[c] for c in range(m.n_v)]  # each [d]
    horiz = []
    for h, conv in enumerate(m.horizontal, start=1):
        for f in range(m.n_h):
            spans = [torch.relu((conv.weight[f] * e[s:s + h].T).sum() + conv.bias[f]) for s in range(L - h + 1)]
            horiz.append(torch.stack(spans).max())
    return torch.relu(m.fc(torch.cat([torch.cat(vert), torch.stack(horiz)])))


def test_caser_last_state_is_the_papers_z_and_losses_by_hand():
    m = model("caser")
    with torch.no_grad():
        h = m.encode(SEQS)
        for row in range(3):
            torch.testing.assert_close(h[row, -1], caser_by_hand(m, SEQS[row].tolist()))
        windows = torch.tensor([[0, 0, 3, 5, 3, 7], [1, 2, 3, 4, 5, 6]])
        pairs = [(b, i) for b in range(2) for i in range(L) if windows[b, i] and windows[b, i + 1]]
        states = m.encode(windows[:, :-1])
        w, bias = m.out_items.weight, m.out_bias.weight[:, 0]
        ce = [-(torch.log_softmax(w[1:] @ states[b, i] + bias[1:], 0)[windows[b, i + 1] - 1]) for b, i in pairs]
        torch.testing.assert_close(m.training_loss(windows), torch.stack(ce).mean())

        bce_model = model("caser", loss="bce")
        draws = torch.randint(1, M + 1, (len(pairs), NEGATIVES), generator=torch.Generator().manual_seed(5))
        states = bce_model.encode(windows[:, :-1])
        w, bias = bce_model.out_items.weight, bce_model.out_bias.weight[:, 0]
        score = lambda b, i, item: w[item] @ states[b, i] + bias[item]
        pos = torch.stack([-F.logsigmoid(score(b, i, windows[b, i + 1])) for b, i in pairs]).mean()
        neg = torch.stack([-F.logsigmoid(-score(b, i, j)) for k, (b, i) in enumerate(pairs) for j in draws[k]]).mean()
        got = bce_model.training_loss(windows, generator=torch.Generator().manual_seed(5))
        torch.testing.assert_close(got, pos + neg)


def test_gru4rec_loss_is_cross_entropy_at_every_real_position():
    m = model("gru4rec")
    windows = torch.tensor([[0, 0, 3, 5, 3, 7], [1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 0, 4]])
    with torch.no_grad():
        states, e = m.encode(windows[:, :-1]), m.items.weight
        ce = [-(torch.log_softmax(e[1:] @ states[b, i], 0)[windows[b, i + 1] - 1])
              for b in range(3) for i in range(L) if windows[b, i] and windows[b, i + 1]]
        torch.testing.assert_close(m.training_loss(windows), torch.stack(ce).mean())


def test_lightsans_padding_is_the_same_as_deleting_it():
    """One attention layer on a padded window equals the layer on its real positions alone (by hand:
    interests = softmax over the real positions, position attention among the real slots)."""
    m = model("lightsans")
    attn = m.layers[0].attn
    x, real = torch.randn(1, L, D), SEQS[:1] != 0
    pos = m.positions.weight
    with torch.no_grad():
        full = attn(x, pos, real)[0, 2:]
        xs, ps = x[:, 2:], pos[2:]
        q, k, v = attn.qkv(xs[0]).chunk(3, -1)
        ki = torch.softmax(k @ attn.theta[0], 0).T @ k                    # [k, d]
        vi = torch.softmax(v @ attn.theta[1], 0).T @ v
        pq, pk = attn.pos_qk(attn.pos_norm(ps)).chunk(2, -1)
        heads, dh = [], D // 2
        for hd in range(2):
            cols = slice(hd * dh, (hd + 1) * dh)
            items = torch.softmax(q[:, cols] @ ki[:, cols].T / dh ** 0.5, -1) @ vi[:, cols]
            where = torch.softmax(pq[:, cols] @ pk[:, cols].T / (2 * dh) ** 0.5, -1) @ v[:, cols]
            heads.append(items + where)
        expected = attn.norm(xs[0] + attn.out(torch.cat(heads, -1)))
        torch.testing.assert_close(full, expected)


# ------------------------------------------------------------------------------------------- training

def tiny_split(seed: int = 0):
    rng = np.random.default_rng(seed)
    train = [rng.integers(1, 13, size=int(rng.integers(3, 14))) for _ in range(24)]
    return train, rng.integers(1, 13, size=24), rng.integers(1, 13, size=(24, 1))


@pytest.mark.parametrize("name", CLASSES)
def test_one_epoch_smoke_training_through_train_backbone(name, registered):
    from globaldiff.data.windows import evaluation_sets, sliding_windows
    from globaldiff.run.backbone import BackboneTraining, train_backbone
    from globaldiff.run.device import seed_everything

    train, val, test = tiny_split()
    backbone = build_backbone(name, 12, L, {"hidden": D, **SMALL[name]})
    val_set, _ = evaluation_sets(train, val, test, L)
    cfg = BackboneTraining(epochs=1, batch_size=16, lr=1e-3, patience=1, exclude="window")
    rows = []
    state = train_backbone(backbone, sliding_windows(train, L + 1, 1 if name == "lightsans" else L), val_set, cfg,
                           torch.device("cpu"), seed_everything(0), rows.append)
    assert len(rows) == 1 and np.isfinite(rows[0]["loss"]) and 0.0 <= rows[0]["val_NDCG@10"] <= 1.0
    assert set(state) == set(backbone.state_dict())


def train_bytes(name: str, options: dict, steps: int = 4) -> bytes:
    torch.manual_seed(0)
    m = build_backbone(name, 200, 10, options).train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    data = torch.randint(1, 201, (steps * 128, 11), generator=torch.Generator().manual_seed(1))
    for step in range(steps):
        loss = m.training_loss(data[step * 128:(step + 1) * 128], generator=generator)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return b"".join(p.detach().numpy().tobytes() for p in m.parameters())


@pytest.mark.parametrize("name,options", [
    ("gru4rec", {"hidden": 16, "gru_hidden": 24, "blocks": 2}),
    ("caser", {"hidden": 16, "n_h": 4}),
    ("caser", {"hidden": 16, "n_h": 4, "loss": "bce"}),
    ("lightsans", {"hidden": 16, "ffn": 32}),
])
def test_training_is_bit_reproducible_with_several_threads(name, options, registered):
    torch.set_num_threads(4)     # repeated ids race only when threads do (restored by the fixture)
    assert train_bytes(name, options) == train_bytes(name, options)


# ------------------------------------------------------------------------------------------- config

@pytest.mark.parametrize("name", CLASSES)
def test_config_validator_accepts_the_constructor_options(name, registered):
    cls = CLASSES[name]
    defaults = {k: p.default for k, p in model_options(cls).items()}
    assert inspect.Parameter.empty not in defaults.values() and "num_items" not in defaults
    check_model_options(name, defaults, cls)
    check_model_options(name, {"hidden": D, **SMALL[name]}, cls)
    with pytest.raises(ConfigError, match=rf"backbones.{name}.model.hiden.*did you mean 'hidden'"):
        check_model_options(name, {"hiden": 64}, cls)
    with pytest.raises(ConfigError, match=rf"backbones.{name}.model.dropout = 'x'"):
        check_model_options(name, {"dropout": "x"}, cls)
    cls(num_items=5, max_len=4, **defaults)            # what the validator accepts, the class builds


@pytest.mark.parametrize("name", CLASSES)
def test_checkpoint_reloads_and_a_changed_size_is_refused(name, registered):
    from globaldiff.run.backbone import load_backbone

    options = {"hidden": D, **SMALL[name]}
    params = {"max_len": L, "backbones": {name: {"model": options}}}
    built = build_backbone(name, M, L, options)
    checkpoint = {"config": built.config(), "state_dict": built.state_dict()}
    assert built.config()["class"] == CLASSES[name].__name__
    load_backbone(params, name, checkpoint, M, "backbone.pt")
    size = next(iter(SMALL[name]))
    other = {**params, "backbones": {name: {"model": {**options, size: options[size] + 2}}}}
    with pytest.raises(ConfigError, match="backbone.pt"):
        load_backbone(other, name, checkpoint, M, "backbone.pt")


def test_configs_name_every_size_that_shapes_the_weights():
    assert set(model("gru4rec").config()) - {"class", "num_items", "max_len", "hidden"} == {"gru_hidden", "blocks"}
    assert set(model("caser").config()) - {"class", "num_items", "max_len", "hidden"} == {"n_v", "n_h", "loss"}
    assert set(model("lightsans").config()) - {"class", "num_items", "max_len", "hidden"} == \
        {"blocks", "heads", "interests", "ffn"}
    for bad in (dict(loss="bpr"), dict(n_v=0)):
        with pytest.raises(ValueError):
            model("caser", **bad)
    with pytest.raises(ValueError):
        model("lightsans", interests=0)
    with pytest.raises(ValueError):
        model("gru4rec", blocks=0)
