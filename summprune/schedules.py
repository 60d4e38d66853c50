"""Sparsity schedules for gradual pruning: pure functions, no model needed.

A schedule says how much of the way from the initial to the final sparsity a run has gone after
each of its ``steps`` pruning steps (``t = 1 .. n``):

``constant``   all at once at the first step, then held (one-shot pruning, recovery in N parts).
``linear``     ``s_t = s_i + (s_f - s_i) t / n``.
``cubic``      Zhu & Gupta (2017): ``s_t = s_f + (s_i - s_f) (1 - t / n) ** 3``; prunes fast
               while many redundant weights remain and slowly near the target.
``geometric``  the same fraction of the *remaining* weights at every step (a constant torch
               ``amount``), what the course recipe's five equal stages do.

``cumulative_sparsity`` gives ``s_1 .. s_n`` (fraction of a group's weights pruned after each
step, ``s_n`` the target exactly); ``step_amounts`` turns them into torch's per-step ``amount``
(fraction of the still-unpruned weights to prune). Float amounts are rounded by torch
(``round(amount * remaining)``), so schedules of exact *counts* (``keep_counts``) are what the
gradual pruner uses: torch accepts an integer ``amount`` as a number of weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Schedule:
    """``progress(x)``: the fraction of the way done at ``x = step / steps`` in (0, 1];
    ``log_density``: the way is measured in log-density (the same fraction of the remaining weights
    each step), else in sparsity."""

    progress: Callable[[float], float]
    log_density: bool = False


#: Schedule name -> :class:`Schedule` (the config's ``prune.gradual.schedule`` names one).
SCHEDULES: dict[str, Schedule] = {
    "constant": Schedule(lambda x: 1.0),
    "linear": Schedule(lambda x: x),
    "cubic": Schedule(lambda x: 1.0 - (1.0 - x) ** 3),
    "geometric": Schedule(lambda x: x, log_density=True),  # log(1 - s) interpolated linearly
}


def _check(schedule: str, steps: int) -> None:
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule={schedule!r}: choose one of {list(SCHEDULES)}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r}: must be an integer >= 1")


def progress(schedule: str, step: int, steps: int) -> float:
    """Fraction of the way from initial to final sparsity after ``step`` of ``steps`` (in [0, 1]).

    For ``geometric`` this is the fraction of the way in log-density (see ``cumulative_sparsity``).
    """
    _check(schedule, steps)
    if not 0 <= step <= steps:
        raise ValueError(f"step={step}: must be in [0, {steps}]")
    if step == 0:
        return 0.0
    return SCHEDULES[schedule].progress(step / steps)


def cumulative_sparsity(schedule: str, steps: int, final: float, initial: float = 0.0) -> list[float]:
    """Sparsity after each step ``1 .. steps``; non-decreasing, the last one exactly ``final``."""
    _check(schedule, steps)
    if not 0.0 <= initial <= final <= 1.0:
        raise ValueError(f"need 0 <= initial ({initial}) <= final ({final}) <= 1")
    out = []
    for t in range(1, steps + 1):
        p = progress(schedule, t, steps)
        if SCHEDULES[schedule].log_density:
            if final >= 1.0:
                s = initial + (final - initial) * p  # log(0) has no geometric path; fall back to linear
            else:
                s = 1.0 - (1.0 - initial) * ((1.0 - final) / (1.0 - initial)) ** p
        else:
            s = initial + (final - initial) * p
        out.append(s)
    out[-1] = final
    for i in range(1, len(out)):  # guard against rounding making a step negative
        out[i] = max(out[i], out[i - 1])
    return out


def step_amounts(cumulative: list[float], initial: float = 0.0) -> list[float]:
    """torch ``amount`` of each step (fraction of the still-unpruned weights) for a cumulative
    schedule: ``(s_t - s_{t-1}) / (1 - s_{t-1})``. Applying them in order with exact arithmetic
    gives back ``cumulative``; torch rounds each to whole weights."""
    out = []
    prev = initial
    for s in cumulative:
        if s < prev - 1e-12:
            raise ValueError(f"cumulative sparsity must not decrease ({prev} -> {s})")
        out.append(0.0 if prev >= 1.0 else max(0.0, (s - prev) / (1.0 - prev)))
        prev = s
    return out


def keep_counts(current: int, final: int, schedule: str, steps: int) -> list[int]:
    """Whole numbers of weights left unpruned after each step, from ``current`` to ``final``.

    Non-increasing, the last is exactly ``final``; ``current - keep[0]`` is the number of weights
    the first step prunes, and so on. Sparsity is measured against the group's ``current`` count:
    the schedule starts wherever the group stands.
    """
    _check(schedule, steps)
    if not 0 <= final <= current:
        raise ValueError(f"need 0 <= final ({final}) <= current ({current}) weights")
    out = []
    prev = current
    for t in range(1, steps + 1):
        p = progress(schedule, t, steps)
        if SCHEDULES[schedule].log_density and final > 0:
            k = round(current * math.exp(p * math.log(final / current)))
        else:
            k = current - round((current - final) * p)
        k = min(prev, max(final, k))
        out.append(k)
        prev = k
    out[-1] = final
    return out


def amount_counts(current: int, amounts: list[float]) -> list[int]:
    """The course recipe's schedule as whole numbers: weights kept after each stage when each
    stage prunes ``round(amount * unpruned)`` of the ``unpruned`` weights left (torch's float
    ``amount``, the fraction of the still-unpruned weights). ``[0.3] * 5`` from 1000 keeps
    700, 490, 343, 240, 168."""
    out = []
    k = current
    for a in amounts:
        if not 0.0 <= a < 1.0:
            raise ValueError(f"amount={a}: must be in [0, 1) (fraction of unpruned weights)")
        k -= round(a * k)
        out.append(k)
    return out

