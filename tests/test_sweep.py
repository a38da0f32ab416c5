"""The fusion sweep (sweep.py), its tables (report.py) and figure (figures.py), on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from globaldiff.report.figures import fusion_sweep_figure
from globaldiff.ranking.metrics import masked_ranks, exclusion_mask
from globaldiff.report.fusion_sweep import sweep_table, tuned_table
from globaldiff.report.table import to_markdown
from globaldiff.ranking.sweep import choose_setting, fusion_grid_ranks, run_sweep
from globaldiff.data.windows import EvalSet


def one_user(target: int = 2) -> EvalSet:
    # the window holds item 4, which no score may rank (eval.exclude window)
    return EvalSet(torch.tensor([[4]]), torch.tensor([target]))


# ids 0..4; item 4 is excluded. softmax over items 1..3 of logits (2, 1, 0) is (0.665, 0.245, 0.090), Borda
# ranks (3, 2, 1): backbone terms r*y = (1.995, 0.489, 0.090). x0 (0.1, 0.2, 0.7) is already L1-normalised,
# ranks (1, 2, 3): terms r*x = (0.1, 0.4, 2.1).
LOGITS = torch.tensor([[0.0, 2.0, 1.0, 0.0, 5.0]])
X0 = torch.tensor([[0.0, 0.1, 0.2, 0.7, 9.0]])


def test_grid_ranks_by_hand():
    ranks = fusion_grid_ranks(LOGITS, X0, one_user(), [0.0, 0.5, 0.9, 1.0], ["l1"], "window")
    assert ranks[("backbone", 1.0)].tolist() == [2]        # item 1 > item 2 > item 3
    # gamma 0.5: 0.5 (1.995 + 0.1, 0.489 + 0.4, 0.090 + 2.1) = (1.048, 0.445, 1.095): item 3 > item 1 > item 2
    assert ranks[("l1", 0.5)].tolist() == [3]
    # gamma 0.9: (1.806, 0.480, 0.291): the backbone's order
    assert ranks[("l1", 0.9)].tolist() == [2]
    # gamma 0: x0's order, item 3 > item 2 > item 1
    assert ranks[("l1", 0.0)].tolist() == [2]
    assert ranks[("l1", 1.0)].tolist() == [2]
    # the target item 1 under gamma 0.5 is second, not first
    assert fusion_grid_ranks(LOGITS, X0, one_user(1), [0.5], ["l1"], "window")[("l1", 0.5)].tolist() == [2]


def test_gamma_one_is_the_backbone_for_every_norm_and_chunking():
    gen = torch.Generator().manual_seed(0)
    users, items = 37, 12
    logits = torch.randn(users, items + 1, generator=gen)
    x0 = torch.rand(users, items + 1, generator=gen)
    evalset = EvalSet(torch.randint(1, items + 1, (users, 3), generator=gen),
                      torch.randint(1, items + 1, (users,), generator=gen))
    ranks = fusion_grid_ranks(logits, x0, evalset, [0.0, 1.0], ["softmax", "l1", "l2"], "window", chunk=5)
    mask = exclusion_mask(items, evalset.windows)
    np.testing.assert_array_equal(ranks[("backbone", 1.0)], masked_ranks(logits, mask, evalset.targets))
    for norm in ("softmax", "l1", "l2"):
        np.testing.assert_array_equal(ranks[(norm, 1.0)], ranks[("backbone", 1.0)])
        # non-negative x0: every normalisation keeps its order, so gamma 0 ranks as x0 alone
        np.testing.assert_array_equal(ranks[(norm, 0.0)], masked_ranks(x0, mask, evalset.targets))


def test_bad_grid_values_are_refused():
    with pytest.raises(ValueError, match="gamma"):
        fusion_grid_ranks(LOGITS, X0, one_user(), [1.5], ["l1"], "window")
    with pytest.raises(ValueError, match="normalisation 'l3'"):
        fusion_grid_ranks(LOGITS, X0, one_user(), [0.5], ["l3"], "window")


def test_choose_setting_best_validation_then_larger_gamma():
    val = {("backbone", 1.0): {"HR@10": 0.9},      # never a candidate
           ("l1", 0.3): {"HR@10": 0.20}, ("l1", 0.7): {"HR@10": 0.25},
           ("l2", 0.1): {"HR@10": 0.24}, ("l2", 0.9): {"HR@10": 0.25}}
    assert choose_setting(val, "HR@10") == ("l2", 0.9)
    # a tie at the same gamma goes to the norm that comes first in the grid's order
    val = {("l1", 0.9): {"HR@10": 0.25}, **val}
    assert choose_setting(val, "HR@10") == ("l1", 0.9)
    with pytest.raises(ValueError, match="empty"):
        choose_setting({("backbone", 1.0): {"HR@10": 0.1}}, "HR@10")


def test_run_sweep_chooses_on_validation_never_on_test():
    # validation: the target (item 2) wins only when x0 weighs in (gamma 0.5); test: it wins only at gamma 1
    evalsets = {"val": one_user(3), "test": one_user(1)}
    logits = {"val": LOGITS, "test": LOGITS}
    x0 = {"val": X0, "test": X0}
    summary, tuned = run_sweep(logits, x0, evalsets, gammas=[0.5, 1.0], norms=["l1"], exclude="window",
                               select_metric="NDCG@10")
    assert (summary["tuned"]["norm"], summary["tuned"]["gamma"]) == ("l1", 0.5)
    assert summary["tuned"]["val"]["NDCG@10"] == pytest.approx(1.0)          # item 3 first
    assert summary["tuned"]["test"]["NDCG@10"] == pytest.approx(1 / math.log2(3))   # item 1 second
    assert tuned.tolist() == [2]
    assert summary["backbone"]["test"]["NDCG@10"] == pytest.approx(1.0)
    assert [(g["norm"], g["gamma"]) for g in summary["grid"]] == [("l1", 0.5), ("l1", 1.0)]


def sweep_file(seed: int, base: float, cells: dict, tuned: tuple[str, float]) -> dict:
    metrics = lambda v: {"HR@10": v, "HR@20": v, "NDCG@10": v / 2, "NDCG@20": v / 2}  # noqa: E731
    grid = [{"norm": n, "gamma": g, "val": metrics(v), "test": metrics(v)} for (n, g), v in cells.items()]
    return {"dataset": "ml-1m", "backbone": "sasrec", "seed": seed, "select_metric": "HR@10",
            "backbone": {"val": metrics(base), "test": metrics(base)}, "grid": grid,
            "tuned": {"norm": tuned[0], "gamma": tuned[1], "val": metrics(cells[tuned]), "test": metrics(cells[tuned])}}


SWEEPS = {("ml-1m", "sasrec"): [
    sweep_file(0, 0.20, {("l1", 0.5): 0.22, ("l1", 1.0): 0.20}, ("l1", 0.5)),
    sweep_file(1, 0.20, {("l1", 0.5): 0.18, ("l1", 1.0): 0.20}, ("l1", 1.0)),
]}


def test_sweep_table_changes_from_the_seed_means():
    table = sweep_table(SWEEPS)
    assert table.header == ["dataset", "backbone", "norm", "split", "seeds", "γ=0.5", "γ=1"]
    val, test = table.rows
    assert [str(c) for c in val] == ["ml-1m", "SASRec", "l1", "val", "2", "+0.00%", "+0.00%"]   # (0.22+0.18)/2 = 0.20
    assert str(test[3]) == "test"


def test_tuned_table_rows_change_and_pvalue():
    users = 40
    backbone = np.full(users, 5)                  # rank 5: a hit at 10 for every user
    better = np.ones(users, dtype=np.int64)       # rank 1 for every user
    ranks = {("ml-1m", "sasrec"): [(backbone, better), (backbone, better)]}
    table = tuned_table(SWEEPS, ranks)
    alone, tuned, change, pvalue = table.rows
    assert str(alone[3]) == "l1 0.5, l1 1" and str(alone[4]) == "backbone alone"
    assert str(alone[5]) == "0.2000 ± 0.0000"
    assert str(tuned[5]) == "0.2100 ± 0.0141"     # HR@10 0.22 (l1 0.5) and 0.20 (l1 1)
    assert str(change[5]) == "+5.00%"
    assert str(pvalue[5]) == "1.000"              # HR@10: a hit either way, no difference
    assert float(pvalue[7].value) < 0.001         # NDCG@10: rank 1 beats rank 5 for all 40 users
    assert "| p-value |" in to_markdown(table)
    missing = tuned_table(SWEEPS, {})
    assert all(str(c) == "n/a" for c in missing.rows[3][5:])


def test_fusion_sweep_figure_writes_files(tmp_path):
    written = fusion_sweep_figure({"sasrec": SWEEPS[("ml-1m", "sasrec")]}, tmp_path / "sweep", "ml-1m")
    assert [p.suffix for p in written] == [".png", ".pdf"]
    assert all(p.stat().st_size > 1000 for p in written)
