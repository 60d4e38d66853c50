"""Sparsity schedules: monotone, end exactly at the target, convert to torch amounts."""

from __future__ import annotations

import math

import pytest

from summprune.schedules import SCHEDULES, cumulative_sparsity, keep_counts, progress, step_amounts


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("steps", [1, 3, 10])
@pytest.mark.parametrize("initial, final", [(0.0, 0.9), (0.2, 0.5), (0.0, 1.0), (0.4, 0.4)])
def test_cumulative_is_monotone_and_ends_at_target(schedule, steps, initial, final):
    s = cumulative_sparsity(schedule, steps, final, initial)
    assert len(s) == steps
    assert s[-1] == final
    assert all(initial - 1e-12 <= x <= final + 1e-12 for x in s)
    assert all(b >= a for a, b in zip(s, s[1:]))


def test_cubic_is_zhu_and_gupta():
    s_i, s_f, n = 0.1, 0.9, 8
    got = cumulative_sparsity("cubic", n, s_f, s_i)
    for t, x in enumerate(got, start=1):
        assert x == pytest.approx(s_f + (s_i - s_f) * (1 - t / n) ** 3)
    # prunes most early: the first step is larger than the linear schedule's
    assert got[0] > cumulative_sparsity("linear", n, s_f, s_i)[0]


def test_constant_and_linear():
    assert cumulative_sparsity("constant", 4, 0.8) == [0.8] * 4
    assert cumulative_sparsity("linear", 4, 0.8) == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert progress("cubic", 0, 5) == 0.0 and progress("cubic", 5, 5) == 1.0


def test_geometric_prunes_the_same_fraction_each_step():
    s = cumulative_sparsity("geometric", 5, 1 - 0.7 ** 5)
    assert step_amounts(s) == pytest.approx([0.3] * 5)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_step_amounts_reproduce_the_schedule(schedule):
    s = cumulative_sparsity(schedule, 6, 0.93, 0.1)
    keep = 1 - 0.1
    for a, target in zip(step_amounts(s, 0.1), s):
        assert 0 <= a < 1
        keep *= 1 - a
        assert 1 - keep == pytest.approx(target)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_keep_counts_are_whole_monotone_and_exact(schedule):
    k = keep_counts(10_000, 737, schedule, 7)
    assert k[-1] == 737 and all(isinstance(x, int) for x in k)
    assert all(b <= a for a, b in zip([10_000] + k, k))
    assert keep_counts(5, 5, schedule, 3) == [5, 5, 5]
    assert keep_counts(5, 0, schedule, 2)[-1] == 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="schedule='exp'"):
        cumulative_sparsity("exp", 3, 0.5)
    with pytest.raises(ValueError, match="steps=0"):
        cumulative_sparsity("cubic", 0, 0.5)
    with pytest.raises(ValueError, match="initial"):
        cumulative_sparsity("cubic", 3, 0.2, 0.5)
    with pytest.raises(ValueError, match="final"):
        keep_counts(10, 11, "cubic", 3)
