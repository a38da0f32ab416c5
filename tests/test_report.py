"""Report tables from hand-made metric dicts: exact Markdown and LaTeX, CSV read back, "not run", disagreements."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest

from globaldiff.report.aggregate import aggregate, results_json
from globaldiff.report.readers import collect_ranks
from globaldiff.report.significance import pvalues_by_run
from globaldiff.report.table import Cell, Table, latex_escape, to_csv, to_latex, to_markdown, write_table
from globaldiff.report.table1 import table1
from globaldiff.report.table2 import Disagreement, table2
from globaldiff.report.table3 import table3

METRICS2 = ("HR@10", "NDCG@10")


def run(seed, backbone, fusion, diffusion, dataset="ml-1m", name="sasrec"):
    """A metrics file with (HR@10, NDCG@10) per model; @20 equal to @10 (aggregate reads all four)."""
    def metrics(hr, ndcg):
        return {"HR@10": hr, "HR@20": hr, "NDCG@10": ndcg, "NDCG@20": ndcg}

    models = {"backbone": metrics(*backbone), "fusion": metrics(*fusion), "diffusion": metrics(*diffusion)}
    return {"dataset": dataset, "backbone": name, "seed": seed, "gamma": 0.5, "exclude": "window",
            "val": models, "test": models}


RUNS = [run(0, (0.20, 0.10), (0.22, 0.09), (0.10, 0.05)), run(1, (0.22, 0.12), (0.24, 0.11), (0.12, 0.07))]
PAPER = {("Caser", "ml-1m", "HR@10"): 0.05, ("Caser", "ml-1m", "NDCG@10"): 0.02,
         ("SASRec", "ml-1m", "HR@10"): 0.10, ("SASRec", "ml-1m", "NDCG@10"): 0.05,
         ("SASRec+GlobalDiff", "ml-1m", "HR@10"): 0.12, ("SASRec+GlobalDiff", "ml-1m", "NDCG@10"): 0.06,
         ("BERT4Rec", "ml-1m", "HR@10"): 0.20, ("BERT4Rec", "ml-1m", "NDCG@10"): 0.10,
         ("BERT4Rec+GlobalDiff", "ml-1m", "HR@10"): 0.22, ("BERT4Rec+GlobalDiff", "ml-1m", "NDCG@10"): 0.11}
PVALUES = {("ml-1m", "sasrec"): {"HR@10": 0.0123, "NDCG@10": 1.5e-5}}


def tiny_table2():
    return table2(aggregate(RUNS), PAPER, PVALUES, backbones=("sasrec", "bert4rec"), metrics=METRICS2,
                  gamma=0.5, exclude="window")


MARKDOWN = """\
Table 2: test metrics, full ranking over all items, every user; gamma = 0.5; excluded items: window; ours beside the paper's.

| dataset | model | source | seeds | HR@10 | NDCG@10 |
|---|---|---|---|---:|---:|
| ml-1m | Caser | paper |  | 0.0500 | 0.0200 |
| ml-1m | SASRec | ours | 2 | 0.2100 ± 0.0141 | 0.1100 ± 0.0141 |
| ml-1m | SASRec+GlobalDiff | ours | 2 | 0.2300 ± 0.0141 | 0.1000 ± 0.0141 |
| ml-1m | diffusion alone (SASRec) | ours | 2 | 0.1100 ± 0.0141 | 0.0600 ± 0.0141 |
| ml-1m | Improv. % (SASRec) | ours |  | +9.52% | -9.09%† |
| ml-1m | p-value (SASRec) | ours |  | 0.012 | 1.5e-05 |
| ml-1m | SASRec | paper |  | 0.1000 | 0.0500 |
| ml-1m | SASRec+GlobalDiff | paper |  | 0.1200 | 0.0600 |
| ml-1m | Improv. % (SASRec) | paper |  | +20.00% | +20.00% |
| ml-1m | BERT4Rec | ours |  | not run | not run |
| ml-1m | BERT4Rec+GlobalDiff | ours |  | not run | not run |
| ml-1m | diffusion alone (BERT4Rec) | ours |  | not run | not run |
| ml-1m | Improv. % (BERT4Rec) | ours |  | not run | not run |
| ml-1m | p-value (BERT4Rec) | ours |  | not run | not run |
| ml-1m | BERT4Rec | paper |  | 0.2000 | 0.1000 |
| ml-1m | BERT4Rec+GlobalDiff | paper |  | 0.2200 | 0.1100 |
| ml-1m | Improv. % (BERT4Rec) | paper |  | +10.00% | +10.00% |

Ours: mean ± sample std over the seeds counted in column seeds (one seed: the mean alone). Paper: the paper's Table 2.

Improv. %: +GlobalDiff over the backbone, 100 (GlobalDiff / backbone - 1), from the means.

p-value: two-sided Wilcoxon signed-rank test of +GlobalDiff against the backbone, users paired, each user's metric averaged over the seeds first; n/a: per-user ranks not available.

not run: a dataset and backbone we did not run (no number is implied); not reported: the paper gives no number.

†: our improvement and the paper's have opposite signs: ml-1m SASRec NDCG@10 (ours -9.09%, paper +20.00%).
"""

LATEX = r"""\begin{table}[t]
\centering
\caption{Table 2: test metrics, full ranking over all items, every user; gamma = 0.5; excluded items: window; ours beside the paper's.}
\begin{tabular}{llllrr}
\toprule
dataset & model & source & seeds & HR@10 & NDCG@10 \\
\midrule
ml-1m & Caser & paper &  & 0.0500 & 0.0200 \\
\midrule
ml-1m & SASRec & ours & 2 & 0.2100 $\pm$ 0.0141 & 0.1100 $\pm$ 0.0141 \\
ml-1m & SASRec+GlobalDiff & ours & 2 & 0.2300 $\pm$ 0.0141 & 0.1000 $\pm$ 0.0141 \\
ml-1m & diffusion alone (SASRec) & ours & 2 & 0.1100 $\pm$ 0.0141 & 0.0600 $\pm$ 0.0141 \\
ml-1m & Improv. \% (SASRec) & ours &  & +9.52\% & -9.09\%\textdagger{} \\
ml-1m & p-value (SASRec) & ours &  & 0.012 & 1.5e-05 \\
ml-1m & SASRec & paper &  & 0.1000 & 0.0500 \\
ml-1m & SASRec+GlobalDiff & paper &  & 0.1200 & 0.0600 \\
ml-1m & Improv. \% (SASRec) & paper &  & +20.00\% & +20.00\% \\
\midrule
ml-1m & BERT4Rec & ours &  & not run & not run \\
ml-1m & BERT4Rec+GlobalDiff & ours &  & not run & not run \\
ml-1m & diffusion alone (BERT4Rec) & ours &  & not run & not run \\
ml-1m & Improv. \% (BERT4Rec) & ours &  & not run & not run \\
ml-1m & p-value (BERT4Rec) & ours &  & not run & not run \\
ml-1m & BERT4Rec & paper &  & 0.2000 & 0.1000 \\
ml-1m & BERT4Rec+GlobalDiff & paper &  & 0.2200 & 0.1100 \\
ml-1m & Improv. \% (BERT4Rec) & paper &  & +10.00\% & +10.00\% \\
\bottomrule
\end{tabular}
\par{\footnotesize Ours: mean $\pm$ sample std over the seeds counted in column seeds (one seed: the mean alone). Paper: the paper's Table 2.}
\par{\footnotesize Improv. \%: +GlobalDiff over the backbone, 100 (GlobalDiff / backbone - 1), from the means.}
\par{\footnotesize p-value: two-sided Wilcoxon signed-rank test of +GlobalDiff against the backbone, users paired, each user's metric averaged over the seeds first; n/a: per-user ranks not available.}
\par{\footnotesize not run: a dataset and backbone we did not run (no number is implied); not reported: the paper gives no number.}
\par{\footnotesize \textdagger{}: our improvement and the paper's have opposite signs: ml-1m SASRec NDCG@10 (ours -9.09\%, paper +20.00\%).}
\end{table}
"""


def test_table2_markdown_and_latex_exactly():
    table, _ = tiny_table2()
    assert to_markdown(table) == MARKDOWN
    assert to_latex(table) == LATEX


def test_table2_csv_reads_back_the_numbers():
    table, _ = tiny_table2()
    text = to_csv(table)
    assert text.count("\n") == len(table.rows) + 1
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == ["dataset", "model", "source", "seeds", "HR@10", "HR@10_std", "NDCG@10",
                             "NDCG@10_std", "marks"]
    by = {(r["model"], r["source"]): r for r in rows}
    ours = by[("SASRec", "ours")]
    assert int(ours["seeds"]) == 2
    assert float(ours["HR@10"]) == pytest.approx(0.21) and float(ours["NDCG@10"]) == pytest.approx(0.11)
    assert float(ours["HR@10_std"]) == pytest.approx(0.02 / math.sqrt(2))
    assert float(by[("SASRec+GlobalDiff", "ours")]["HR@10"]) == pytest.approx(0.23)
    gain = by[("Improv. % (SASRec)", "ours")]
    assert float(gain["HR@10"]) == pytest.approx(100 * (0.23 / 0.21 - 1))
    assert float(gain["NDCG@10"]) == pytest.approx(100 * (0.10 / 0.11 - 1)) and gain["marks"] == "NDCG@10"
    assert float(by[("p-value (SASRec)", "ours")]["NDCG@10"]) == 1.5e-5
    assert float(by[("SASRec", "paper")]["HR@10"]) == 0.10 and by[("SASRec", "paper")]["HR@10_std"] == ""
    not_run = by[("BERT4Rec", "ours")]
    assert (not_run["HR@10"], not_run["HR@10_std"], not_run["seeds"]) == ("not run", "", "")


def test_disagreements_ours_down_paper_up():
    _, found = tiny_table2()
    assert len(found) == 1
    (d,) = found
    assert (d.dataset, d.backbone, d.metric) == ("ml-1m", "sasrec", "NDCG@10")
    assert d.ours_pct == pytest.approx(-100 / 11) and d.paper_pct == pytest.approx(20.0) and d.p_value == 1.5e-5
    # both directions agree (up) once the fusion's NDCG beats the backbone's: nothing to list, no mark
    agree = [run(0, (0.20, 0.10), (0.22, 0.11), (0.1, 0.05))]
    table, found = table2(aggregate(agree), PAPER, backbones=("sasrec",), metrics=METRICS2)
    assert found == [] and "†" not in to_markdown(table)
    # ours down, paper up on HR@10 without ranks: listed with a NaN p-value, p-values "n/a"
    down = [run(0, (0.20, 0.10), (0.18, 0.11), (0.1, 0.05))]
    table, found = table2(aggregate(down), PAPER, backbones=("sasrec",), metrics=METRICS2)
    assert [(d.metric, round(d.ours_pct, 6)) for d in found] == [("HR@10", -10.0)]
    assert isinstance(found[0], Disagreement) and math.isnan(found[0].p_value)
    assert "| ml-1m | p-value (SASRec) | ours |  | n/a | n/a |" in to_markdown(table)


def test_one_seed_shows_the_mean_alone():
    table, _ = table2(aggregate(RUNS[:1]), PAPER, backbones=("sasrec",), metrics=METRICS2, baselines=False)
    assert "| ml-1m | SASRec | ours | 1 | 0.2000 | 0.1000 |" in to_markdown(table)
    assert "| ml-1m | Caser |" not in to_markdown(table)


def test_latex_escaping():
    assert latex_escape("50% of a_b & c #1 ± 2†") == r"50\% of a\_b \& c \#1 $\pm$ 2\textdagger{}"
    assert latex_escape(r"\x{y}$~^") == r"\textbackslash{}x\{y\}\$\textasciitilde{}\textasciicircum{}"
    table = Table("AC_TSR: 10% & more", ["a_b", "#"], [["x_y", Cell("1 ± 2", 1.0, 2.0)]], footnotes=["n_1"])
    assert to_latex(table).splitlines()[2:9] == [
        r"\caption{AC\_TSR: 10\% \& more}", r"\begin{tabular}{ll}", r"\toprule", r"a\_b & \# \\", r"\midrule",
        r"x\_y & 1 $\pm$ 2 \\", r"\bottomrule"]
    assert r"\par{\footnotesize n\_1}" in to_latex(table)


def test_table1_ours_beside_the_paper_and_not_run():
    stats = {"ml-1m": {"dataset": "ml-1m", "users": 5180, "items": 3526, "interactions": 562800,
                       "avg_len": 108.64864864864865, "sparsity": 0.969186429764989}}
    paper = {"ml-1m": {"users": 5180, "items": 3526, "interactions": 562800, "avg_len": 108.6, "sparsity": 0.969},
             "beauty": {"users": 1308, "items": 9708, "interactions": 24742, "avg_len": 18.9, "sparsity": 0.998}}
    table = table1(stats, paper)
    lines = to_markdown(table).splitlines()
    assert lines[2:8] == ["| dataset | source | users | items | interactions | avg. length | sparsity |",
                          "|---|---|---:|---:|---:|---:|---:|",
                          "| ml-1m | ours | 5,180 | 3,526 | 562,800 | 108.65 | 96.92% |",
                          "| ml-1m | paper | 5,180 | 3,526 | 562,800 | 108.60 | 96.90% |",
                          "| beauty | ours | not run | not run | not run | not run | not run |",
                          "| beauty | paper | 1,308 | 9,708 | 24,742 | 18.90 | 99.80% |"]
    rows = list(csv.DictReader(io.StringIO(to_csv(table))))
    assert int(rows[0]["interactions"]) == 562800 and float(rows[0]["sparsity"]) == 0.969186429764989
    assert rows[2]["users"] == "not run"


def test_table3_variants_beside_the_paper():
    def r(seed, bb, fu):
        return run(seed, (bb, bb), (fu, fu), (0.0, 0.0), dataset="beauty", name="cbit")

    variants = [{"variant": "K=100", "runs": [r(0, 0.04, 0.05), r(1, 0.04, 0.07)]},
                {"variant": "exact cosine", "runs": [r(0, 0.04, 0.06)]},
                {"variant": "K=20", "runs": [r(0, 0.04, 0.03)]}]
    paper = {"CBiT (no GlobalDiff)": {"HR@10": 0.0476, "NDCG@10": 0.0284},
             "K=100": {"HR@10": 0.0480, "NDCG@10": 0.0283}, "K=500": {"HR@10": 0.0492, "NDCG@10": 0.0286},
             "pairwise (M=9708)": {"HR@10": 0.0510, "NDCG@10": 0.0292}}
    table = table3(variants, paper, dataset="beauty", backbone="cbit", metrics=METRICS2)
    assert "ours on beauty with CBiT" in table.caption
    assert [str(c) for c in table.header] == ["variant", "source", "seeds", "HR@10", "NDCG@10"]
    got = [[str(c) for c in row[:4]] for row in table.rows]
    assert got == [["CBiT (no GlobalDiff)", "ours", "2", "0.0400 ± 0.0000"],
                   ["CBiT (no GlobalDiff)", "paper", "", "0.0476"],
                   ["K=100", "ours", "2", "0.0600 ± 0.0141"], ["K=100", "paper", "", "0.0480"],
                   ["K=500", "ours", "", "not run"], ["K=500", "paper", "", "0.0492"],
                   ["exact cosine", "ours", "1", "0.0600"], ["pairwise (M=9708)", "paper", "", "0.0510"],
                   ["K=20", "ours", "1", "0.0300"], ["K=20", "paper", "", "not reported"]]


def test_write_table_writes_three_files_atomically(tmp_path):
    table, _ = tiny_table2()
    written = write_table("table2", table, tmp_path / "tables")
    assert [p.name for p in written] == ["table2.md", "table2.tex", "table2.csv"]
    assert (tmp_path / "tables/table2.md").read_text() == MARKDOWN
    assert (tmp_path / "tables/table2.tex").read_text() == LATEX
    assert (tmp_path / "tables/table2.csv").read_text() == to_csv(table)
    assert sorted(p.name for p in (tmp_path / "tables").iterdir()) == ["table2.csv", "table2.md", "table2.tex"]


def test_ranks_files_to_pvalues_and_missing_ranks(tmp_path):
    users = np.arange(1, 31, dtype=np.int64)
    for seed in (0, 1):
        folder = tmp_path / "ml-1m" / "sasrec"
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / f"seed{seed}.npz", backbone=np.full(30, 1000, dtype=np.int64), diffusion=users,
                 fusion=users)
    def seed_paths(backbone, seeds):
        return [tmp_path / "ml-1m" / backbone / f"seed{s}.npz" for s in seeds]

    ranks = collect_ranks({("ml-1m", b): seed_paths(b, [0, 1]) for b in ("sasrec", "cbit")})
    assert list(ranks) == [("ml-1m", "sasrec")] and len(ranks[("ml-1m", "sasrec")]) == 2
    assert pvalues_by_run(ranks, ["NDCG@30"]) == {("ml-1m", "sasrec"): {"NDCG@30": 2.0 / 2 ** 30}}
    assert collect_ranks({("ml-1m", "sasrec"): seed_paths("sasrec", [0, 1, 2])}) == {}  # seed 2 missing: n/a


def test_results_json_keeps_the_means():
    out = results_json(aggregate(RUNS))
    assert out["ml-1m"]["sasrec"]["fusion"]["HR@10"] == 0.23
    assert set(out["ml-1m"]["sasrec"]) == {"backbone", "fusion", "diffusion"}


def test_attribution_table_columns_changes_pvalues_and_not_run():
    from globaldiff.report.attribution import SECOND_OPINIONS, attribution_table, recipe_text
    from globaldiff.report.significance import opinion_pvalues

    runs = [run(0, (0.20, 0.10), (0.22, 0.09), (0.10, 0.05)), run(1, (0.22, 0.12), (0.24, 0.11), (0.12, 0.07))]
    for r, value in zip(runs, (0.30, 0.32)):
        r["test"] = {**r["test"], "fusion_popularity": {k: value for k in ("HR@10", "HR@20", "NDCG@10", "NDCG@20")}}
    runs[0]["test"]["fusion_random"] = runs[0]["test"]["backbone"]     # the second seed lacks it
    users = 30
    ranks = {("ml-1m", "sasrec"): [{"backbone": np.full(users, 50), "fusion": np.full(users, 50),
                                    "fusion_popularity": np.arange(1, users + 1)} for _ in range(2)]}
    pvalues = opinion_pvalues(ranks, SECOND_OPINIONS, ("HR@10", "NDCG@10"))
    assert set(pvalues[("ml-1m", "sasrec")]) == {"fusion", "fusion_popularity"}   # the ranks the seeds have
    table = attribution_table(runs, pvalues, {"sasrec": recipe_text({"hidden": 64, "loss": "ce"})}, gamma=0.5)
    assert table.header[-4:] == list(SECOND_OPINIONS.values())
    by_row = {(str(r[2]), str(r[3])): [str(c) for c in r[5:]] for r in table.rows}
    assert by_row[("HR@10", "mean")] == ["0.2100 ± 0.0141", "0.2300 ± 0.0141", "not run", "0.3100 ± 0.0141", "not run"]
    assert by_row[("HR@10", "change %")] == ["", "+9.52%", "not run", "+47.62%", "not run"]
    # fusion equals the backbone for every user (p = 1); popularity puts the first 10 users in the top 10
    p_row = by_row[("HR@10", "p-value")]
    assert p_row[1] == "1.000" and p_row[2] == "not run" and p_row[4] == "not run"
    assert float(p_row[3]) < 0.01
    assert by_row[("NDCG@10", "mean")][1] == "0.1000 ± 0.0141"
    assert "SASRec: hidden 64, loss ce." in table.footnotes
    assert "not run" in to_csv(table) and "0.21" in to_csv(table)


def test_ablation_table_rows_pvalues_and_missing_reference():
    from globaldiff.report.ablations import ablation_table

    def metrics(hr20, alone=0.1):
        fusion = {"HR@10": hr20 / 2, "HR@20": hr20, "NDCG@10": hr20 / 4, "NDCG@20": hr20 / 3}
        return {"test": {"fusion": fusion, "diffusion": {**fusion, "HR@20": alone}}}

    users = 40
    reference_ranks = [{"fusion": np.full(users, 30)}]
    variant_ranks = {"T200": [{"fusion": np.full(users, 5)}]}
    table = ablation_table([metrics(0.30)], {"T200": [metrics(0.36, 0.2)]}, {"T200": {"T": 200}}, reference_ranks,
                           variant_ranks, dataset="ml-1m", backbone="sasrec", gamma=0.5)
    rows = [[str(c) for c in r] for r in table.rows]
    assert rows[0] == ["main run", "(params.yaml)", "1", "0.1500", "0.3000", "0.0750", "0.1000", "0.1000", ""]
    assert rows[1][:2] == ["T200", "T = 200"] and rows[1][4] == "0.3600" and rows[1][7] == "0.2000"
    assert float(rows[1][8]) < 0.001                      # every user moved from rank 30 into the top 20
    assert "gamma = 0.5" in table.caption
    missing = ablation_table([], {"T200": [metrics(0.36)]}, {"T200": {"T": 200}}, None, variant_ranks,
                             dataset="ml-1m", backbone="sasrec", gamma=0.5)
    assert [str(c) for c in missing.rows[0][3:]] == ["not run"] * 6 and str(missing.rows[1][-1]) == "n/a"


def test_longterm_table_per_horizon():
    from globaldiff.report.longterm import longterm_table

    def run(b, f):
        return {"test": {f"P{p}": {"backbone": dict.fromkeys(("HR@10", "HR@20", "NDCG@10", "NDCG@20"), b / p),
                                   "fusion": dict.fromkeys(("HR@10", "HR@20", "NDCG@10", "NDCG@20"), f / p)}
                         for p in (1, 2, 3, 4)}}

    table = longterm_table([run(0.2, 0.25)], dataset="ml-1m", backbone="sasrec", gamma=0.5)
    rows = [[str(c) for c in r] for r in table.rows]
    assert len(rows) == 12 and rows[0][:4] == ["1", "SASRec", "1", "0.2000"]
    assert rows[4][:4] == ["2", "SASRec+GlobalDiff", "1", "0.1250"] and rows[5][3] == "+25.00%"
    assert "gamma = 0.5" in table.caption


def test_a_fifth_backbone_and_a_second_dataset_appear_in_table2_in_every_format(monkeypatch):
    from globaldiff.backbones import REGISTRY

    monkeypatch.setitem(REGISTRY, "gru4rec", "GRU4Rec")        # registered, but not one of the paper's backbones
    runs = RUNS + [run(s, (0.30, 0.15), (0.33, 0.16), (0.1, 0.05), dataset=d, name=b)
                   for d in ("ml-1m", "beauty") for b in ("sasrec", "gru4rec") for s in (0, 1)
                   if (d, b) != ("ml-1m", "sasrec")]
    table, _ = table2(aggregate(runs), PAPER, PVALUES, datasets=("ml-1m", "beauty"), backbones=("sasrec", "gru4rec"),
                      metrics=METRICS2)
    text, latex = to_markdown(table), to_latex(table)
    for dataset in ("ml-1m", "beauty"):
        assert f"| {dataset} | GRU4Rec | ours | 2 | 0.3000 ± 0.0000 | 0.1500 ± 0.0000 |" in text
        assert f"| {dataset} | GRU4Rec+GlobalDiff | ours | 2 | 0.3300 ± 0.0000 | 0.1600 ± 0.0000 |" in text
        assert f"{dataset} & GRU4Rec & ours & 2 & 0.3000 $\\pm$ 0.0000 & 0.1500 $\\pm$ 0.0000 \\\\" in latex
    assert "| beauty | SASRec | ours | 2 | 0.3000 ± 0.0000 |" in text
    assert "| GRU4Rec | paper |" not in text                     # a backbone the paper lacks: our rows only
    assert "| ml-1m | BERT4Rec | ours |  | not run | not run |" in text   # the paper's, which we did not run
    models = [r[1] for r in table.rows if r[0] == "beauty"]
    assert models[:3] == ["SASRec", "SASRec+GlobalDiff", "diffusion alone (SASRec)"] and "GRU4Rec" in models
    rows = list(csv.DictReader(io.StringIO(to_csv(table))))
    gru = {(r["dataset"], r["model"]): r for r in rows if "GRU4Rec" in r["model"]}
    assert float(gru[("beauty", "GRU4Rec+GlobalDiff")]["HR@10"]) == pytest.approx(0.33)
    assert float(gru[("beauty", "Improv. % (GRU4Rec)")]["HR@10"]) == pytest.approx(10.0)
    assert gru[("ml-1m", "p-value (GRU4Rec)")]["HR@10"] == "n/a"
    assert sorted({r["dataset"] for r in rows}) == ["beauty", "ml-1m"]


def test_a_second_dataset_appears_in_table1():
    paper = {"ml-1m": {"users": 5180, "items": 3526, "interactions": 562800, "avg_len": 108.6, "sparsity": 0.969}}
    stats = {"ml-1m": {"users": 5180, "items": 3526, "interactions": 562800, "avg_len": 108.65, "sparsity": 0.97},
             "ml-100k": {"users": 703, "items": 1439, "interactions": 52244, "avg_len": 74.32, "sparsity": 0.9484}}
    table = table1(stats, paper)
    assert "| ml-100k | ours | 703 | 1,439 | 52,244 | 74.32 | 94.84% |" in to_markdown(table)
    assert "| ml-100k | paper | not reported | not reported |" in to_markdown(table)
    assert r"ml-100k & ours & 703 & 1,439 & 52,244 & 74.32 & 94.84\% \\" in to_latex(table)
    assert [r["dataset"] for r in csv.DictReader(io.StringIO(to_csv(table)))] == ["ml-1m"] * 2 + ["ml-100k"] * 2


def test_headline_table_one_line_per_backbone_with_the_papers_change(monkeypatch):
    from globaldiff.backbones import REGISTRY
    from globaldiff.report.table2 import headline_table

    monkeypatch.setitem(REGISTRY, "gru4rec", "GRU4Rec")
    runs = RUNS + [run(s, (0.30, 0.15), (0.33, 0.16), (0.1, 0.05), name="gru4rec") for s in (0, 1)]
    table = headline_table(aggregate(runs), PAPER, PVALUES, datasets=("ml-1m",), backbones=("sasrec", "gru4rec",
                                                                                          "bert4rec"))
    assert [[str(c) for c in r] for r in table.rows] == [
        ["ml-1m", "SASRec", "2", "0.2100 ± 0.0141", "0.2300 ± 0.0141", "+9.52%", "0.012", "+20.00%"],
        ["ml-1m", "GRU4Rec", "2", "0.3000 ± 0.0000", "0.3300 ± 0.0000", "+10.00%", "n/a", "not reported"]]
    rows = list(csv.DictReader(io.StringIO(to_csv(table))))
    assert float(rows[0]["alone_std"]) == pytest.approx(0.02 / math.sqrt(2)) and float(rows[0]["p-value"]) == 0.0123
