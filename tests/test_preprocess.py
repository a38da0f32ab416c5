"""preprocess.py and sequences.py: each filter and split on hand-made frames, Table 1's ML-1M counts, the
on-disk contract (write/read round trip, corrupt files), and the preprocess stage's errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, leftovers, write_params
from globaldiff import ConfigError
from globaldiff.ingest.loaders import load
from globaldiff.ingest.preprocess import Filters, build, filter_counts, implicit, order, read_filters, write_processed
from globaldiff.data.sequences import read_split, split_sequences

ML_FILTERS = {"min_rating": 4, "min_uc": 20, "min_sc": 1, "iterate": False}


def frame(rows, rating=True) -> pd.DataFrame:
    """(user, item[, rating], timestamp) tuples -> a loader-shaped frame (index = row order)."""
    cols = ["user", "item", "rating", "timestamp"] if rating else ["user", "item", "timestamp"]
    df = pd.DataFrame(rows, columns=cols)
    if not rating:
        df.insert(2, "rating", np.nan)
    return df.astype({"rating": np.float64, "timestamp": np.int64})


def pairs(df: pd.DataFrame) -> list[tuple]:
    return list(zip(df["user"], df["item"]))


# --- each step on hand-made frames --------------------------------------------------------------------

def test_implicit_threshold_and_no_ratings():
    df = frame([(1, "a", 5, 0), (1, "b", 3, 1), (2, "a", 4, 2), (2, "c", 3.5, 3)])
    assert pairs(implicit(df, 4)) == [(1, "a"), (2, "a")]            # >= keeps the 4
    no_ratings = frame([(1, "a", 0), (1, "b", 1)], rating=False)
    assert implicit(no_ratings, 4) is no_ratings                     # skipped, not "drop everything"


def test_filter_once_vs_iterate():
    # Items: X 2, Y 3, W 2, Z 1. min_sc=2 drops Z -> u2 keeps 1 row; min_uc=2 drops u2 and u3.
    # Once: u1 X Y W, u4 X Y (5 rows). W now has 1 row, so iterating also drops W: u1 X Y, u4 X Y.
    df = frame([("u1", "X", 1, 0), ("u1", "Y", 1, 1), ("u1", "W", 1, 2), ("u2", "Y", 1, 3), ("u2", "Z", 1, 4),
                ("u3", "W", 1, 5), ("u4", "X", 1, 6), ("u4", "Y", 1, 7)])
    once = filter_counts(df, min_sc=2, min_uc=2)
    assert pairs(once) == [("u1", "X"), ("u1", "Y"), ("u1", "W"), ("u4", "X"), ("u4", "Y")]
    assert list(once.index) == [0, 1, 2, 6, 7]                       # raw row order survives
    assert pairs(filter_counts(df, 2, 2, iterate=True)) == [("u1", "X"), ("u1", "Y"), ("u4", "X"), ("u4", "Y")]


def test_items_counted_before_users():
    # min_sc counts rows before the user filter: item a has 2 rows (u1, u2), u2 is dropped afterwards
    # but a stays because the filter runs once, in that order.
    df = frame([("u1", "a", 1, 0), ("u1", "b", 1, 1), ("u1", "c", 1, 2), ("u2", "a", 1, 3)])
    assert pairs(filter_counts(df, 2, 2)) == []                      # b, c have 1 row -> u1 has 1 -> dropped
    assert pairs(filter_counts(df, 1, 2)) == [("u1", "a"), ("u1", "b"), ("u1", "c")]


def test_order_ties_by_row_order_and_dense_ids():
    df = frame([(10, "b", 1, 5), (2, "a", 1, 7), (10, "a", 1, 5), (10, "c", 1, 1), (2, "c", 1, 3)])
    assert list(order(df).index) == [4, 1, 3, 0, 2]                  # user 2 first; tie (rows 0, 2) keeps row order
    p = build("t", df, Filters(0, 1, 1, False, ("loo",)))
    assert p.raw_users.tolist() == [2, 10]                           # users 0..N-1 by sorted raw id
    assert p.raw_items.tolist() == ["a", "b", "c"]                   # items 1..M by sorted raw id
    assert [s.tolist() for s in p.sequences] == [[3, 1], [3, 2, 1]]
    assert p.stats == {"dataset": "t", "users": 2, "items": 3, "interactions": 5, "avg_len": 2.5,
                       "sparsity": 1 - 5 / 6, "duplicates": 0}


def test_splits():
    seqs = [np.arange(1, 8), np.array([9, 8, 7, 6, 5, 4])]
    loo = split_sequences(seqs, "loo", 9)
    assert [t.tolist() for t in loo.train] == [[1, 2, 3, 4, 5], [9, 8, 7, 6]]
    assert loo.val.tolist() == [6, 5] and loo.test.tolist() == [[7], [4]]
    lt = split_sequences(seqs, "longterm", 9)
    assert [t.tolist() for t in lt.train] == [[1, 2], [9]]
    assert lt.val.tolist() == [3, 8] and lt.test.tolist() == [[4, 5, 6, 7], [7, 6, 5, 4]]
    assert lt.users.dtype == np.int64 and lt.test.shape == (2, 4)
    with pytest.raises(ConfigError, match="user 0 has 5 items, needs at least 6"):
        split_sequences([np.arange(1, 6)], "longterm", 9)


def test_read_filters():
    assert read_filters("d", ML_FILTERS) == Filters(4.0, 20, 1, False, ("loo", "longterm"))
    with pytest.raises(ConfigError, match=r"datasets.d.min_uc: expected >= 6 \(split longterm"):
        read_filters("d", {**ML_FILTERS, "min_uc": 5})
    assert read_filters("d", {**ML_FILTERS, "min_uc": 3, "splits": ["loo"]}).min_uc == 3
    with pytest.raises(ConfigError, match=r"datasets.d.min_uc: expected >= 3"):
        read_filters("d", {**ML_FILTERS, "min_uc": 2, "splits": ["loo"]})
    with pytest.raises(ConfigError, match=r"datasets.d.iterate: expected true or false"):
        read_filters("d", {**ML_FILTERS, "iterate": "yes"})
    with pytest.raises(ConfigError, match=r"datasets.d.min_sc: expected an integer >= 1"):
        read_filters("d", {**ML_FILTERS, "min_sc": 0})


# --- Table 1 -----------------------------------------------------------------------------------------------

def test_embedded_ml1m_matches_table1():
    df = load("ml-1m", {"loader": "ml-1m", "source": "embedded"}, REPO / "data" / "embedded")
    stats = build("ml-1m", df, read_filters("ml-1m", ML_FILTERS)).stats
    assert (stats["users"], stats["items"], stats["interactions"]) == (5180, 3526, 562800)
    # Table 1 prints 108.60 and 96.90%; the same counts give 108.65 and 96.92% (the paper's rounding slip).
    assert round(stats["avg_len"], 2) == 108.65 and round(100 * stats["sparsity"], 2) == 96.92


def test_ml100k_counts(ml100k_udata, tmp_path):
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "u.data").write_bytes(ml100k_udata)
    stats = build("ml-100k", load("ml-100k", {"loader": "ml-100k"}, tmp_path), read_filters("ml-100k", ML_FILTERS)).stats
    assert (stats["users"], stats["items"], stats["interactions"]) == (703, 1439, 52244)


# --- files on disk --------------------------------------------------------------------------------------------

@pytest.fixture
def written(tmp_path):
    df = frame([(u, i, 5, t) for u in (5, 6) for t, i in enumerate([7, 3, 9, 4, 8, 1, 2])])
    out = tmp_path / "out"
    write_processed(out, build("t", df, read_filters("t", {"min_uc": 6, "min_sc": 1})))
    return out


def test_write_read_round_trip(written):
    assert sorted(p.name for p in written.iterdir()) == ["items.tsv", "longterm.tsv", "loo.tsv", "stats.json",
                                                         "users.tsv"]
    assert (written / "users.tsv").read_text() == "user\traw_user\n0\t5\n1\t6\n"
    assert (written / "items.tsv").read_text().splitlines()[:3] == ["item\traw_item", "1\t1", "2\t2"]
    assert (written / "loo.tsv").read_text().splitlines()[:2] == ["user\ttrain\tval\ttest", "0\t5 3 7 4 6\t1\t2"]
    assert json.loads((written / "stats.json").read_text())["items"] == 7
    loo, lt = read_split(written, "loo"), read_split(written, "longterm")
    assert loo.num_items == 7 and loo.users.tolist() == [0, 1] and loo.test.tolist() == [[2], [2]]
    assert lt.train[0].tolist() == [5, 3] and lt.val.tolist() == [7, 7] and lt.test[1].tolist() == [4, 6, 1, 2]
    assert all(t.dtype == np.int64 for t in lt.train) and lt.test.dtype == np.int64


@pytest.mark.parametrize("edit, words", [
    (lambda t: t.replace("0\t5 3 7 4 6\t1\t2", "0\t5 3 7 4 6\t1\t2 6"), r"loo.tsv: line 2: field test: expected 1 item"),
    (lambda t: t.replace("\t1\t2\n", "\t1\n", 1), r"loo.tsv: line 2: expected 4 tab-separated fields, got 3"),
    (lambda t: t.replace("0\t5 3", "0\t5 99", 1), r"loo.tsv: line 2: field train: item ids must lie in 1..7"),
    (lambda t: t.replace("\n1\t", "\n7\t", 1), r"loo.tsv: line 3: expected user 1"),
    (lambda t: t.replace("user\ttrain", "user\tseq"), r"loo.tsv: line 1: expected header"),
])
def test_read_split_errors(written, edit, words):
    path = written / "loo.tsv"
    path.write_text(edit(path.read_text()))
    with pytest.raises(ConfigError, match=words):
        read_split(written, "loo")


def test_read_split_missing(written):
    (written / "loo.tsv").unlink()
    with pytest.raises(ConfigError, match=r"loo.tsv: file not found"):
        read_split(written, "loo")
    with pytest.raises(ConfigError, match=r"unknown split 'x'"):
        read_split(written, "x")


# --- the preprocess stage ------------------------------------------------------------------------------------

def test_stage_empty_after_filtering(workdir, run_stage):
    (workdir / "data/raw/d/ml-100k").mkdir(parents=True)
    (workdir / "data/raw/d/ml-100k/u.data").write_text("1\t2\t5\t3\n1\t3\t5\t4\n")
    write_params(workdir, {"d": {"loader": "ml-100k", **ML_FILTERS}})
    rc, _, err = run_stage("preprocess", "d")
    assert rc == 1 and err.strip() == ("error: params.yaml: datasets.d: no interactions left after filtering "
                                       "(min_rating=4, min_sc=1, min_uc=20, iterate=false; 2 raw rows)")
    assert leftovers(workdir / "data/processed") == []


def test_stage_bad_raw_file_and_unknown_dataset(workdir, run_stage):
    (workdir / "data/raw/d/ml-100k").mkdir(parents=True)
    (workdir / "data/raw/d/ml-100k/u.data").write_text("1 2 5 3\n")
    write_params(workdir, {"d": {"loader": "ml-100k", **ML_FILTERS}})
    (workdir / "data/processed/d").mkdir(parents=True)  # stale output of an earlier run: removed on error
    rc, _, err = run_stage("preprocess", "d")
    assert rc == 1 and "u.data: line 1: found 1 field(s)" in err and "Traceback" not in err
    assert leftovers(workdir / "data/processed") == []
    rc, _, err = run_stage("preprocess", "e")
    assert rc == 1 and err.strip() == "error: params.yaml: datasets.e: unknown dataset 'e'; known: d"


def test_stage_writes_contract(workdir, run_stage):
    shutil.copytree(REPO / "data/embedded", workdir / "data/raw/ml-1m")
    write_params(workdir, {"ml-1m": {"loader": "ml-1m", "source": "embedded", **ML_FILTERS}})
    rc, out, err = run_stage("preprocess", "ml-1m")
    assert rc == 0, err
    assert json.loads(out)["interactions"] == 562800
    assert sorted(p.name for p in (workdir / "data/processed/ml-1m").iterdir()) == [
        "items.tsv", "longterm.tsv", "loo.tsv", "stats.json", "users.tsv"]
    assert leftovers(workdir / "data/processed") == ["ml-1m"] + [f"ml-1m/{n}" for n in  # no temporaries
                                                                 ("items.tsv", "longterm.tsv", "loo.tsv", "stats.json",
                                                                  "users.tsv")]
