"""Tables from metrics files only (no training): ours, mean ± std over seeds, beside the paper's Tables 1-3.

A table is one `Table` (caption, header, rows of `Cell`s, footnotes); `to_markdown`, `to_latex` (booktabs)
and `to_csv` render the same columns from it, and `write_table` writes all three atomically. A cell we did
not run says "not run", never 0; a number the paper does not give says "not reported".
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from globaldiff.io import atomic_path
from globaldiff.report.significance import compare_runs, run_pvalues

METRICS = ("HR@10", "HR@20", "NDCG@10", "NDCG@20")
PAPER_NAMES = {"sasrec": "SASRec", "bert4rec": "BERT4Rec", "cbit": "CBiT", "srgnn": "SRGNN"}
BACKBONES = ("sasrec", "bert4rec", "cbit", "srgnn")
MODELS = ("backbone", "fusion", "diffusion")
STATS = ("users", "items", "interactions", "avg_len", "sparsity")
NOT_RUN = "not run"
NOT_REPORTED = "not reported"
NA = "n/a"
DAGGER = "†"


# --- The shared table representation -------------------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    """One table cell: `text` (+ `mark`) is what Markdown and LaTeX show; `value` and `std` are the plain
    numbers the CSV carries (None where the cell is text only, such as "not run")."""

    text: str
    value: float | int | None = None
    std: float | None = None
    mark: str = ""

    def __str__(self) -> str:
        return self.text + self.mark


@dataclass
class Table:
    """caption, header, rows (Cells or plain strings), footnotes; `align` has one letter (l/r) per column;
    `spread` names the columns whose CSV gets a `<column>_std` column beside it; `breaks` are row indices
    preceded by a rule in LaTeX; `marked` adds a `marks` CSV column naming the marked cells of each row."""

    caption: str
    header: list[str]
    rows: list[list[Cell | str]]
    footnotes: list[str] = field(default_factory=list)
    align: str = ""
    spread: tuple[str, ...] = ()
    breaks: tuple[int, ...] = ()
    marked: bool = False

    def __post_init__(self):
        self.align = self.align or "l" * len(self.header)
        if len(self.align) != len(self.header) or set(self.align) - {"l", "r", "c"}:
            raise ValueError(f"align {self.align!r} does not fit {len(self.header)} columns")
        for row in self.rows:
            if len(row) != len(self.header):
                raise ValueError(f"row {[str(c) for c in row]} has {len(row)} cells for {len(self.header)} columns")


def _as_cell(cell: Cell | str) -> Cell:
    return cell if isinstance(cell, Cell) else Cell(str(cell))


def spread_cell(mean: float, std: float, n: int) -> Cell:
    """mean ± sample std over n seeds, 4 decimals; one seed gives the mean alone (no std exists)."""
    if n > 1:
        return Cell(f"{mean:.4f} ± {std:.4f}", float(mean), float(std))
    return Cell(f"{mean:.4f}", float(mean))


def _value_cell(value: float | None) -> Cell:
    return Cell(NOT_REPORTED) if value is None else Cell(f"{value:.4f}", float(value))


def _pct_cell(pct: float) -> Cell:
    return Cell(NA) if math.isnan(pct) else Cell(f"{pct:+.2f}%", float(pct))


def format_p(p: float) -> str:
    """A p-value for a reader: 3 decimals, scientific notation below 0.001, "n/a" for NaN."""
    if math.isnan(p):
        return NA
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


# --- Renderers ------------------------------------------------------------------------------------------

def to_markdown(table: Table) -> str:
    """Caption, a pipe table, then one paragraph per footnote."""
    def line(cells) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    rules = {"l": "---", "r": "---:", "c": ":---:"}
    lines = [table.caption, "", line(table.header), "|" + "|".join(rules[a] for a in table.align) + "|"]
    lines += [line(_as_cell(c) for c in row) for row in table.rows]
    for note in table.footnotes:
        lines += ["", note]
    return "\n".join(lines) + "\n"


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
          "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", DAGGER: r"\textdagger{}"}


def latex_escape(text: str) -> str:
    """Text safe inside a LaTeX document: special characters escaped one by one, ± as $\\pm$, † as \\textdagger."""
    return "".join(_LATEX.get(ch, ch) for ch in str(text))


def to_latex(table: Table) -> str:
    """A booktabs table float (\\toprule, \\midrule, \\bottomrule); footnotes below the tabular."""
    def line(cells) -> str:
        return " & ".join(latex_escape(str(c)) for c in cells) + r" \\"

    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(table.caption)}}}",
             rf"\begin{{tabular}}{{{table.align}}}", r"\toprule", line(table.header), r"\midrule"]
    for i, row in enumerate(table.rows):
        if i in table.breaks and i > 0:
            lines.append(r"\midrule")
        lines.append(line(_as_cell(c) for c in row))
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [rf"\par{{\footnotesize {latex_escape(note)}}}" for note in table.footnotes]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def _plain(value: float | int) -> str:
    return str(value) if isinstance(value, (int, np.integer)) else repr(float(value))


def to_csv(table: Table) -> str:
    """One header line and one line per row, the same columns as the other formats; a column listed in
    `spread` is followed by `<column>_std`. Numbers are written plain (full precision, no ±, no %): a text
    cell ("not run", "n/a") keeps its text and leaves its std empty."""
    header: list[str] = []
    for name in table.header:
        header += [name, f"{name}_std"] if name in table.spread else [name]
    if table.marked:
        header.append("marks")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in table.rows:
        out, marks = [], []
        for name, cell in zip(table.header, map(_as_cell, row)):
            out.append(cell.text if cell.value is None else _plain(cell.value))
            if name in table.spread:
                out.append("" if cell.std is None else _plain(cell.std))
            if cell.mark:
                marks.append(name)
        if table.marked:
            out.append(" ".join(marks))
        writer.writerow(out)
    return buffer.getvalue()


def write_table(name: str, table: Table, folder: str | Path) -> list[Path]:
    """Write `<name>.md`, `<name>.tex` and `<name>.csv` into `folder`, each atomically; return their paths."""
    written = []
    for ext, render in (("md", to_markdown), ("tex", to_latex), ("csv", to_csv)):
        path = Path(folder) / f"{name}.{ext}"
        with atomic_path(path) as tmp:
            tmp.write_text(render(table))
        written.append(path)
    return written


# --- Inputs ---------------------------------------------------------------------------------------------

def read_paper_table1(path: str | Path) -> dict[str, dict[str, float]]:
    """{dataset: {users, items, interactions, avg_len, sparsity}} from the paper's Table 1 CSV."""
    with open(path, newline="") as f:
        return {r["dataset"]: {k: (int(r[k]) if k in ("users", "items", "interactions") else float(r[k]))
                               for k in STATS} for r in csv.DictReader(f)}


def read_paper_table2(path: str | Path) -> dict[tuple[str, str, str], float]:
    """{(method, dataset, metric): value} from the paper's Table 2 CSV (method,dataset,metric,value)."""
    with open(path, newline="") as f:
        return {(r["method"], r["dataset"], r["metric"]): float(r["value"]) for r in csv.DictReader(f)}


def read_paper_table3(path: str | Path) -> dict[str, dict[str, float]]:
    """{variant: {metric: value}} from the paper's Table 3 CSV (variant,HR@10,...), in the paper's order."""
    with open(path, newline="") as f:
        return {r["variant"]: {k: float(v) for k, v in r.items() if k != "variant"} for r in csv.DictReader(f)}


def read_stats(datasets: Sequence[str], root: str | Path = "data/processed") -> dict[str, dict]:
    """{dataset: stats.json} for those of `datasets` that have been preprocessed (the others are left out)."""
    out = {}
    for dataset in datasets:
        path = Path(root) / dataset / "stats.json"
        if path.is_file():
            out[dataset] = json.loads(path.read_text())
    return out


def load_ranks(path: str | Path) -> dict[str, np.ndarray]:
    """{model: per-user test ranks} of one run from `<seed>.npz` (or a folder of `<model>.npy`); no pickle."""
    path = Path(path)
    if path.is_dir():
        return {p.stem: np.load(p, allow_pickle=False) for p in sorted(path.glob("*.npy"))}
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def collect_ranks(datasets: Sequence[str], backbones: Sequence[str], seeds: Sequence[int],
                  root: str | Path = "ranks") -> dict[tuple[str, str], list[dict[str, np.ndarray]]]:
    """{(dataset, backbone): one {model: ranks} per seed}, only where every seed's ranks exist with both the
    backbone's and the fusion's arrays (`root/<d>/<b>/seed<s>.npz`, or a `seed<s>/` folder of .npy files).
    A run whose ranks are incomplete is left out, so its p-values read "n/a" rather than use fewer seeds."""
    out = {}
    for dataset in datasets:
        for backbone in backbones:
            runs = []
            for seed in seeds:
                base = Path(root) / dataset / backbone / f"seed{seed}"
                path = base.with_suffix(".npz") if base.with_suffix(".npz").is_file() else base
                ranks = load_ranks(path) if path.exists() else {}
                if not {"backbone", "fusion"} <= ranks.keys():
                    break
                runs.append(ranks)
            else:
                if runs:
                    out[(dataset, backbone)] = runs
    return out


def pvalues_by_run(ranks: Mapping[tuple[str, str], Sequence[Mapping[str, np.ndarray]]],
                   metrics: Sequence[str] = METRICS) -> dict[tuple[str, str], dict[str, float]]:
    """{(dataset, backbone): {metric: p}}: +GlobalDiff against the backbone, users paired, seeds averaged."""
    return {key: run_pvalues(runs, metrics) for key, runs in ranks.items()}


# --- Aggregation ----------------------------------------------------------------------------------------

def aggregate(runs: list[dict], part: str = "test") -> dict:
    """{(dataset, backbone): {model: {metric: (mean, std, n)}}} over the seeds present (std: sample std)."""
    grouped: dict[tuple[str, str], list[dict]] = {}
    for run in runs:
        grouped.setdefault((run["dataset"], run["backbone"]), []).append(run)
    return {key: {model: {metric: _mean_std([r[part][model][metric] for r in group]) for metric in METRICS}
                  for model in MODELS}
            for key, group in sorted(grouped.items())}


def _mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    values = np.asarray(values, dtype=np.float64)
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return float(values.mean()), std, len(values)


def improvement(new: float, old: float) -> float:
    """Relative change in percent, 100 (new / old - 1); NaN when old is 0."""
    return 100.0 * (new / old - 1.0) if old else math.nan


def results_json(summary: dict) -> dict:
    """Nested plain dict for `dvc metrics show`: dataset -> backbone -> model -> metric -> mean."""
    out: dict = {}
    for (dataset, backbone), models in summary.items():
        for model, metrics in models.items():
            means = {k: round(v[0], 6) for k, v in metrics.items()}
            out.setdefault(dataset, {}).setdefault(backbone, {})[model] = means
    return out


# --- Table 1 --------------------------------------------------------------------------------------------

def table1(stats: Mapping[str, Mapping], paper: Mapping[str, Mapping]) -> Table:
    """Dataset statistics, ours (from stats.json) beside the paper's Table 1; the paper's datasets first."""
    datasets = list(paper) + [d for d in stats if d not in paper]
    rows: list[list[Cell | str]] = []

    def cells(values: Mapping | None, missing: str) -> list[Cell]:
        if values is None:
            return [Cell(missing)] * len(STATS)
        return [Cell(f"{int(values['users']):,}", int(values["users"])),
                Cell(f"{int(values['items']):,}", int(values["items"])),
                Cell(f"{int(values['interactions']):,}", int(values["interactions"])),
                Cell(f"{float(values['avg_len']):.2f}", float(values["avg_len"])),
                Cell(f"{100 * float(values['sparsity']):.2f}%", float(values["sparsity"]))]

    for dataset in datasets:
        rows.append([dataset, "ours", *cells(stats.get(dataset), NOT_RUN)])
        rows.append([dataset, "paper", *cells(paper.get(dataset), NOT_REPORTED)])
    return Table(
        caption="Table 1: dataset statistics after preprocessing, ours beside the paper's.",
        header=["dataset", "source", "users", "items", "interactions", "avg. length", "sparsity"],
        rows=rows, align="llrrrrr", breaks=tuple(range(0, len(rows), 2)),
        footnotes=["avg. length: interactions / users; sparsity: 1 - interactions / (users * items) "
                   "(a fraction in the CSV). not run: a dataset we have not preprocessed."])


# --- Table 2 --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Disagreement:
    """A Table 2 cell where +GlobalDiff's change over the backbone has opposite signs in ours and the paper's."""

    dataset: str
    backbone: str
    metric: str
    ours_pct: float
    paper_pct: float
    p_value: float = math.nan


def table2(summary: Mapping, paper: Mapping[tuple[str, str, str], float],
           pvalues: Mapping[tuple[str, str], Mapping[str, float]] | None = None, *,
           datasets: Sequence[str] | None = None, backbones: Sequence[str] = BACKBONES,
           metrics: Sequence[str] = METRICS, baselines: bool = True, gamma: float | None = None,
           exclude: str | None = None) -> tuple[Table, list[Disagreement]]:
    """Table 2, ours beside the paper's, and the cells where the direction of the improvement disagrees.

    `summary` is `aggregate(runs)`, `paper` is `read_paper_table2(...)`, `pvalues` is `pvalues_by_run(...)`
    (a run missing there shows "n/a"). Datasets: the paper's (in its order), then ours that it lacks. Per
    dataset: the paper's baseline-only rows (if `baselines`), then per backbone our backbone, +GlobalDiff,
    diffusion alone, improvement % and p-value, then the paper's backbone, +GlobalDiff and improvement %.
    A (dataset, backbone) that we did not run shows "not run" in every cell of ours.
    """
    pvalues = pvalues or {}
    paper_datasets = list(dict.fromkeys(d for _, d, _ in paper))
    if datasets is None:
        datasets = paper_datasets + sorted({d for d, _ in summary} - set(paper_datasets))
    ours_names = set(PAPER_NAMES.values())
    baseline_methods = [m for m in dict.fromkeys(m for m, _, _ in paper)
                        if not m.endswith("+GlobalDiff") and m not in ours_names]
    header = ["dataset", "model", "source", "seeds", *metrics]
    rows: list[list[Cell | str]] = []
    breaks: list[int] = []
    found: list[Disagreement] = []

    def paper_values(method: str, dataset: str) -> list[float | None]:
        return [paper.get((method, dataset, k)) for k in metrics]

    for dataset in datasets:
        breaks.append(len(rows))
        if baselines:
            for method in baseline_methods:
                values = paper_values(method, dataset)
                if any(v is not None for v in values):
                    rows.append([dataset, method, "paper", "", *map(_value_cell, values)])
        for backbone in backbones:
            breaks.append(len(rows))
            name = PAPER_NAMES.get(backbone, backbone)
            models = summary.get((dataset, backbone))
            labels = {"backbone": name, "fusion": f"{name}+GlobalDiff", "diffusion": f"diffusion alone ({name})"}
            for model in ("backbone", "fusion", "diffusion"):
                if models is None:
                    rows.append([dataset, labels[model], "ours", "", *[Cell(NOT_RUN)] * len(metrics)])
                else:
                    n = models[model][metrics[0]][2]
                    rows.append([dataset, labels[model], "ours", Cell(str(n), n),
                                 *(spread_cell(*models[model][k]) for k in metrics)])
            paper_bb, paper_fu = paper_values(name, dataset), paper_values(f"{name}+GlobalDiff", dataset)
            paper_pct = [None if b is None or f is None else improvement(f, b) for b, f in zip(paper_bb, paper_fu)]
            p = pvalues.get((dataset, backbone))
            if models is None:
                gain_cells = [Cell(NOT_RUN)] * len(metrics)
                p_cells = [Cell(NOT_RUN)] * len(metrics)
            else:
                gain_cells = []
                for k, theirs in zip(metrics, paper_pct):
                    ours = improvement(models["fusion"][k][0], models["backbone"][k][0])
                    cell = _pct_cell(ours)
                    if theirs is not None and not math.isnan(ours) and ours * theirs < 0:
                        cell = Cell(cell.text, cell.value, mark=DAGGER)
                        found.append(Disagreement(dataset, backbone, k, ours, theirs,
                                                  math.nan if p is None else float(p.get(k, math.nan))))
                    gain_cells.append(cell)
                p_values = [math.nan if p is None else float(p.get(k, math.nan)) for k in metrics]
                p_cells = [Cell(NA) if math.isnan(v) else Cell(format_p(v), v) for v in p_values]
            rows.append([dataset, f"Improv. % ({name})", "ours", "", *gain_cells])
            rows.append([dataset, f"p-value ({name})", "ours", "", *p_cells])
            rows.append([dataset, name, "paper", "", *map(_value_cell, paper_bb)])
            rows.append([dataset, f"{name}+GlobalDiff", "paper", "", *map(_value_cell, paper_fu)])
            rows.append([dataset, f"Improv. % ({name})", "paper", "",
                         *(Cell(NOT_REPORTED) if v is None else _pct_cell(v) for v in paper_pct)])

    setting = "".join([f"; gamma = {gamma}" if gamma is not None else "",
                       f"; excluded items: {exclude}" if exclude is not None else ""])
    notes = ["Ours: mean ± sample std over the seeds counted in column seeds (one seed: the mean alone). "
             "Paper: the paper's Table 2.",
             "Improv. %: +GlobalDiff over the backbone, 100 (GlobalDiff / backbone - 1), from the means.",
             "p-value: two-sided Wilcoxon signed-rank test of +GlobalDiff against the backbone, users paired, "
             "each user's metric averaged over the seeds first; n/a: per-user ranks not available.",
             f"{NOT_RUN}: a dataset and backbone we did not run (no number is implied); "
             f"{NOT_REPORTED}: the paper gives no number."]
    if found:
        cells = ", ".join(f"{d.dataset} {PAPER_NAMES.get(d.backbone, d.backbone)} {d.metric} "
                          f"(ours {d.ours_pct:+.2f}%, paper {d.paper_pct:+.2f}%)" for d in found)
        notes.append(f"{DAGGER}: our improvement and the paper's have opposite signs: {cells}.")
    table = Table(caption=f"Table 2: test metrics, full ranking over all items, every user{setting}; "
                          "ours beside the paper's.",
                  header=header, rows=rows, footnotes=notes, align="llll" + "r" * len(metrics),
                  spread=tuple(metrics), breaks=tuple(dict.fromkeys(breaks)), marked=True)
    return table, found


def results_markdown(summary: dict, paper: dict, gamma: float, exclude: str,
                     pvalues: dict | None = None) -> str:
    """Markdown Table 2 restricted to the datasets and backbones we ran (no baseline-only rows)."""
    datasets = list(dict.fromkeys(d for d, _ in summary))
    backbones = list(dict.fromkeys(b for _, b in summary))
    table, _ = table2(summary, paper, pvalues, datasets=datasets, backbones=backbones, baselines=False,
                      gamma=gamma, exclude=exclude)
    return to_markdown(table)


# --- Table 3 --------------------------------------------------------------------------------------------

_PAIRWISE = {"exactcosine", "cosine", "pairwise", "exact"}


def _norm(name: str) -> str:
    """Case and white space do not matter: "K = 100" is "K=100"."""
    return "".join(name.lower().split())


def _paper_variant(ours: str, paper: Mapping[str, Mapping]) -> str | None:
    for theirs in paper:
        if _norm(theirs) == _norm(ours):
            return theirs
        if _norm(ours) in _PAIRWISE and _norm(theirs).startswith("pairwise"):
            return theirs
    return None


def table3(variants: Sequence[Mapping], paper: Mapping[str, Mapping[str, float]], *, dataset: str, backbone: str,
           metrics: Sequence[str] = METRICS, part: str = "test") -> Table:
    """Table 3 (item similarity variants): +GlobalDiff of each of our variants beside the paper's row.

    `variants`: [{"variant": "K=100" | "exact cosine" | ..., "runs": [metrics dicts]}]. Our variants match
    the paper's by name (K=100, K=500, K=1000; "exact cosine" is the paper's pairwise row); our backbone
    alone (its metrics from the runs, one per seed) sits beside the paper's "(no GlobalDiff)" row. The paper
    ran CBiT on Beauty; `dataset` and `backbone` say what we ran, in the caption.
    """
    name = PAPER_NAMES.get(backbone, backbone)
    header = ["variant", "source", "seeds", *metrics]
    rows: list[list[Cell | str]] = []

    def ours_row(label: str, runs: Sequence[Mapping], model: str) -> list[Cell | str]:
        if not runs:
            return [label, "ours", "", *[Cell(NOT_RUN)] * len(metrics)]
        stats = [_mean_std([r[part][model][k] for r in runs]) for k in metrics]
        return [label, "ours", Cell(str(len(runs)), len(runs)), *(spread_cell(*s) for s in stats)]

    def paper_row(label: str, values: Mapping[str, float] | None) -> list[Cell | str]:
        return [label, "paper", "", *(_value_cell(None if values is None else values.get(k)) for k in metrics)]

    by_seed: dict = {}
    for variant in variants:
        for run in variant["runs"]:
            by_seed.setdefault(run.get("seed"), run)
    no_diff = next((v for v in paper if "no globaldiff" in v.lower()), None)
    rows.append(ours_row(f"{name} (no GlobalDiff)", list(by_seed.values()), "backbone"))
    if no_diff is not None:
        rows.append(paper_row(no_diff, paper[no_diff]))
    matched = {v["variant"]: _paper_variant(v["variant"], paper) for v in variants}
    for theirs in paper:
        if theirs == no_diff:
            continue
        mine = [v for v in variants if matched[v["variant"]] == theirs]
        if mine:
            rows += [ours_row(v["variant"], v["runs"], "fusion") for v in mine]
        else:
            rows.append(ours_row(theirs, [], "fusion"))
        rows.append(paper_row(theirs, paper[theirs]))
    for v in variants:
        if matched[v["variant"]] is None:
            rows.append(ours_row(v["variant"], v["runs"], "fusion"))
            rows.append(paper_row(v["variant"], None))
    return Table(
        caption=f"Table 3: item similarity variants, {part} metrics of +GlobalDiff; ours on {dataset} with "
                f"{name}, the paper's on beauty with CBiT.",
        header=header, rows=rows, align="lll" + "r" * len(metrics), spread=tuple(metrics),
        footnotes=["Ours: mean ± sample std over the seeds counted in column seeds (one seed: the mean alone). "
                   "K=k: K-means similarity with k clusters; pairwise: exact cosine similarity of all item pairs.",
                   f"{NOT_RUN}: a variant we did not run; {NOT_REPORTED}: the paper gives no number."])


# --- Attribution (beyond the paper) ---------------------------------------------------------------------

SECOND_OPINIONS = {"fusion": "+GlobalDiff", "fusion_propagated": "+softmax(y)A", "fusion_popularity": "+popularity",
                   "fusion_random": "+random"}


def attribution_table(runs: Sequence[Mapping], ranks: Mapping[tuple[str, str], Sequence[Mapping[str, np.ndarray]]],
                      recipes: Mapping[str, str] | None = None, *, metrics: Sequence[str] = ("HR@10", "NDCG@10"),
                      part: str = "test", gamma: float | None = None) -> Table:
    """Where a gain comes from: each backbone alone and fused (eq. 8, same gamma) with GlobalDiff's x0_hat and
    with each control of controls.py, mean ± std over seeds, the change against the backbone alone and the
    paired p-value (Wilcoxon over users, seeds averaged per user; `ranks` as `collect_ranks`).

    `runs` are metrics files (dataset, backbone, seed, part -> model -> metric). A second opinion missing from
    any seed of a run reads "not run"; `recipes` {backbone: text} names each backbone's training recipe.
    """
    grouped: dict[tuple[str, str], list[Mapping]] = {}
    for run in runs:
        grouped.setdefault((run["dataset"], run["backbone"]), []).append(run)
    header = ["dataset", "backbone", "metric", "row", "seeds", "backbone alone", *SECOND_OPINIONS.values()]
    rows: list[list[Cell | str]] = []
    breaks: list[int] = []
    for (dataset, backbone), group in sorted(grouped.items()):
        name = PAPER_NAMES.get(backbone, backbone)
        seeds = Cell(str(len(group)), len(group))
        seed_ranks = ranks.get((dataset, backbone))
        for metric in metrics:
            breaks.append(len(rows))
            base = _mean_std([r[part]["backbone"][metric] for r in group])
            values, changes, pvalues = [], [], []
            for model in SECOND_OPINIONS:
                if not all(model in r[part] for r in group):
                    for column in (values, changes, pvalues):
                        column.append(Cell(NOT_RUN))
                    continue
                stats = _mean_std([r[part][model][metric] for r in group])
                values.append(spread_cell(*stats))
                changes.append(_pct_cell(improvement(stats[0], base[0])))
                have = seed_ranks is not None and all(model in s for s in seed_ranks) and part == "test"
                p = compare_runs([s["backbone"] for s in seed_ranks], [s[model] for s in seed_ranks], metric) \
                    if have else math.nan
                pvalues.append(Cell(NA) if math.isnan(p) else Cell(format_p(p), p))
            rows.append([dataset, name, metric, "mean", seeds, spread_cell(*base), *values])
            rows.append([dataset, name, metric, "change %", "", "", *changes])
            rows.append([dataset, name, metric, "p-value", "", "", *pvalues])
    notes = ["Beyond the paper. Every column fuses the backbone's softmax y with a second opinion by the same "
             "eq. (8) Borda rule" + (f" at gamma = {gamma}" if gamma is not None else "") + ": GlobalDiff's "
             "x0_hat, softmax(y)A (the backbone's scores spread once over the item similarity A, no diffusion), "
             "item popularity (train counts, the same for every user) and uniform random scores (a sanity check).",
             "mean: mean ± sample std over the seeds; change %: 100 (fused / alone - 1) from the means; p-value: "
             "two-sided Wilcoxon signed-rank test against the backbone alone, users paired, each user's metric "
             "averaged over the seeds first."]
    for backbone, recipe in (recipes or {}).items():
        if any(b == backbone for _, b in grouped):
            notes.append(f"{PAPER_NAMES.get(backbone, backbone)}: {recipe}.")
    return Table(caption=f"Attribution: {part} metrics of each backbone alone and fused with GlobalDiff or with a "
                         "control that uses no diffusion.",
                 header=header, rows=rows, footnotes=notes, align="lllll" + "r" * (1 + len(SECOND_OPINIONS)),
                 spread=("backbone alone", *SECOND_OPINIONS.values()), breaks=tuple(breaks))


def recipe_text(model_options: Mapping) -> str:
    """A backbone's model options as one line: "hidden 64, blocks 2, loss ce"."""
    return ", ".join(f"{k} {v}" for k, v in model_options.items())


# --- Ablations (Figures 4 and 6, Table 3, the authors'-code switches) ------------------------------------

def describe_changes(overrides: Mapping) -> str:
    """A variant's overrides as "T = 200; similarity.method = kmeans"."""
    from globaldiff.config.ablations import leaves

    return "; ".join(f"{k} = {v}" for k, v in leaves(overrides).items())


def ablation_table(reference: Sequence[Mapping], variants: Mapping[str, Sequence[Mapping]],
                   overrides: Mapping[str, Mapping], reference_ranks: Sequence[Mapping[str, np.ndarray]] | None,
                   variant_ranks: Mapping[str, Sequence[Mapping[str, np.ndarray]]], *, dataset: str, backbone: str,
                   gamma: float, metrics: Sequence[str] = METRICS, part: str = "test") -> Table:
    """Every ablation beside the main run: +GlobalDiff's metrics (mean ± std over seeds), diffusion alone, and
    the paired p-value of each variant's fusion against the main run's on HR@20 (users paired).

    `reference` are the main run's metrics files for the same seeds, or empty when they were evaluated at
    another gamma than the ablations (then the main row reads "not run" and no p-value is computed).
    """
    name = PAPER_NAMES.get(backbone, backbone)
    header = ["variant", "changes", "seeds", *metrics, "diffusion alone HR@20", "p (HR@20)"]
    rows: list[list[Cell | str]] = []

    def row(label: str, changes: str, runs: Sequence[Mapping], p: float | None) -> list[Cell | str]:
        if not runs:
            return [label, changes, "", *[Cell(NOT_RUN)] * (len(metrics) + 2)]
        cells = [spread_cell(*_mean_std([r[part]["fusion"][k] for r in runs])) for k in metrics]
        alone = spread_cell(*_mean_std([r[part]["diffusion"]["HR@20"] for r in runs]))
        p_cell = Cell("") if p is None else (Cell(NA) if math.isnan(p) else Cell(format_p(p), p))
        return [label, changes, Cell(str(len(runs)), len(runs)), *cells, alone, p_cell]

    rows.append(row("main run", "(params.yaml)", reference, None))
    for variant, runs in variants.items():
        mine = variant_ranks.get(variant)
        p = math.nan
        if reference_ranks and mine and len(mine) == len(reference_ranks):
            p = compare_runs([r["fusion"] for r in reference_ranks], [r["fusion"] for r in mine], "HR@20")
        rows.append(row(variant, describe_changes(overrides[variant]), runs, p))
    return Table(
        caption=f"Ablations: {part} metrics of {name}+GlobalDiff on {dataset} with one change each to the diffusion "
                f"side (the backbone is the main run's), fused at gamma = {gamma}.",
        header=header, rows=rows, align="lll" + "r" * (len(metrics) + 2), spread=(*metrics, "diffusion alone HR@20"),
        footnotes=["mean ± sample std over the seeds counted in column seeds (one seed: the mean alone). "
                   "p (HR@20): two-sided Wilcoxon signed-rank test of the variant's fusion against the main run's, "
                   "users paired, seeds averaged per user.",
                   f"{NOT_RUN}: the main run was evaluated at another gamma than the ablations (set gamma = "
                   "diffusion.select_gamma to compare), or the variant was not run."])


def ablation_groups(params: Mapping, names: Sequence[str]) -> dict[str, dict[str, str]]:
    """Which runs draw Figure 4, Figure 6 and Table 3: {"figure4" | "figure6" | "table3": {label: variant}},
    where variant "" is the main run. A variant joins a figure only when it changes nothing else: Figure 4
    takes those that change denoiser.guidance alone, Figure 6 those that change T alone, Table 3 those that
    switch the similarity to K-means (method and clusters only)."""
    from globaldiff.config.ablations import changes, leaves

    variants = params["ablations"]["variants"]
    groups: dict[str, dict[str, str]] = {
        "figure4": {params["denoiser"]["guidance"]: ""},
        "figure6": {f"T = {params['T']}": ""},
        "table3": {"exact cosine": ""} if params["similarity"]["method"] == "cosine" else {},
    }
    for name in names:
        keys, values = changes(variants[name]), leaves(variants[name])
        if keys == {"denoiser.guidance"}:
            groups["figure4"][values["denoiser.guidance"]] = name
        elif keys == {"T"}:
            groups["figure6"][f"T = {values['T']}"] = name
        elif keys <= {"similarity.method", "similarity.clusters"} and \
                values.get("similarity.method", params["similarity"]["method"]) == "kmeans":
            groups["table3"][f"K={values.get('similarity.clusters', params['similarity']['clusters'])}"] = name
    return groups


def longterm_table(runs: Sequence[Mapping], *, dataset: str, backbone: str, gamma: float,
                   metrics: Sequence[str] = METRICS) -> Table:
    """Figure 3's numbers: for each horizon P, the backbone, +GlobalDiff and the change, mean ± std over seeds."""
    name = PAPER_NAMES.get(backbone, backbone)
    horizons = sorted(runs[0]["test"], key=lambda h: int(h[1:])) if runs else []
    rows: list[list[Cell | str]] = []
    for h in horizons:
        stats = {m: [_mean_std([r["test"][h][m][k] for r in runs]) for k in metrics] for m in ("backbone", "fusion")}
        seeds = Cell(str(len(runs)), len(runs))
        rows.append([h[1:], name, seeds, *(spread_cell(*s) for s in stats["backbone"])])
        rows.append([h[1:], f"{name}+GlobalDiff", seeds, *(spread_cell(*s) for s in stats["fusion"])])
        rows.append([h[1:], "Improv. %", "", *(_pct_cell(improvement(f[0], b[0]))
                                                for b, f in zip(stats["backbone"], stats["fusion"]))])
    return Table(
        caption=f"Figure 3 (long-term prediction): test metrics of the P-th next item from one fixed input, {name} "
                f"on {dataset}, longterm split, fused at gamma = {gamma}.",
        header=["P", "model", "seeds", *metrics], rows=rows, align="lll" + "r" * len(metrics), spread=tuple(metrics),
        breaks=tuple(range(0, len(rows), 3)),
        footnotes=["mean ± sample std over the seeds counted in column seeds (one seed: the mean alone). The paper "
                   "gives Figure 3 as a plot only, so no paper numbers sit beside ours."])


# --- Fusion sweep (beyond the paper) ---------------------------------------------------------------------

def _grid_mean(runs: Sequence[Mapping], norm: str, gamma: float, part: str, metric: str) -> float:
    values = [cell[part][metric] for r in runs for cell in r["grid"] if cell["norm"] == norm and cell["gamma"] == gamma]
    if len(values) != len(runs):
        raise ValueError(f"sweep grid point ({norm}, {gamma}) is missing from {len(runs) - len(values)} seed(s)")
    return float(np.mean(values))


def sweep_table(sweeps: Mapping[tuple[str, str], Sequence[Mapping]], *, metric: str | None = None) -> Table:
    """The fusion sweep's grid: for each (dataset, backbone), normalisation of x0_hat and split, the change of
    eq. (8)'s fusion against the backbone alone at every gamma, from the means over seeds. `sweeps` holds
    one sweep.json per seed; `metric` defaults to the sweep's selection metric."""
    first = next((runs[0] for runs in sweeps.values() if runs), None)
    metric = metric or (first["select_metric"] if first else "HR@10")
    gammas = sorted({cell["gamma"] for runs in sweeps.values() for r in runs for cell in r["grid"]})
    norms = list(dict.fromkeys(cell["norm"] for runs in sweeps.values() for r in runs for cell in r["grid"]))
    header = ["dataset", "backbone", "norm", "split", "seeds", *(f"γ={g:g}" for g in gammas)]
    rows: list[list[Cell | str]] = []
    breaks: list[int] = []
    for (dataset, backbone), runs in sorted(sweeps.items()):
        breaks.append(len(rows))
        seeds = Cell(str(len(runs)), len(runs))
        for norm in norms:
            for part in ("val", "test"):
                base = float(np.mean([r["backbone"][part][metric] for r in runs]))
                cells = [_pct_cell(improvement(_grid_mean(runs, norm, g, part, metric), base)) for g in gammas]
                rows.append([dataset, PAPER_NAMES.get(backbone, backbone), norm, part, seeds, *cells])
    return Table(
        caption=f"Fusion sweep (beyond the paper): change of {metric} when the backbone's softmax is fused with "
                "GlobalDiff's x0_hat by eq. (8), for each gamma and normalisation of x0_hat.",
        header=header, rows=rows, align="lllll" + "r" * len(gammas), breaks=tuple(breaks),
        footnotes=["100 (fused / backbone alone - 1) from the means over the seeds counted in column seeds. "
                   "gamma = 1 is the backbone alone; gamma = 0 orders items by x0_hat alone. The diffusion model "
                   "(and its epoch) is the main run's, chosen at diffusion.select_gamma with ensemble.norm; "
                   "the test rows describe, they choose nothing (fusion_tuned does the choosing, on validation)."])


def tuned_table(sweeps: Mapping[tuple[str, str], Sequence[Mapping]],
                ranks: Mapping[tuple[str, str], Sequence[tuple[np.ndarray, np.ndarray]]],
                metrics: Sequence[str] = METRICS) -> Table:
    """The fusion with (norm, gamma) chosen on validation for each seed: test metrics beside the backbone
    alone's, the change and the paired p-value (users paired, seeds averaged per user). `ranks` holds one
    (backbone test ranks, tuned test ranks) pair per seed; a run without them reads "n/a"."""
    header = ["dataset", "backbone", "seeds", "chosen (norm, γ) per seed", "row", *metrics]
    rows: list[list[Cell | str]] = []
    breaks: list[int] = []
    for (dataset, backbone), runs in sorted(sweeps.items()):
        breaks.append(len(rows))
        name = PAPER_NAMES.get(backbone, backbone)
        seeds = Cell(str(len(runs)), len(runs))
        chosen = ", ".join(f"{r['tuned']['norm']} {r['tuned']['gamma']:g}" for r in runs)
        base = [_mean_std([r["backbone"]["test"][m] for r in runs]) for m in metrics]
        tuned = [_mean_std([r["tuned"]["test"][m] for r in runs]) for m in metrics]
        pairs = ranks.get((dataset, backbone))
        have = pairs is not None and len(pairs) == len(runs)
        pvalues = [compare_runs([b for b, _ in pairs], [t for _, t in pairs], m) if have else math.nan for m in metrics]
        rows.append([dataset, name, seeds, chosen, "backbone alone", *(spread_cell(*s) for s in base)])
        rows.append([dataset, name, seeds, chosen, "+GlobalDiff, tuned", *(spread_cell(*s) for s in tuned)])
        rows.append([dataset, name, "", "", "change %", *(_pct_cell(improvement(t[0], b[0])) for b, t in zip(base, tuned))])
        rows.append([dataset, name, "", "", "p-value", *(Cell(NA) if math.isnan(p) else Cell(format_p(p), p)
                                                       for p in pvalues)])
    select = next((runs[0]["select_metric"] for runs in sweeps.values() if runs), "HR@10")
    return Table(
        caption="Fusion tuned on validation (beyond the paper): eq. (8) with the gamma and normalisation of x0_hat "
                f"that give the best validation {select} for each seed, test metrics.",
        header=header, rows=rows, align="lllll" + "r" * len(metrics), spread=tuple(metrics), breaks=tuple(breaks),
        footnotes=["mean ± sample std over the seeds; change %: 100 (tuned / alone - 1) from the means; p-value: "
                   "two-sided Wilcoxon signed-rank test against the backbone alone, users paired, each user's "
                   "metric averaged over the seeds first. Ties on validation go to the larger gamma."])
