"""DiffuRec (Li, Sun and Li, "DiffuRec: A Diffusion Model for Sequential Recommendation", ACM TOIS 2023).

The next item is generated as a vector by a diffusion model over item embeddings, conditioned on the history:
- forward (training): x_0 = e_target, the target's embedding, diffused to step s ~ U{0..t-1} by
  q(x_s | x_0) = N(sqrt(abar_s) x_0, (1 - abar_s) I) (`diffuse`), on the authors' truncated linear schedule
  (`truncated_linear_betas`: DDPM's 1e-4..0.02 rescaled to t steps, plus 0.01);
- approximator: each history item e_i (embedding dropout, LayerNorm) becomes z_i = e_i + lambda_i * (x_s + d_s),
  d_s an MLP of the sinusoidal embedding of s (rescaled to 0..1000), lambda_i ~ N(delta, delta) per entry: the
  target, noised, is spread over the history as uncertainty; a bidirectional transformer over z reads
  x0_hat at the last position (dropout, LayerNorm);
- reverse (inference, `encode`): from x ~ N(0, I), each step predicts x0_hat and draws x_{s'} from the
  posterior q(x_{s'} | x_s, x0_hat) with the variance beta (the authors' choice); the last pass's states are h,
  h[:, -1] = x0_hat;
- rounding (`item_scores`): inner products of x0_hat with the item embeddings (a softmax ranks the same).
Loss: softmax cross-entropy over items 1..M of the rounding scores of x0_hat, the authors' training loss
(their code's `loss_diffu_ce`, the one their trainer calls), a cross-entropy as the paper states. Not the
MSE to x_0 of image diffusion: with x_0 a learned embedding, it is lowered by shrinking the embeddings.

Choices (authors' code = the public WHUIR/DiffuRec):
- steps: the authors' code diffuses over t = 32 steps and its reverse chain visits every one of them (32
  approximator passes per user, no skipping). `sample_steps` < t respaces the chain (evenly spaced steps,
  betas recomputed from abar, as improved DDPM); sample_steps = t is the authors' chain.
- sampling noise is deterministic: row r's draws (x_t, the step noises, the lambdas) come from a generator
  seeded by (`sample_seed`, the ids of row r's window), so a user's scores depend neither on the batch nor
  its place in it, and repeat exactly. Training draws come from the training generator.
- lambda ~ N(delta, delta): the authors' code draws std delta; so here. Item embeddings start N(0, 1) as the
  authors' (unit scale like the noise: with a 0.02 start x_0 would be lost in it).
- no position embeddings by default (the authors' code comments them out; `positions: true` adds learned
  ones to e_i, before the dropout); the transformer is layers.Block (pre-norm,
  GELU feed-forward 4 x hidden, as theirs); padding is never a key (their mask is laid on the query axis, so
  real positions attend to padding there), padding rows output 0, and x_s is added at real positions only.
- the class is `causal` for the base class: it reads the history as is and predicts at L-1, and the guidance
  of a hidden item comes from the prefix before it; positions inside the window see each other.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from globaldiff.backbones.base import Backbone
from globaldiff.backbones.layers import Block, Dropout, attention_mask


def truncated_linear_betas(steps: int) -> torch.Tensor:
    """The authors' `trunc_lin` betas, float64 [steps], linear from c * 1e-4 + 0.01 to c * 0.02 + 0.01 with
    c = 1000 / steps (the end becomes c * 1e-3 + 0.01 where it would pass 1)."""
    scale = 1000.0 / steps
    start, end = scale * 1e-4 + 0.01, scale * 0.02 + 0.01
    if end > 1.0:
        end = scale * 1e-3 + 0.01
    return torch.linspace(start, end, steps, dtype=torch.float64)


def step_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding [B, dim] of (fractional) steps t [B]: cosines then sines, periods up to 10^4."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    return F.pad(emb, (0, dim - 2 * half))


class DiffuRec(Backbone):
    causal = True

    def __init__(self, num_items: int, max_len: int, hidden: int = 64, blocks: int = 4, heads: int = 4,
                 dropout: float = 0.1, emb_dropout: float = 0.3, diffusion_steps: int = 32, sample_steps: int = 32,
                 lambda_uncertainty: float = 0.001, sample_seed: int = 0, positions: bool = False):
        super().__init__(num_items, max_len, hidden)
        if not 1 <= sample_steps <= diffusion_steps:
            raise ValueError(f"DiffuRec sample_steps {sample_steps}: expected 1..diffusion_steps ({diffusion_steps})")
        if not lambda_uncertainty >= 0.0 or hidden % heads:
            raise ValueError(f"DiffuRec lambda_uncertainty {lambda_uncertainty} / heads {heads}: expected >= 0 / a "
                             f"divisor of hidden {hidden}")
        self.blocks_n, self.heads, self.steps, self.sample_steps = blocks, heads, diffusion_steps, sample_steps
        self.delta, self.sample_seed = lambda_uncertainty, sample_seed
        self.items = nn.Embedding(num_items + 1, hidden, padding_idx=0)        # N(0, 1), row 0 = 0
        self.positions = nn.Embedding(max_len, hidden) if positions else None
        self.emb_drop, self.emb_norm = Dropout(emb_dropout), nn.LayerNorm(hidden)
        self.step_mlp = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.SiLU(), nn.Linear(4 * hidden, hidden))
        self.blocks = nn.ModuleList(Block(hidden, heads, 4 * hidden, dropout, act="gelu") for _ in range(blocks))
        self.out_drop, self.out_norm = Dropout(dropout), nn.LayerNorm(hidden)
        abar = torch.cumprod(1.0 - truncated_linear_betas(diffusion_steps), 0)
        self.register_buffer("abar", abar, persistent=False)                  # float64: the schedule, not weights
        self.register_buffer("reverse_steps", torch.linspace(diffusion_steps - 1, 0, sample_steps).round().long(),
                             persistent=False)

    def diffuse(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise: a draw of q(x_t | x_0) for x0 [B, d], steps t [B]."""
        abar = self.abar[t].to(x0.dtype)[:, None]
        return abar.sqrt() * x0 + (1.0 - abar).sqrt() * noise

    def approximate(self, seqs: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        """States [B, L, d] of the approximator on windows [B, L] with x_t [B, d] at steps t [B] and lambdas [B, L, d]."""
        keep = (seqs != 0).unsqueeze(-1).to(x_t.dtype)
        guide = x_t + self.step_mlp(step_embedding(t * (1000.0 / self.steps), self.hidden))
        e = self.items(seqs)
        if self.positions is not None:
            e = e + self.positions.weight[-seqs.shape[1]:]
        x = (self.emb_norm(self.emb_drop(e)) + lam * guide[:, None]) * keep
        mask = attention_mask(seqs, causal=False)
        for block in self.blocks:
            x = block(x, mask) * keep
        return self.out_norm(self.out_drop(x)) * keep

    def sampler_noise(self, seqs: torch.Tensor, count: int) -> torch.Tensor:
        """[B, count] standard normals, row b from a generator seeded by (sample_seed, the ids of seqs[b])."""
        key = torch.zeros(len(seqs), dtype=torch.long, device=seqs.device)
        for col in seqs.T.long():
            key = (key * (self.num_items + 2) + col) % (2 ** 31 - 1)
        rows = [torch.randn(count, device=seqs.device,
                            generator=torch.Generator(seqs.device).manual_seed(k + self.sample_seed * 2 ** 31))
                for k in key.tolist()]
        return torch.stack(rows) if rows else torch.zeros(0, count, device=seqs.device)

    def encode(self, seqs: torch.Tensor) -> torch.Tensor:
        """The reverse chain from pure noise; the states of its last approximator pass (h[:, -1] = x0_hat)."""
        (b, length), d, steps = seqs.shape, self.hidden, self.reverse_steps.tolist()
        noise = self.sampler_noise(seqs, d * len(steps) + len(steps) * length * d).to(self.items.weight.dtype)
        x, eps = noise[:, :d], noise[:, d:d * len(steps)].reshape(b, -1, d)
        lams = self.delta + self.delta * noise[:, d * len(steps):].reshape(b, len(steps), length, d)
        for k, t in enumerate(steps):
            h = self.approximate(seqs, x, torch.full((b,), t, device=seqs.device), lams[:, k])
            if k + 1 < len(steps):
                now, then = self.abar[t], self.abar[steps[k + 1]]
                beta = 1.0 - now / then                                      # of the (respaced) step t -> t'
                mean = (then.sqrt() * beta * h[:, -1] + (1.0 - beta).sqrt() * (1.0 - then) * x) / (1.0 - now)
                x = (mean + beta.sqrt() * eps[:, k]).to(x.dtype)
        return h

    def item_scores(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.items.weight.T

    def training_loss(self, windows: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        seqs, target, dev = windows[:, :-1], windows[:, -1], windows.device
        x0 = self.items(target)
        t = torch.randint(0, self.steps, (len(windows),), generator=generator, device=dev)
        x_t = self.diffuse(x0, t, torch.randn(x0.shape, generator=generator, device=dev, dtype=x0.dtype))
        lam = self.delta + self.delta * torch.randn((*seqs.shape, self.hidden), generator=generator, device=dev,
                                                    dtype=x0.dtype)
        logits = self.item_scores(self.approximate(seqs, x_t, t, lam)[:, -1])
        logits[:, 0] = float("-inf")
        return F.cross_entropy(logits, target)

    def config(self) -> dict:
        return {**super().config(), "blocks": self.blocks_n, "heads": self.heads, "diffusion_steps": self.steps,
                "positions": self.positions is not None}
