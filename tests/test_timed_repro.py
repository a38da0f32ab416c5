"""tools/timed_repro.py: per-stage times from dvc's `Running stage` lines (the figures docs/speed.md quotes)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import timed_repro  # noqa: E402


def test_each_stage_runs_to_the_next_stage_line_and_the_last_to_the_end():
    events = [(0.0, "Verifying data sources"), (1.0, "Running stage 'download@ml-1m':"), (1.5, "> python x"),
              (4.0, "Stage 'preprocess@ml-1m' didn't change, skipping"),
              (5.0, "Running stage 'train_backbone@ml-1m-sasrec-0':"), (65.0, "epoch=1"),
              (70.0, "Running stage 'train_backbone@ml-1m-sasrec-1':")]
    times = timed_repro.stage_times(events, end=100.0)
    assert times == [("download@ml-1m", 4.0, 1.0), ("train_backbone@ml-1m-sasrec-0", 65.0, 5.0),
                     ("train_backbone@ml-1m-sasrec-1", 30.0, 70.0)]
    assert timed_repro.kind_totals(times) == {"download": (1, 4.0), "train_backbone": (2, 95.0)}


def test_a_run_with_no_stage_has_no_times():
    assert timed_repro.stage_times([(0.0, "Data and pipelines are up to date.")], end=3.0) == []
