"""Model inputs cut from the split: training windows, each user's last window, the validation/test sets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def last_windows(histories: list[np.ndarray], length: int) -> torch.Tensor:
    """The last `length` items of each history, right-aligned with 0 padding: [N, length]."""
    out = np.zeros((len(histories), length), dtype=np.int64)
    for row, items in enumerate(histories):
        tail = items[-length:]
        if len(tail):
            out[row, length - len(tail):] = tail
    return torch.from_numpy(out)


def sliding_windows(histories: list[np.ndarray], length: int, stride: int) -> torch.Tensor:
    """Windows of `length` consecutive items ending every `stride` items from each sequence's end
    (the first may be left-padded): [W, length]. stride 1 = every window. Rows go sequence by sequence, each
    sequence's windows from its end backwards; one gather from a view of all sequences, each behind
    length - 1 zeros."""
    seqs = [np.asarray(items, dtype=np.int64) for items in histories]
    pad = np.zeros(length - 1, dtype=np.int64)
    flat = np.concatenate([pad] + [part for items in seqs for part in (items, pad)])
    starts = np.cumsum([0] + [len(items) + length - 1 for items in seqs])[:-1]     # each sequence's first item
    # the window ending after item `end` of a sequence (1-based) starts end - length items before it
    rows = np.concatenate([start + np.arange(len(items), 1, -stride) - length
                           for start, items in zip(starts + length - 1, seqs)] + [np.zeros(0, dtype=np.int64)])
    windows = np.lib.stride_tricks.sliding_window_view(flat, length)[rows.astype(np.int64)]
    return torch.from_numpy(np.ascontiguousarray(windows))


@dataclass
class EvalSet:
    """Users' input windows [N, L], the items to predict [N], and the full histories (for eval.exclude 'history')."""

    windows: torch.Tensor
    targets: torch.Tensor
    histories: list[np.ndarray] | None = None


def evaluation_sets(train: list[np.ndarray], val: np.ndarray, test: np.ndarray, length: int) -> tuple[EvalSet, EvalSet]:
    """Validation: history = train, target = val. Test: history = train + val, target = test[:, 0]."""
    val_t = torch.as_tensor(np.asarray(val), dtype=torch.long)
    test_t = torch.as_tensor(np.asarray(test).reshape(len(train), -1)[:, 0], dtype=torch.long)
    with_val = [np.append(items, v) for items, v in zip(train, np.asarray(val))]
    return (EvalSet(last_windows(train, length), val_t, train),
            EvalSet(last_windows(with_val, length), test_t, with_val))
