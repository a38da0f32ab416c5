"""Synthetic interaction data at KuaiRec scale, for timing the pipeline where the real data is not at hand.

Model (a bipartite Chung-Lu graph): item i has a Zipf popularity weight b_i = rank_i^-exponent (ranks shuffled
over the item ids), user u an activity a_u, and u interacts with i with probability min(1, a_u b_i),
independently. a_u is solved per user so that the expected length is L_u, drawn log-normal around the mean
length (at least `min_length`); so the item counts follow the Zipf law, flattened at the head where the most
active users already hold every popular item (as in KuaiRec, whose head videos most users watched). Each user's
items are in a random order. No user-item pair repeats.

    from synthetic import KUAIREC, synthetic_split
    split = synthetic_split(KUAIREC, seed=0)                       # globaldiff Split (loo), ~3 s
    split = synthetic_split(KUAIREC.scaled_items(10), seed=0)      # the 10x catalogue (105,960 items)

Command line: `python benchmarks/synthetic.py [--items-scale 10] [--csv out.csv]` prints the figures and
optionally writes a `custom`-loader CSV (user_id,item_id,rating,timestamp) for a full pipeline run.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from globaldiff.data.sequences import Split, split_sequences  # noqa: E402


@dataclass(frozen=True)
class Shape:
    users: int
    items: int
    mean_length: float          # interactions per user on average
    sigma: float = 0.8          # of log(length): log-normal spread of the users' lengths
    min_length: int = 20        # the KuaiRec filter min_uc
    exponent: float = 1.1       # Zipf exponent of item popularity

    def scaled_items(self, factor: int) -> "Shape":
        """The same users and interactions over a `factor` times larger catalogue."""
        return replace(self, items=self.items * factor)


# Table 1 of the paper: 7,176 users, 10,596 items, 8,459,425 interactions (1,178.8 per user).
KUAIREC = Shape(users=7176, items=10596, mean_length=8_459_425 / 7176)


def _zipf_weights(items: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """b over item ids 1..items (index 0 unused, 0): rank^-exponent, ranks in a random order over the ids."""
    b = np.zeros(items + 1)
    b[1 + rng.permutation(items)] = np.arange(1, items + 1, dtype=np.float64) ** -exponent
    return b


def _expected_lengths(activity: np.ndarray, b_desc: np.ndarray, suffix: np.ndarray) -> np.ndarray:
    """sum_i min(1, a b_i) for every a: items with b_i >= 1/a count 1, the rest a b_i (b sorted descending)."""
    saturated = np.searchsorted(-b_desc, -1.0 / activity, side="right")      # #items with b_i >= 1/a
    return saturated + activity * suffix[saturated]


def _activities(lengths: np.ndarray, b: np.ndarray, iterations: int = 60) -> np.ndarray:
    """a_u with sum_i min(1, a_u b_i) = L_u, by bisection in log space (vectorised over users)."""
    b_desc = np.sort(b[1:])[::-1]
    suffix = np.append(np.cumsum(b_desc[::-1])[::-1], 0.0)                    # suffix[t] = sum_{i >= t} b_desc
    low = np.full(len(lengths), np.log(lengths / b_desc.sum()))               # no saturation: a lower bound
    high = np.full(len(lengths), np.log(1.0 / b_desc[-1]) + 1.0)              # every item saturated
    for _ in range(iterations):
        mid = (low + high) / 2
        below = _expected_lengths(np.exp(mid), b_desc, suffix) < lengths
        low = np.where(below, mid, low)
        high = np.where(below, high, mid)
    return np.exp((low + high) / 2)


def synthetic_sequences(shape: Shape = KUAIREC, seed: int = 0, block: int = 1 << 24) -> list[np.ndarray]:
    """Per-user item sequences (int64 ids 1..items, no repeats, random order), seedable and vectorised."""
    rng = np.random.default_rng(seed)
    mu = np.log(shape.mean_length) - shape.sigma ** 2 / 2                       # log-normal with this mean
    target = np.exp(rng.normal(mu, shape.sigma, shape.users))
    target = np.clip(target, shape.min_length + 3 * np.sqrt(shape.min_length), 0.9 * shape.items)
    target *= shape.mean_length * shape.users / target.sum()                    # hit the total on average
    target = np.clip(target, shape.min_length + 3 * np.sqrt(shape.min_length), 0.9 * shape.items)
    b = _zipf_weights(shape.items, shape.exponent, rng)
    activity = _activities(target, b)
    b32 = b.astype(np.float32)
    rows_per_block = max(1, block // (shape.items + 1))
    users, items = [], []
    for start in range(0, shape.users, rows_per_block):
        a = activity[start:start + rows_per_block].astype(np.float32)
        hit = rng.random((len(a), shape.items + 1), dtype=np.float32) < np.minimum(1.0, a[:, None] * b32[None, :])
        u, i = np.nonzero(hit)
        users.append(u + start)
        items.append(i)
    users_a, items_a = np.concatenate(users), np.concatenate(items).astype(np.int64)
    order = np.lexsort((rng.random(len(users_a)), users_a))                     # by user, random within a user
    users_a, items_a = users_a[order], items_a[order]
    bounds = np.searchsorted(users_a, np.arange(shape.users + 1))
    sequences = np.split(items_a, bounds[1:-1])
    short = [u for u, s in enumerate(sequences) if len(s) < shape.min_length]
    for u in short:                                                              # rare: top up from the same law
        missing = np.setdiff1d(np.arange(1, shape.items + 1), sequences[u])
        p = b[missing] / b[missing].sum()
        extra = rng.choice(missing, shape.min_length - len(sequences[u]), replace=False, p=p)
        sequences[u] = np.concatenate([sequences[u], extra])
    return sequences


def synthetic_split(shape: Shape = KUAIREC, seed: int = 0, name: str = "loo") -> Split:
    """The synthetic sequences cut like the real data (loo: train[:-2] / val / test), as a globaldiff Split."""
    return split_sequences(synthetic_sequences(shape, seed), name, shape.items)


def write_csv(sequences: list[np.ndarray], path: str | Path) -> None:
    """A `custom`-loader CSV: user_id,item_id,rating,timestamp (rating 5; timestamps give each user's order)."""
    lengths = np.array([len(s) for s in sequences])
    users = np.repeat(np.arange(1, len(sequences) + 1), lengths)
    items = np.concatenate(sequences)
    stamps = 1_600_000_000 + np.arange(len(items)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    table = np.column_stack([users, items, np.full(len(items), 5), stamps])
    with open(path, "w", newline="\n") as f:
        f.write("user_id,item_id,rating,timestamp\n")
        np.savetxt(f, table, fmt="%d", delimiter=",")


def describe(sequences: list[np.ndarray], items: int) -> str:
    lengths = np.array([len(s) for s in sequences])
    counts = np.bincount(np.concatenate(sequences), minlength=items + 1)[1:]
    ranked = np.sort(counts)[::-1]
    top = ranked[: max(1, items // 100)].sum() / counts.sum()
    return (f"{len(sequences):,} users, {items:,} items ({(counts > 0).sum():,} with interactions), "
            f"{lengths.sum():,} interactions, length mean {lengths.mean():.1f} / median {np.median(lengths):.0f} "
            f"/ min {lengths.min()} / max {lengths.max()}, density {lengths.sum() / len(sequences) / items:.2%}, "
            f"top 1% of items hold {top:.1%} of interactions, item count max {ranked[0]:,} / median "
            f"{int(np.median(ranked)):,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items-scale", type=int, default=1, help="catalogue = 10,596 x this")
    parser.add_argument("--users", type=int, default=KUAIREC.users)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--csv", type=Path, help="write a custom-loader CSV here")
    args = parser.parse_args()
    shape = replace(KUAIREC.scaled_items(args.items_scale), users=args.users)
    start = time.perf_counter()
    sequences = synthetic_sequences(shape, args.seed)
    print(f"generated in {time.perf_counter() - start:.1f} s: {describe(sequences, shape.items)}")
    if args.csv:
        start = time.perf_counter()
        write_csv(sequences, args.csv)
        print(f"wrote {args.csv} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
