"""BERT4Rec and CBiT: cloze masking, bidirectional attention, padding safety, NT-Xent, theta, smoke training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from globaldiff.backbones.base import build_backbone
from globaldiff.backbones.bert4rec import BERT4Rec
from globaldiff.backbones.cbit import CBiT, nt_xent_pairs
from globaldiff.backbones.cloze import cloze_mask

from conftest import encode_with_garbage_in_padding

M, L, D = 9, 5, 16
WINDOWS = torch.tensor([[0, 0, 1, 2, 3, 4], [5, 6, 7, 8, 9, 1], [0, 0, 0, 2, 4, 6], [3, 5, 7, 9, 2, 4]])


pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models: conftest.one_thread


def model(name: str, **kw):
    torch.manual_seed(0)
    opts = dict(hidden=D, blocks=2, heads=2, ffn=32, dropout=0.0)
    if name == "cbit":
        opts["views"] = 3
    opts.update(kw)
    return build_backbone(name, M, L, opts).eval()


# ------------------------------------------------------------------------------------------ cloze mask

def test_cloze_mask_rates_and_labels():
    seqs = torch.randint(1, M + 1, (4000, 10))
    seqs[:, :3] = 0                                            # left padding is never chosen
    inputs, labels = cloze_mask(seqs, 0.2, M + 1, M, torch.Generator().manual_seed(0))
    chosen = labels != 0
    assert not chosen[:, :3].any()
    assert torch.equal(labels[chosen], seqs[chosen])
    assert torch.equal(inputs[~chosen], seqs[~chosen])
    assert chosen.any(1).all()                                 # every window trains on at least one item
    rate = chosen[:, 3:].float().mean().item()
    assert 0.2 < rate < 0.25                                   # 0.2, plus the forced last item of empty rows
    masked = (inputs[chosen] == M + 1).float().mean().item()
    kept = (inputs[chosen] == seqs[chosen]).float().mean().item()
    assert abs(masked - 0.8) < 0.02
    assert 0.1 < kept < 0.13                                   # 10% kept, plus random draws of the same item


def test_cloze_mask_empty_row_chooses_last_item():
    seqs = torch.tensor([[0, 0, 4, 5]])
    _, labels = cloze_mask(seqs, 1e-9, M + 1, M, torch.Generator().manual_seed(0))
    assert labels.tolist() == [[0, 0, 0, 5]]


def test_bad_options():
    with pytest.raises(ValueError):
        BERT4Rec(M, L, hidden=D, heads=2, mask_prob=1.5)
    with pytest.raises(ValueError):
        CBiT(M, L, hidden=D, heads=2, views=1)


# ------------------------------------------------------------------------------------- attention, padding

@pytest.mark.parametrize("name", ["bert4rec", "cbit"])
def test_attends_both_ways(name):
    net = model(name)
    a = torch.tensor([[0, 1, 2, 3, 4]])
    b = torch.tensor([[0, 1, 2, 3, 6]])
    with torch.no_grad():
        ha, hb = net.encode(a), net.encode(b)
    assert not torch.allclose(ha[:, 1], hb[:, 1])             # an earlier position sees a later item
    assert torch.all(ha[:, 0] == 0)


@pytest.mark.parametrize("name", ["bert4rec", "cbit"])
def test_padding_is_never_attended(name):
    net = model(name)
    seqs = torch.tensor([[0, 0, 3, 4, 5], [0, 0, 0, 2, 9]])
    pad = (seqs == 0)[..., None]
    with torch.no_grad():
        ref = net.encode(seqs)
    noisy = encode_with_garbage_in_padding(net, seqs)
    torch.testing.assert_close(noisy, ref)
    assert torch.all(noisy[pad.expand_as(noisy)] == 0)


@pytest.mark.parametrize("name", ["bert4rec", "cbit"])
def test_predict_reads_appended_mask(name):
    net = model(name)
    windows = torch.tensor([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]])
    scores, h_t, _ = net.predict(windows)
    seqs = torch.tensor([[1, 2, 3, 4, M + 1], [6, 7, 8, 9, M + 1]])
    with torch.no_grad():
        torch.testing.assert_close(h_t, net.encode(seqs)[:, -1])
        torch.testing.assert_close(scores, net.head(h_t))
    assert scores.shape == (2, M + 1)


# --------------------------------------------------------------------------------------------- NT-Xent

def nt_xent_direct(za: torch.Tensor, zb: torch.Tensor, tau: float) -> torch.Tensor:
    """SimCLR's loss for anchors in view a against view b, one anchor at a time."""
    za, zb = F.normalize(za, dim=-1), F.normalize(zb, dim=-1)
    total = 0.0
    for i in range(len(za)):
        others = [za[j] for j in range(len(za)) if j != i] + [zb[j] for j in range(len(zb))]
        logits = torch.stack([za[i] @ o for o in others]) / tau
        positive = (za[i] @ zb[i]) / tau
        total = total + torch.logsumexp(logits, 0) - positive
    return total / len(za)


def test_nt_xent_pairs_matches_direct_computation():
    z = torch.randn(3, 4, 6, generator=torch.Generator().manual_seed(1))
    got = nt_xent_pairs(z, 0.3)
    for a in range(3):
        for b in range(3):
            want = torch.tensor(0.0) if a == b else nt_xent_direct(z[a], z[b], 0.3)
            torch.testing.assert_close(got[a, b], want)


def test_nt_xent_is_small_when_views_agree():
    base = torch.randn(1, 8, 6, generator=torch.Generator().manual_seed(2))
    agree = nt_xent_pairs(base.expand(2, -1, -1).contiguous(), 0.1).sum()
    random = nt_xent_pairs(torch.randn(2, 8, 6, generator=torch.Generator().manual_seed(3)), 0.1).sum()
    assert agree < random


# -------------------------------------------------------------------------------------------- CBiT loss

def test_cbit_theta_update_and_total_loss():
    net = model("cbit").train()
    gen = torch.Generator().manual_seed(0)
    assert net.theta.item() == 0.0
    loss = net.training_loss(WINDOWS, gen)
    # recompute the two parts with the same draws
    net2 = model("cbit").train()
    gen2 = torch.Generator().manual_seed(0)
    seqs = WINDOWS[:, 1:]
    torch.manual_seed(0)
    losses, rows, h = net2.cloze_losses(seqs.repeat(3, 1), gen2)
    view = rows // len(seqs)
    ce = sum(losses[view == v].mean() for v in range(3))
    cl = nt_xent_pairs(h.reshape(3, len(seqs), -1), 0.3).sum()
    theta = 0.1 * ce / (ce + 5.0 * cl)
    torch.testing.assert_close(net.theta, theta.detach())
    # dropout is 0, so both forward passes agree
    torch.testing.assert_close(loss, ce + theta.detach() * cl)
    net.eval()
    net.training_loss(WINDOWS, gen)
    torch.testing.assert_close(net.theta, theta.detach())     # evaluation never moves theta


# ------------------------------------------------------------------------------------- smoke training

@pytest.mark.parametrize("name", ["bert4rec", "cbit"])
def test_training_lowers_the_cloze_loss(name):
    net = model(name).train()

    def held_out_cloze() -> float:                             # the same 20 corruptions before and after
        with torch.no_grad():
            losses, _, _ = net.cloze_losses(WINDOWS[:, 1:].repeat(20, 1), torch.Generator().manual_seed(5))
        return losses.mean().item()

    before = held_out_cloze()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(100):
        value = net.training_loss(WINDOWS, gen)
        assert torch.isfinite(value)
        opt.zero_grad()
        value.backward()
        opt.step()
    assert held_out_cloze() < 0.6 * before


@pytest.mark.parametrize("name", ["bert4rec", "cbit"])
def test_same_seed_same_loss(name):
    values = [model(name).train().training_loss(WINDOWS, torch.Generator().manual_seed(4)).item() for _ in range(2)]
    assert values[0] == values[1]


def test_nt_xent_gradient_equals_autograd_through_the_plain_product():
    """The symmetric product's one-matmul backward gives autograd's gradient through einsum (float64)."""
    z = torch.randn(3, 5, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(4), requires_grad=True)
    nt_xent_pairs(z, 0.3).sum().backward()
    got = z.grad.clone()

    def reference(z):
        views, batch, _ = z.shape
        total = 0.0
        for a in range(views):
            for b in range(views):
                if a != b:
                    total = total + nt_xent_direct(z[a], z[b], 0.3)
        return total

    want, = torch.autograd.grad(reference(z), z)
    torch.testing.assert_close(got, want)
