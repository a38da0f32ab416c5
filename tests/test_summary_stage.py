"""pipeline/summary.py on a synthetic tree of its inputs (tests/summary_tree.py): every table and figure written,
and a fifth backbone and a second dataset in the study reach the tables and figures
without any edit to the report code."""

from __future__ import annotations

import copy
import csv

from conftest import load_script
from summary_tree import build_tree, committed_params, written_files

TABLES = ["ablations", "attribution", "fusion_sweep", "fusion_tuned", "headline", "longterm", "table1", "table2",
          "table3"]


def run_summary(root, monkeypatch) -> dict[str, bytes]:
    monkeypatch.chdir(root)
    load_script("summary").main()
    return written_files(root)


def test_the_committed_study_writes_every_table_and_figure(tmp_path, monkeypatch):
    params = committed_params()
    files = run_summary(build_tree(tmp_path, params), monkeypatch)
    backbone = params["ablations"]["backbone"]
    figures = [f"figure3_ml-1m_{params['longterm']['backbone']}", f"figure4_ml-1m_{backbone}", "figure5_ml-1m",
               f"figure6_ml-1m_{backbone}", "fusion_sweep_ml-1m"]
    assert sorted(files) == sorted([f"reports/figures/{f}.{e}" for f in figures for e in ("pdf", "png")]
                                   + [f"reports/tables/{t}.{e}" for t in TABLES for e in ("csv", "md", "tex")]
                                   + ["reports/results.json", "reports/results.md"])


def test_a_fifth_backbone_and_a_second_dataset_reach_every_study_table(tmp_path, monkeypatch):
    from globaldiff.backbones import REGISTRY

    monkeypatch.setitem(REGISTRY, "gru4rec", "GRU4Rec")
    params = committed_params()
    params["backbones"]["gru4rec"] = copy.deepcopy(params["backbones"]["sasrec"])
    params["study"] = {"datasets": ["ml-1m", "ml-100k"], "backbones": ["sasrec", "gru4rec"], "seeds": [0, 1]}
    params["ablations"]["run"], params["longterm"]["seeds"] = [], []
    files = run_summary(build_tree(tmp_path, params), monkeypatch)
    for dataset in ("ml-1m", "ml-100k"):
        assert f"reports/figures/figure5_{dataset}.png" in files and f"reports/figures/fusion_sweep_{dataset}.pdf" in files
    text = files["reports/tables/table2.md"].decode()
    for dataset in ("ml-1m", "ml-100k"):
        for model in ("SASRec", "GRU4Rec+GlobalDiff", "p-value (GRU4Rec)"):
            assert f"| {dataset} | {model} | ours | " in text and f"| {dataset} | {model} | ours |  | not run" not in text
    assert "| GRU4Rec | paper |" not in text and "| ml-1m | CBiT | ours |  | not run |" in text
    assert "ml-100k & GRU4Rec & ours & 2 & " in files["reports/tables/table2.tex"].decode()
    table2 = list(csv.DictReader(files["reports/tables/table2.csv"].decode().splitlines()))
    gru = {r["dataset"]: r["seeds"] for r in table2 if r["model"] == "GRU4Rec"}
    assert gru == {"ml-1m": "2", "ml-100k": "2", "kuairec": "", "beauty": ""}   # the paper's others: not run
    table1 = list(csv.DictReader(files["reports/tables/table1.csv"].decode().splitlines()))
    assert [r["source"] for r in table1 if r["dataset"] == "ml-100k"] == ["ours", "paper"]
    assert next(r for r in table1 if r["dataset"] == "ml-100k")["users"].isdigit()
    headline = list(csv.DictReader(files["reports/tables/headline.csv"].decode().splitlines()))
    assert [(r["dataset"], r["backbone"]) for r in headline] == [(d, b) for d in ("ml-1m", "ml-100k")
                                                                 for b in ("SASRec", "GRU4Rec")]
    for name in ("attribution", "fusion_sweep", "fusion_tuned"):
        rows = list(csv.DictReader(files[f"reports/tables/{name}.csv"].decode().splitlines()))
        assert {(r["dataset"], r["backbone"]) for r in rows} == {(d, b) for d in ("ml-1m", "ml-100k")
                                                                 for b in ("SASRec", "GRU4Rec")}
    assert '"gru4rec"' in files["reports/results.json"].decode() and "ml-100k" in files["reports/results.md"].decode()
