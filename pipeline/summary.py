"""Stage summary: reports/results.md and reports/results.json from the per-run metrics files; the paper's
Tables 1-3 beside ours, the headline, attribution and ablation tables in reports/tables/ (Markdown, LaTeX,
CSV), with Figure 3's numbers, and the fusion sweep's grid and tuned tables; Figures 3-6 and the sweep's
figure in reports/figures/. The datasets and backbones are the study params'; where each file lives is
globaldiff.paths'. Missing per-user ranks give "n/a" p-values; datasets not preprocessed give "not run" rows."""

from pathlib import Path

from globaldiff import paths
from globaldiff.cli import run_stage
from globaldiff.config.params import load_params
from globaldiff.io import atomic_path, load_npy, read_json, write_json
from globaldiff.report.ablations import ablation_groups, ablation_table
from globaldiff.report.aggregate import METRICS, aggregate, results_json
from globaldiff.report.attribution import ATTRIBUTION_METRICS, SECOND_OPINIONS, attribution_table, recipe_text
from globaldiff.report.figures import figure3, figure4, figure5, figure6, fusion_sweep_figure
from globaldiff.report.fusion_sweep import sweep_table, tuned_table
from globaldiff.report.longterm import longterm_table
from globaldiff.report.readers import (collect_ranks, load_ranks, read_curve, read_paper_table1, read_paper_table2,
                                       read_paper_table3, read_stats)
from globaldiff.report.significance import opinion_pvalues, pvalues_by_run
from globaldiff.report.table import to_markdown, write_table
from globaldiff.report.table1 import table1
from globaldiff.report.table2 import headline_table, results_markdown, table2
from globaldiff.report.table3 import table3

PAPER = Path("data/paper")
TABLES = Path("reports/tables")
FIGURES = Path("reports/figures")


def main() -> None:
    params = load_params()
    study = params["study"]
    datasets, backbones, seeds = study["datasets"], study["backbones"], study["seeds"]
    gamma, exclude = params["gamma"], params["eval"]["exclude"]
    keys = [(d, b) for d in datasets for b in backbones]
    runs = [read_json(paths.metrics_file(d, b, s)) for d, b in keys for s in seeds]
    summary = aggregate(runs)
    paper = read_paper_table2(PAPER / "table2.csv")
    ranks = collect_ranks({key: [paths.ranks_dir(*key, s) for s in seeds] for key in keys})
    pvalues = pvalues_by_run(ranks, METRICS)
    recipes = {b: recipe_text(params["backbones"][b]["model"]) for b in backbones}
    attribution = attribution_table(runs, opinion_pvalues(ranks, SECOND_OPINIONS, ATTRIBUTION_METRICS), recipes,
                                    gamma=gamma)
    with atomic_path("reports/results.md") as tmp:
        Path(tmp).write_text(results_markdown(summary, paper, gamma, exclude, pvalues) + "\n"
                             + to_markdown(attribution))
    write_json("reports/results.json", results_json(summary))

    if (PAPER / "table1.csv").is_file():
        stats = read_stats({d: paths.processed(d) / "stats.json" for d in datasets})
        write_table("table1", table1(stats, read_paper_table1(PAPER / "table1.csv")), TABLES)
    table, disagreements = table2(summary, paper, pvalues, datasets=datasets, backbones=backbones, gamma=gamma,
                                  exclude=exclude)
    write_table("table2", table, TABLES)
    write_table("headline", headline_table(summary, paper, pvalues, datasets=datasets, backbones=backbones), TABLES)
    write_table("attribution", attribution, TABLES)
    for dataset in datasets:
        curves = {b: [read_curve(paths.run_dir(dataset, b, s) / "diffusion_curve.csv") for s in seeds]
                  for b in backbones}
        figure5(curves, FIGURES / f"figure5_{dataset}", dataset)
    if params.get("sweep"):
        fusion_sweep(study)
    if params.get("ablations", {}).get("run"):
        ablations(params)
    if params.get("longterm", {}).get("seeds"):
        longterm(params)
    for d in disagreements:
        print(f"direction differs from the paper: {d.dataset} {d.backbone} {d.metric}: "
              f"ours {d.ours_pct:+.2f}%, paper {d.paper_pct:+.2f}%")


def fusion_sweep(study: dict) -> None:
    """The fusion sweep's grid and validation-tuned tables and its figure, from the fusion_sweep stages' files."""
    keys = [(d, b) for d in study["datasets"] for b in study["backbones"]]
    folders = {key: [paths.sweep_dir(*key, s) for s in study["seeds"]] for key in keys}
    sweeps = {key: [read_json(f / "sweep.json") for f in fs] for key, fs in folders.items()}
    ranks = {key: [(load_npy(paths.ranks_dir(*key, s) / "backbone.npy"), load_npy(f / "tuned_ranks.npy"))
                   for s, f in zip(study["seeds"], fs)] for key, fs in folders.items()}
    write_table("fusion_sweep", sweep_table(sweeps), TABLES)
    write_table("fusion_tuned", tuned_table(sweeps, ranks), TABLES)
    for dataset in study["datasets"]:
        fusion_sweep_figure({b: sweeps[(dataset, b)] for b in study["backbones"]}, FIGURES / f"fusion_sweep_{dataset}",
                            dataset, sweeps[keys[0]][0]["select_metric"])


def ablations(params: dict) -> None:
    """The ablation table, Figures 4 and 6 and Table 3 from the ablation stages' files and the main run's."""
    ab = params["ablations"]
    dataset, backbone, seeds, names = ab["dataset"], ab["backbone"], ab["seeds"], ab["run"]
    select_gamma = params["diffusion"]["select_gamma"]
    # the main run's test metrics are comparable only when it was evaluated at the ablations' gamma
    comparable = params["gamma"] == select_gamma
    reference = [read_json(paths.metrics_file(dataset, backbone, s)) for s in seeds] if comparable else []
    reference_ranks = [load_ranks(paths.ranks_dir(dataset, backbone, s)) for s in seeds] if comparable else None
    folders = {v: [paths.ablation_dir(dataset, backbone, v, s) for s in seeds] for v in names}
    runs = {v: [read_json(f / "metrics.json") for f in fs] for v, fs in folders.items()}
    ranks = {v: [load_ranks(f / "ranks") for f in fs] for v, fs in folders.items()}
    curves = {v: [read_curve(f / "diffusion_curve.csv") for f in fs] for v, fs in folders.items()}
    curves[""] = [read_curve(paths.run_dir(dataset, backbone, s) / "diffusion_curve.csv") for s in seeds]
    runs[""] = reference
    write_table("ablations", ablation_table(reference, {v: runs[v] for v in names}, ab["variants"], reference_ranks,
                                            ranks, dataset=dataset, backbone=backbone, gamma=select_gamma), TABLES)
    groups = ablation_groups(params, names)
    figure4_runs = {label: runs[v] for label, v in groups["figure4"].items() if runs[v]}
    if len(figure4_runs) > 1:
        figure4(figure4_runs, FIGURES / f"figure4_{dataset}_{backbone}", dataset, backbone)
    if len(groups["figure6"]) > 1:
        figure6({label: curves[v] for label, v in groups["figure6"].items()}, FIGURES / f"figure6_{dataset}_{backbone}",
                dataset, backbone)
    if len(groups["table3"]) > 1 and (PAPER / "table3.csv").is_file():
        variants = [{"variant": label, "runs": runs[v]} for label, v in groups["table3"].items()]
        write_table("table3", table3(variants, read_paper_table3(PAPER / "table3.csv"), dataset=dataset,
                                     backbone=backbone), TABLES)


def longterm(params: dict) -> None:
    """Figure 3 and its numbers from the longterm stages' metrics files."""
    lt = params["longterm"]
    runs = [read_json(paths.longterm_dir(lt["dataset"], lt["backbone"], s) / "metrics.json") for s in lt["seeds"]]
    write_table("longterm", longterm_table(runs, dataset=lt["dataset"], backbone=lt["backbone"],
                                           gamma=params["diffusion"]["select_gamma"]), TABLES)
    figure3(runs, FIGURES / f"figure3_{lt['dataset']}_{lt['backbone']}", lt["dataset"], lt["backbone"])


if __name__ == "__main__":
    run_stage(main)
