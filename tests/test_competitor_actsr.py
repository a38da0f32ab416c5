"""AC-TSR (Table 2 competitor): SASRec's network (backbones/causal.py) with the spatial and adversarial attention
calibrators (backbones/actsr.py). The whole loss against a direct, loop-by-loop computation on a tiny case and the
mask penalty on a hand case; shapes, causality, padding (both streams), SASRec exactly when the calibrators are
off, what the adversary's loss trains, a one-epoch train through train_backbone, bit-reproducibility, the
registry and params entries, and the params validator."""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from globaldiff import ConfigError
from globaldiff.backbones import REGISTRY
from globaldiff.backbones.actsr import ACTSR
from globaldiff.backbones.base import build_backbone
from globaldiff.backbones.causal import CausalBackbone
from globaldiff.backbones.sasrec import SASRec
from globaldiff.config.schema import check_model_options

from conftest import encode_with_garbage_in_padding

M, L, D = 9, 5, 16
WINDOWS = torch.tensor([[0, 0, 1, 2, 3, 4], [5, 6, 7, 8, 9, 4], [0, 0, 0, 2, 4, 6]])
SEQS = torch.tensor([[0, 0, 3, 4, 5], [0, 0, 0, 2, 9], [1, 2, 3, 4, 5]])


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def net(**kw) -> ACTSR:
    torch.manual_seed(0)
    opts = dict(hidden=D, blocks=2, heads=2, dropout=0.0)
    opts.update(kw)
    return build_backbone("actsr", M, L, opts).eval()


# ------------------------------------------------------------------------------- the loss, direct computation

def direct_loss(model: ACTSR, windows: torch.Tensor, noise: torch.Tensor) -> float:
    """One block, one head, no dropout, ce: the AC-TSR loss by loops over rows and (query, key) pairs, in float64."""
    p = {k: v.double() for k, v in model.state_dict().items()}
    pre = "encoder.blocks.0."
    d = model.hidden
    emb = p["encoder.items.weight"]

    def norm(x, name):
        return F.layer_norm(x, (d,), p[name + ".weight"], p[name + ".bias"])

    def lin(x, name):
        return x @ p[name + ".weight"].T + p[name + ".bias"]

    def softmax_over(values: dict) -> dict:
        top = max(values.values())
        z = sum(math.exp(v - top) for v in values.values())
        return {j: math.exp(v - top) / z for j, v in values.items()}

    cal_terms, adv_terms, penalty = [], [], 0.0
    for b, window in enumerate(windows):
        seq, targets = window[:-1], window[1:]
        length, real = len(seq), (seq != 0).tolist()
        x = emb[seq] * torch.tensor(real, dtype=torch.float64)[:, None]
        qkv = lin(norm(x, pre + "norm1"), pre + "attn.qkv")
        q, k, v = qkv[:, :d], qkv[:, d:2 * d], qkv[:, 2 * d:]
        mq, mk = lin(q, pre + "cal.mask_q"), lin(k, pre + "cal.mask_k")
        gate = torch.sigmoid(lin(q, pre + "cal.gate"))
        w, bias, s = p[pre + "cal.pair.weight"], p[pre + "cal.pair.bias"], float(p[pre + "cal.spread"])
        calibrated, perturbed = (torch.zeros(length, length, dtype=torch.float64) for _ in range(2))
        for i in range(length):
            keys = [j for j in range(length) if (real[j] and j <= i) or j == i]
            scores = {}
            for j in keys:
                pair = torch.cat([q[i], k[j]])
                z, dist = float(w[0] @ pair + bias[0]), float(w[1] @ pair + bias[1])
                sig = 1.0 / (1.0 + math.exp(-z))
                order = math.log(sig) if j > i else math.log(1.0 - sig)
                distance = -s * s / 2.0 * (math.log(1 + abs(i - j)) - dist) ** 2
                scores[j] = (float(q[i] @ k[j]) + order + distance) / math.sqrt(d)
            a = softmax_over(scores)
            mask = softmax_over({j: float(mq[i] @ mk[j]) / math.sqrt(d) for j in keys})
            c = softmax_over({j: a[j] * math.exp(1.0 - mask[j]) for j in keys})
            final = softmax_over({j: float(gate[i, j]) * a[j] + (1 - float(gate[i, j])) * c[j] for j in keys})
            pert = softmax_over({j: a[j] * mask[j] + float(noise[b, 0, i, j]) * (1 - mask[j]) for j in keys})
            for j in keys:
                calibrated[i, j], perturbed[i, j] = final[j], pert[j]
                if real[i]:
                    penalty += (1.0 - mask[j]) ** 2
        for weights, terms in ((calibrated, cal_terms), (perturbed, adv_terms)):
            y = x + lin(weights @ v, pre + "attn.out")
            y = y + lin(torch.relu(lin(norm(y, pre + "norm2"), pre + "ffn.0")), pre + "ffn.3")
            h = norm(y, "encoder.norm")
            for i in range(length):
                if real[i] and targets[i] != 0:
                    logits = h[i] @ emb[: M + 1].T
                    logits[0] = -math.inf
                    terms.append(float(torch.logsumexp(logits, 0) - logits[targets[i]]))
    return np.mean(cal_terms) - np.mean(adv_terms) + model.mask_weight * math.sqrt(penalty)


@pytest.mark.parametrize("adversary", ["mask", "all"])
def test_loss_equals_a_direct_computation(adversary):
    model = net(hidden=4, blocks=1, heads=1, mask_weight=0.7, adversary=adversary)
    with torch.no_grad():                                   # calibrator weights away from their tiny init
        for name, param in model.named_parameters():
            if ".cal." in name or "attn" in name:
                param.copy_(torch.randn(param.shape, generator=torch.Generator().manual_seed(len(name))))
    loss = model.training_loss(WINDOWS, torch.Generator().manual_seed(3))
    noise = torch.randn((3, 1, L, L), generator=torch.Generator().manual_seed(3))   # the one draw of the step
    assert loss.item() == pytest.approx(direct_loss(model, WINDOWS, noise), rel=1e-5)


def test_mask_penalty_on_a_hand_case():
    model = net(blocks=1)
    seqs = torch.tensor([[0, 3, 4, 5]])                     # 3 real queries; the padding row is left out
    m = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.5, 0.5, 0.0], [0.0, 0.2, 0.3, 0.5]])
    # (1 - M)^2 over allowed pairs of real queries: 0; .25 + .25; .64 + .49 + .25 -> sqrt(1.88)
    assert model.mask_penalty([m[None, None]], seqs).item() == pytest.approx(math.sqrt(1.88), rel=1e-6)
    two = [m[None, None], torch.ones(1, 1, 4, 4)]            # the mean over blocks
    assert model.mask_penalty(two, seqs).item() == pytest.approx(math.sqrt(1.88) / 2, rel=1e-6)


@pytest.mark.parametrize("adversary,trained", [("mask", {"cal.mask_q", "cal.mask_k"}), ("all", None)])
def test_what_the_adversarys_loss_trains(adversary, trained):
    model = net(adversary=adversary)
    inputs, targets = WINDOWS[:, :-1], WINDOWS[:, 1:]
    _, h_adv, masks = model.run(inputs, perturb=True, generator=torch.Generator().manual_seed(0))
    keep = (inputs != 0) & (targets != 0)
    emb = model.encoder.items.weight
    emb = emb.detach() if adversary == "mask" else emb
    penalty = model.mask_weight * model.mask_penalty(masks, inputs)
    adversary_loss = -model.rec_loss(h_adv[keep], targets[keep], emb) + penalty
    adversary_loss.backward()
    reached = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    if trained is None:                                     # the authors' summed loss: (nearly) every parameter
        assert {"encoder.items.weight", "encoder.blocks.1.attn.out.weight", "encoder.norm.weight"} <= reached
    else:
        assert reached and all(any(t in n for t in trained) for n in reached), reached


# ------------------------------------------------------------------------- shapes, causality, padding

def test_shapes_and_sasrec_inference():
    model = net()
    assert isinstance(model, CausalBackbone) and not isinstance(model, SASRec)
    assert model.causal and model.config()["class"] == "ACTSR" and model.config()["adversary"] == "mask"
    h = model.encode(SEQS)
    assert h.shape == (3, L, D)
    scores, h_t, h_mean = model.predict(SEQS)
    assert scores.shape == (3, M + 1) and h_t.shape == (3, D) and h_mean.shape == (3, D)
    torch.testing.assert_close(h_t, h[:, -1])
    masked, target = model.masked_input(SEQS, torch.tensor([4, 4, 2]))
    assert masked.tolist()[2] == [0, 0, 0, 1, 2] and target.tolist() == [L - 1] * 3
    h, h_adv, masks = model.run(SEQS, perturb=True, generator=torch.Generator().manual_seed(0))
    assert h_adv.shape == (3, L, D) and len(masks) == 2 and masks[0].shape == (3, 2, L, L)
    assert torch.isfinite(model.train().training_loss(WINDOWS, torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("options", [{}, {"positions": True}, {"adversarial": False}, {"spatial": False}])
def test_causal(options):
    model = net(**options)
    a, b = torch.tensor([[0, 1, 2, 3, 4]]), torch.tensor([[0, 1, 2, 3, 6]])
    with torch.no_grad():
        (ha, pa, _), (hb, pb, _) = (model.run(s, perturb=True, generator=torch.Generator().manual_seed(1))
                                    for s in (a, b))
    torch.testing.assert_close(ha[:, :4], hb[:, :4])
    assert not torch.allclose(ha[:, 4], hb[:, 4])
    if pa is not None:                                      # the perturbed stream too (same noise)
        torch.testing.assert_close(pa[:, :4], pb[:, :4])


@pytest.mark.parametrize("options", [{}, {"positions": True}])
def test_padding_is_never_attended(options):
    model = net(**options)
    with torch.no_grad():
        ref = model.encode(SEQS)
        ref_adv = model.run(SEQS, perturb=True, generator=torch.Generator().manual_seed(1))[1]
    noisy = encode_with_garbage_in_padding(model, SEQS)     # large values in the padding rows before each block
    real = SEQS != 0
    torch.testing.assert_close(noisy[real], ref[real])
    assert torch.all(noisy[~real] == 0)
    # the perturbed stream: the same, with the same noise
    pad = (SEQS == 0)[..., None]
    hooks = [blk.register_forward_pre_hook(lambda mod, args: (torch.where(pad, 50.0 * torch.ones_like(args[0]),
                                                                          args[0]), args[1]))
             for blk in model.encoder.blocks]
    try:
        with torch.no_grad():
            noisy_adv = model.run(SEQS, perturb=True, generator=torch.Generator().manual_seed(1))[1]
    finally:
        for hook in hooks:
            hook.remove()
    torch.testing.assert_close(noisy_adv[real], ref_adv[real])


def test_rows_do_not_interact():
    model = net()
    with torch.no_grad():
        alone = [model.encode(s[None])[0] for s in SEQS]
        batched = model.encode(SEQS)
    for row in range(len(SEQS)):
        torch.testing.assert_close(batched[row], alone[row])


# ----------------------------------------------------------------------- SASRec, with the calibrators off

@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_with_the_calibrators_off_it_is_sasrec(loss):
    opts = dict(hidden=D, blocks=2, heads=2, dropout=0.0, loss=loss)
    torch.manual_seed(0)
    sasrec = SASRec(M, L, **opts).eval()
    model = net(**opts, spatial=False, adversarial=False, positions=True)
    assert list(model.state_dict()) == list(sasrec.state_dict())
    assert all(torch.equal(v, sasrec.state_dict()[k]) for k, v in model.state_dict().items())
    with torch.no_grad():
        torch.testing.assert_close(model.encode(WINDOWS[:, :-1]), sasrec.encode(WINDOWS[:, :-1]))
        torch.testing.assert_close(model.predict(WINDOWS[:, :-1])[0], sasrec.predict(WINDOWS[:, :-1])[0])
    got = model.training_loss(WINDOWS, torch.Generator().manual_seed(5)).item()
    assert got == pytest.approx(sasrec.training_loss(WINDOWS, torch.Generator().manual_seed(5)).item(), rel=1e-6)
    # the calibrators' weights come after SASRec's draws: with them on, SASRec's weights are still the same
    full = net(**opts)
    assert all(torch.equal(v, full.state_dict()[k]) for k, v in sasrec.state_dict().items() if "positions" not in k)
    assert "encoder.positions.weight" not in full.state_dict()          # positions: false (the authors' configs)


# ------------------------------------------------------------------------------ training, reproducibility

def test_one_epoch_through_train_backbone():
    from globaldiff.data.windows import evaluation_sets, sliding_windows
    from globaldiff.run.backbone import BackboneTraining, train_backbone
    from globaldiff.run.device import seed_everything

    rng = np.random.default_rng(0)
    train = [rng.integers(1, 13, size=12) for _ in range(16)]
    val, test = rng.integers(1, 13, size=16), rng.integers(1, 13, size=(16, 1))
    val_set, _ = evaluation_sets(train, val, test, 4)
    backbone, windows = build_backbone("actsr", 12, 4, {"hidden": 8}), sliding_windows(train, 5, 1)
    rows = []
    cfg = BackboneTraining(epochs=1, batch_size=16, lr=1e-3, patience=1, exclude="window")
    state = train_backbone(backbone, windows, val_set, cfg, torch.device("cpu"), seed_everything(0), rows.append)
    assert len(rows) == 1 and np.isfinite(rows[0]["loss"]) and 0.0 <= rows[0]["val_NDCG@10"] <= 1.0
    assert state.keys() == backbone.state_dict().keys()


def train_bytes(options: dict, steps: int = 4, batch: int = 128) -> bytes:
    torch.manual_seed(0)
    model = build_backbone("actsr", 200, 10, {"hidden": 16, **options}).train()
    data = torch.randint(1, 201, (steps * batch, 11), generator=torch.Generator().manual_seed(1))
    data[::7, :4] = 0
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    for step in range(steps):
        loss = model.training_loss(data[step * batch:(step + 1) * batch], generator=generator)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return b"".join(p.detach().numpy().tobytes() for p in model.parameters())


@pytest.mark.parametrize("options", [{}, {"adversary": "all", "loss": "bce"}])
def test_training_is_bit_reproducible_with_two_threads(options):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert train_bytes(options) == train_bytes(options)
    finally:
        torch.set_num_threads(threads)


def test_imports_only_shared_backbone_modules():
    tree = ast.parse((Path(__file__).resolve().parents[1] / "src/globaldiff/backbones/actsr.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    backbones = {m.rsplit(".", 1)[-1] for m in imported if m.startswith("globaldiff.backbones.")}
    assert not backbones & set(REGISTRY) and backbones <= {"base", "layers", "causal", "contrastive"}, backbones


# --------------------------------------------------------------------------------------- registry, params

def test_registered_with_a_params_entry_that_validates_and_not_in_the_study():
    import yaml

    from globaldiff.run.backbone import check_backbone_params, new_backbone

    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    assert REGISTRY["actsr"] == "ACTSR" and "actsr" not in params["study"]["backbones"]
    check_backbone_params(params, "actsr")
    model = new_backbone(params, "actsr", 30)
    assert type(model) is ACTSR and model.max_len == params["max_len"] == 10 and model.hidden == 64
    assert model.spatial and model.adversarial and not model.positions and model.adversary == "mask"
    train = params["backbones"]["actsr"]["train"]
    assert (train["epochs"], train["patience"], train["batch_size"], train["lr"], train["stride"]) == \
        (50, 5, 256, 0.001, 10)


@pytest.mark.parametrize("option,value,words", [
    ("mask_weight", -0.1, "mask_weight = -0.1: expected a value in [0.0, inf)"),
    ("adversary", "encoder", "adversary = 'encoder': expected one of ['mask', 'all']"),
    ("spatial", 1, "spatial = 1: expected bool (like the default True)"),
    ("positions", "no", "positions = 'no': expected bool (like the default False)"),
    ("dropout", 1.0, "dropout = 1.0: expected a value in [0.0, 1.0)"),
    ("heads", 3, "heads = 3: expected a divisor of backbones.actsr.model.hidden = 64"),
    ("loss", "bpr", "loss = 'bpr': expected one of ['ce', 'bce']"),
])
def test_params_ranges_are_refused_with_the_key(option, value, words):
    with pytest.raises(ConfigError, match=re.escape(f"params.yaml: backbones.actsr.model.{words}")):
        check_model_options("actsr", {"hidden": 64, option: value}, ACTSR)


def test_params_validator_accepts_the_constructor_options():
    check_model_options("actsr", {"hidden": 64, "blocks": 2, "heads": 2, "dropout": 0.5, "loss": "ce",
                                  "readout": "last", "spatial": True, "adversarial": True, "positions": False,
                                  "mask_weight": 0.03, "adversary": "all"}, ACTSR)
    check_model_options("actsr", {}, ACTSR)                 # every option has a default
    with pytest.raises(ConfigError, match="mask_weigth"):
        check_model_options("actsr", {"mask_weigth": 0.03}, ACTSR)


@pytest.mark.parametrize("bad", [{"adversary": "both"}, {"mask_weight": -1.0}, {"loss": "bpr"}])
def test_bad_options(bad):
    with pytest.raises(ValueError):
        ACTSR(M, L, hidden=8, **bad)
