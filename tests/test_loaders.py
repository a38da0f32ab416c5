"""Loaders: each publisher's format -> (user, item, rating, timestamp) in row order; malformed files -> ConfigError."""

from __future__ import annotations

import gzip
import string
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from globaldiff import ConfigError
from globaldiff.ingest.loaders import LOADERS, load

KUAI_HEADER = "user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio\n"


def put(folder: Path, rel: str, text: str | bytes) -> Path:
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(gzip.compress(text) if rel.endswith(".gz") else text)
    return path


def check_contract(df: pd.DataFrame) -> None:
    assert list(df.columns) == ["user", "item", "rating", "timestamp"]
    assert df["rating"].dtype == np.float64 and df["timestamp"].dtype == np.int64
    assert (df.index == np.arange(len(df))).all()


def test_ml100k(tmp_path):
    put(tmp_path, "ml-100k/u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    df = load("ml-100k", {"loader": "ml-100k"}, tmp_path)
    check_contract(df)
    assert df["user"].tolist() == [196, 186] and df["item"].tolist() == [242, 302]
    assert df["rating"].tolist() == [3.0, 3.0] and df["timestamp"].tolist() == [881250949, 891717742]
    assert df["user"].dtype == np.int64


def test_ml1m_grouplens(tmp_path):
    put(tmp_path, "ml-1m/ratings.dat", "1::1193::5::978300760\n2::661::3::978302109\n")
    df = load("ml-1m", {"loader": "ml-1m", "source": "grouplens"}, tmp_path)
    check_contract(df)
    assert df.values.tolist() == [[1, 1193, 5.0, 978300760], [2, 661, 3.0, 978302109]]


def test_ml1m_embedded_order_index(tmp_path):
    put(tmp_path, "ml-1m-sequences.tsv.gz", "user_id\titem_ids\n7\t30 10 20\n3\t5\n")
    df = load("ml-1m", {"loader": "ml-1m", "source": "embedded"}, tmp_path)
    check_contract(df)
    assert df["user"].tolist() == [7, 7, 7, 3] and df["item"].tolist() == [30, 10, 20, 5]
    assert df["timestamp"].tolist() == [0, 1, 2, 0] and df["rating"].isna().all()


def test_beauty_keeps_string_ids(tmp_path):
    put(tmp_path, "ratings_Beauty.csv", "A39HTATAQ9V7YF,0205616461,5.0,1369699200\nB1,0558925278,4.0,1355443200\n")
    df = load("beauty", {"loader": "beauty"}, tmp_path)
    check_contract(df)
    assert df["item"].tolist() == ["0205616461", "0558925278"]  # leading zeros survive
    assert df["rating"].tolist() == [5.0, 4.0]


def test_kuairec_positive_rule_and_millis(tmp_path):
    put(tmp_path, "KuaiRec 2.0/data/big_matrix.csv", KUAI_HEADER
        + "14,148,4381,6067,2020-07-05 05:27:48.378,20200705,1593898068.378,0.722\n"
        + "14,183,11635,6100,2020-07-05 05:28:00.057,20200705,1593898080.057,1.907\n"
        + "19,3649,22422,10867,,,,2.063\n"          # no time: dropped
        + "19,9598,200,10000,2020-07-05 05:29:09.479,20200705,1593898149.479,0.02\n")
    cfg = {"loader": "kuairec", "positive": {"column": "watch_ratio", "min": 0.5}}
    df = load("kuairec", cfg, tmp_path)
    check_contract(df)
    assert df["item"].tolist() == [148, 183] and df["timestamp"].tolist() == [1593898068378, 1593898080057]
    # Line numbers survive the dropped rows: line 4 has no time, line 5 a bad ratio.
    put(tmp_path, "KuaiRec 2.0/data/big_matrix.csv", KUAI_HEADER + "1,2,3,4,t,d,1.5,0.1\n" * 2
        + "1,2,3,4,,,,0.1\n" + "1,2,3,4,t,d,1.5,x\n")
    with pytest.raises(ConfigError, match=r"big_matrix.csv: line 5: column 'watch_ratio': expected a number, got 'x'"):
        load("kuairec", cfg, tmp_path)
    with pytest.raises(ConfigError, match=r"datasets.kuairec.positive"):
        load("kuairec", {"loader": "kuairec", "positive": {"column": "nope", "min": 1}}, tmp_path)


def test_custom_by_name_and_by_position(tmp_path):
    put(tmp_path, "x.tsv", "ts\tuid\tiid\n5\tu1\t10\n3\tu1\t11\n")
    cfg = {"loader": "custom", "source": "a", "sources": {"a": {"url": "file:data/x.tsv"}}, "sep": "\t", "header": True,
           "columns": {"user": "uid", "item": "iid", "rating": None, "timestamp": "ts"}}
    df = load("custom", cfg, tmp_path)
    check_contract(df)
    assert df["user"].tolist() == ["u1", "u1"] and df["item"].tolist() == [10, 11]
    assert df["timestamp"].tolist() == [5, 3] and df["rating"].isna().all()
    put(tmp_path, "y.csv", "1,9,4.5\n1,8,2\n2,9,1\n")
    cfg = {"loader": "custom", "source": "a", "sources": {"a": {"url": "https://h/y.csv"}}, "sep": ",", "header": False,
           "columns": {"user": 0, "item": 1, "rating": 2, "timestamp": None}}
    df = load("custom", cfg, tmp_path)
    assert df["timestamp"].tolist() == [0, 1, 0] and df["rating"].tolist() == [4.5, 2.0, 1.0]


# --- bad input ------------------------------------------------------------------------------------------

def test_unknown_loader(tmp_path):
    with pytest.raises(ConfigError, match=r"datasets.x.loader: unknown loader 'nope'; known: beauty, custom, kuairec"):
        load("x", {"loader": "nope"}, tmp_path)


def test_missing_raw_file(tmp_path):
    with pytest.raises(ConfigError, match=r"ml-100k/u.data: file not found .* run the download stage"):
        load("ml-100k", {"loader": "ml-100k"}, tmp_path)


def test_wrong_separator(tmp_path):
    path = put(tmp_path, "ml-100k/u.data", "196,242,3,881250949\n")
    with pytest.raises(ConfigError, match=rf"{path}: line 1: found 1 field\(s\) separated by '\\t'.*wrong separator"):
        load("ml-100k", {"loader": "ml-100k"}, tmp_path)


def test_missing_column(tmp_path):
    path = put(tmp_path, "KuaiRec 2.0/data/big_matrix.csv", "user_id,video_id,timestamp\n1,2,3\n")
    with pytest.raises(ConfigError, match=rf"{path}: line 1: expected header user_id,video_id,play_duration"):
        load("kuairec", {"loader": "kuairec", "positive": {"column": "watch_ratio", "min": 0}}, tmp_path)
    put(tmp_path, "c.csv", "user_id;item_id\n1;2\n")
    cfg = {"loader": "custom", "file": "c.csv", "sep": ",", "header": True,
           "columns": {"user": "user_id", "item": "item_id"}}
    with pytest.raises(ConfigError, match=r"c.csv: line 1: no column 'user_id' \(datasets.custom.columns.user\)"):
        load("custom", cfg, tmp_path)


def test_short_row(tmp_path):
    put(tmp_path, "ml-100k/u.data", "1\t2\t3\t4\n5\t6\n")
    with pytest.raises(ConfigError, match=r"u.data: line 2: column 'rating': expected a number, got an empty field"):
        load("ml-100k", {"loader": "ml-100k"}, tmp_path)


def test_non_numeric_rating_and_timestamp(tmp_path):
    put(tmp_path, "ml-100k/u.data", "1\t2\t3\t4\n1\t3\tfive\t5\n")
    with pytest.raises(ConfigError, match=r"u.data: line 2: column 'rating': expected a number, got 'five'"):
        load("ml-100k", {"loader": "ml-100k"}, tmp_path)
    put(tmp_path, "ratings_Beauty.csv", "a,b,5.0,1369699200\na,c,4.0,2013-01-01\n")
    with pytest.raises(ConfigError, match=r"ratings_Beauty.csv: line 2: column 'timestamp': expected an integer"):
        load("beauty", {"loader": "beauty"}, tmp_path)


def test_embedded_bad_header_and_item(tmp_path):
    put(tmp_path, "ml-1m-sequences.tsv.gz", "user\titems\n1\t2 3\n")
    with pytest.raises(ConfigError, match=r"line 1: expected header 'user_id<TAB>item_ids'"):
        load("ml-1m", {"loader": "ml-1m"}, tmp_path)
    put(tmp_path, "ml-1m-sequences.tsv.gz", "user_id\titem_ids\n1\t2 3\n2\t4 x5\n")
    with pytest.raises(ConfigError, match=r"line 3: column 'item_ids': expected integer ids, got 'x5'"):
        load("ml-1m", {"loader": "ml-1m"}, tmp_path)
    put(tmp_path, "ml-1m-sequences.tsv.gz", "user_id\titem_ids\n1\t2 3\textra\n")  # no silent index column
    with pytest.raises(ConfigError, match=r"line 2: expected 2 fields, got 3"):
        load("ml-1m", {"loader": "ml-1m"}, tmp_path)


# --- properties: malformed rows give a valid frame or a ConfigError, never a library traceback -----------

cell = st.text(alphabet=string.digits + "ab.,-\t :\"\r", max_size=6)
rows = st.lists(st.lists(cell, min_size=0, max_size=6), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows, sep=st.sampled_from(["\t", ","]))
def test_property_ml100k(tmp_path, rows, sep):
    put(tmp_path, "ml-100k/u.data", "\n".join(sep.join(r) for r in rows) + "\n")
    try:
        df = load("ml-100k", {"loader": "ml-100k"}, tmp_path)
    except ConfigError as e:
        assert "u.data" in str(e)
    else:
        check_contract(df)
        assert len(df) == len(rows)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows, header=st.booleans())
def test_property_custom(tmp_path, rows, header):
    put(tmp_path, "i.csv", "\n".join(",".join(r) for r in rows) + "\n")
    columns = {"user": "u", "item": "i", "rating": "r", "timestamp": None} if header else \
        {"user": 0, "item": 1, "rating": None, "timestamp": 2}
    cfg = {"loader": "custom", "file": "i.csv", "sep": ",", "header": header, "columns": columns}
    try:
        df = load("custom", cfg, tmp_path)
    except ConfigError as e:
        assert "i.csv" in str(e) or "datasets.custom" in str(e)
    else:
        check_contract(df)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.text(alphabet=string.digits + " \tx", max_size=12), min_size=0, max_size=6))
def test_property_embedded(tmp_path, lines):
    put(tmp_path, "ml-1m-sequences.tsv.gz", "user_id\titem_ids\n" + "\n".join(lines) + "\n")
    try:
        df = load("ml-1m", {"loader": "ml-1m"}, tmp_path)
    except ConfigError as e:
        assert "ml-1m-sequences.tsv.gz" in str(e)
    else:
        check_contract(df)
        assert df["item"].dtype == np.int64


def test_registry_names():
    assert sorted(LOADERS) == ["beauty", "custom", "kuairec", "ml-100k", "ml-1m"]
