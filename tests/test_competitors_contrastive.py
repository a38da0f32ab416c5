"""CL4SRec and DuoRec (Table 2 competitors): SASRec's network (backbones/causal.py) with a contrastive term.
Augmentations, InfoNCE and the supervised positives on hand cases; the losses against a direct computation; shapes,
causality, padding, SASRec's weights and loss unchanged, a one-epoch train through train_backbone (which calls the
prepare_training hook), bit-reproducibility, the registry and params entries, and the params validator."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from globaldiff import ConfigError
from globaldiff.backbones import REGISTRY
from globaldiff.backbones.base import Backbone, build_backbone
from globaldiff.backbones.causal import CausalBackbone
from globaldiff.backbones.cl4srec import CL4SRec, augment, crop_view, mask_view, reorder_view
from globaldiff.backbones.contrastive import info_nce
from globaldiff.backbones.duorec import DuoRec
from globaldiff.backbones.sasrec import SASRec
from globaldiff.config.schema import check_model_options

from conftest import encode_with_garbage_in_padding

M, L, D = 9, 5, 16
MASK = M + 1
CLASSES = {"cl4srec": CL4SRec, "duorec": DuoRec}


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread (tiny tensors; two threads on a busy machine mostly wait on each other), but in the test of
    two-thread reproducibility."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def net(name: str, **kw):
    torch.manual_seed(0)
    opts = dict(hidden=D, blocks=2, heads=2, dropout=0.0)
    if name == "duorec":
        opts["positives"] = "batch"
    opts.update(kw)
    return build_backbone(name, M, L, opts).eval()


# ------------------------------------------------------------------------------------------------ InfoNCE

def hand_info_nce(a, b, tau, targets=None):
    """Direct loop over the 2B anchors: -log exp(s+/tau) / sum over kept views exp(s/tau)."""
    views = [(row, 0) for row in range(len(a))] + [(row, 1) for row in range(len(b))]
    vec = {(row, 0): a[row] for row in range(len(a))} | {(row, 1): b[row] for row in range(len(b))}
    total = 0.0
    for anchor in views:
        row, side = anchor
        pos = vec[(row, 1 - side)]
        num = math.exp(float(vec[anchor] @ pos) / tau)
        den = 0.0
        for other in views:
            if other == anchor or (targets is not None and other[0] != row and targets[other[0]] == targets[row]):
                continue
            den += math.exp(float(vec[anchor] @ vec[other]) / tau)
        total += -math.log(num / den)
    return total / len(views)


def test_info_nce_matches_a_hand_computation_and_removes_false_negatives():
    a = torch.tensor([[1.0, 0.0], [0.5, -1.0], [-0.3, 0.8]], dtype=torch.float64)
    b = torch.tensor([[0.9, 0.2], [0.1, -0.7], [-1.0, 0.4]], dtype=torch.float64)
    assert info_nce(a, b, 0.5).item() == pytest.approx(hand_info_nce(a, b, 0.5), rel=1e-12)
    targets = torch.tensor([4, 7, 4])                          # rows 0 and 2 share a target
    same = targets[:, None] == targets[None, :]
    removed = info_nce(a, b, 0.5, same).item()
    assert removed == pytest.approx(hand_info_nce(a, b, 0.5, targets), rel=1e-12)
    assert removed != pytest.approx(info_nce(a, b, 0.5).item())
    # with every target different the mask removes nothing
    assert info_nce(a, b, 2.0, torch.eye(3, dtype=torch.bool)).item() == pytest.approx(hand_info_nce(a, b, 2.0))


# ------------------------------------------------------------------------------------------- augmentations

SEQS = torch.tensor([[0, 0, 0, 0, 0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [0] * 9 + [7], [0] * 10])


def test_crop_keeps_a_contiguous_run_right_aligned():
    # n = 5, 10, 1, 0; eta 0.6 keeps 3, 6, 1 (at least one), 0
    assert crop_view(SEQS, 0.6, torch.zeros(4)).tolist() == [
        [0] * 7 + [1, 2, 3], [0] * 4 + [1, 2, 3, 4, 5, 6], [0] * 9 + [7], [0] * 10]
    assert crop_view(SEQS, 0.6, torch.full((4,), 0.999)).tolist() == [
        [0] * 7 + [3, 4, 5], [0] * 4 + [5, 6, 7, 8, 9, 10], [0] * 9 + [7], [0] * 10]
    assert crop_view(SEQS, 0.6, torch.full((4,), 0.5)).tolist()[0] == [0] * 7 + [2, 3, 4]   # start floor(0.5 * 3)
    assert crop_view(SEQS, 0.7, torch.zeros(4)).tolist()[1] == [0] * 3 + [1, 2, 3, 4, 5, 6, 7]  # floor(0.7 * 10) = 7
    assert torch.equal(crop_view(SEQS, 1.0, torch.rand(4)), SEQS)


def test_mask_hides_the_items_with_the_smallest_noise_never_padding():
    noise = torch.linspace(0.9, 0.0, 10).repeat(4, 1)         # the later the position, the smaller its noise
    out = mask_view(SEQS, 0.3, MASK, noise)
    # n = 5: floor(1.5) = 1 masked; n = 10: 3; n = 1 and 0: none
    assert out.tolist() == [[0, 0, 0, 0, 0, 1, 2, 3, 4, MASK], [1, 2, 3, 4, 5, 6, 7, MASK, MASK, MASK],
                            [0] * 9 + [7], [0] * 10]
    noise[:, :5] = -1.0                                       # padding with the smallest noise is still not masked
    assert mask_view(SEQS, 0.3, MASK, noise)[0].tolist() == [0, 0, 0, 0, 0, 1, 2, 3, 4, MASK]


def test_reorder_shuffles_one_run_in_noise_order():
    noise = torch.tensor([[0.0] * 5 + [0.9, 0.1, 0.5, 0.0, 0.0]] + [[0.5] * 10] * 3)
    out = reorder_view(SEQS, 0.6, torch.zeros(4), noise)
    assert out[0].tolist() == [0, 0, 0, 0, 0, 2, 3, 1, 4, 5]   # run of 3 from item 1, sorted by 0.9, 0.1, 0.5
    assert out[2:].tolist() == SEQS[2:].tolist()               # floor(0.6) = 0: nothing moves
    late = reorder_view(SEQS, 0.4, torch.full((4,), 0.999), torch.tensor([[0.0] * 8 + [0.7, 0.6]] * 4))
    assert late[0].tolist() == [0, 0, 0, 0, 0, 1, 2, 3, 5, 4]  # run of 2 at the end: items 4, 5 swapped


def test_augmentations_keep_items_and_padding_on_random_windows():
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(0, 11, (500,), generator=gen)
    seqs = torch.randint(1, M + 1, (500, 10), generator=gen)
    seqs[torch.arange(10)[None, :] < 10 - lengths[:, None]] = 0
    real = seqs != 0
    u, noise = torch.rand(500, generator=gen), torch.rand(500, 10, generator=gen)
    cropped = crop_view(seqs, 0.6, u)
    kept = (cropped != 0).sum(1)
    assert torch.equal(kept, torch.minimum(torch.floor(lengths * 0.6).long().clamp(min=1), lengths))
    for row in range(500):
        items, run = seqs[row][real[row]].tolist(), cropped[row][cropped[row] != 0].tolist()
        assert cropped[row, 10 - kept[row]:].ne(0).all()      # right-aligned, no gap
        assert any(items[s:s + len(run)] == run for s in range(len(items) - len(run) + 1))
    masked = mask_view(seqs, 0.3, MASK, noise)
    assert torch.equal(masked == 0, ~real)
    assert torch.equal((masked == MASK).sum(1), torch.floor(lengths * 0.3).long())
    assert torch.equal(masked[masked != MASK], seqs[masked != MASK])
    shuffled = reorder_view(seqs, 0.6, u, noise)
    assert torch.equal(shuffled == 0, ~real)
    assert torch.equal(shuffled.sort(1).values, seqs.sort(1).values)
    assert ((shuffled != seqs).sum(1) <= torch.floor(lengths * 0.6).long()).all()


def test_augment_gives_each_row_two_different_augmentations():
    seqs = torch.arange(1, 11).repeat(600, 1)
    first, second = augment(seqs, (0.5, 1.0, 1.0), MASK, torch.Generator().manual_seed(0))

    def kind(view):          # crop 0.5 leaves padding, mask 1.0 hides everything, reorder 1.0 permutes
        return torch.where((view == 0).any(1), 0, torch.where((view == MASK).all(1), 1, 2))

    a, b = kind(first), kind(second)
    assert (a != b).all()
    pairs = torch.bincount(a * 3 + b, minlength=9)
    assert pairs[[0, 4, 8]].sum() == 0 and (pairs[[1, 2, 3, 5, 6, 7]] > 60).all()   # each ordered pair ~100


# ------------------------------------------------------------------------------------ supervised positives

def test_duorec_batch_positive_has_the_target_and_is_another_window():
    windows = torch.tensor([[1, 2, 5], [3, 4, 7], [2, 2, 5], [6, 1, 9], [8, 8, 7], [4, 6, 5]])
    model = DuoRec(M, 2, hidden=4, positives="batch")
    seen = set()
    for seed in range(40):
        pos = model.supervised_positives(windows, torch.Generator().manual_seed(seed))
        assert torch.equal(pos[:, -1], windows[:, -1])
        assert pos[1].tolist() == [8, 8, 7] and pos[4].tolist() == [3, 4, 7]   # the one other window of target 7
        assert pos[3].tolist() == [6, 1, 9]                                    # no other: itself
        assert pos[0].tolist() != [1, 2, 5]
        seen.add(tuple(pos[0].tolist()))
    assert seen == {(2, 2, 5), (4, 6, 5)}                                      # both candidates get drawn


def test_duorec_train_positive_is_drawn_from_the_indexed_training_windows():
    pool = torch.tensor([[1, 2, 5], [3, 4, 5], [6, 2, 7], [1, 1, 9], [2, 3, 5]])
    model = DuoRec(M, 2, hidden=4, positives="train")
    with pytest.raises(RuntimeError, match="prepare_training"):
        model.supervised_positives(pool[:2], torch.Generator())
    model.prepare_training(pool)
    batch = pool[[0, 2, 3, 1]]
    seen = set()
    for seed in range(40):
        pos = model.supervised_positives(batch, torch.Generator().manual_seed(seed))
        assert torch.equal(pos[:, -1], batch[:, -1])
        assert pos[1].tolist() == [6, 2, 7] and pos[2].tolist() == [1, 1, 9]  # alone with their target: themselves
        assert pos[0].tolist() != [1, 2, 5] and pos[3].tolist() != [3, 4, 5]  # never the window itself
        seen.add(tuple(pos[0].tolist()))
    assert seen == {(3, 4, 5), (2, 3, 5)}


# ------------------------------------------------------------------------------- losses, direct computation

WINDOWS = torch.tensor([[0, 0, 1, 2, 3, 4], [5, 6, 7, 8, 9, 4], [0, 0, 0, 2, 4, 6]])   # rows 0, 1: target 4


def test_cl4srec_loss_is_sasrec_loss_plus_weighted_info_nce():
    model = net("cl4srec", hidden=2, heads=1, temperature=0.7, cl_weight=0.3)
    loss = model.training_loss(WINDOWS, torch.Generator().manual_seed(3))
    first, second = augment(WINDOWS[:, :-1], model.rates, MASK, torch.Generator().manual_seed(3))
    with torch.no_grad():
        h1, h2 = model.encode(first)[:, -1].double(), model.encode(second)[:, -1].double()
        expected = SASRec.training_loss(model, WINDOWS).item() + 0.3 * hand_info_nce(h1, h2, 0.7)
    assert SASRec.training_loss(model, WINDOWS).item() == model.next_item_loss(WINDOWS).item()
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_duorec_loss_is_sasrec_loss_plus_weighted_info_nce_without_false_negatives():
    model = net("duorec", hidden=2, heads=1, temperature=0.7, cl_weight=0.3)
    loss = model.training_loss(WINDOWS, torch.Generator().manual_seed(3))
    pos = model.supervised_positives(WINDOWS, torch.Generator().manual_seed(3))
    assert pos.tolist() == [WINDOWS[1].tolist(), WINDOWS[0].tolist(), WINDOWS[2].tolist()]
    with torch.no_grad():
        h, hs = model.encode(WINDOWS[:, :-1])[:, -1].double(), model.encode(pos[:, :-1])[:, -1].double()
        expected = SASRec.training_loss(model, WINDOWS).item() + 0.3 * hand_info_nce(h, hs, 0.7, WINDOWS[:, -1])
    assert loss.item() == pytest.approx(expected, rel=1e-5)


# ------------------------------------------------------------------------- SASRec's encoder, SASRec's inference

@pytest.mark.parametrize("name", CLASSES)
def test_shapes_and_sasrec_inference(name):
    model = net(name)
    assert isinstance(model, CausalBackbone) and not isinstance(model, SASRec)     # shared code, not SASRec's file
    assert model.causal and model.config()["class"] == CLASSES[name].__name__
    seqs = torch.tensor([[0, 0, 1, 2, 3], [4, 5, 6, 7, 8], [0, 0, 0, 0, 9]])
    h = model.encode(seqs)
    assert h.shape == (3, L, D)
    scores, h_t, h_mean = model.predict(seqs)
    assert scores.shape == (3, M + 1) and h_t.shape == (3, D) and h_mean.shape == (3, D)
    torch.testing.assert_close(h_t, h[:, -1])
    masked, target = model.masked_input(seqs, torch.tensor([4, 2, 4]))
    assert masked.tolist()[1] == [0, 0, 0, 4, 5] and target.tolist() == [L - 1] * 3   # causal: the prefix
    assert torch.isfinite(model.train().training_loss(torch.cat([seqs, seqs[:, :1] + 1], 1)))


@pytest.mark.parametrize("name", CLASSES)
def test_causal(name):
    model = net(name)
    a, b = torch.tensor([[0, 1, 2, 3, 4]]), torch.tensor([[0, 1, 2, 3, 6]])
    with torch.no_grad():
        ha, hb = model.encode(a), model.encode(b)
    torch.testing.assert_close(ha[:, :4], hb[:, :4])
    assert not torch.allclose(ha[:, 4], hb[:, 4])


@pytest.mark.parametrize("name", CLASSES)
def test_padding_is_never_attended(name):
    model = net(name)
    seqs = torch.tensor([[0, 0, 3, 4, 5], [0, 0, 0, 2, 9]])
    with torch.no_grad():
        ref = model.encode(seqs)
    noisy = encode_with_garbage_in_padding(model, seqs)
    torch.testing.assert_close(noisy[0, 2:], ref[0, 2:])
    torch.testing.assert_close(noisy[1, 3:], ref[1, 3:])
    assert torch.all(noisy[(seqs == 0)] == 0)


# ------------------------------------------------------------------------------ training, reproducibility

def tiny_training(name: str, options: dict):
    """(backbone, windows, validation set) on 16 random sequences of 12 items over 12 item ids, L = 4."""
    from globaldiff.data.windows import evaluation_sets, sliding_windows

    rng = np.random.default_rng(0)
    train = [rng.integers(1, 13, size=12) for _ in range(16)]
    val, test = rng.integers(1, 13, size=16), rng.integers(1, 13, size=(16, 1))
    val_set, _ = evaluation_sets(train, val, test, 4)
    return build_backbone(name, 12, 4, {"hidden": 8, **options}), sliding_windows(train, 5, 1), val_set


def one_epoch(backbone, windows, val_set, rows):
    from globaldiff.run.backbone import BackboneTraining, train_backbone
    from globaldiff.run.device import seed_everything

    cfg = BackboneTraining(epochs=1, batch_size=16, lr=1e-3, patience=1, exclude="window")
    return train_backbone(backbone, windows, val_set, cfg, torch.device("cpu"), seed_everything(0), rows.append)


@pytest.mark.parametrize("name,extra", [("cl4srec", {}), ("duorec", {"positives": "train"}),
                                        ("duorec", {"positives": "batch"})])
def test_one_epoch_through_train_backbone(name, extra):
    backbone, windows, val_set = tiny_training(name, extra)
    rows = []
    state = one_epoch(backbone, windows, val_set, rows)       # no prepare_training here: train_backbone calls it
    assert len(rows) == 1 and np.isfinite(rows[0]["loss"]) and 0.0 <= rows[0]["val_NDCG@10"] <= 1.0
    assert state.keys() == SASRec(12, 4, hidden=8).state_dict().keys()     # SASRec's weights, nothing more
    if extra.get("positives") == "train":
        assert torch.equal(backbone.pool[0], windows[torch.argsort(windows[:, -1], stable=True)])


@pytest.mark.parametrize("name", ["sasrec", "cl4srec", "duorec"])
def test_train_backbone_calls_prepare_training_once_with_the_windows_before_the_first_step(name, monkeypatch):
    backbone, windows, val_set = tiny_training(name, {})
    calls = []
    real_prepare, real_loss = backbone.prepare_training, backbone.training_loss
    monkeypatch.setattr(backbone, "prepare_training", lambda w: (calls.append(("prepare", w)), real_prepare(w))[1])
    monkeypatch.setattr(backbone, "training_loss",
                        lambda batch, generator=None: (calls.append(("step", None)), real_loss(batch, generator))[1])
    one_epoch(backbone, windows, val_set, [])
    assert [kind for kind, _ in calls] == ["prepare"] + ["step"] * math.ceil(len(windows) / 16)
    assert torch.equal(calls[0][1], windows)


def test_the_default_prepare_training_does_nothing():
    assert "prepare_training" not in vars(SASRec) and "prepare_training" not in vars(CausalBackbone)
    model = SASRec(M, L, hidden=8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    assert Backbone.prepare_training(model, WINDOWS) is None
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_duorec_batch_positives_need_no_index():
    model = DuoRec(M, L, hidden=8, positives="batch")
    model.prepare_training(WINDOWS)
    assert model.pool is None


# --------------------------------------------------------------------- SASRec's network, shared (causal.py)

@pytest.mark.parametrize("name", CLASSES)
def test_same_seed_same_initial_weights_as_sasrec_and_the_same_next_item_loss(name):
    # CausalBackbone creates SASRec's parameters in SASRec's order; the contrastive options add none
    opts = dict(hidden=D, blocks=2, heads=2, dropout=0.0, loss="ce")
    torch.manual_seed(0)
    sasrec = SASRec(M, L, **opts).eval()
    model = net(name, **opts)
    assert list(model.state_dict()) == list(sasrec.state_dict())
    assert all(torch.equal(v, sasrec.state_dict()[k]) for k, v in model.state_dict().items())
    assert model.next_item_loss(WINDOWS).item() == sasrec.training_loss(WINDOWS).item()
    seqs = WINDOWS[:, :-1]
    assert torch.equal(model.predict(seqs)[0], sasrec.predict(seqs)[0])
    # with lambda = 0 the objective is SASRec's (the views are still drawn)
    zero = net(name, **opts, cl_weight=0.0)
    assert zero.training_loss(WINDOWS, torch.Generator().manual_seed(0)).item() == sasrec.training_loss(WINDOWS).item()


def test_no_backbone_file_imports_another():
    import ast
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "src/globaldiff/backbones"
    for name in ("sasrec", "cl4srec", "duorec"):
        tree = ast.parse((folder / f"{name}.py").read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        backbones = {m.rsplit(".", 1)[-1] for m in imported if m.startswith("globaldiff.backbones.")}
        assert not backbones & set(REGISTRY), (name, backbones)
        assert backbones <= {"base", "layers", "causal", "contrastive"}, (name, backbones)


def train_bytes(name: str, options: dict, steps: int = 4, batch: int = 128) -> bytes:
    """Parameters after a few Adam steps from a fixed seed, on windows with many repeated items and targets."""
    torch.manual_seed(0)
    model = build_backbone(name, 200, 10, {"hidden": 16, **options}).train()
    data = torch.randint(1, 201, (steps * batch, 11), generator=torch.Generator().manual_seed(1))
    data[::7, :4] = 0                                          # some left padding
    if options.get("positives") == "train":
        model.prepare_training(data)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    for step in range(steps):
        loss = model.training_loss(data[step * batch:(step + 1) * batch], generator=generator)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return b"".join(p.detach().numpy().tobytes() for p in model.parameters())


@pytest.mark.parametrize("name,options", [("cl4srec", {}), ("cl4srec", {"loss": "bce"}),
                                          ("duorec", {"positives": "train"}), ("duorec", {"positives": "batch"})])
def test_training_is_bit_reproducible_with_two_threads(name, options):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert train_bytes(name, options) == train_bytes(name, options)
    finally:
        torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------- registry, params

def test_registered_with_params_entries_that_validate_and_not_in_the_study():
    import yaml
    from pathlib import Path

    from globaldiff.run.backbone import check_backbone_params, new_backbone

    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    for name, cls in CLASSES.items():
        assert REGISTRY[name] == cls.__name__
        assert name not in params["study"]["backbones"]                 # nothing trains in the committed study
        check_backbone_params(params, name)
        model = new_backbone(params, name, 30)
        assert type(model) is cls and model.max_len == params["max_len"] == 10 and model.hidden == 64
        train = params["backbones"][name]["train"]
        assert (train["lr"], train["batch_size"]) == (0.001, 256) and train["patience"] >= 1
    assert params["backbones"]["duorec"]["model"]["positives"] == "train"


@pytest.mark.parametrize("name,option,value,words", [
    ("cl4srec", "crop_rate", 0.0, "crop_rate = 0.0: expected a value in (0.0, 1.0]"),
    ("cl4srec", "mask_rate", 1.5, "mask_rate = 1.5: expected a value in [0.0, 1.0]"),
    ("cl4srec", "reorder_rate", -0.1, "reorder_rate = -0.1: expected a value in [0.0, 1.0]"),
    ("cl4srec", "dropout", 1.0, "dropout = 1.0: expected a value in [0.0, 1.0)"),
    ("cl4srec", "heads", 3, "heads = 3: expected a divisor of backbones.cl4srec.model.hidden = 64"),
    ("cl4srec", "temperature", 0, "temperature = 0: expected a value in (0.0, inf)"),
    ("duorec", "cl_weight", -1.0, "cl_weight = -1.0: expected a value in [0.0, inf)"),
    ("duorec", "hidden", 0, "hidden = 0: expected a value in [1, inf)"),
    ("duorec", "blocks", 0, "blocks = 0: expected a value in [1, inf)"),
    ("duorec", "heads", 0, "heads = 0: expected a value in [1, inf)"),
    ("duorec", "dropout", -0.1, "dropout = -0.1: expected a value in [0.0, 1.0)"),
    ("duorec", "positives", "all", "positives = 'all': expected one of ['train', 'batch']"),
    ("duorec", "readout", "first", "readout = 'first': expected one of ['last', 'mask']"),
])
def test_params_ranges_are_refused_with_the_key(name, option, value, words):
    with pytest.raises(ConfigError, match=re.escape(f"params.yaml: backbones.{name}.model.{words}")):
        check_model_options(name, {"hidden": 64, option: value}, CLASSES[name])


# ------------------------------------------------------------------------------------------------ options

def test_params_validator_accepts_the_constructor_options():
    check_model_options("cl4srec", {"hidden": 64, "blocks": 2, "heads": 2, "dropout": 0.2, "loss": "ce",
                                    "readout": "last", "crop_rate": 0.6, "mask_rate": 0.3, "reorder_rate": 0.6,
                                    "temperature": 1.0, "cl_weight": 0.1}, CL4SRec)
    check_model_options("duorec", {"hidden": 64, "blocks": 2, "heads": 2, "dropout": 0.2, "loss": "ce",
                                   "readout": "last", "temperature": 1, "cl_weight": 0.1, "positives": "train"}, DuoRec)
    check_model_options("duorec", {}, DuoRec)                  # every option has a default
    with pytest.raises(ConfigError, match="crop_rat"):
        check_model_options("cl4srec", {"crop_rat": 0.6}, CL4SRec)
    with pytest.raises(ConfigError, match="cl_weight"):
        check_model_options("duorec", {"cl_weight": "0.1"}, DuoRec)
    with pytest.raises(ConfigError, match="temperature"):
        check_model_options("cl4srec", {"temperature": 0.0}, CL4SRec)


@pytest.mark.parametrize("cls,bad", [(CL4SRec, {"crop_rate": 0.0}), (CL4SRec, {"mask_rate": 1.5}),
                                     (CL4SRec, {"reorder_rate": -0.1}), (CL4SRec, {"temperature": 0.0}),
                                     (DuoRec, {"cl_weight": -1.0}), (DuoRec, {"positives": "all"})])
def test_bad_options(cls, bad):
    with pytest.raises(ValueError):
        cls(M, L, hidden=8, **bad)
