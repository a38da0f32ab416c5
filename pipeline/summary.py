"""Stage summary: reports/results.md and reports/results.json from the per-run metrics files."""

from pathlib import Path

from globaldiff import paths
from globaldiff.cli import run_stage
from globaldiff.io import atomic_path, read_json, write_json
from globaldiff.params import load_params
from globaldiff.report import aggregate, read_paper_table2, results_json, results_markdown


def main() -> None:
    params = load_params()
    study = params["study"]
    runs = [read_json(paths.metrics_file(d, b, s)) for d in study["datasets"] for b in study["backbones"]
            for s in study["seeds"]]
    summary = aggregate(runs)
    paper = read_paper_table2("data/paper/table2.csv")
    with atomic_path("reports/results.md") as tmp:
        Path(tmp).write_text(results_markdown(summary, paper, params["gamma"], params["eval"]["exclude"]))
    write_json("reports/results.json", results_json(summary))


if __name__ == "__main__":
    run_stage(main)
