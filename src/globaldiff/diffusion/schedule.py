"""Gaussian diffusion over item vectors (paper Section 3.4, equations 4-7). No network lives here.

Steps are indexed t = 0..T-1 as in DiffRec: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, and the reverse
process goes from x_{T-1} down to x_0. The schedule is DiffRec's linear-variance one: the betas are those of a
1 - abar_t linear from noise_scale * noise_min to noise_scale * noise_max, then beta_0 is fixed to a tiny
value (DiffRec's `beta_fixed`), which rescales every abar_t: with the defaults 1 - abar runs from 1e-5 to
4.5e-3 and sqrt(1 - abar_{T-1}) = 0.067, the authors' figure.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from globaldiff import ConfigError


@dataclass
class DiffusionSchedule:
    betas: torch.Tensor  # [T], float64

    @classmethod
    def linear_variance(cls, steps: int, noise_scale: float = 0.1, noise_min: float = 5e-3,
                        noise_max: float = 5e-2, beta_first: float = 1e-5) -> "DiffusionSchedule":
        """DiffRec 'linear-var' schedule with T = `steps`; 1 - abar rises linearly, beta_0 = beta_first."""
        if steps < 1:
            raise ConfigError(f"params.yaml: T = {steps}: expected an integer >= 1")
        if not 0 < noise_min < noise_max or noise_scale <= 0:
            raise ConfigError("params.yaml: diffusion: expected 0 < noise_min < noise_max and noise_scale > 0")
        variance = torch.linspace(noise_scale * noise_min, noise_scale * noise_max, steps, dtype=torch.float64)
        abar = 1.0 - variance
        betas = torch.empty(steps, dtype=torch.float64)
        betas[0] = variance[0]
        betas[1:] = (1.0 - abar[1:] / abar[:-1]).clamp(max=0.999)
        if beta_first is not None:
            betas[0] = beta_first
        return cls(betas)

    @property
    def steps(self) -> int:
        return len(self.betas)

    @property
    def alphas(self) -> torch.Tensor:
        return 1.0 - self.betas

    @property
    def alpha_bars(self) -> torch.Tensor:
        return torch.cumprod(self.alphas, dim=0)

    @property
    def alpha_bars_prev(self) -> torch.Tensor:
        return torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bars[:-1]])


def _at(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.to(like.device)[t].to(like.dtype)[:, None]


def q_sample(schedule: DiffusionSchedule, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Eq. (4): x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, per row t."""
    abar = schedule.alpha_bars
    return _at(abar.sqrt(), t, x0) * x0 + _at((1.0 - abar).sqrt(), t, x0) * noise


def posterior_coefficients(schedule: DiffusionSchedule) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. (5)'s two coefficients per step t, float64 [T] each: (sqrt(a_t)(1 - abar_{t-1})/(1 - abar_t),
    sqrt(abar_{t-1}) b_t/(1 - abar_t)), the weights of x_t and of x_0 in mu_{t-1}."""
    abar, abar_prev = schedule.alpha_bars, schedule.alpha_bars_prev
    coef_xt = schedule.alphas.sqrt() * (1.0 - abar_prev) / (1.0 - abar)
    coef_x0 = abar_prev.sqrt() * schedule.betas / (1.0 - abar)
    return coef_xt, coef_x0


def posterior_mean(schedule: DiffusionSchedule, x_t: torch.Tensor, x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Eq. (5): mu_{t-1}(x_t, x_0) = sqrt(a_t)(1 - abar_{t-1})/(1 - abar_t) x_t + sqrt(abar_{t-1}) b_t/(1 - abar_t) x_0.

    Eq. (6) is the same formula with x_0 replaced by the denoiser's estimate f_theta(x_t, t, c).
    At t = 0 (abar_{-1} = 1) it returns x_0.
    """
    coef_xt, coef_x0 = posterior_coefficients(schedule)
    return _at(coef_xt, t, x_t) * x_t + _at(coef_x0, t, x_t) * x0


def posterior_std(schedule: DiffusionSchedule, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Standard deviation of q(x_{t-1} | x_t, x_0); zero at t = 0."""
    var = schedule.betas * (1.0 - schedule.alpha_bars_prev) / (1.0 - schedule.alpha_bars)
    return _at(var.clamp(min=0).sqrt(), t, like)


def diffusion_loss(prediction: torch.Tensor, x0: torch.Tensor, target_items: torch.Tensor, kind: str) -> torch.Tensor:
    """Eq. (7): mean squared error between f_theta(x_t, t, c) and x_0 ('mse', the paper), or the authors'
    cross-entropy of the prediction (as logits over item ids) against the masked item ('ce')."""
    if kind == "mse":
        return ((prediction - x0) ** 2).mean(dim=1).mean()
    if kind == "ce":
        logits = prediction.clone()
        logits[:, 0] = float("-inf")
        return F.cross_entropy(logits, target_items)
    raise ValueError(f"unknown diffusion loss {kind!r}: expected 'mse' or 'ce'")


@torch.no_grad()
def reverse(schedule: DiffusionSchedule, denoise, x_start: torch.Tensor, start_step: int,
            noise: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
    """Section 3.5: x^{T'} = x_start, forward to step T-1 (eq. 4 with the noise mean, i.e. a rescaling,
    unless `noise`), then the reverse chain of eq. (6) down to x_0. `denoise(x_t, t)` returns f_theta.
    `start_step` is T' in 1..T (T' = T: the chain starts at x_start itself)."""
    steps = schedule.steps
    if not 1 <= start_step <= steps:
        raise ConfigError(f"params.yaml: inference.start_step = {start_step}: expected 1 <= T' <= T = {steps}")
    x = x_start
    if start_step < steps:
        abar = schedule.alpha_bars
        ratio = abar[steps - 1] / abar[start_step - 1]
        x = ratio.sqrt().to(x.dtype) * x
        if noise:
            eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x + (1.0 - ratio).sqrt().to(x.dtype) * eps
    for step in range(steps - 1, -1, -1):
        t = torch.full((len(x),), step, device=x.device, dtype=torch.long)
        mean = posterior_mean(schedule, x, denoise(x, t), t)
        if noise and step > 0:
            eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            mean = mean + posterior_std(schedule, t, x) * eps
        x = mean
    return x


def _start(schedule: DiffusionSchedule, start_step: int) -> float:
    """The factor that takes x^{T'} to step T-1 without noise (eq. 4's mean): sqrt(abar_{T-1} / abar_{T'-1})."""
    steps = schedule.steps
    if not 1 <= start_step <= steps:
        raise ConfigError(f"params.yaml: inference.start_step = {start_step}: expected 1 <= T' <= T = {steps}")
    abar = schedule.alpha_bars
    return float((abar[steps - 1] / abar[start_step - 1]).sqrt()) if start_step < steps else 1.0


def embedded_weights(embed: torch.nn.Linear, head: torch.nn.Linear) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(W_e W_h, W_e b_h): how the head's output re-enters the embedding space (reverse_embedded); computed once
    per set of weights, not per batch of users."""
    with torch.no_grad():
        return embed.weight @ head.weight, (embed.weight @ head.bias if head.bias is not None else None)


@torch.no_grad()
def reverse_embedded(schedule: DiffusionSchedule, core, embed: torch.nn.Linear, head: torch.nn.Linear,
                     x_start: torch.Tensor, start_step: int,
                     weights: tuple[torch.Tensor, torch.Tensor | None] | None = None) -> torch.Tensor:
    """The noiseless reverse chain of `reverse` (Section 3.5, eq. 6) for a denoiser whose first and last layers are
    linear, f(x_t, t) = head(core(embed(x_t), t)), computed in embed's output space: the same x_0, in exact
    arithmetic, at a fraction of the cost.

    Every x_t is x_start times a scalar plus the head applied to a weighted sum of the core's outputs, because eq.
    (6) mixes x_t and f linearly: x_{t-1} = c_t x_t + d_t (W_h z_t + b_h) with z_t = core(W_e x_t + b_e, t). So the
    chain carries e_t = W_e x_t ([B, H], not [B, M+1]): e_{t-1} = c_t e_t + d_t ((W_e W_h) z_t + W_e b_h), and only
    x_0 = alpha x_start + W_h g + beta b_h is built at the end, with g = sum_t w_t z_t. Two products with the
    [M+1, H] weights in all instead of two per step; float rounding differs from `reverse` (tested: ~1e-6).
    `weights`: embedded_weights(embed, head), when the caller runs many batches with the same weights."""
    factor = _start(schedule, start_step)
    x = x_start * factor if factor != 1.0 else x_start
    coef_xt, coef_x0 = (c.tolist() for c in posterior_coefficients(schedule))
    w_e, b_e = embed.weight, embed.bias
    w_h, b_h = head.weight, head.bias
    e = x @ w_e.T                                          # W_e x_t (the bias enters the core's input only)
    mixed, mixed_bias = weights if weights is not None else embedded_weights(embed, head)   # [H_in, H_out], [H_in]
    alpha, beta = 1.0, 0.0                                 # x_t = alpha x_start + W_h g + beta b_h
    g = None
    for step in range(schedule.steps - 1, -1, -1):
        t = torch.full((len(x),), step, device=x.device, dtype=torch.long)
        z = core(e + b_e if b_e is not None else e, t)
        c, d = coef_xt[step], coef_x0[step]
        e = c * e + d * (z @ mixed.T + (mixed_bias if mixed_bias is not None else 0.0))
        g = d * z if g is None else c * g + d * z
        alpha, beta = c * alpha, c * beta + d
    out = g @ w_h.T
    if b_h is not None:
        out = out + beta * b_h
    return out + alpha * x if alpha != 0.0 else out
