"""Table 1: dataset statistics after preprocessing, ours (each dataset's stats.json) beside the paper's."""

from __future__ import annotations

from typing import Mapping

from globaldiff.report.readers import STATS
from globaldiff.report.table import NOT_REPORTED, NOT_RUN, Cell, Table

OTHER = "ours (another preprocessing)"   # the source of a row that is the paper's dataset, preprocessed otherwise

# Datasets of ours that are another preprocessing of one of the paper's: {ours: (the paper's, what differs)}.
# Such a row stands in the paper's dataset's group, after the paper's row, with OTHER as its source and a note.
OTHER_PREPROCESSING: dict[str, tuple[str, str]] = {
    "beauty-5core": ("beauty", "Amazon Beauty as the S3-Rec / ICLRec line of work preprocesses it (the 5-core of "
                               "the review file), not the paper's split (ratings_Beauty.csv with its own filters): "
                               "the counts are not comparable, only the regime (sparse, short sequences)"),
}


def _stat_cells(values: Mapping | None, missing: str) -> list[Cell]:
    if values is None:
        return [Cell(missing)] * len(STATS)
    return [Cell(f"{int(values['users']):,}", int(values["users"])),
            Cell(f"{int(values['items']):,}", int(values["items"])),
            Cell(f"{int(values['interactions']):,}", int(values["interactions"])),
            Cell(f"{float(values['avg_len']):.2f}", float(values["avg_len"])),
            Cell(f"{100 * float(values['sparsity']):.2f}%", float(values["sparsity"]))]


def table1(stats: Mapping[str, Mapping], paper: Mapping[str, Mapping],
           other: Mapping[str, tuple[str, str]] = OTHER_PREPROCESSING) -> Table:
    """`stats` {dataset: stats.json} of the study's datasets, `paper` `read_paper_table1(...)`: the paper's
    datasets first (in its order), then ours that it lacks; a row of each source per dataset. A dataset of
    `stats` that `other` names as another preprocessing of a paper's dataset gets one row, in that dataset's
    group after the paper's row, marked OTHER and explained in a footnote."""
    beside = {d: other[d][0] for d in stats if d in other and other[d][0] in paper}
    datasets = list(paper) + [d for d in stats if d not in paper and d not in beside]
    rows: list[list[Cell | str]] = []
    breaks: list[int] = []
    notes: list[str] = []
    for dataset in datasets:
        breaks.append(len(rows))
        rows.append([dataset, "ours", *_stat_cells(stats.get(dataset), NOT_RUN)])
        rows.append([dataset, "paper", *_stat_cells(paper.get(dataset), NOT_REPORTED)])
        for ours in (d for d, of in beside.items() if of == dataset):
            rows.append([ours, OTHER, *_stat_cells(stats[ours], NOT_RUN)])
            notes.append(f"{ours} ({OTHER}, beside the paper's {dataset}): {other[ours][1]}.")
    return Table(
        caption="Table 1: dataset statistics after preprocessing, ours beside the paper's.",
        header=["dataset", "source", "users", "items", "interactions", "avg. length", "sparsity"],
        rows=rows, align="llrrrrr", breaks=tuple(breaks),
        footnotes=["avg. length: interactions / users; sparsity: 1 - interactions / (users * items) "
                   "(a fraction in the CSV). not run: a dataset we have not preprocessed."] + notes)
