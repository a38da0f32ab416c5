"""Per-user splits on disk: the plain-text files preprocess writes and the model code reads.

data/processed/<dataset>/<name>.tsv (name: loo or longterm), header `user<TAB>train<TAB>val<TAB>test`,
one line per user in user order (0..N-1); item lists are space-separated dense ids in 1..M
(val: one item; test: one item for loo, four for longterm). M comes from stats.json beside it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from globaldiff import ConfigError
from globaldiff.io import atomic_path, read_json

HEADER = "user\ttrain\tval\ttest"
TEST_LENGTH = {"loo": 1, "longterm": 4}   # items in `test`; val is always the one item before them


@dataclass
class Split:
    """One split of one dataset. Item ids are dense (1..num_items; 0 = padding, num_items+1 = [MASK])."""

    users: np.ndarray          # int64 [N], 0..N-1
    train: list[np.ndarray]    # N int64 arrays, chronological
    val: np.ndarray            # int64 [N]
    test: np.ndarray           # int64 [N, P], P = TEST_LENGTH[name], chronological
    num_items: int             # M


def _check_name(name: str) -> int:
    if name not in TEST_LENGTH:
        raise ConfigError(f"unknown split {name!r}; known: {', '.join(TEST_LENGTH)}")
    return TEST_LENGTH[name]


def split_sequences(sequences: list[np.ndarray], name: str, num_items: int) -> Split:
    """Cut chronological per-user sequences: loo train[:-2]/val[-2]/test[-1]; longterm train[:-5]/val[-5]/test[-4:]."""
    p = _check_name(name)
    held = p + 1
    short = [u for u, s in enumerate(sequences) if len(s) < held + 1]
    if short:
        raise ConfigError(f"split {name}: user {short[0]} has {len(sequences[short[0]])} items, "
                          f"needs at least {held + 1} (raise min_uc)")
    seqs = [np.asarray(s, dtype=np.int64) for s in sequences]
    return Split(
        users=np.arange(len(seqs), dtype=np.int64),
        train=[s[:-held] for s in seqs],
        val=np.array([s[-held] for s in seqs], dtype=np.int64),
        test=np.array([s[-p:] for s in seqs], dtype=np.int64).reshape(len(seqs), p),
        num_items=int(num_items),
    )


def write_split(path: str | os.PathLike, split: Split) -> None:
    """Write `split` as the TSV described in the module docstring (atomically)."""
    def ids(a) -> str:
        return " ".join(map(str, a.tolist()))

    with atomic_path(path) as tmp, open(tmp, "w", newline="\n") as f:
        f.write(HEADER + "\n")
        for u, train, val, test in zip(split.users.tolist(), split.train, split.val.tolist(), split.test):
            f.write(f"{u}\t{ids(train)}\t{val}\t{ids(test)}\n")


def _items(path: Path, line: int, field: str, text: str, num_items: int, count: int | None) -> np.ndarray:
    """Parse one space-separated item list, checking the count and the id range 1..num_items."""
    tokens = text.split(" ") if text else []
    if not all(t.isdigit() for t in tokens):
        raise ConfigError(f"{path}: line {line}: field {field}: expected space-separated integer item ids")
    items = np.array([int(t) for t in tokens], dtype=np.int64)
    if count is not None and len(items) != count:
        raise ConfigError(f"{path}: line {line}: field {field}: expected {count} item(s), got {len(items)}")
    if count is None and len(items) == 0:
        raise ConfigError(f"{path}: line {line}: field {field}: expected at least one item")
    if len(items) and (items.min() < 1 or items.max() > num_items):
        raise ConfigError(f"{path}: line {line}: field {field}: item ids must lie in 1..{num_items}")
    return items


def read_split(processed_dir: str | os.PathLike, name: str) -> Split:
    """Read `<processed_dir>/<name>.tsv` (num_items and the user count from stats.json), checking every line."""
    p = _check_name(name)
    processed_dir = Path(processed_dir)
    stats_path = processed_dir / "stats.json"
    stats = read_json(stats_path)
    if not isinstance(stats, dict) or not all(isinstance(stats.get(k), int) for k in ("users", "items")):
        raise ConfigError(f"{stats_path}: expected integer 'users' and 'items'")
    path = processed_dir / f"{name}.tsv"
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found; run the preprocess stage") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read ({e})") from None
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or lines[0] != HEADER:
        raise ConfigError(f"{path}: line 1: expected header {HEADER!r}")
    train, val, test = [], [], []
    for i, text in enumerate(lines[1:]):
        line = i + 2
        fields = text.split("\t")
        if len(fields) != 4:
            raise ConfigError(f"{path}: line {line}: expected 4 tab-separated fields, got {len(fields)}")
        if fields[0] != str(i):
            raise ConfigError(f"{path}: line {line}: expected user {i} (users 0..N-1 in order), got {fields[0]!r}")
        train.append(_items(path, line, "train", fields[1], stats["items"], None))
        val.append(_items(path, line, "val", fields[2], stats["items"], 1)[0])
        test.append(_items(path, line, "test", fields[3], stats["items"], p))
    if len(train) != stats["users"]:
        raise ConfigError(f"{path}: {len(train)} users, but {stats_path} says {stats['users']}")
    return Split(users=np.arange(len(train), dtype=np.int64), train=train, val=np.array(val, dtype=np.int64),
                 test=np.array(test, dtype=np.int64).reshape(len(train), p), num_items=stats["items"])
