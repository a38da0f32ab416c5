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


PRECISIONS = ("auto", "fp32", "bf16")


def pick_precision(requested: str | None, device: torch.device) -> torch.dtype | None:
    """Autocast dtype of the training forward passes, chosen at run time like the device (never a DVC param).

    'auto' (default): bfloat16 on a CUDA card that supports it, else None (float32); 'fp32': None; 'bf16'.
    Only training is autocast: every score that is ranked (validation, inference) stays float32, because
    bfloat16's 8-bit mantissa would tie thousands of items and move the metrics.
    """
    if requested in (None, "", "auto"):
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    if requested not in PRECISIONS:
        raise ValueError(f"precision {requested!r}: expected one of {PRECISIONS}")
    return torch.bfloat16 if requested == "bf16" else None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed precision for a training step when `dtype` is set (bfloat16 needs no loss scaling)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
