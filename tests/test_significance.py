"""Paired Wilcoxon tests of +GlobalDiff against its backbone, on cases whose answer is known by hand."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from globaldiff.report.significance import compare_runs, paired_test, per_user_metric, run_pvalues

EXCLUDED = np.iinfo(np.int64).max


def test_fusion_better_for_every_user_gives_the_exact_two_sided_p():
    # 30 users: the backbone misses all of them, the fusion ranks user i at i+1: every difference is
    # positive and all 30 differ, so the exact null probability of W = 0 is 1 / 2^30, two-sided 2 / 2^30.
    backbone = np.full(30, 1000, dtype=np.int64)
    fusion = np.arange(1, 31, dtype=np.int64)
    p = compare_runs([backbone], [fusion], "NDCG@30")
    assert p == 2.0 / 2 ** 30
    assert p < 1e-5
    a, b = per_user_metric(fusion, "NDCG@30"), per_user_metric(backbone, "NDCG@30")
    assert p == stats.wilcoxon(a, b).pvalue


def test_identical_inputs_give_one_and_too_few_users_nan():
    ranks = np.array([3, 1, 40, EXCLUDED, 7])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # all differences zero: scipy raises or warns, we answer 1.0 quietly
        assert compare_runs([ranks, ranks], [ranks, ranks], "HR@10") == 1.0
        assert paired_test([0.5, 0.25, 0.0], [0.5, 0.25, 0.0]) == 1.0
    assert math.isnan(paired_test([0.5], [0.1]))
    assert math.isnan(paired_test([], []))


def test_symmetric_differences_give_p_near_one():
    # ten sizes of difference, each once up and once down (powers of two: the differences are exact)
    base = np.arange(20) / 32
    steps = np.repeat(np.arange(1, 11) / 64, 2) * np.tile([1.0, -1.0], 10)
    p = paired_test(base + steps, base)
    assert p > 0.95


def test_a_one_sided_shift_is_significant_in_both_directions():
    base = np.linspace(0.1, 0.9, 25)
    shift = np.arange(1, 26) * 0.001
    assert paired_test(base + shift, base) == paired_test(base, base + shift) < 1e-5


def test_per_user_metric_from_ranks():
    ranks = np.array([1, 3, 10, 11, EXCLUDED])
    np.testing.assert_array_equal(per_user_metric(ranks, "HR@10"), [1, 1, 1, 0, 0])
    np.testing.assert_allclose(per_user_metric(ranks, "NDCG@10"), [1.0, 0.5, 1 / np.log2(11), 0.0, 0.0])
    with pytest.raises(ValueError, match="MRR"):
        per_user_metric(ranks, "MRR@10")
    with pytest.raises(ValueError, match="HR10"):
        per_user_metric(ranks, "HR10")


def test_seeds_are_averaged_per_user_not_pooled():
    bb = [np.array([1, 20, 5, 30, 2, 50]), np.array([2, 30, 1, 20, 9, 40]), np.array([1, 15, 12, 3, 4, 60])]
    fu = [np.array([1, 4, 5, 8, 1, 11]), np.array([1, 9, 2, 5, 3, 30]), np.array([2, 5, 6, 2, 1, 20])]
    averaged_fu = np.mean([per_user_metric(r, "NDCG@20") for r in fu], axis=0)
    averaged_bb = np.mean([per_user_metric(r, "NDCG@20") for r in bb], axis=0)
    pooled = paired_test(np.concatenate([per_user_metric(r, "NDCG@20") for r in fu]),
                         np.concatenate([per_user_metric(r, "NDCG@20") for r in bb]))
    p = compare_runs({0: bb[0], 1: bb[1], 2: bb[2]}, fu, "NDCG@20")
    assert p == paired_test(averaged_fu, averaged_bb)
    assert p != pooled
    assert run_pvalues([{"backbone": b, "fusion": f} for b, f in zip(bb, fu)], ["NDCG@20"]) == {"NDCG@20": p}


def test_runs_over_different_users_are_refused():
    with pytest.raises(ValueError, match="users"):
        compare_runs([np.arange(1, 6)], [np.arange(1, 5)], "HR@10")
    with pytest.raises(ValueError, match="different user sets"):
        compare_runs([np.arange(1, 6), np.arange(1, 5)], [np.arange(1, 6)] * 2, "HR@10")
