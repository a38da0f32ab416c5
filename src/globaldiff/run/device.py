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
