"""The fewest polls per job any schedule needs for a given MEAN notice delay: the frontier of
the product's own target (``--max-notice-delay`` bounds the expected delay), beside
``bench.poll_bound``'s frontier of the median.

Why. At its median delay the learned schedule polls well above the median's frontier
(``bench.poll_sweep``). Whether that is the rule falling short or the two targets differing
is this module's question: at its own mean delay, how far is it from the fewest polls?
Pure, as ``poll_bound``.

How. The expected delay is a sum over consecutive polls too: the jobs noticed at t_k wait
t_k (F(t_k) - F(t_{k-1})) - (M(t_k) - M(t_{k-1})) in all, M(t) = E[T; T <= t]. So for a
multiplier μ the schedule minimising ``polls + μ delay`` is a shortest path whose step
from t_i into t_k costs [V_i + 1 - F(t_i) + μ M(t_i)] - μ F(t_i) t_k + μ (t_k F(t_k) -
M(t_k)): the best predecessor is the lowest of lines in t_k whose slopes -μ F(t_i) fall
as i grows, asked at growing t_k, which the convex hull trick answers in O(points) per μ.
Bisection on μ; the lower bounds as in ``poll_bound``: weak duality (a schedule with
delay <= D has polls >= min(polls + μ delay) - μ D), and off the grid, rounding each poll
up to the grid (those past the horizon down to it) sends no more polls and adds at most a
step to each delay, so no schedule does with fewer than the grid's fewest for D + step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from batchveo.run.schedule import LogNormal, evaluate
from bench.poll_bound import GRID_S, grid_ages

_MU_RANGE = (1e-5, 1e3)
"""Multipliers bisected (polls per second of mean delay)."""
_ROUNDS = 60
_CLOSE = 1e-4


@dataclass(frozen=True)
class MeanGrid:
    """The distribution at the grid's ages (index 0 the submit, the last the horizon)."""

    ages_s: tuple[float, ...]
    cdf: tuple[float, ...]
    partial_mean: tuple[float, ...]
    """M(t_k) = E[T; T <= t_k]."""


def mean_grid(
    dist: LogNormal, *, step_s: float = GRID_S, horizon_s: float | None = None
) -> MeanGrid:
    ages = grid_ages(dist, step_s, horizon_s)
    return MeanGrid(
        tuple(ages), tuple(dist.cdf(t) for t in ages), tuple(dist.partial_mean(t) for t in ages)
    )


def relaxed_mean(g: MeanGrid, mu: float) -> tuple[float, list[float]]:
    """The least ``polls + mu * delay`` of any schedule on the grid (ending at the
    horizon), and the ages of one that has it."""
    t, f, m = g.ages_s, g.cdf, g.partial_mean
    n = len(t) - 1
    value = [0.0] * (n + 1)
    pred = [0] * (n + 1)
    hull: list[tuple[float, float, int]] = []  # (slope, intercept, index), slopes falling
    head = 0
    for k in range(1, n + 1):
        i = k - 1
        _add(hull, (-mu * f[i], value[i] + 1.0 - f[i] + mu * m[i], i))
        head = min(head, len(hull) - 1)
        x = t[k]
        while head + 1 < len(hull) and _at(hull[head + 1], x) <= _at(hull[head], x):
            head += 1
        value[k] = _at(hull[head], x) + mu * (x * f[k] - m[k])
        pred[k] = hull[head][2]
    at = [n]
    while pred[at[-1]] > 0:
        at.append(pred[at[-1]])
    return value[n], [t[k] for k in reversed(at)]


def _at(line: tuple[float, float, int], x: float) -> float:
    return line[0] * x + line[1]


def _add(hull: list[tuple[float, float, int]], line: tuple[float, float, int]) -> None:
    """Add ``line`` (the least slope yet) to the lower envelope, dropping the lines it
    makes useless for every later (larger) x."""
    a, b, _ = line
    while hull:
        a2, b2, _ = hull[-1]
        if a2 == a:  # parallel: keep the lower
            if b2 <= b:
                return
            hull.pop()
            continue
        if len(hull) < 2:
            break
        a1, b1, _ = hull[-2]
        # hull[-1] is never the lowest if ``line`` meets hull[-2] no later than it does
        if (b - b1) * (a1 - a2) <= (b2 - b1) * (a1 - a):
            hull.pop()
        else:
            break
    hull.append(line)


@dataclass(frozen=True)
class MeanFrontier:
    """The fewest polls per job of any schedule whose expected delay is <= ``mean_s``:
    between ``at_least`` (any schedule, at any ages) and ``at_most`` (``ages_s``)."""

    mean_s: float
    step_s: float
    at_least: float
    at_most: float
    ages_s: tuple[float, ...]


@dataclass(frozen=True)
class _GridBest:
    at_least: float
    polls: float
    ages_s: tuple[float, ...]


def fewest_polls_mean(
    dist: LogNormal, mean_s: float, *, step_s: float = GRID_S, horizon_s: float | None = None
) -> _GridBest:
    """On the grid: the Lagrangian lower bound and the best schedule found whose expected
    delay (``schedule.evaluate``) is <= ``mean_s``."""
    g = mean_grid(dist, step_s=step_s, horizon_s=horizon_s)
    lo, hi = (math.log(x) for x in _MU_RANGE)
    value, ages = relaxed_mean(g, math.exp(hi))
    got = evaluate(ages, dist)
    if got.delay_s > mean_s:
        raise ValueError(f"no schedule on a {step_s:g} s grid has a mean delay <= {mean_s} s")
    best, at_least = (got.polls, ages), value - math.exp(hi) * mean_s
    for _ in range(_ROUNDS):
        if best[0] - at_least < _CLOSE:
            break
        mid = (lo + hi) / 2
        value, ages = relaxed_mean(g, math.exp(mid))
        at_least = max(at_least, value - math.exp(mid) * mean_s)
        got = evaluate(ages, dist)
        if got.delay_s <= mean_s:
            hi = mid
            if got.polls < best[0]:
                best = (got.polls, ages)
        else:
            lo = mid
    return _GridBest(min(at_least, best[0]), best[0], tuple(best[1]))


def any_schedule_mean(dist: LogNormal, mean_s: float, *, step_s: float = GRID_S) -> MeanFrontier:
    """The fewest polls per job for an expected notice delay <= ``mean_s`` under ``dist``."""
    found = fewest_polls_mean(dist, mean_s, step_s=step_s)
    rounded = fewest_polls_mean(dist, mean_s + step_s, step_s=step_s)
    return MeanFrontier(mean_s, step_s, rounded.at_least, found.polls, found.ages_s)


def mean_delay_s(ages_s: Sequence[float], dist: LogNormal) -> float:
    """The expected notice delay of polls at ``ages_s`` (``schedule.evaluate``'s)."""
    return evaluate(ages_s, dist).delay_s
