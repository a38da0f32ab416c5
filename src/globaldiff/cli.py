"""Shared plumbing of the stage scripts: argument parsing, clear errors, curve logs."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Callable

from globaldiff import ConfigError


def stage_args(*names: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    for name in names:
        parser.add_argument(f"--{name}", required=True, type=int if name == "seed" else str)
    parser.add_argument("--params", default="params.yaml")
    return parser.parse_args()


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage; a ConfigError becomes one line on stderr and exit status 1 (no traceback)."""
    try:
        main()
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


class CurveLog:
    """Per-epoch rows collected in memory and written as CSV (a DVC plots file) when the stage ends."""

    def __init__(self):
        self.rows: list[dict] = []

    def __call__(self, row: dict) -> None:
        self.rows.append(row)
        print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)

    def write(self, path: str | Path) -> None:
        from globaldiff.io import atomic_path

        columns = list(dict.fromkeys(k for row in self.rows for k in row))
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)
