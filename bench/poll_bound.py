"""The fewest polls per job that ANY poll schedule needs for a given median notice delay:
the frontier against which a schedule (the fixed one, the learned one of
``batchveo.run.schedule``) is judged.

Why. Issue 14 asks for at most half the fixed schedule's polls at no worse a median notice
delay. Whether any schedule at all can do that is a property of the distribution of
generation times, not of the product's rule; this module computes it, so that "out of
reach" is a figure anyone can recompute (``python -m bench poll-bound``), not a sentence.
Pure: a distribution in, figures out; no clock, no I/O.

The problem. Polls at ages t_0 < t_1 < ... on a grid (step g: g, 2g, ...), the last one at
the horizon H where all but a millionth of the jobs are done (the jobs still running then
count in neither sum below, as ``schedule.evaluate`` and ``Learned.ages`` leave them out).
A job whose generation time T is in (t_{k-1}, t_k] (t_{-1} = 0) is noticed at t_k, its
delay t_k - T; the poll at t_k is sent to every job still running at t_{k-1} (the first
to every job). So

    polls             = Σ_k 1 - F(t_{k-1})
    share within d    = Σ_k F(t_k) - F(max(t_{k-1}, t_k - d))

and the question is the fewest polls with share within d >= 1/2 (median delay <= d).

How. Both sums are sums of terms of consecutive pairs (t_{k-1}, t_k), so for a multiplier
λ the schedule minimising ``polls - λ share`` is a shortest path through the grid
(``relaxed``). Its step into t_k from t_i costs 1 - F(t_i) - λ (share term), and the share
term takes one of two forms: from any t_i at least d earlier it is F(t_k) - F(t_k - d),
the same for all of them, so the best such predecessor is a running minimum; from a nearer
one it is F(t_k) - F(t_i), a sliding-window minimum. Each λ then costs O(grid points), not
O(points²), and pure Python finishes a distribution in a fraction of a second.
``fewest_polls`` bisects λ for the share to cross one half. Every λ also bounds the answer
from below (weak duality): a schedule with share >= s has polls >= min(polls - λ share) +
λ s. The result carries the best schedule found that meets the share (``polls``) and that
bound (``at_least``); between them lies the fewest polls of any schedule on the grid.

Off the grid. ``any_schedule`` bounds every schedule, at any ages: round each poll of one
up to the grid (polls past the horizon down to it). No job is then polled more often (a
poll is sent while the job runs, and a rounded poll is no earlier), and none is noticed
more than one step later; so its polls are at least the grid's fewest for a share within
``d_s + step_s`` (less the millionth past the horizon). That, and the grid's schedule
found for ``d_s`` itself, enclose the fewest polls of any schedule.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from batchveo.run.schedule import LogNormal

GRID_S = 0.5
"""Poll ages are multiples of this: fine beside delays of seconds, coarse enough that a
distribution of ten-minute tails is a few thousand points."""
TAIL = 1e-6
"""The grid ends where this share of jobs is still running (as ``schedule`` evaluates)."""
SHARE = 0.5
"""Noticed within the delay: half of the jobs, i.e. a median delay at most that."""
_LAMBDA_RANGE = (1e-3, 1e5)
"""Multipliers bisected (polls per unit share): a share of one half costs a few polls."""
_ROUNDS = 60
_CLOSE = 1e-4
"""Bisection stops once the best schedule is within this many polls of the lower bound."""


@dataclass(frozen=True)
class Problem:
    """One question on one grid: the distribution at the ages ``k step_s``, k = 0..n
    (k = 0 is the submit, never a poll; k = n is the horizon, always the last poll)."""

    step_s: float
    d_s: float
    cdf: tuple[float, ...]
    """F(t_k)."""
    cdf_back: tuple[float, ...]
    """F(t_k - d_s): what a predecessor at least ``d_s`` earlier leaves noticed late."""
    far: int
    """A predecessor at index <= k - far is at least ``d_s`` before t_k."""

    @property
    def last(self) -> int:
        return len(self.cdf) - 1

    def step_polls(self, i: int) -> float:
        """The polls of the step out of t_i: the jobs still running at t_i."""
        return 1.0 - self.cdf[i]

    def step_share(self, i: int, k: int) -> float:
        """The share noticed within ``d_s`` by a poll at t_k whose predecessor is t_i."""
        return self.cdf[k] - (self.cdf_back[k] if k - i >= self.far else self.cdf[i])


def problem(
    dist: LogNormal, d_s: float, *, step_s: float = GRID_S, horizon_s: float | None = None
) -> Problem:
    """The grid of ``step_s`` up to ``horizon_s`` (by default where all but ``TAIL`` of
    ``dist`` is done, rounded up to the grid)."""
    if d_s <= 0:
        raise ValueError("the delay must be > 0")
    ages = grid_ages(dist, step_s, horizon_s)
    return Problem(
        step_s=step_s,
        d_s=d_s,
        cdf=tuple(dist.cdf(t) for t in ages),
        cdf_back=tuple(dist.cdf(t - d_s) for t in ages),
        far=math.ceil(d_s / step_s),
    )


def grid_ages(dist: LogNormal, step_s: float, horizon_s: float | None = None) -> list[float]:
    """0, ``step_s``, 2 ``step_s``, ... up to ``horizon_s`` (by default where all but
    ``TAIL`` of ``dist`` is done), rounded up to the grid."""
    if step_s <= 0:
        raise ValueError("the grid step must be > 0")
    horizon = dist.quantile(1 - TAIL) if horizon_s is None else horizon_s
    n = max(1, math.ceil(horizon / step_s - 1e-9))
    return [k * step_s for k in range(n + 1)]


@dataclass(frozen=True)
class Path:
    """A schedule on the grid (indices of its polls, ascending, ending at the horizon)
    and what it costs."""

    polls_at: tuple[int, ...]
    polls: float
    share: float

    def ages_s(self, p: Problem) -> list[float]:
        return [k * p.step_s for k in self.polls_at]


def relaxed(p: Problem, lam: float) -> tuple[float, Path]:
    """The least ``polls - lam * share`` of any schedule on the grid, and a schedule that
    has it (see the module docstring for the two minima)."""
    n = p.last
    value = [0.0] * (n + 1)
    pred = [0] * (n + 1)
    near_key = [0.0] * (n + 1)  # value[i] + polls out of i + lam F(t_i): near predecessors
    near: deque[int] = deque()  # indices in (k - far, k), their near_key increasing
    far_best, far_at = math.inf, -1  # the least value[i] + polls out of i, i <= k - far
    for k in range(1, n + 1):
        i = k - 1
        near_key[i] = value[i] + p.step_polls(i) + lam * p.cdf[i]
        while near and near_key[near[-1]] >= near_key[i]:
            near.pop()
        near.append(i)
        j = k - p.far
        while near and near[0] <= j:
            near.popleft()
        if j >= 0 and value[j] + p.step_polls(j) < far_best:
            far_best, far_at = value[j] + p.step_polls(j), j
        best, best_at = math.inf, -1
        if near:
            best, best_at = near_key[near[0]] - lam * p.cdf[k], near[0]
        if far_at >= 0:
            via_far = far_best - lam * (p.cdf[k] - p.cdf_back[k])
            if via_far < best:
                best, best_at = via_far, far_at
        value[k], pred[k] = best, best_at
    return value[n], _path(p, pred)


def _path(p: Problem, pred: Sequence[int]) -> Path:
    """The schedule ending at the horizon that ``pred`` (each poll's predecessor) spells."""
    at = [p.last]
    while pred[at[-1]] > 0:
        at.append(pred[at[-1]])
    at.reverse()
    polls = share = 0.0
    prev = 0
    for k in at:
        polls += p.step_polls(prev)
        share += p.step_share(prev, k)
        prev = k
    return Path(tuple(at), polls, share)


@dataclass(frozen=True)
class Bound:
    """The fewest polls per job for ``share`` of the jobs noticed within ``d_s``."""

    d_s: float
    share: float
    step_s: float
    polls: float
    """Of the best schedule found that meets the share: no fewer are needed than ..."""
    at_least: float
    """... this, for any schedule on the grid (the Lagrangian lower bound)."""
    ages_s: tuple[float, ...]
    """That schedule's poll ages."""


def fewest_polls(
    dist: LogNormal,
    d_s: float,
    *,
    share: float = SHARE,
    step_s: float = GRID_S,
    horizon_s: float | None = None,
) -> Bound:
    """The fewest expected polls per job of any schedule on the grid that notices ``share``
    of the jobs within ``d_s`` of their end (``share`` 1/2: a median delay <= ``d_s``)."""
    p = problem(dist, d_s, step_s=step_s, horizon_s=horizon_s)
    lo, hi = (math.log(x) for x in _LAMBDA_RANGE)
    value, best = relaxed(p, math.exp(hi))
    if best.share < share:
        raise ValueError(f"no schedule on a {step_s:g} s grid notices {share:.0%} within {d_s} s")
    at_least = value + math.exp(hi) * share
    for _ in range(_ROUNDS):
        if best.polls - at_least < _CLOSE:
            break
        mid = (lo + hi) / 2
        value, path = relaxed(p, math.exp(mid))
        at_least = max(at_least, value + math.exp(mid) * share)
        if path.share >= share:
            hi = mid
            best = min(best, path, key=lambda x: x.polls)
        else:
            lo = mid
    return Bound(d_s, share, step_s, best.polls, min(at_least, best.polls), tuple(best.ages_s(p)))


def share_within(ages_s: Iterable[float], dist: LogNormal, d_s: float) -> float:
    """The share of jobs polled at ``ages_s`` (ascending) noticed within ``d_s`` of their
    end; a job still running at the last poll is never noticed."""
    total = prev = 0.0
    for t in ages_s:
        total += dist.cdf(t) - dist.cdf(max(prev, t - d_s))
        prev = t
    return total


def delay_quantile_s(ages_s: Sequence[float], dist: LogNormal, share: float) -> float:
    """The notice delay within which ``share`` of the jobs polled at ``ages_s`` are noticed
    (bisection: the share within a delay only grows with it, up to the longest gap)."""
    gaps = [t - prev for prev, t in zip([0.0, *ages_s], ages_s, strict=False)]
    lo, hi = 0.0, max(gaps)
    if share_within(ages_s, dist, hi) < share:
        raise ValueError(f"fewer than {share:.0%} of the jobs end before the last poll")
    for _ in range(50):
        mid = (lo + hi) / 2
        if share_within(ages_s, dist, mid) >= share:
            hi = mid
        else:
            lo = mid
    return hi


def median_delay_s(ages_s: Sequence[float], dist: LogNormal) -> float:
    """The median notice delay of polls at ``ages_s`` under ``dist``."""
    return delay_quantile_s(ages_s, dist, 0.5)


@dataclass(frozen=True)
class Frontier:
    """The fewest polls per job of any schedule, at any ages, that notices half the jobs
    within ``d_s`` (a median delay <= ``d_s``): between ``at_least`` and ``at_most``."""

    d_s: float
    step_s: float
    at_least: float
    """No schedule does with fewer (see "Off the grid" in the module docstring)."""
    at_most: float
    """The schedule found on the grid (``ages_s``) has this many."""
    ages_s: tuple[float, ...]


def any_schedule(dist: LogNormal, d_s: float, *, step_s: float = GRID_S) -> Frontier:
    """The fewest polls per job for a median notice delay <= ``d_s`` under ``dist``."""
    found = fewest_polls(dist, d_s, step_s=step_s)
    rounded = fewest_polls(dist, d_s + step_s, share=SHARE - TAIL, step_s=step_s)
    return Frontier(d_s, step_s, rounded.at_least, found.polls, found.ages_s)
