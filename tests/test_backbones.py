"""Backbones, paper Section 3.2: the Backbone interface helpers and SASRec (causal, padding-safe)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from globaldiff import ConfigError
from globaldiff.backbones import REGISTRY
from globaldiff.backbones.base import backbone_class, build_backbone
from globaldiff.backbones.base import Backbone, right_align
from globaldiff.backbones.layers import attention_mask
from globaldiff.backbones.sasrec import SASRec

from conftest import encode_with_garbage_in_padding

M, L, D = 9, 5, 16


def sasrec(**kw) -> SASRec:
    torch.manual_seed(0)
    opts = dict(hidden=D, blocks=2, heads=2, dropout=0.2, loss="ce")
    opts.update(kw)
    return SASRec(num_items=M, max_len=L, **opts).eval()


class Dummy(Backbone):
    """Non-causal stand-in: h at each position = [id, id, ...], scores = h[:, :1] broadcast."""

    causal = False

    def encode(self, seqs):
        return seqs.to(torch.float32)[..., None].expand(-1, -1, self.hidden).clone()

    def item_scores(self, h):
        return h[:, :1].expand(-1, self.num_items + 1)

    def training_loss(self, windows, generator=None):
        return torch.zeros(())


class CausalDummy(Dummy):
    causal = True


# ------------------------------------------------------------------------------------------- base helpers

def test_right_align():
    prefix = torch.tensor([[5, 6, 7, 8], [5, 6, 7, 8], [5, 6, 7, 8]])
    out = right_align(prefix, torch.tensor([2, 0, 4]))
    assert out.tolist() == [[0, 0, 5, 6], [0, 0, 0, 0], [5, 6, 7, 8]]


def test_next_item_input_causal_is_identity_noncausal_shifts_and_appends_mask():
    windows = torch.tensor([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]])
    assert torch.equal(CausalDummy(M, L, 4).next_item_input(windows), windows)
    out = Dummy(M, L, 4).next_item_input(windows)
    assert out.tolist() == [[1, 2, 3, 4, M + 1], [6, 7, 8, 9, M + 1]]
    assert windows.tolist() == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]   # input not modified


def test_masked_input_causal_prefix_right_aligned():
    windows = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5]])
    seqs, target = CausalDummy(M, L, 4).masked_input(windows, torch.tensor([3, 1]))
    # row 0 hides position 3 (item 4): prefix [0, 0, 3]; row 1 hides position 1 (item 2): prefix [1]
    assert seqs.tolist() == [[0, 0, 0, 0, 3], [0, 0, 0, 0, 1]]
    assert target.tolist() == [L - 1, L - 1]


def test_masked_input_noncausal_puts_mask_at_pos():
    windows = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5]])
    seqs, target = Dummy(M, L, 4).masked_input(windows, torch.tensor([3, 0]))
    assert seqs.tolist() == [[0, 0, 3, M + 1, 5], [M + 1, 2, 3, 4, 5]]
    assert target.tolist() == [3, 0]
    assert windows.tolist() == [[0, 0, 3, 4, 5], [1, 2, 3, 4, 5]]   # input not modified


def test_valid_mask_positions():
    windows = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5]])
    assert Dummy(M, L, 4).valid_mask_positions(windows).tolist() == [
        [False, False, True, True, True], [True, True, True, True, True]]
    # causal: needs a real item before the hidden one
    assert CausalDummy(M, L, 4).valid_mask_positions(windows).tolist() == [
        [False, False, False, True, True], [False, True, True, True, True]]


def test_guidance_mean_excludes_padding():
    seqs = torch.tensor([[0, 0, 3, 4, 8], [1, 2, 3, 4, 5]])
    h_t, h_mean = Dummy(M, L, 3).guidance(seqs, torch.tensor([2, 4]))
    torch.testing.assert_close(h_t, torch.tensor([[3.0] * 3, [5.0] * 3]))
    torch.testing.assert_close(h_mean, torch.tensor([[5.0] * 3, [3.0] * 3]))   # (3+4+8)/3, (1+..+5)/5
    h_t, h_mean = Dummy(M, L, 3).guidance(torch.zeros(1, L, dtype=torch.long), torch.tensor([4]))
    assert torch.isfinite(h_mean).all()


def test_predict_noncausal_reads_mask_slot():
    scores, h_t, h_mean = Dummy(M, L, 2).predict(torch.tensor([[0, 1, 2, 3, 4]]))
    # input [1, 2, 3, 4, MASK]: h at L-1 = MASK id, mean over the 5 non-padding ids
    assert h_t.tolist() == [[M + 1.0] * 2]
    assert h_mean.tolist() == [[(1 + 2 + 3 + 4 + M + 1) / 5] * 2]
    assert scores.shape == (1, M + 1)


def test_build_backbone():
    model = build_backbone("sasrec", M, L, dict(hidden=8, blocks=1, heads=1, dropout=0.0, loss="bce"))
    assert isinstance(model, SASRec) and model.causal
    assert model.config() == {"class": "SASRec", "num_items": M, "max_len": L, "hidden": 8, "blocks": 1, "heads": 1,
                              "loss": "bce", "readout": "last"}
    with pytest.raises(ConfigError) as err:
        build_backbone("nextitnet", M, L, {})
    for name in REGISTRY:
        assert name in str(err.value)
    assert "nextitnet" in str(err.value)


def test_sasrec_bad_loss():
    with pytest.raises(ValueError):
        SASRec(M, L, hidden=8, loss="bpr")
    with pytest.raises(ValueError):
        SASRec(M, L, hidden=8, readout="first")


def test_sasrec_mask_readout_reads_an_appended_mask_slot():
    """The authors' evaluation: last L-1 items, then [MASK]; the state at that slot (index L-1) predicts."""
    model = SASRec(M, L, hidden=8, dropout=0.0, readout="mask").eval()
    windows = torch.tensor([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]])
    assert model.next_item_input(windows).tolist() == [[1, 2, 3, 4, M + 1], [6, 7, 8, 9, M + 1]]
    seqs, target = model.masked_input(windows, torch.tensor([3, 1]))
    assert seqs.tolist() == [[0, 0, 1, 2, M + 1], [0, 0, 0, 5, M + 1]]
    assert target.tolist() == [L - 1, L - 1]
    scores, h_t, _ = model.predict(windows)
    assert torch.allclose(h_t, model.encode(model.next_item_input(windows))[:, L - 1])
    last = SASRec(M, L, hidden=8, dropout=0.0, readout="last").eval()
    last.load_state_dict(model.state_dict())
    assert torch.allclose(last.predict(windows)[1], model.encode(windows)[:, L - 1])
    assert not torch.allclose(last.predict(windows)[0], scores)


# ------------------------------------------------------------------------------------------- SASRec

def test_sasrec_shapes():
    model = sasrec()
    seqs = torch.tensor([[0, 0, 1, 2, 3], [4, 5, 6, 7, 8], [0, 0, 0, 0, 9]])
    h = model.encode(seqs)
    assert h.shape == (3, L, D)
    scores = model.item_scores(h[:, -1])
    assert scores.shape == (3, M + 1)
    assert torch.all(scores[:, 0] == 0)     # padding embedding is zero
    s, h_t, h_mean = model.predict(seqs)
    assert s.shape == (3, M + 1) and h_t.shape == (3, D) and h_mean.shape == (3, D)
    torch.testing.assert_close(h_t, h[:, -1])


def test_attention_mask():
    seqs = torch.tensor([[0, 0, 3, 4]])
    causal = attention_mask(seqs, causal=True)[0, 0]
    assert causal.tolist() == [
        [True, False, False, False],
        [False, True, False, False],
        [False, False, True, False],
        [False, False, True, True],
    ]
    bidir = attention_mask(seqs, causal=False)[0, 0]
    assert bidir[2].tolist() == [False, False, True, True] and bidir[0].tolist() == [True, False, True, True]


def test_sasrec_is_causal():
    model = sasrec()
    a = torch.tensor([[0, 1, 2, 3, 4]])
    b = torch.tensor([[0, 1, 2, 3, 6]])
    c = torch.tensor([[0, 1, 7, 3, 4]])
    with torch.no_grad():
        ha, hb, hc = model.encode(a), model.encode(b), model.encode(c)
    torch.testing.assert_close(ha[:, :4], hb[:, :4])
    assert not torch.allclose(ha[:, 4], hb[:, 4])
    torch.testing.assert_close(ha[:, :2], hc[:, :2])
    assert not torch.allclose(ha[:, 2:], hc[:, 2:])


def test_sasrec_padding_outputs_zero_and_is_never_attended():
    model = sasrec()
    seqs = torch.tensor([[0, 0, 3, 4, 5], [0, 0, 0, 2, 9]])
    with torch.no_grad():
        ref = model.encode(seqs)
    assert torch.all(ref[0, :2] == 0) and torch.all(ref[1, :3] == 0)
    pad = (seqs == 0)[..., None]

    # 1) what a padding slot would contribute through its position embedding changes nothing
    #    (positions 0 and 1 are padding in both rows)
    with torch.no_grad():
        model.encoder.positions.weight[:2] += 5.0 * torch.randn(2, D)
        moved = model.encode(seqs)
    torch.testing.assert_close(moved[0, 2:], ref[0, 2:])
    torch.testing.assert_close(moved[1, 3:], ref[1, 3:])
    model = sasrec()

    # 2) garbage injected into the padding rows before every block (keys/values of pad slots) changes nothing
    noisy = encode_with_garbage_in_padding(model, seqs)
    torch.testing.assert_close(noisy[0, 2:], ref[0, 2:])
    torch.testing.assert_close(noisy[1, 3:], ref[1, 3:])
    assert torch.all(noisy[pad.expand_as(noisy)] == 0)


@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_sasrec_training_loss_finite_and_decreases(loss):
    model = sasrec(loss=loss, dropout=0.0).train()
    windows = torch.tensor([[0, 0, 1, 2, 3, 4], [5, 6, 7, 8, 9, 1], [0, 0, 0, 2, 4, 6], [3, 5, 7, 9, 2, 4]])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        value = model.training_loss(windows, generator=torch.Generator().manual_seed(0))
        assert torch.isfinite(value)
        opt.zero_grad()
        value.backward()
        opt.step()
        losses.append(value.item())
    assert losses[-1] < 0.7 * losses[0]


def test_sasrec_checkpoint_records_blocks_and_heads():
    """A checkpoint names every size that shapes its weights, so a changed blocks/heads is the project's error."""
    from globaldiff.run.backbone import load_backbone

    params = {"max_len": 4, "backbones": {"sasrec": {"model": {"hidden": 8, "blocks": 1, "heads": 1}}}}
    one = build_backbone("sasrec", 6, 4, params["backbones"]["sasrec"]["model"])
    assert {"blocks": 1, "heads": 1}.items() <= one.config().items()
    checkpoint = {"config": one.config(), "state_dict": one.state_dict()}
    load_backbone(params, "sasrec", checkpoint, 6, "backbone.pt")
    for change in ({"blocks": 2}, {"heads": 2}):
        other = {**params, "backbones": {"sasrec": {"model": {**params["backbones"]["sasrec"]["model"], **change}}}}
        with pytest.raises(ConfigError, match="backbone.pt"):
            load_backbone(other, "sasrec", checkpoint, 6, "backbone.pt")


def train_steps_bytes(name: str, options: dict, steps: int = 12) -> bytes:
    """Parameters after a few Adam steps from a fixed seed, on windows with many repeated items."""
    torch.manual_seed(0)
    model = build_backbone(name, 400, 10, options).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    data = torch.randint(1, 401, (steps * 256, 11), generator=torch.Generator().manual_seed(1))
    for step in range(steps):
        loss = model.training_loss(data[step * 256:(step + 1) * 256], generator=generator)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return b"".join(p.detach().numpy().tobytes() for p in model.parameters())


@pytest.mark.parametrize("name,options", [
    ("sasrec", {"hidden": 32, "loss": "ce"}),
    ("sasrec", {"hidden": 32, "loss": "bce"}),
    ("sasrec", {"hidden": 32, "loss": "bce", "readout": "mask"}),
    ("bert4rec", {"hidden": 32, "heads": 2, "ffn": 64}),
    ("cbit", {"hidden": 32, "heads": 2, "ffn": 64, "views": 2}),
    ("srgnn", {"hidden": 32}),
])
def test_training_is_bit_reproducible_with_several_threads(name, options):
    # The same seed must give the same model on CPU with several threads, not only with one (the e2e
    # determinism test's setting): a backward that accumulates repeated ids with parallel atomic adds
    # (SASRec's bce once gathered embeddings as emb[idx]) differs from run to run only when threads race.
    threads = torch.get_num_threads()
    torch.set_num_threads(max(4, threads))
    try:
        first, second = train_steps_bytes(name, options), train_steps_bytes(name, options)
    finally:
        torch.set_num_threads(threads)
    assert first == second


def test_step_lr_schedule_multiplies_the_rate_every_lr_step_epochs():
    # The CBiT authors' schedule (lr 0.005 halved every 15 epochs), here 1e-3 halved every epoch.
    from globaldiff.data.windows import evaluation_sets, sliding_windows
    from globaldiff.run.backbone import BackboneTraining, train_backbone
    from globaldiff.run.device import seed_everything

    rng = np.random.default_rng(0)
    train = [rng.integers(1, 13, size=12) for _ in range(16)]
    val, test = rng.integers(1, 13, size=16), rng.integers(1, 13, size=(16, 1))
    backbone = build_backbone("sasrec", 12, 4, {"hidden": 8})
    val_set, _ = evaluation_sets(train, val, test, 4)
    cfg = BackboneTraining(epochs=3, batch_size=8, lr=1e-3, patience=10, exclude="window", lr_step=1, lr_decay=0.5)
    rows = []
    train_backbone(backbone, sliding_windows(train, 5, 1), val_set, cfg, torch.device("cpu"), seed_everything(0),
                   rows.append)
    assert [row["lr"] for row in rows] == pytest.approx([1e-3, 5e-4, 2.5e-4])


# ------------------------------------------------------------------------------------------- training loop

def _tiny_run():
    from globaldiff.data.windows import evaluation_sets

    rng = np.random.default_rng(0)
    train = [rng.integers(1, 13, size=12) for _ in range(16)]
    val, test = rng.integers(1, 13, size=16), rng.integers(1, 13, size=(16, 1))
    val_set, _ = evaluation_sets(train, val, test, 4)
    return train, val_set


def test_train_backbone_stops_with_one_line_naming_the_epoch_when_the_loss_is_nan():
    from globaldiff.data.windows import sliding_windows
    from globaldiff.run.backbone import BackboneTraining, NonFiniteLoss, train_backbone
    from globaldiff.run.device import seed_everything

    train, val_set = _tiny_run()
    backbone = build_backbone("sasrec", 12, 4, {"hidden": 8})
    real, calls = backbone.training_loss, []

    def nan_in_epoch_3(windows, generator=None):
        calls.append(1)
        value = real(windows, generator)
        return value * float("inf") if len(calls) > 2 * 3 else value    # 3 steps of 8 windows per epoch

    backbone.training_loss = nan_in_epoch_3
    rows = []
    cfg = BackboneTraining(epochs=5, batch_size=8, lr=1e-3, patience=10, exclude="window")
    with pytest.raises(NonFiniteLoss, match="backbone SASRec: training loss is (inf|nan) in epoch 3"):
        train_backbone(backbone, sliding_windows(train, 5, 3)[:24], val_set, cfg, torch.device("cpu"),
                       seed_everything(0), rows.append)
    assert [row["epoch"] for row in rows] == [1, 2]
    assert issubclass(NonFiniteLoss, ConfigError)           # one line in a stage (cli.run_stage)


@pytest.mark.parametrize("exclude", ["window", "history", "none"])
def test_backbone_validation_equals_the_metrics_of_the_gathered_scores(exclude):
    from globaldiff.run.backbone import BackboneValidation, backbone_outputs, evaluate_scores

    _, val_set = _tiny_run()
    backbone = build_backbone("sasrec", 12, 4, {"hidden": 8})
    cpu = torch.device("cpu")
    scores, _, _ = backbone_outputs(backbone, val_set.windows, 5, cpu)
    assert BackboneValidation(val_set, 12, exclude, batch=5)(backbone, cpu) == evaluate_scores(scores, val_set, exclude)


def test_training_loss_log_is_the_float64_sum_of_the_step_losses():
    """The epoch loss is summed on the device (one read per epoch) exactly as the Python float sum it replaced."""
    from globaldiff.data.windows import sliding_windows
    from globaldiff.run.backbone import BackboneTraining, train_backbone
    from globaldiff.run.device import seed_everything

    train, val_set = _tiny_run()
    backbone = build_backbone("sasrec", 12, 4, {"hidden": 8})
    real, seen = backbone.training_loss, []

    def record(windows, generator=None):
        value = real(windows, generator)
        seen.append((value.item(), len(windows)))
        return value

    backbone.training_loss = record
    rows = []
    windows = sliding_windows(train, 5, 3)[:20]
    train_backbone(backbone, windows, val_set, BackboneTraining(epochs=1, batch_size=8, lr=1e-3, patience=1,
                                                                exclude="window"),
                   torch.device("cpu"), seed_everything(0), rows.append)
    total = 0.0
    for value, size in seen:
        total += value * size
    assert rows[0]["loss"] == total / len(windows)


# ------------------------------------------------------------------------------------------- speed parts

def test_dropout_keeps_each_entry_with_probability_1_minus_p_scaled_and_is_seeded():
    from globaldiff.backbones.layers import Dropout

    drop = Dropout(0.2).train()
    x = torch.ones(400, 500)
    torch.manual_seed(3)
    y = drop(x)
    assert set(torch.unique(y).tolist()) == {0.0, 1.25}
    assert (y == 0).float().mean().item() == pytest.approx(0.2, abs=0.005)
    torch.manual_seed(3)
    assert torch.equal(drop(x), y)                          # the global generator: the seed decides
    assert torch.equal(drop.eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x) and not Dropout(1.0).train()(x).any()
    with pytest.raises(ValueError):
        Dropout(1.5)
    g = torch.ones(400, 500, requires_grad=True)
    torch.manual_seed(3)
    drop.train()(g).sum().backward()
    assert torch.equal(g.grad, y)                           # d(x * mask / (1 - p)) / dx = mask / (1 - p)


def test_sliding_windows_equal_the_loop_they_replace():
    from globaldiff.data.windows import sliding_windows

    def loop(histories, length, stride):
        rows = []
        for items in histories:
            items = np.asarray(items, dtype=np.int64)
            for end in range(len(items), 1, -stride):
                window = items[max(0, end - length):end]
                rows.append(np.pad(window, (length - len(window), 0)))
        return np.stack(rows)

    rng = np.random.default_rng(0)
    histories = [rng.integers(1, 50, size=n) for n in (0, 1, 2, 3, 7, 11, 12, 30)] + [np.array([5, 5, 5])]
    for length in (1, 2, 5, 11):
        for stride in (1, 3, 10):
            assert np.array_equal(sliding_windows(histories, length, stride).numpy(), loop(histories, length, stride))


def test_device_generator_is_the_run_generator_on_cpu():
    from globaldiff.run.device import device_generator

    g = torch.Generator().manual_seed(0)
    assert device_generator(g, torch.device("cpu")) is g
