"""Interactions -> filtered, ordered, re-indexed per-user sequences, their splits and Table 1's statistics.

Steps (spec/method.md "Data"), in this order:
0. duplicates (`duplicates`): a row equal to an earlier one in every column the file has (user, item, rating if
   any, timestamp if any) is dropped (`drop_exact`, the default), kept (`keep`) or an error (`refuse`); the
   count found goes to stats.json either way;
1. implicit feedback: keep rating >= min_rating (skipped when the loader has no ratings);
2. filter once: items with >= min_sc rows, then users with >= min_uc rows (`iterate: true` repeats both
   until nothing changes: a k-core);
3. order each user's items by timestamp, ties broken by the raw file's row order (a stable, deterministic sort);
4. ids: users 0..N-1 by sorted raw id, items 1..M by sorted raw id (0 = padding, M+1 = [MASK]);
5. splits `loo` and `longterm` (see sequences.py). Every kept user has >= min_uc items, so min_uc is checked
   against the longest split asked for (3 for loo, 6 for longterm) instead of dropping users silently.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from globaldiff import ConfigError
from globaldiff.config.schema import CHOICES
from globaldiff.io import atomic_path, write_json
from globaldiff.data.sequences import TEST_LENGTH, split_sequences, write_split

MIN_LENGTH = {name: p + 2 for name, p in TEST_LENGTH.items()}  # test + val + at least one training item
DUPLICATES = CHOICES["datasets.*.duplicates"]


@dataclass(frozen=True)
class Filters:
    """The validated filter params of one dataset."""

    min_rating: float
    min_uc: int
    min_sc: int
    iterate: bool
    splits: tuple[str, ...]
    duplicates: str = DUPLICATES[0]  # drop_exact

    def describe(self) -> str:
        return (f"min_rating={self.min_rating:g}, min_sc={self.min_sc}, min_uc={self.min_uc}, "
                f"iterate={str(self.iterate).lower()}")


@dataclass
class Processed:
    """A preprocessed dataset: raw ids of the dense ids, chronological sequences, statistics."""

    dataset: str
    raw_users: np.ndarray          # raw_users[u] = raw id of user u
    raw_items: np.ndarray          # raw_items[i - 1] = raw id of item i
    sequences: list[np.ndarray]    # dense item ids of user u, chronological
    filters: Filters
    duplicates: int = 0            # rows of the raw file that repeat an earlier row (dropped unless `keep`)

    @property
    def stats(self) -> dict:
        """Table 1's columns: users, items, interactions, average length, sparsity."""
        users, items = len(self.raw_users), len(self.raw_items)
        interactions = int(sum(len(s) for s in self.sequences))
        return {"dataset": self.dataset, "users": users, "items": items, "interactions": interactions,
                "avg_len": interactions / users, "sparsity": 1.0 - interactions / (users * items),
                "duplicates": self.duplicates}


def read_filters(name: str, cfg: dict) -> Filters:
    """Validate `datasets.<name>`'s min_rating, min_uc, min_sc, iterate, splits (default both) and duplicates."""
    key = f"params.yaml: datasets.{name}"

    def integer(field: str, low: int) -> int:
        v = cfg.get(field)
        if not isinstance(v, int) or isinstance(v, bool) or v < low:
            raise ConfigError(f"{key}.{field}: expected an integer >= {low}, got {v!r}")
        return v

    min_rating = cfg.get("min_rating", 0)
    if not isinstance(min_rating, (int, float)) or isinstance(min_rating, bool):
        raise ConfigError(f"{key}.min_rating: expected a number, got {min_rating!r}")
    iterate = cfg.get("iterate", False)
    if not isinstance(iterate, bool):
        raise ConfigError(f"{key}.iterate: expected true or false, got {iterate!r}")
    splits = cfg.get("splits", list(TEST_LENGTH))
    if not isinstance(splits, list) or not splits or any(s not in TEST_LENGTH for s in splits):
        raise ConfigError(f"{key}.splits: expected a non-empty list of {', '.join(TEST_LENGTH)}, got {splits!r}")
    need = max(MIN_LENGTH[s] for s in splits)
    min_uc = cfg.get("min_uc")
    if isinstance(min_uc, int) and not isinstance(min_uc, bool) and min_uc < need:
        longest = max(splits, key=MIN_LENGTH.get)
        raise ConfigError(f"{key}.min_uc: expected >= {need} (split {longest} holds out {need - 1} items "
                          f"and needs one to train on), got {min_uc}")
    duplicates = cfg.get("duplicates", DUPLICATES[0])
    if duplicates not in DUPLICATES:
        raise ConfigError(f"{key}.duplicates: expected one of {', '.join(DUPLICATES)}, got {duplicates!r}")
    return Filters(float(min_rating), integer("min_uc", need), integer("min_sc", 1), iterate, tuple(splits),
                   duplicates)


def drop_duplicates(name: str, df: pd.DataFrame, mode: str) -> tuple[pd.DataFrame, int]:
    """(the frame after `duplicates: mode`, the number of rows equal to an earlier row in every column the file
    gave: user, item, rating (NaN equals NaN: a file without ratings) and the timestamp, unless the loader made
    it up from the row order, `attrs["timed"]` False)."""
    columns = ["user", "item", "rating"] + (["timestamp"] if df.attrs.get("timed", True) else [])
    dup = df.duplicated(subset=columns, keep="first").to_numpy()
    found = int(dup.sum())
    if found and mode == "refuse":
        row = {c: df[c].iloc[int(np.flatnonzero(dup)[0])] for c in columns}  # per column: no dtype upcast
        first = ", ".join(f"{c} {v}" for c, v in row.items() if not (c == "rating" and pd.isna(v)))
        raise ConfigError(f"params.yaml: datasets.{name}.duplicates = 'refuse': data/raw/{name} has {found} "
                          f"duplicate row(s) (first: {first}, as an earlier row); expected none, or duplicates: "
                          "drop_exact or keep")
    return (df[~dup] if mode == "drop_exact" else df), found


def implicit(df: pd.DataFrame, min_rating: float) -> pd.DataFrame:
    """Keep rows with rating >= min_rating; a frame without ratings (all NaN) is returned unchanged."""
    if df["rating"].isna().all():
        return df
    return df[df["rating"] >= min_rating]


def filter_counts(df: pd.DataFrame, min_sc: int, min_uc: int, iterate: bool = False) -> pd.DataFrame:
    """Items with >= min_sc rows, then users with >= min_uc rows; once, or until stable when `iterate`."""
    while True:
        before = len(df)
        df = df[df.groupby("item")["item"].transform("size") >= min_sc]
        df = df[df.groupby("user")["user"].transform("size") >= min_uc]
        if not iterate or len(df) == before:
            return df


def order(df: pd.DataFrame) -> pd.DataFrame:
    """Sort by user, then timestamp, then the raw file's row order (the frame's index)."""
    keys = (df.index.to_numpy(), df["timestamp"].to_numpy(), pd.factorize(df["user"], sort=True)[0])
    return df.iloc[np.lexsort(keys)]


def build(name: str, df: pd.DataFrame, filters: Filters) -> Processed:
    """Run steps 0-4 of the module docstring on a loader's frame (index = raw row order)."""
    df, duplicates = drop_duplicates(name, df, filters.duplicates)
    kept = filter_counts(implicit(df, filters.min_rating), filters.min_sc, filters.min_uc, filters.iterate)
    if kept.empty:
        raise ConfigError(f"params.yaml: datasets.{name}: no interactions left after filtering "
                          f"({filters.describe()}; {len(df)} raw rows)")
    kept = order(kept)
    user_codes, raw_users = pd.factorize(kept["user"], sort=True)
    item_codes, raw_items = pd.factorize(kept["item"], sort=True)
    items = item_codes.astype(np.int64) + 1                       # 0 is padding
    bounds = np.flatnonzero(np.diff(user_codes)) + 1              # rows are grouped by user after order()
    sequences = np.split(items, bounds)
    return Processed(name, np.asarray(raw_users), np.asarray(raw_items), sequences, filters, duplicates)


def write_processed(out_dir: str | os.PathLike, processed: Processed) -> None:
    """Write stats.json, users.tsv, items.tsv and one <split>.tsv per split into `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "stats.json", processed.stats)
    for file, header, raw, first in (("users.tsv", "user\traw_user", processed.raw_users, 0),
                                     ("items.tsv", "item\traw_item", processed.raw_items, 1)):
        with atomic_path(out_dir / file) as tmp, open(tmp, "w", newline="\n") as f:
            f.write(header + "\n")
            f.writelines(f"{i}\t{r}\n" for i, r in enumerate(raw.tolist(), start=first))
    for split in processed.filters.splits:
        write_split(out_dir / f"{split}.tsv",
                    split_sequences(processed.sequences, split, len(processed.raw_items)))
