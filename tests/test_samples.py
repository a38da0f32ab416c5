"""Training samples, paper Section 3.3 step 2, equations (2)-(3), and the Bernoulli draw of x^0.

Every expected q below is computed by hand from the hand-made similarity matrix A.
"""

from __future__ import annotations

import pytest
import torch

from globaldiff.diffusion.samples import bernoulli_targets, position_weights, target_probabilities

# A over item ids 0..5 (0 = padding: zero row and column), symmetric, A[i, i] = 1 for items 1..5.
A = torch.tensor([
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [0.0, 1.0, 0.2, 0.5, 0.1, 0.0],
    [0.0, 0.2, 1.0, 0.3, 0.0, 0.4],
    [0.0, 0.5, 0.3, 1.0, 0.6, 0.1],
    [0.0, 0.1, 0.0, 0.6, 1.0, 0.25],
    [0.0, 0.0, 0.4, 0.1, 0.25, 1.0],
])


def q_of(window, pos, zeta, delta, rule="paper", sim_rows=None):
    windows = torch.tensor([window])
    p = torch.tensor([pos])
    rows = A[windows[0, pos]][None, :] if sim_rows is None else sim_rows
    return target_probabilities(rows, windows, p, zeta, delta, rule)[0]


def test_position_weights_paper_and_code_rules():
    pos = torch.tensor([1])
    paper = position_weights(4, pos, zeta=1.5, delta=1.0, rule="paper")[0]
    assert paper[0].item() == pytest.approx(2.5)       # 1.5/1 + 1
    assert paper[2].item() == pytest.approx(2.5)
    assert paper[3].item() == pytest.approx(1.75)      # 1.5/2 + 1
    assert torch.isinf(paper[1])                       # j = i: never used by eq. (3)
    code = position_weights(4, pos, zeta=1.5, delta=1.0, rule="code")[0]
    torch.testing.assert_close(code, torch.tensor([1.75, 2.5, 1.75, 1.5]))  # 1.5/(|i-j|+1) + 1
    with pytest.raises(ValueError):
        position_weights(4, pos, 1.5, 1.0, rule="nope")


def test_paper_rule_defaults_with_padding_and_clamp():
    # window [0, 2, 1, 3, 4], masked i = 3 (item 3); zeta 1.5, delta 1.
    # q = A[3] = [0, .5, .3, 1, .6, .1]
    # j=1 item 2: (1.5/2 + 1) * .3 = .525 ; j=2 item 1: 2.5 * .5 = 1.25 -> 1 ; j=4 item 4: 2.5 * .6 = 1.5 -> 1
    # item 5 not in the window keeps A[3, 5] = .1 ; q[3] = 1 ; padding column 0 = 0.
    q = q_of([0, 2, 1, 3, 4], 3, zeta=1.5, delta=1.0)
    torch.testing.assert_close(q, torch.tensor([0.0, 1.0, 0.525, 1.0, 1.0, 0.1]))


def test_paper_rule_repeated_item_takes_nearest_occurrence_and_replaces_a():
    # window [4, 1, 3, 2, 5, 4], i = 2 (item 3); zeta 1.5, delta 0.2 (factor can drop below 1).
    # item 4 at j=0 (|i-j|=2): (0.75 + .2) * .6 = .57 ; at j=5 (3): (.5 + .2) * .6 = .42 -> nearest wins: .57
    # item 1 at j=1: (1.5 + .2) * .5 = .85 ; item 2 at j=3: 1.7 * .3 = .51
    # item 5 at j=4: .95 * .1 = .095 < A[3, 5] = .1: eq. (3) replaces the value, it does not take a max with A.
    q = q_of([4, 1, 3, 2, 5, 4], 2, zeta=1.5, delta=0.2)
    torch.testing.assert_close(q, torch.tensor([0.0, 0.85, 0.51, 1.0, 0.57, 0.095]))


def test_paper_rule_repeated_target_is_one_and_zero_a_row_gives_no_nan():
    # The target item 3 also occurs at j=0: skipped (s_j == s_i), q[3] = 1.
    q = q_of([3, 1, 3], 2, zeta=1.5, delta=0.2)
    torch.testing.assert_close(q, torch.tensor([0.0, 0.85, 0.3, 1.0, 0.6, 0.1]))
    # A target whose A row is all zero (no train interactions): inf * 0 at j = i must not leak a NaN.
    rows = torch.zeros(1, 6)
    q = target_probabilities(rows, torch.tensor([[0, 2, 5]]), torch.tensor([2]), 1.5, 1.0, "paper")[0]
    assert not torch.isnan(q).any()
    torch.testing.assert_close(q, torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 1.0]))


def test_clamp_keeps_q_in_unit_interval():
    q = q_of([1, 3, 4, 2], 1, zeta=10.0, delta=5.0)
    assert q.min() >= 0 and q.max() <= 1
    # every window item is re-weighted by >= 5 * A >= 1 when A >= .2: clamped to exactly 1
    torch.testing.assert_close(q, torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0, 0.1]))


def test_code_rule_reweights_every_position_including_target():
    # window [0, 2, 1, 3, 4], i = 3, zeta 1.5, delta .2; code factor 1.5/(|i-j|+1) + .2
    # j=1 item 2: (.5 + .2) * .3 = .21 ; j=2 item 1: .95 * .5 = .475 ; j=3 item 3: 1.7 * 1 -> 1 ; j=4 item 4: .95 * .6 = .57
    q = q_of([0, 2, 1, 3, 4], 3, zeta=1.5, delta=0.2, rule="code")
    torch.testing.assert_close(q, torch.tensor([0.0, 0.475, 0.21, 1.0, 0.57, 0.1]))
    # With A[s_i, s_i] = .4 the code rule gives 1.7 * .4 = .68 at the target, the paper rule 1.
    rows = A[3][None, :].clone()
    rows[0, 3] = 0.4
    q_code = q_of([0, 2, 1, 3, 4], 3, 1.5, 0.2, "code", sim_rows=rows)
    q_paper = q_of([0, 2, 1, 3, 4], 3, 1.5, 0.2, "paper", sim_rows=rows)
    assert q_code[3].item() == pytest.approx(0.68)
    assert q_paper[3].item() == 1.0


def test_code_rule_repeated_item_takes_largest():
    # window [4, 1, 3, 2, 5, 4], i = 2, code factor: j=0 item 4: (1.5/3 + .2) * .6 = .42 ; j=5: (1.5/4 + .2) * .6 = .345
    q = q_of([4, 1, 3, 2, 5, 4], 2, zeta=1.5, delta=0.2, rule="code")
    assert q[4].item() == pytest.approx(0.42)
    assert q[1].item() == pytest.approx(0.95 * 0.5)    # j=1: 1.5/2 + .2
    assert q[5].item() == pytest.approx(0.7 * 0.1)     # j=4: 1.5/3 + .2


def test_unknown_rule_raises():
    with pytest.raises(ValueError):
        q_of([1, 2, 3], 1, 1.5, 1.0, rule="other")


def test_batch_rows_are_independent():
    windows = torch.tensor([[0, 2, 1, 3, 4], [4, 1, 3, 2, 5], [5, 5, 1, 2, 0]])
    pos = torch.tensor([3, 2, 0])
    rows = A[windows[torch.arange(3), pos]]
    batch = target_probabilities(rows, windows, pos, 1.5, 0.2, "paper")
    for b in range(3):
        single = target_probabilities(rows[b:b + 1], windows[b:b + 1], pos[b:b + 1], 1.5, 0.2, "paper")
        torch.testing.assert_close(batch[b:b + 1], single)
    # the input rows are not modified in place
    torch.testing.assert_close(rows, A[windows[torch.arange(3), pos]])


def test_bernoulli_mean_and_reproducibility():
    q = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0, 0.25]).expand(20000, -1).contiguous()
    x = bernoulli_targets(q, torch.Generator().manual_seed(0))
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    # std of a mean of 20000 draws <= .0036: 0.02 is over 5 sigma
    torch.testing.assert_close(x.mean(0), q[0], atol=0.02, rtol=0)
    assert x[:, 0].sum() == 0 and x[:, 4].sum() == 20000
    again = bernoulli_targets(q, torch.Generator().manual_seed(0))
    assert torch.equal(x, again)
    other = bernoulli_targets(q, torch.Generator().manual_seed(1))
    assert not torch.equal(x, other)
