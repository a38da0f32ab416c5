"""The embedded Amazon Beauty 5-core (params `datasets.beauty-5core`): its pinned file, the library's preprocess
keeping it exactly as published (counts, ids, order), the download stage's copy, and its Table 1 row beside the
paper's Beauty. Preprocess only, no training: fast."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from pathlib import Path

import pytest
import yaml

from globaldiff import ConfigError
from globaldiff.ingest.download import download_dataset, resolve_source
from globaldiff.ingest.loaders import load
from globaldiff.ingest.preprocess import build, read_filters, write_processed
from globaldiff.data.sequences import read_split
from globaldiff.report.table import to_csv, to_latex, to_markdown
from globaldiff.report.table1 import OTHER, table1

REPO = Path(__file__).resolve().parents[1]
NAME = "beauty-5core"
FILE = REPO / "data/embedded/beauty-5core-sequences.tsv.gz"
CFG = yaml.safe_load((REPO / "params.yaml").read_text())["datasets"][NAME]
PUBLISHED = (22363, 12101, 198502)            # ../shared/data/beauty-5core/README.md, S3-Rec / ICLRec


@pytest.fixture(scope="module")
def processed():
    return build(NAME, load(NAME, CFG, REPO / "data/embedded"), read_filters(NAME, CFG))


def published_lines() -> list[tuple[int, list[int]]]:
    lines = gzip.decompress(FILE.read_bytes()).decode().splitlines()
    assert lines[0] == "user_id\titem_ids"
    return [(int(u), [int(i) for i in items.split()]) for u, items in (line.split("\t") for line in lines[1:])]


def test_the_file_is_the_pinned_one():
    assert CFG["loader"] == "beauty" and CFG["source"] == "embedded"
    assert CFG["sources"]["embedded"]["url"] == "file:data/embedded/beauty-5core-sequences.tsv.gz"
    assert hashlib.sha256(FILE.read_bytes()).hexdigest() == CFG["sources"]["embedded"]["sha256"]


def test_preprocess_keeps_the_published_5core(processed):
    stats = processed.stats
    assert (stats["users"], stats["items"], stats["interactions"]) == PUBLISHED
    assert round(stats["avg_len"], 2) == 8.88 and round(100 * stats["sparsity"], 2) == 99.93
    assert stats["duplicates"] == 0
    lines = published_lines()
    # same users, same items, same order: the raw ids are 1..N, so the item ids are the file's own
    assert processed.raw_users.tolist() == [u for u, _ in lines] == list(range(1, PUBLISHED[0] + 1))
    assert processed.raw_items.tolist() == list(range(1, PUBLISHED[1] + 1))
    assert [s.tolist() for s in processed.sequences] == [items for _, items in lines]
    assert min(map(len, processed.sequences)) == 5


def test_loo_only_because_users_with_five_items_cannot_hold_out_five():
    filters = read_filters(NAME, CFG)
    assert filters.splits == ("loo",) and (filters.min_uc, filters.min_sc, filters.iterate) == (5, 5, True)
    with pytest.raises(ConfigError, match=r"min_uc: expected >= 6 \(split longterm"):
        read_filters(NAME, {**CFG, "splits": ["loo", "longterm"]})
    assert sum(len(items) == 5 for _, items in published_lines()) == 7162   # the users min_uc 6 would drop


def test_written_split_holds_every_user(processed, tmp_path):
    write_processed(tmp_path, processed)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["items.tsv", "loo.tsv", "stats.json", "users.tsv"]
    split = read_split(tmp_path, "loo")
    assert len(split.users) == PUBLISHED[0] and split.num_items == PUBLISHED[1]
    last = [s[-1] for s in processed.sequences]
    assert split.test[:, 0].tolist() == last and split.val.tolist() == [s[-2] for s in processed.sequences]
    assert min(map(len, split.train)) == 3


def test_download_copies_the_embedded_file_and_the_loader_reads_it_by_its_url_name(tmp_path):
    fetched = download_dataset(resolve_source(CFG, NAME), tmp_path / NAME, root=REPO,
                               checksums_path=tmp_path / "checksums.json", progress=False)
    assert not fetched.record and (tmp_path / NAME / FILE.name).read_bytes() == FILE.read_bytes()
    renamed = {**CFG, "sources": {"embedded": {"url": "file:data/embedded/other.tsv.gz", "sha256": None}}}
    (tmp_path / "mini").mkdir()
    (tmp_path / "mini/other.tsv.gz").write_bytes(gzip.compress(b"user_id\titem_ids\n2\t5 3\n1\t4\n"))
    df = load("mini", renamed, tmp_path / "mini")
    assert df[["user", "item"]].values.tolist() == [[2, 5], [2, 3], [1, 4]] and df["rating"].isna().all()
    with pytest.raises(ConfigError, match="embedded Beauty 5-core"):
        load("mini", {**renamed, "sources": {}}, tmp_path / "mini")     # no URL: the default file name
    with pytest.raises(ConfigError, match="ratings_Beauty.csv"):
        load("mini", {**CFG, "source": "snap"}, tmp_path / "mini")      # the paper's raw file, not the 5-core


def test_table1_shows_the_5core_beside_the_papers_beauty():
    stats = {"ml-1m": {"users": 5180, "items": 3526, "interactions": 562800, "avg_len": 108.65, "sparsity": 0.9692},
             NAME: {"users": 22363, "items": 12101, "interactions": 198502, "avg_len": 8.876, "sparsity": 0.99927}}
    paper = {"ml-1m": {"users": 5180, "items": 3526, "interactions": 562800, "avg_len": 108.6, "sparsity": 0.969},
             "beauty": {"users": 1308, "items": 9708, "interactions": 24742, "avg_len": 18.9, "sparsity": 0.998},
             "kuairec": {"users": 7176, "items": 10596, "interactions": 8459425, "avg_len": 1178.8, "sparsity": 0.888}}
    table = table1(stats, paper)
    md = to_markdown(table)
    assert md.splitlines()[6:11] == [
        "| beauty | ours | not run | not run | not run | not run | not run |",
        "| beauty | paper | 1,308 | 9,708 | 24,742 | 18.90 | 99.80% |",
        f"| beauty-5core | {OTHER} | 22,363 | 12,101 | 198,502 | 8.88 | 99.93% |",
        "| kuairec | ours | not run | not run | not run | not run | not run |",
        "| kuairec | paper | 7,176 | 10,596 | 8,459,425 | 1178.80 | 88.80% |"]
    assert "beauty-5core (ours (another preprocessing), beside the paper's beauty): " in md
    assert "not the paper's split" in md
    rows = list(csv.DictReader(io.StringIO(to_csv(table))))
    assert [(r["dataset"], r["source"]) for r in rows][2:5] == [("beauty", "ours"), ("beauty", "paper"),
                                                                 (NAME, OTHER)]
    assert int(rows[4]["users"]) == 22363 and float(rows[4]["sparsity"]) == 0.99927
    tex = to_latex(table).splitlines()
    rule = [i for i, line in enumerate(tex) if line == r"\midrule"]
    at = next(i for i, line in enumerate(tex) if line.startswith("beauty-5core"))
    assert tex[at - 1].startswith("beauty & paper") and at - 1 not in rule and tex[at + 1] == r"\midrule"
    # without the 5-core's stats, Table 1 is what it was: no extra row, no note
    plain = table1({"ml-1m": stats["ml-1m"]}, paper)
    assert NAME not in to_markdown(plain) and len(plain.rows) == 6 and len(plain.footnotes) == 1
