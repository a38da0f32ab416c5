"""DiffuRec (Table 2 competitor, issue 17): the truncated linear schedule and q(x_t | x_0) on hand cases, rounding by
inner product, the reverse chain against a direct DDPM loop, its seeded determinism (and independence of the batch),
shapes, padding never attended, a one-epoch train through train_backbone, bit-reproducible training, the registry
and params entries, and the params validator."""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from globaldiff import ConfigError
from globaldiff.backbones import REGISTRY
from globaldiff.backbones.base import build_backbone
from globaldiff.backbones.diffurec import DiffuRec, step_embedding, truncated_linear_betas
from globaldiff.config.schema import check_model_options

from conftest import encode_with_garbage_in_padding

M, L, D = 9, 5, 16


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def net(**kw) -> DiffuRec:
    torch.manual_seed(0)
    opts = dict(hidden=D, blocks=2, heads=2, dropout=0.0, emb_dropout=0.0, diffusion_steps=6, sample_steps=6)
    opts.update(kw)
    return build_backbone("diffurec", M, L, opts).eval()


SEQS = torch.tensor([[0, 0, 1, 2, 3], [4, 5, 6, 7, 8], [0, 0, 0, 0, 9]])


# ------------------------------------------------------------------------------------------ forward process

def test_truncated_linear_betas_by_hand():
    # t = 2: c = 500, start 0.05 + 0.01; the end 10 + 0.01 passes 1, so 0.5 + 0.01
    assert truncated_linear_betas(2).tolist() == pytest.approx([0.06, 0.51], abs=1e-15)
    # t = 32 (the authors'): c = 31.25, from 0.003125 + 0.01 to 0.625 + 0.01, evenly spaced
    betas = truncated_linear_betas(32)
    assert betas.dtype == torch.float64 and len(betas) == 32
    assert (betas[0].item(), betas[-1].item()) == pytest.approx((0.013125, 0.635), abs=1e-15)
    assert torch.allclose(betas.diff(), torch.full((31,), (0.635 - 0.013125) / 31, dtype=torch.float64))
    assert truncated_linear_betas(1).tolist() == pytest.approx([0.11])


def test_forward_noising_is_q_xt_given_x0_from_the_schedule():
    model = net(diffusion_steps=2, sample_steps=2)
    abar = [0.94, 0.94 * 0.49]                                  # cumulative products of 1 - [0.06, 0.51]
    assert model.abar.tolist() == pytest.approx(abar, abs=1e-12)
    x0 = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    t = torch.tensor([1, 0])
    mean = model.diffuse(x0, t, torch.zeros(2, 2))
    torch.testing.assert_close(mean, torch.tensor([[math.sqrt(abar[1]) * 1.0, -2.0 * math.sqrt(abar[1])],
                                                   [0.5 * math.sqrt(abar[0]), 3.0 * math.sqrt(abar[0])]]))
    spread = model.diffuse(x0, t, torch.ones(2, 2)) - mean
    torch.testing.assert_close(spread, torch.tensor([[math.sqrt(1 - abar[1])] * 2, [math.sqrt(1 - abar[0])] * 2]))
    # the draws of training: mean sqrt(abar_t) x0 and variance 1 - abar_t, per entry
    g = torch.Generator().manual_seed(0)
    many = torch.full((200_000,), 1.0)[:, None].repeat(1, 2) * torch.tensor([1.0, -2.0])
    draws = model.diffuse(many, torch.ones(200_000, dtype=torch.long), torch.randn(many.shape, generator=g))
    assert draws.mean(0).tolist() == pytest.approx([math.sqrt(abar[1]), -2 * math.sqrt(abar[1])], abs=0.01)
    assert draws.var(0).tolist() == pytest.approx([1 - abar[1]] * 2, abs=0.01)


def test_step_embedding_is_cosines_then_sines():
    emb = step_embedding(torch.tensor([0.0, 2.0]), 4)          # frequencies 1 and 1e-2
    torch.testing.assert_close(emb, torch.tensor([[1.0, 1.0, 0.0, 0.0],
                                                  [math.cos(2.0), math.cos(0.02), math.sin(2.0), math.sin(0.02)]]))
    assert step_embedding(torch.tensor([1.0]), 5).shape == (1, 5)


# ---------------------------------------------------------------------------------------------- rounding

def test_rounding_is_the_inner_product_with_the_item_embeddings():
    model = DiffuRec(3, 2, hidden=2, heads=1, blocks=1)
    with torch.no_grad():
        model.items.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    scores = model.item_scores(torch.tensor([[1.0, 2.0], [-1.0, 0.5]]))
    assert scores.dtype == torch.float32
    assert scores.tolist() == [[0.0, 1.0, 2.0, 3.0], [0.0, -1.0, 0.5, -0.5]]
    assert scores[:, 1:].argmax(1).tolist() == [2, 1]          # items 3 and 2


# ----------------------------------------------------------------------------------------- reverse chain

def direct_chain(model: DiffuRec, seqs: torch.Tensor) -> torch.Tensor:
    """DDPM's reverse loop over every step t = T-1..0, written with the textbook coefficients of the posterior
    q(x_{t-1} | x_t, x0_hat) and sigma_t^2 = beta_t, on the model's own seeded draws; x0_hat of the last pass."""
    betas = truncated_linear_betas(model.steps)
    abar = torch.cumprod(1 - betas, 0)
    b, d, steps = len(seqs), model.hidden, model.steps
    noise = model.sampler_noise(seqs, d * steps + steps * seqs.shape[1] * d)
    x, eps = noise[:, :d], noise[:, d:d * steps].reshape(b, -1, d)
    lams = model.delta + model.delta * noise[:, d * steps:].reshape(b, steps, seqs.shape[1], d)
    for k, t in enumerate(range(steps - 1, -1, -1)):
        x0_hat = model.approximate(seqs, x, torch.full((b,), t), lams[:, k])[:, -1]
        if t > 0:
            prev = abar[t - 1]
            coef1 = betas[t] * prev.sqrt() / (1 - abar[t])
            coef2 = (1 - prev) * (1 - betas[t]).sqrt() / (1 - abar[t])
            x = (coef1 * x0_hat + coef2 * x + betas[t].sqrt() * eps[:, k]).float()
    return x0_hat


def test_the_reverse_chain_is_ddpm_over_every_step_from_pure_noise():
    model = net(lambda_uncertainty=0.5)                        # a large delta: x_t matters
    assert model.reverse_steps.tolist() == [5, 4, 3, 2, 1, 0]
    seen = []
    real = model.approximate
    model.approximate = lambda s, x, t, lam: (seen.append((t.tolist(), x.clone())), real(s, x, t, lam))[1]
    with torch.no_grad():
        h = model.encode(SEQS)
        del model.approximate
        expected = direct_chain(model, SEQS)
    assert [t for t, _ in seen] == [[s] * 3 for s in (5, 4, 3, 2, 1, 0)]
    torch.testing.assert_close(seen[0][1], model.sampler_noise(SEQS, D * 6 + 6 * L * D)[:, :D])   # x_T ~ N(0, I)
    torch.testing.assert_close(h[:, -1], expected, rtol=1e-5, atol=1e-5)
    # respaced: 3 of the 6 steps, evenly spaced from T-1 to 0
    assert net(sample_steps=3).reverse_steps.tolist() == [5, 2, 0] and net(sample_steps=1).reverse_steps.tolist() == [5]


def test_the_reverse_chain_is_deterministic_for_a_seed_and_independent_of_the_batch():
    model = net(lambda_uncertainty=0.5, dropout=0.1, emb_dropout=0.3)
    other = net(lambda_uncertainty=0.5, dropout=0.1, emb_dropout=0.3, sample_seed=1)      # the same weights
    rng = torch.get_rng_state()
    with torch.no_grad():
        first, again = model.predict(SEQS)[0], model.predict(SEQS)[0]
        alone = model.predict(SEQS[1:2])[0]
        reordered = model.predict(SEQS.flip(0))[0]
        other_seed = other.predict(SEQS)[0]
    assert torch.equal(torch.get_rng_state(), rng)             # inference draws nothing from the global generator
    assert first.dtype == torch.float32 and torch.equal(first, again)
    torch.testing.assert_close(alone[0], first[1], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(reordered.flip(0), first, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(other_seed, first)


# --------------------------------------------------------------------------------------- shapes, padding

def test_shapes_and_the_next_item_readout():
    model = net()
    assert model.causal and model.config() == {"class": "DiffuRec", "num_items": M, "max_len": L, "hidden": D,
                                               "blocks": 2, "heads": 2, "diffusion_steps": 6, "positions": False}
    with torch.no_grad():
        h = model.encode(SEQS)
        scores, h_t, h_mean = model.predict(SEQS)
    assert h.shape == (3, L, D) and scores.shape == (3, M + 1) and h_t.shape == (3, D) and h_mean.shape == (3, D)
    torch.testing.assert_close(h_t, h[:, -1])
    torch.testing.assert_close(scores, model.item_scores(h[:, -1]))
    masked, target = model.masked_input(SEQS, torch.tensor([4, 2, 4]))
    assert masked.tolist()[1] == [0, 0, 0, 4, 5] and target.tolist() == [L - 1] * 3     # the prefix before the item
    windows = torch.cat([SEQS, torch.tensor([[4], [1], [2]])], 1)
    loss = model.train().training_loss(windows, torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert net(positions=True).config()["positions"] is True


@pytest.mark.parametrize("positions", [False, True])
def test_padding_is_never_attended_and_outputs_zero(positions):
    model = net(lambda_uncertainty=0.5, positions=positions)
    with torch.no_grad():
        ref = model.encode(SEQS)
    shim = SimpleNamespace(encoder=SimpleNamespace(blocks=model.blocks), encode=model.encode)
    noisy = encode_with_garbage_in_padding(shim, SEQS)
    real = SEQS != 0
    torch.testing.assert_close(noisy[real], ref[real])
    assert torch.all(noisy[~real] == 0) and torch.all(ref[~real] == 0)


def test_the_training_loss_is_cross_entropy_of_the_rounded_reconstruction():
    model = net(lambda_uncertainty=0.3).train()
    windows = torch.cat([SEQS, torch.tensor([[4], [1], [2]])], 1)
    loss = model.training_loss(windows, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)                       # the same draws, in the same order
    t = torch.randint(0, 6, (3,), generator=g)
    x0 = model.items.weight[windows[:, -1]]
    x_t = model.abar[t].float().sqrt()[:, None] * x0 + (1 - model.abar[t].float()).sqrt()[:, None] * torch.randn(
        x0.shape, generator=g)
    lam = 0.3 + 0.3 * torch.randn((3, L, D), generator=g)
    logits = model.approximate(windows[:, :-1], x_t, t, lam)[:, -1] @ model.items.weight[1:].T
    expected = -torch.log_softmax(logits.double(), 1)[torch.arange(3), windows[:, -1] - 1].mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


# ------------------------------------------------------------------------------------------ training

def test_one_epoch_through_train_backbone():
    from globaldiff.data.windows import evaluation_sets, sliding_windows
    from globaldiff.run.backbone import BackboneTraining, train_backbone
    from globaldiff.run.device import seed_everything

    rng = np.random.default_rng(0)
    train = [rng.integers(1, 13, size=12) for _ in range(16)]
    val, test = rng.integers(1, 13, size=16), rng.integers(1, 13, size=(16, 1))
    val_set, _ = evaluation_sets(train, val, test, 4)
    backbone = build_backbone("diffurec", 12, 4, {"hidden": 8, "blocks": 1, "heads": 2, "sample_steps": 4})
    cfg = BackboneTraining(epochs=1, batch_size=16, lr=1e-3, patience=1, exclude="window")
    rows = []
    state = train_backbone(backbone, sliding_windows(train, 5, 1), val_set, cfg, torch.device("cpu"),
                           seed_everything(0), rows.append)
    assert len(rows) == 1 and np.isfinite(rows[0]["loss"]) and 0.0 <= rows[0]["val_NDCG@10"] <= 1.0
    assert state.keys() == backbone.state_dict().keys() and "abar" not in state      # the schedule is no weight


def train_bytes(steps: int = 3, batch: int = 128) -> bytes:
    torch.manual_seed(0)
    model = build_backbone("diffurec", 200, 10, {"hidden": 16, "blocks": 2, "heads": 2}).train()
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


def test_training_is_bit_reproducible_with_two_threads():
    torch.set_num_threads(2)
    assert train_bytes() == train_bytes()


def test_imports_only_shared_backbone_modules():
    import ast
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "src/globaldiff/backbones/diffurec.py"
    imported = {node.module for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ImportFrom)}
    assert {m for m in imported if m.startswith("globaldiff.")} == {"globaldiff.backbones.base",
                                                                   "globaldiff.backbones.layers"}


# --------------------------------------------------------------------------------------- registry, params

def test_registered_with_a_params_entry_that_validates_and_not_in_the_study():
    import yaml
    from pathlib import Path

    from globaldiff.run.backbone import check_backbone_params, new_backbone

    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    assert REGISTRY["diffurec"] == "DiffuRec" and "diffurec" not in params["study"]["backbones"]
    check_backbone_params(params, "diffurec")
    model = new_backbone(params, "diffurec", 30)
    assert type(model) is DiffuRec and model.max_len == params["max_len"] == 10 and model.hidden == 64
    assert (model.steps, model.sample_steps) == (32, 8)
    train = params["backbones"]["diffurec"]["train"]
    assert (train["epochs"], train["patience"], train["batch_size"], train["lr"], train["stride"]) == (50, 5, 256, 0.001, 1)


@pytest.mark.parametrize("option,value,words", [
    ("emb_dropout", 1.0, "emb_dropout = 1.0: expected a value in [0.0, 1.0)"),
    ("dropout", -0.1, "dropout = -0.1: expected a value in [0.0, 1.0)"),
    ("diffusion_steps", 0, "diffusion_steps = 0: expected a value in [1, inf)"),
    ("sample_steps", 0, "sample_steps = 0: expected a value in [1, inf)"),
    ("lambda_uncertainty", -0.001, "lambda_uncertainty = -0.001: expected a value in [0.0, inf)"),
    ("sample_seed", -1, "sample_seed = -1: expected a value in [0, inf)"),
    ("sample_seed", 0.5, "sample_seed = 0.5: expected int (like the default 0)"),
    ("positions", "no", "positions = 'no': expected bool (like the default False)"),
    ("blocks", 0, "blocks = 0: expected a value in [1, inf)"),
    ("heads", 3, "heads = 3: expected a divisor of backbones.diffurec.model.hidden = 64"),
])
def test_params_ranges_are_refused_with_the_key(option, value, words):
    with pytest.raises(ConfigError, match=re.escape(f"params.yaml: backbones.diffurec.model.{words}")):
        check_model_options("diffurec", {"hidden": 64, option: value}, DiffuRec)


def test_params_validator_accepts_the_constructor_options():
    check_model_options("diffurec", {"hidden": 64, "blocks": 4, "heads": 4, "dropout": 0.1, "emb_dropout": 0.3,
                                     "positions": False, "diffusion_steps": 32, "sample_steps": 8,
                                     "lambda_uncertainty": 0.001, "sample_seed": 0}, DiffuRec)
    check_model_options("diffurec", {}, DiffuRec)             # every option has a default
    with pytest.raises(ConfigError, match="sample_step"):
        check_model_options("diffurec", {"sample_step": 8}, DiffuRec)


@pytest.mark.parametrize("bad", [{"sample_steps": 0}, {"sample_steps": 7, "diffusion_steps": 6},
                                 {"lambda_uncertainty": -1.0}, {"heads": 3}])
def test_bad_options(bad):
    with pytest.raises(ValueError):
        DiffuRec(M, L, hidden=8, **{"heads": 2, **bad})
