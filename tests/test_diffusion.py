"""Gaussian diffusion over item vectors, paper Section 3.4, equations (4)-(7); DiffRec linear-variance schedule.

Expected values are computed from the definitions (alpha_t = 1 - beta_t, abar_t = prod_{s<=t} alpha_s) in plain
Python, not by calling the code under test a second time.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from globaldiff import ConfigError
from globaldiff.diffusion.schedule import (DiffusionSchedule, diffusion_loss, posterior_mean, posterior_std, q_sample,
                                  reverse)


pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models: conftest.one_thread


def linspace(a, b, n):
    return [a + (b - a) * k / (n - 1) for k in range(n)] if n > 1 else [a]


def by_hand(betas):
    alphas = [1.0 - b for b in betas]
    abar, prod = [], 1.0
    for a in alphas:
        prod *= a
        abar.append(prod)
    return alphas, abar


# ------------------------------------------------------------------------------------------- schedule

def test_linear_variance_without_fixed_beta0_is_exactly_linear():
    s = DiffusionSchedule.linear_variance(20, 0.1, 5e-3, 5e-2, beta_first=None)
    assert s.betas.dtype == torch.float64 and s.steps == 20
    expected = torch.tensor(linspace(5e-4, 5e-3, 20), dtype=torch.float64)
    torch.testing.assert_close(1.0 - s.alpha_bars, expected, rtol=0, atol=1e-12)
    # sqrt(1 - abar_{T-1}) = sqrt(5e-3)
    assert math.sqrt(1.0 - s.alpha_bars[-1].item()) == pytest.approx(0.0707107, abs=1e-6)


def test_linear_variance_defaults_t20_by_hand():
    """DiffRec: betas_t = 1 - (1 - v_t)/(1 - v_{t-1}) for t >= 1 from v = linspace(5e-4, 5e-3, 20); beta_0 := 1e-5.

    Fixing beta_0 rescales every abar_t by (1 - 1e-5)/(1 - 5e-4): 1 - abar is then linear from 1e-5 to
    about 4.51e-3 (not from 5e-4 to 5e-3), and sqrt(1 - abar_{T-1}) is 0.0672 (authors' code: 0.067).
    """
    s = DiffusionSchedule.linear_variance(20)  # defaults: 0.1, 5e-3, 5e-2, beta_first 1e-5
    v = linspace(5e-4, 5e-3, 20)
    betas = [1e-5] + [1.0 - (1.0 - v[t]) / (1.0 - v[t - 1]) for t in range(1, 20)]
    torch.testing.assert_close(s.betas, torch.tensor(betas, dtype=torch.float64), rtol=1e-10, atol=1e-15)
    alphas, abar = by_hand(betas)
    torch.testing.assert_close(s.alphas, torch.tensor(alphas, dtype=torch.float64), rtol=0, atol=1e-14)
    torch.testing.assert_close(s.alpha_bars, torch.tensor(abar, dtype=torch.float64), rtol=0, atol=1e-12)
    scale = (1.0 - 1e-5) / (1.0 - 5e-4)
    for t in range(1, 20):
        assert s.alpha_bars[t].item() == pytest.approx(scale * (1.0 - v[t]), abs=1e-12)
    assert 1.0 - s.alpha_bars[0].item() == pytest.approx(1e-5, abs=1e-15)
    assert 1.0 - s.alpha_bars[-1].item() == pytest.approx(1.0 - scale * 0.995, abs=1e-12)  # 4.5122e-3
    assert math.sqrt(1.0 - s.alpha_bars[-1].item()) == pytest.approx(0.06717, abs=1e-4)
    # 1 - abar still rises linearly for t >= 1 (constant step scale * 4.5e-3 / 19)
    steps = torch.diff(1.0 - s.alpha_bars[1:])
    torch.testing.assert_close(steps, torch.full_like(steps, scale * 4.5e-3 / 19), rtol=1e-8, atol=0)


def test_beta_first_changes_only_beta0():
    fixed = DiffusionSchedule.linear_variance(20, beta_first=1e-5)
    free = DiffusionSchedule.linear_variance(20, beta_first=None)
    assert free.betas[0].item() == pytest.approx(5e-4, abs=1e-15)
    assert fixed.betas[0].item() == 1e-5
    torch.testing.assert_close(fixed.betas[1:], free.betas[1:], rtol=0, atol=0)


def test_alpha_bar_strictly_decreasing_and_prev():
    s = DiffusionSchedule.linear_variance(20)
    abar = s.alpha_bars
    assert (abar[1:] < abar[:-1]).all() and (abar > 0).all() and (abar < 1).all()
    assert s.alpha_bars_prev[0].item() == 1.0
    torch.testing.assert_close(s.alpha_bars_prev[1:], abar[:-1])


def test_single_step_schedule():
    s = DiffusionSchedule.linear_variance(1, beta_first=None)
    assert s.steps == 1 and s.betas[0].item() == pytest.approx(5e-4)


@pytest.mark.parametrize("kwargs", [dict(steps=0), dict(steps=-3), dict(steps=5, noise_min=0.05, noise_max=0.05),
                                    dict(steps=5, noise_min=0.0), dict(steps=5, noise_scale=0.0)])
def test_bad_schedule_raises_config_error(kwargs):
    with pytest.raises(ConfigError):
        DiffusionSchedule.linear_variance(**kwargs)


# ------------------------------------------------------------------------------------------- eq. (4)

def test_q_sample_statistics():
    s = DiffusionSchedule.linear_variance(5, noise_scale=1.0, noise_min=0.1, noise_max=0.9, beta_first=None)
    # 1 - abar = linspace(.1, .9, 5) = .1, .3, .5, .7, .9
    n = 40000
    x0 = torch.tensor([0.0, 1.0, 0.5, 1.0], dtype=torch.float64).expand(n, -1)
    gen = torch.Generator().manual_seed(0)
    for t, var in enumerate([0.1, 0.3, 0.5, 0.7, 0.9]):
        noise = torch.randn(n, 4, generator=gen, dtype=torch.float64)
        xt = q_sample(s, x0, torch.full((n,), t), noise)
        torch.testing.assert_close(xt.mean(0), math.sqrt(1 - var) * x0[0], atol=0.02, rtol=0)
        torch.testing.assert_close(xt.std(0), torch.full((4,), math.sqrt(var), dtype=torch.float64), atol=0.02, rtol=0)


def test_q_sample_exact_per_row_t():
    s = DiffusionSchedule.linear_variance(5, noise_scale=1.0, noise_min=0.1, noise_max=0.9, beta_first=None)
    x0 = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    noise = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    xt = q_sample(s, x0, torch.tensor([0, 4]), noise)
    expected = torch.tensor([[math.sqrt(0.9), math.sqrt(0.1)], [math.sqrt(0.1), math.sqrt(0.9)]])
    torch.testing.assert_close(xt, expected)
    assert xt.dtype == torch.float32


# ------------------------------------------------------------------------------------------- eq. (5)

def test_posterior_mean_matches_eq5_written_out():
    s = DiffusionSchedule.linear_variance(6, noise_scale=1.0, noise_min=0.05, noise_max=0.6, beta_first=0.01)
    betas = s.betas.tolist()
    alphas, abar = by_hand(betas)
    gen = torch.Generator().manual_seed(3)
    xt = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    x0 = torch.rand(6, 3, generator=gen, dtype=torch.float64)
    t = torch.arange(6)
    mu = posterior_mean(s, xt, x0, t)
    for k in range(6):
        prev = abar[k - 1] if k > 0 else 1.0
        c_xt = math.sqrt(alphas[k]) * (1 - prev) / (1 - abar[k])
        c_x0 = math.sqrt(prev) * betas[k] / (1 - abar[k])
        torch.testing.assert_close(mu[k], c_xt * xt[k] + c_x0 * x0[k])


def test_posterior_mean_at_t0_is_x0_and_std_zero():
    s = DiffusionSchedule.linear_variance(20)
    xt = torch.randn(3, 7)
    x0 = torch.rand(3, 7)
    t = torch.zeros(3, dtype=torch.long)
    torch.testing.assert_close(posterior_mean(s, xt, x0, t), x0)
    assert torch.equal(posterior_std(s, t, xt), torch.zeros(3, 1))


def test_posterior_std_by_hand():
    s = DiffusionSchedule.linear_variance(4, noise_scale=1.0, noise_min=0.1, noise_max=0.4, beta_first=None)
    betas = s.betas.tolist()
    _, abar = by_hand(betas)
    std = posterior_std(s, torch.arange(4), torch.zeros(4, 1, dtype=torch.float64))[:, 0]
    for k in range(1, 4):
        assert std[k].item() == pytest.approx(math.sqrt(betas[k] * (1 - abar[k - 1]) / (1 - abar[k])))


# ------------------------------------------------------------------------------------------- reverse

def test_reverse_with_true_x0_on_noiseless_chain_ends_at_x0():
    s = DiffusionSchedule.linear_variance(20)
    x0 = torch.tensor([[0.0, 1.0, 0.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0, 1.0]], dtype=torch.float64)
    seen = []

    def denoise(x, t):
        seen.append(int(t[0]))
        return x0

    x_T = math.sqrt(s.alpha_bars[-1].item()) * x0
    out = reverse(s, denoise, x_T, start_step=20)
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-9)
    assert seen == list(range(19, -1, -1))


def test_reverse_start_step_rescales_then_ends_at_x0():
    s = DiffusionSchedule.linear_variance(20, noise_scale=1.0, noise_min=0.05, noise_max=0.5)
    abar = s.alpha_bars.tolist()
    x_start = torch.tensor([[2.0, -1.0, 0.5]], dtype=torch.float64)
    first = []

    def record(x, t):
        if not first:
            first.append(x.clone())
        return x_start

    reverse(s, record, x_start, start_step=5)
    torch.testing.assert_close(first[0], math.sqrt(abar[19] / abar[4]) * x_start)
    # a start at T' on the noiseless chain of x0 (x^{T'} = sqrt(abar_{T'-1}) x0) still ends at x0
    x0 = torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64)
    out = reverse(s, lambda x, t: x0, math.sqrt(abar[4]) * x0, start_step=5)
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-9)


def test_reverse_start_step_equal_T_does_not_rescale():
    s = DiffusionSchedule.linear_variance(5)
    x_start = torch.tensor([[3.0, 4.0]])
    first = []
    reverse(s, lambda x, t: first.append(x.clone()) or x, x_start, start_step=5)
    torch.testing.assert_close(first[0], x_start)


def test_reverse_noise_is_reproducible_with_generator():
    s = DiffusionSchedule.linear_variance(10, noise_scale=1.0, noise_min=0.05, noise_max=0.5)
    x = torch.rand(4, 6)
    ident = lambda x, t: x  # noqa: E731  (f_theta = x_t: the sampling noise reaches the output)
    a = reverse(s, ident, x, 4, noise=True, generator=torch.Generator().manual_seed(7))
    b = reverse(s, ident, x, 4, noise=True, generator=torch.Generator().manual_seed(7))
    c = reverse(s, ident, x, 4, noise=False)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("start", [0, -1, 21])
def test_reverse_bad_start_step_raises(start):
    s = DiffusionSchedule.linear_variance(20)
    with pytest.raises(ConfigError):
        reverse(s, lambda x, t: x, torch.zeros(1, 3), start_step=start)


# ------------------------------------------------------------------------------------------- eq. (7)

def test_diffusion_loss_mse():
    pred = torch.tensor([[0.0, 0.5, 1.0, 0.2], [1.0, 1.0, 0.0, 0.0]])
    x0 = torch.tensor([[0.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0]])
    # row 0: (.25 + 0 + .04)/4 = .0725 ; row 1: (1 + 0 + 1 + 0)/4 = .5 ; mean .28625
    loss = diffusion_loss(pred, x0, torch.tensor([1, 2]), "mse")
    assert loss.item() == pytest.approx(0.28625)


def test_diffusion_loss_ce_ignores_column_0():
    pred = torch.tensor([[100.0, 1.0, 2.0, 0.0], [-5.0, 0.5, 0.0, 3.0]])
    targets = torch.tensor([2, 1])
    loss = diffusion_loss(pred, torch.zeros_like(pred), targets, "ce")
    expected = F.cross_entropy(pred[:, 1:], targets - 1)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    # by hand, row 0: -log(e^2 / (e^1 + e^2 + e^0))
    row0 = -math.log(math.exp(2) / (math.exp(1) + math.exp(2) + 1.0))
    row1 = -math.log(math.exp(0.5) / (math.exp(0.5) + 1.0 + math.exp(3)))
    assert loss.item() == pytest.approx((row0 + row1) / 2, rel=1e-6)
    assert pred[0, 0].item() == 100.0  # the prediction is not modified in place


def test_diffusion_loss_unknown_kind():
    with pytest.raises(ValueError):
        diffusion_loss(torch.zeros(1, 3), torch.zeros(1, 3), torch.tensor([1]), "l1")


# ------------------------------------------------------------------------------------------- f_theta (eq. 6)

def test_timestep_embedding_values():
    from globaldiff.diffusion.denoiser import timestep_embedding

    emb = timestep_embedding(torch.tensor([0, 3]), 6)
    assert emb.shape == (2, 6)
    torch.testing.assert_close(emb[0], torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0]))
    freqs = [math.exp(-math.log(10000.0) * k / 3) for k in range(3)]
    expected = [math.cos(3 * f) for f in freqs] + [math.sin(3 * f) for f in freqs]
    torch.testing.assert_close(emb[1], torch.tensor(expected))
    odd = timestep_embedding(torch.tensor([2]), 7)
    assert odd.shape == (1, 7) and odd[0, 6].item() == 0.0


def test_guidance_vector_and_denoiser_variants():
    from globaldiff.diffusion.denoiser import MLPDenoiser, guidance_vector

    h_t, h_m = torch.ones(3, 4), 2 * torch.ones(3, 4)
    assert torch.equal(guidance_vector(h_t, h_m, "full"), torch.cat([h_t, h_m], dim=1))
    assert torch.equal(guidance_vector(h_t, h_m, "target"), h_t)
    assert guidance_vector(h_t, h_m, "none") is None
    with pytest.raises(ValueError):
        guidance_vector(h_t, h_m, "mean")
    torch.manual_seed(0)
    x_t, t = torch.rand(3, 8), torch.tensor([0, 5, 19])
    for guidance in ("full", "target", "none"):
        net = MLPDenoiser(num_items=7, hidden_dim=4, guidance=guidance, hidden=16, time_dim=8).eval()
        out = net(x_t, t, guidance_vector(h_t, h_m, guidance))
        assert out.shape == (3, 8) and torch.isfinite(out).all()
    with pytest.raises(ValueError):
        MLPDenoiser(num_items=7, hidden_dim=4, guidance="mean")


def test_unet_denoiser_variants_shapes_and_errors():
    from globaldiff.diffusion.denoiser import MLPDenoiser, UNetDenoiser, build_denoiser, guidance_vector

    torch.manual_seed(0)
    h_t, h_m = torch.randn(3, 4), torch.randn(3, 4)
    x_t, t = torch.rand(3, 8), torch.tensor([0, 5, 19])
    for guidance in ("full", "target", "none"):
        net = build_denoiser("unet", num_items=7, hidden_dim=4, guidance=guidance, time_dim=8, channels=4).eval()
        assert isinstance(net, UNetDenoiser)
        out = net(x_t, t, guidance_vector(h_t, h_m, guidance))
        assert out.shape == (3, 8) and torch.isfinite(out).all()
    assert isinstance(build_denoiser("mlp", 7, 4, "full", hidden=16, time_dim=8), MLPDenoiser)
    with pytest.raises(ValueError, match="network"):
        build_denoiser("transformer", 7, 4, "full")
    with pytest.raises(ValueError, match="guidance"):
        UNetDenoiser(7, 4, "mean")


def test_unet_denoiser_uses_its_inputs_and_learns():
    """The prediction depends on x_t, t and the guidance, and a few Adam steps fit a fixed x_0 (mse falls)."""
    from globaldiff.diffusion.denoiser import UNetDenoiser, guidance_vector

    torch.manual_seed(0)
    net = UNetDenoiser(num_items=9, hidden_dim=4, guidance="full", time_dim=8, dropout=0.0, channels=4).eval()
    x_t, t = torch.rand(4, 10), torch.tensor([1, 2, 3, 4])
    cond = guidance_vector(torch.randn(4, 4), torch.randn(4, 4), "full")
    base = net(x_t, t, cond)
    assert not torch.allclose(base, net(torch.rand(4, 10), t, cond))
    assert not torch.allclose(base, net(x_t, t + 7, cond))
    assert not torch.allclose(base, net(x_t, t, cond + 1.0))
    net.train()
    x0 = (torch.rand(4, 10) < 0.3).float()
    optim = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = diffusion_loss(net(x_t, t, cond), x0, torch.zeros(4, dtype=torch.long), "mse")
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


# ------------------------------------------------------------------------------- the embedded chain

@pytest.mark.parametrize("network", ["mlp", "unet"])
@pytest.mark.parametrize("steps,start", [(20, 20), (20, 7), (1, 1), (50, 50)])
def test_reverse_embedded_equals_the_step_by_step_chain(network, steps, start):
    """Section 3.5's noiseless chain run in the denoiser's embedding space gives `reverse`'s x_0 (eq. 6 through
    the full network at every step) up to float rounding, and the same ranking."""
    from globaldiff.diffusion.denoiser import build_denoiser, guidance_vector
    from globaldiff.diffusion.schedule import reverse_embedded

    torch.manual_seed(0)
    net = build_denoiser(network, num_items=40, hidden_dim=6, guidance="full", hidden=24, time_dim=8,
                         channels=4).eval()
    for p in net.parameters():                   # away from the initialisation, so that every part matters
        p.data.add_(0.3 * torch.randn_like(p))
    s = DiffusionSchedule.linear_variance(steps, noise_scale=1.0, noise_min=0.05, noise_max=0.5)
    x = torch.softmax(3 * torch.randn(5, 41), dim=1)
    cond = guidance_vector(torch.randn(5, 6), torch.randn(5, 6), "full")
    want = reverse(s, lambda x_t, t: net(x_t, t, cond), x, start)
    got = reverse_embedded(s, lambda e, t: net.core(e, t, cond), net.embed, net.head, x, start)
    # both are float32 chains rounded differently: against a float64 chain each is off by ~1e-5 here (values ~4.5,
    # perturbed weights, 50 steps of a coarse schedule); at the committed sizes ~3e-7 relative (docs/speed.md)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=5e-5)
    assert torch.equal(got.argsort(dim=1, descending=True)[:, :5], want.argsort(dim=1, descending=True)[:, :5])
    with pytest.raises(ConfigError):
        reverse_embedded(s, lambda e, t: net.core(e, t, cond), net.embed, net.head, x, steps + 1)


def test_denoisers_are_head_of_core_of_embed():
    from globaldiff.diffusion.denoiser import build_denoiser, guidance_vector

    torch.manual_seed(0)
    x_t, t = torch.rand(3, 8), torch.tensor([0, 5, 19])
    cond = guidance_vector(torch.randn(3, 4), torch.randn(3, 4), "full")
    for network in ("mlp", "unet"):
        net = build_denoiser(network, 7, 4, "full", hidden=16, time_dim=8, channels=4).eval()
        assert isinstance(net.embed, torch.nn.Linear) and isinstance(net.head, torch.nn.Linear)
        assert torch.equal(net(x_t, t, cond), net.head(net.core(net.embed(x_t), t, cond)))


def test_diffusion_predict_embedded_equals_step_by_step():
    """diffusion_predict takes the embedded chain without sampling noise; the result is the full chain's."""
    from globaldiff.diffusion.denoiser import build_denoiser, guidance_vector
    from globaldiff.run.diffusion import Inference, diffusion_predict, diffusion_start

    torch.manual_seed(0)
    net = build_denoiser("mlp", 30, 4, "full", hidden=16, time_dim=8).eval()
    s = DiffusionSchedule.linear_variance(10)
    logits, h, mean = torch.randn(7, 31), torch.randn(7, 4), torch.randn(7, 4)
    inf = Inference(input="softmax", scale="max", batch_size=3)
    got = diffusion_predict(net, s, logits, h, mean, inf, torch.device("cpu"))
    cond = guidance_vector(h, mean, "full")
    want = reverse(s, lambda x_t, t: net(x_t, t, cond), diffusion_start(logits, inf), 10)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------- a diverging loss

def test_train_diffusion_stops_with_one_line_when_the_loss_is_nan(monkeypatch):
    import numpy as np

    import globaldiff.run.diffusion as run_diffusion
    from globaldiff.backbones.base import build_backbone
    from globaldiff.data.windows import evaluation_sets, last_windows
    from globaldiff.diffusion.denoiser import build_denoiser
    from globaldiff.diffusion.similarity import build_similarity
    from globaldiff.run.backbone import NonFiniteLoss

    rng = np.random.default_rng(0)
    train = [rng.integers(1, 13, size=12) for _ in range(16)]
    val, test = rng.integers(1, 13, size=16), rng.integers(1, 13, size=(16, 1))
    backbone = build_backbone("sasrec", 12, 4, {"hidden": 8})
    denoiser = build_denoiser("mlp", 12, 8, "full", hidden=16, time_dim=8)
    similarity = build_similarity(train, 12, "cosine")
    val_set, _ = evaluation_sets(train, val, test, 4)
    cfg = run_diffusion.DiffusionTraining(epochs=5, batch_size=8, lr=1e-3, loss="mse", zeta=1.5, delta=1.0,
                                          rule="paper", eval_every=1, select_metric="HR@10", select_gamma=0.5,
                                          norm="l1", exclude="window")
    real_loss, calls = run_diffusion.dm.diffusion_loss, []

    def loss_nan_from_the_third_step(*args):
        calls.append(1)
        value = real_loss(*args)
        return value * float("nan") if len(calls) >= 3 else value

    monkeypatch.setattr(run_diffusion.dm, "diffusion_loss", loss_nan_from_the_third_step)
    rows = []
    with pytest.raises(NonFiniteLoss, match="diffusion: training loss is nan in epoch 2"):
        run_diffusion.train_diffusion(backbone, denoiser, DiffusionSchedule.linear_variance(5), similarity,
                                      last_windows(train, 4), val_set, cfg, run_diffusion.Inference("softmax", "max"),
                                      torch.device("cpu"), torch.Generator().manual_seed(0), rows.append)
    assert [row["epoch"] for row in rows] == [1]          # epoch 1 (two steps) was logged, epoch 2 stopped the run
    assert issubclass(NonFiniteLoss, ConfigError)          # a stage prints it as one line (cli.run_stage)
