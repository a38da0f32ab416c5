"""Stage summary: reports/results.md and reports/results.json from the per-run metrics files; the paper's
Tables 1 and 2 beside ours in reports/tables/ (Markdown, LaTeX, CSV); Figure 5 in reports/figures/.
Missing per-user ranks give "n/a" p-values; datasets not preprocessed give "not run" rows."""

from pathlib import Path

from globaldiff import paths
from globaldiff.cli import run_stage
from globaldiff.figures import figure5, read_curve
from globaldiff.io import atomic_path, read_json, write_json
from globaldiff.params import load_params
from globaldiff.report import (aggregate, collect_ranks, pvalues_by_run, read_paper_table1, read_paper_table2,
                               read_stats, results_json, results_markdown, table1, table2, write_table)

PAPER = Path("data/paper")
TABLES = Path("reports/tables")
FIGURES = Path("reports/figures")


def main() -> None:
    params = load_params()
    study = params["study"]
    gamma, exclude = params["gamma"], params["eval"]["exclude"]
    runs = [read_json(paths.metrics_file(d, b, s)) for d in study["datasets"] for b in study["backbones"]
            for s in study["seeds"]]
    summary = aggregate(runs)
    paper = read_paper_table2(PAPER / "table2.csv")
    ranks = collect_ranks(study["datasets"], study["backbones"], study["seeds"])
    pvalues = pvalues_by_run(ranks)
    with atomic_path("reports/results.md") as tmp:
        Path(tmp).write_text(results_markdown(summary, paper, gamma, exclude, pvalues))
    write_json("reports/results.json", results_json(summary))

    if (PAPER / "table1.csv").is_file():
        write_table("table1", table1(read_stats(study["datasets"]), read_paper_table1(PAPER / "table1.csv")), TABLES)
    table, disagreements = table2(summary, paper, pvalues, gamma=gamma, exclude=exclude)
    write_table("table2", table, TABLES)
    for dataset in study["datasets"]:
        curves = {b: [read_curve(paths.run_dir(dataset, b, s) / "diffusion_curve.csv") for s in study["seeds"]]
                  for b in study["backbones"]}
        figure5(curves, FIGURES / f"figure5_{dataset}", dataset)
    for d in disagreements:
        print(f"direction differs from the paper: {d.dataset} {d.backbone} {d.metric}: "
              f"ours {d.ours_pct:+.2f}%, paper {d.paper_pct:+.2f}%")


if __name__ == "__main__":
    run_stage(main)
