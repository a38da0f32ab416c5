"""Table 1: dataset statistics after preprocessing, ours (each dataset's stats.json) beside the paper's."""

from __future__ import annotations

from typing import Mapping

from globaldiff.report.readers import STATS
from globaldiff.report.table import NOT_REPORTED, NOT_RUN, Cell, Table


def _stat_cells(values: Mapping | None, missing: str) -> list[Cell]:
    if values is None:
        return [Cell(missing)] * len(STATS)
    return [Cell(f"{int(values['users']):,}", int(values["users"])),
            Cell(f"{int(values['items']):,}", int(values["items"])),
            Cell(f"{int(values['interactions']):,}", int(values["interactions"])),
            Cell(f"{float(values['avg_len']):.2f}", float(values["avg_len"])),
            Cell(f"{100 * float(values['sparsity']):.2f}%", float(values["sparsity"]))]


def table1(stats: Mapping[str, Mapping], paper: Mapping[str, Mapping]) -> Table:
    """`stats` {dataset: stats.json} of the study's datasets, `paper` `read_paper_table1(...)`: the paper's
    datasets first (in its order), then ours that it lacks; a row of each source per dataset."""
    datasets = list(paper) + [d for d in stats if d not in paper]
    rows: list[list[Cell | str]] = []
    for dataset in datasets:
        rows.append([dataset, "ours", *_stat_cells(stats.get(dataset), NOT_RUN)])
        rows.append([dataset, "paper", *_stat_cells(paper.get(dataset), NOT_REPORTED)])
    return Table(
        caption="Table 1: dataset statistics after preprocessing, ours beside the paper's.",
        header=["dataset", "source", "users", "items", "interactions", "avg. length", "sparsity"],
        rows=rows, align="llrrrrr", breaks=tuple(range(0, len(rows), 2)),
        footnotes=["avg. length: interactions / users; sparsity: 1 - interactions / (users * items) "
                   "(a fraction in the CSV). not run: a dataset we have not preprocessed."])
