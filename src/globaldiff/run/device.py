"""Run-time choices that are never DVC params: the seed's generators, the device, the autocast context."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch generator for the run's own sampling."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def pick_device(requested: str | None = None) -> torch.device:
    """'auto' (default) takes CUDA when present. Chosen at run time, never a DVC param."""
    if requested in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of the training steps for params `precision` ('fp32': None, 'bf16': bfloat16).

    Precision is part of the recipe (a param), never picked from the device, so one DVC cache key never holds
    results of two precisions. Only training steps are autocast: every score that is ranked (validation,
    inference) stays float32, because bfloat16's 8-bit mantissa would tie thousands of items.
    """
    if precision == "fp32":
        return None
    if precision != "bf16":
        raise ValueError(f"precision {precision!r}: expected 'fp32' or 'bf16'")
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise RuntimeError(f"params precision 'bf16': this CUDA device ({torch.cuda.get_device_name(device)}) has no "
                           f"bfloat16 support; -S precision=fp32 (a different recipe, cached separately)")
    return torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed precision for a training step when `dtype` is set (bfloat16 needs no loss scaling)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def device_generator(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """The generator for draws made on `device`: the run's own generator on the CPU (the same stream as ever),
    elsewhere a generator on that device seeded from one draw of the run's generator (deterministic for a
    seed, never the device's global state)."""
    if device.type == "cpu":
        return generator
    seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator))
    return torch.Generator(device=device).manual_seed(seed)


_ALLOCATOR_SET = False


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed blocks for reuse instead of returning them to the kernel (Linux only).

    The [B, M+1] score and gradient matrices (tens of MB) are above malloc's mmap threshold, so by default each
    is a fresh mmap whose pages fault in one by one on first touch and are unmapped when freed: every training
    step and ranking chunk paid that again (e.g. 12 of the 30 ms of the output layer's forward product). Raising
    the mmap and trim thresholds makes such blocks come from, and return to, the heap. Numerics are unchanged.
    Returns whether the setting was applied (once per process; a no-op elsewhere than glibc)."""
    global _ALLOCATOR_SET
    if _ALLOCATOR_SET:
        return True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, 1 << 30) == 1 and libc.mallopt(m_trim_threshold, (1 << 31) - 1) == 1
    except (OSError, AttributeError):
        return False
    _ALLOCATOR_SET = ok
    return ok


def adam(params, lr: float, weight_decay: float, device: torch.device) -> torch.optim.Adam:
    """The training loops' Adam: torch's fused kernel where it has one (CPU, CUDA): the same update rule in one
    pass over each parameter (the denoiser's step: 2.7 against 8.4 ms on one CPU thread)."""
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=torch.device(device).type in ("cpu", "cuda"))
