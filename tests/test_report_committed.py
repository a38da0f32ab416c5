"""The committed reports/ are what the report code makes of the committed inputs, byte for byte.

The inputs on disk are the metrics files (reports/metrics/), Table 1's stats.json and the paper's CSVs; the
per-user ranks and the long-term run's metrics are not committed, so the p-values are read back from the
committed CSVs (exact: the CSVs hold them at full precision) and Figure 3's single seed from longterm.csv.
The p-values themselves are computed and tested in tests/test_significance.py; here the tables around them are.
A deliberate change of a table's format fails this test until the summary stage is re-run.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import yaml

from globaldiff import paths
from globaldiff.io import read_json
from globaldiff.report.aggregate import aggregate, backbone_key, results_json
from globaldiff.report.attribution import SECOND_OPINIONS, attribution_table, recipe_text
from globaldiff.report.longterm import longterm_table
from globaldiff.report.readers import read_paper_table1, read_paper_table2, read_stats
from globaldiff.report.table import RENDERERS, Table, to_markdown
from globaldiff.report.table1 import table1
from globaldiff.report.table2 import results_markdown, table2

REPO = Path(__file__).resolve().parents[1]
TABLES = REPO / "reports/tables"


def locked_params() -> dict:
    """params.yaml with the summary stage's params as dvc.lock recorded them: the params the committed reports
    were made from (main may carry params ahead of dvc.lock until the next full run)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    locked = yaml.safe_load((REPO / "dvc.lock").read_text())["stages"]["summary"]["params"]["params.yaml"]
    for key, value in locked.items():
        *parents, leaf = key.split(".")
        node = params
        for part in parents:
            node = node[part]
        node[leaf] = value
    return params


PARAMS = locked_params()
STUDY = PARAMS["study"]


def rows(name: str) -> list[dict[str, str]]:
    with open(TABLES / f"{name}.csv", newline="") as f:
        return list(csv.DictReader(f))


def number(text: str) -> float:
    return math.nan if text == "n/a" else float(text)


def runs() -> list[dict]:
    return [read_json(REPO / paths.metrics_file(d, b, s))
            for d in STUDY["datasets"] for b in STUDY["backbones"] for s in STUDY["seeds"]]


def table2_pvalues() -> dict:
    out: dict = {}
    for r in rows("table2"):
        if r["source"] == "ours" and r["model"].startswith("p-value (") and r["HR@10"] != "not run":
            backbone = backbone_key(r["model"][len("p-value ("):-1])
            out[(r["dataset"], backbone)] = {m: number(r[m]) for m in ("HR@10", "HR@20", "NDCG@10", "NDCG@20")}
    return out


def attribution_pvalues() -> dict:
    out: dict = {}
    for r in rows("attribution"):
        if r["row"] == "p-value":
            models = out.setdefault((r["dataset"], backbone_key(r["backbone"])), {})
            for model, column in SECOND_OPINIONS.items():
                if r[column] != "not run":
                    models.setdefault(model, {})[r["metric"]] = number(r[column])
    return out


def attribution() -> Table:
    recipes = {b: recipe_text(PARAMS["backbones"][b]["model"]) for b in STUDY["backbones"]}
    return attribution_table(runs(), attribution_pvalues(), recipes, gamma=PARAMS["gamma"])


def assert_written(name: str, table: Table) -> None:
    for ext, render in RENDERERS:
        assert render(table) == (TABLES / f"{name}.{ext}").read_text(), f"{name}.{ext}"


def test_results_json_is_the_committed_metrics_means():
    import json

    assert json.dumps(results_json(aggregate(runs())), indent=2, sort_keys=True) + "\n" == \
        (REPO / "reports/results.json").read_text()


def test_table1_from_the_committed_stats(tmp_path):
    # The stats the preprocess stage computes, here from the committed data through the same library calls (a fresh
    # clone has no data/processed): every study dataset is embedded in the repo.
    from globaldiff.ingest.loaders import load
    from globaldiff.ingest.preprocess import build, read_filters
    from globaldiff.io import write_json

    files = {}
    for name in STUDY["datasets"]:
        cfg = PARAMS["datasets"][name]
        assert cfg["source"] == "embedded", f"{name}: this test rebuilds Table 1 from embedded data only"
        files[name] = tmp_path / name / "stats.json"
        write_json(files[name], build(name, load(name, cfg, REPO / "data/embedded"), read_filters(name, cfg)).stats)
    assert_written("table1", table1(read_stats(files), read_paper_table1(REPO / "data/paper/table1.csv")))


def test_table2_and_results_md_from_the_committed_metrics():
    paper = read_paper_table2(REPO / "data/paper/table2.csv")
    summary, pvalues = aggregate(runs()), table2_pvalues()
    assert len(pvalues) == len(STUDY["datasets"]) * len(STUDY["backbones"])
    gamma, exclude = PARAMS["gamma"], PARAMS["eval"]["exclude"]
    table, _ = table2(summary, paper, pvalues, datasets=STUDY["datasets"], backbones=STUDY["backbones"],
                      gamma=gamma, exclude=exclude)
    assert_written("table2", table)
    assert_written("attribution", attribution())
    assert results_markdown(summary, paper, gamma, exclude, pvalues) + "\n" + to_markdown(attribution()) == \
        (REPO / "reports/results.md").read_text()


def test_longterm_table_from_its_committed_numbers():
    lt = PARAMS["longterm"]
    if len(lt["seeds"]) != 1:
        pytest.skip("one seed's metrics can be read back from the table's means; several cannot")
    test: dict = {}
    for r in rows("longterm"):
        if r["model"] != "Improv. %":
            model = "fusion" if r["model"].endswith("+GlobalDiff") else "backbone"
            test.setdefault(f"P{r['P']}", {})[model] = {m: float(r[m]) for m in ("HR@10", "HR@20", "NDCG@10", "NDCG@20")}
    table = longterm_table([{"test": test}], dataset=lt["dataset"], backbone=lt["backbone"],
                           gamma=PARAMS["diffusion"]["select_gamma"])
    assert_written("longterm", table)
