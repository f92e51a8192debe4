"""Part 5's closed-form table: how many polls each schedule costs at its median notice
delay and at its mean, beside the fewest any schedule could cost there
(``bench.poll_bound``, ``bench.poll_bound_mean``), across spreads of generation times.

Why. Issue 14's two targets, at most half the fixed schedule's polls at no worse a median
delay, are reachable or not depending on the distribution; the measured nights show one
distribution, this table shows where the targets are reachable at all and how close the
product's learned schedule (``batchveo.run.schedule``) gets. Everything is an expectation
in closed form under the known distribution: no runs, seconds in all, the same on any
machine (``python -m bench poll-bound`` prints it alone; ``polls`` prints it too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from batchveo.run.schedule import LogNormal, evaluate, fixed_gap_s, for_distribution
from bench.poll_bound import GRID_S, Frontier, any_schedule, delay_quantile_s, median_delay_s
from bench.poll_bound_mean import MeanFrontier, any_schedule_mean
from bench.report import PartResult, table

SPREADS = (
    LogNormal(60, 0.25),
    LogNormal(60, 0.35),
    LogNormal(60, 0.5),
    LogNormal(60, 0.75),
    LogNormal(150, 0.5),
)
"""The headline's median at four spreads, and the one-to-six-minutes night."""
HALF = 0.5
"""The issue's target: at most half the fixed schedule's polls ..."""


def schedule_ages(dist: LogNormal, bound_s: float | None) -> list[float]:
    """The ages of the polls of the fixed schedule (``bound_s`` None: ``--first-poll 10s
    --poll-interval 10s``, no jitter) or of the learned one for ``--max-notice-delay
    bound_s`` were ``dist`` known (the run's caps: gaps <= 60 s, the first <= 300 s)."""
    if bound_s is not None:
        return list(for_distribution(dist, bound_s, max_gap_s=60.0, max_first_s=300.0).ages())
    ages, t = [], 10.0
    while t < 50_000:
        ages.append(t)
        t += fixed_gap_s(t, 10.0, 60.0)
    return ages


@dataclass(frozen=True)
class Reach:
    """One schedule under one distribution, and the frontiers at its median and mean delay."""

    dist: LogNormal
    label: str
    polls: float
    median_s: float
    frontier: Frontier
    mean_s: float
    mean_frontier: MeanFrontier


def reach(dist: LogNormal, label: str, bound_s: float | None) -> Reach:
    ages = schedule_ages(dist, bound_s)
    got, median_s = evaluate(ages, dist), median_delay_s(ages, dist)
    return Reach(
        dist,
        label,
        got.polls,
        median_s,
        any_schedule(dist, median_s),
        got.delay_s,
        any_schedule_mean(dist, got.delay_s),
    )


def _verdict(fixed: Reach, row: Reach) -> str:
    """Whether half the fixed schedule's polls at no worse a median is had (a schedule's
    row) or can be had by any schedule at all (the fixed row)."""
    half = HALF * fixed.polls
    if row is fixed:
        if row.frontier.at_least > half:
            return "out of reach"
        return "reachable" if row.frontier.at_most <= half else "undecided"
    met = row.polls <= half and row.median_s <= fixed.median_s
    return "met" if met else "not met"


def _row(fixed: Reach, row: Reach) -> list[str]:
    f = row.frontier
    return [
        f"median {row.dist.median_s:g} s, sigma {row.dist.sigma:g}",
        row.label,
        f"{row.polls:.2f}",
        f"{row.polls / fixed.polls:.2f}",
        f"{row.median_s:.2f} s",
        f"{f.at_least:.2f}-{f.at_most:.2f}",
        f"{f.at_least / fixed.polls:.2f}-{f.at_most / fixed.polls:.2f}",
        f"{row.polls / f.at_most:.2f}-{row.polls / f.at_least:.2f}",
        f"{row.mean_s:.2f} s",
        f"{row.mean_frontier.at_least:.2f}-{row.mean_frontier.at_most:.2f}",
        f"{row.polls / row.mean_frontier.at_most:.2f}-{row.polls / row.mean_frontier.at_least:.2f}",
        _verdict(fixed, row),
    ]


def _json(fixed: Reach, row: Reach) -> dict[str, Any]:
    return {
        "median_s": row.dist.median_s,
        "sigma": row.dist.sigma,
        "schedule": row.label,
        "polls": round(row.polls, 4),
        "vs_fixed": round(row.polls / fixed.polls, 4),
        "median_delay_s": round(row.median_s, 3),
        "fewest_at_least": round(row.frontier.at_least, 4),
        "fewest_at_most": round(row.frontier.at_most, 4),
        "mean_delay_s": round(row.mean_s, 3),
        "fewest_at_mean_at_least": round(row.mean_frontier.at_least, 4),
        "fewest_at_mean_at_most": round(row.mean_frontier.at_most, 4),
        "half_at_no_worse_median": _verdict(fixed, row),
    }


def add_frontier(
    part: PartResult, schedules: Sequence[tuple[str, float | None]], headline: LogNormal
) -> None:
    """The table, its data, a check and a note, into ``part``; ``schedules`` are (label,
    bound) pairs, the fixed one (bound None) first."""
    sweep = [[reach(d, label, bound) for label, bound in schedules] for d in SPREADS]
    headers = ["distribution", "schedule", "polls/job", "vs fixed", "median delay"]
    headers += ["fewest at that median", "vs fixed", "polls vs fewest", "mean delay"]
    headers += ["fewest at that mean", "polls vs fewest", "half, no worse median"]
    rows = [_row(group[0], r) for group in sweep for r in group]
    title = (
        "POLL FRONTIER (closed form, no runs: the fewest polls per job of any schedule with"
        " the median delay of each, and with its mean delay; dynamic programs on a"
        f" {GRID_S:g} s grid, bench/poll_bound.py and poll_bound_mean.py)"
    )
    part.tables.append(table(title, headers, rows))
    part.data["frontier"] = [_json(group[0], r) for group in sweep for r in group]
    above = [
        r.polls >= max(r.frontier.at_least, r.mean_frontier.at_least) for g in sweep for r in g
    ]
    part.check(
        "no schedule below a frontier",
        f"{sum(above)} of {len(above)} rows",
        "all (else a bound is wrong)",
        all(above),
    )
    part.notes.append(_note(next(g for g in sweep if g[0].dist == headline)))
    reachable = [g[0] for g in sweep if _verdict(g[0], g[0]) != "out of reach"]
    part.notes.append(
        "Of the distributions above, half the fixed schedule's polls at no worse a median"
        " delay is within any schedule's reach for: "
        + ("; ".join(f"median {r.dist.median_s:g} s sigma {r.dist.sigma:g} (the schedule"
                     f" found {_found(r)})" for r in reachable) or "none")
        + "."
    )  # fmt: skip


def _note(group: Sequence[Reach]) -> str:
    fixed, *learned = group
    f = fixed.frontier
    verdict = _verdict(fixed, fixed)
    text = (
        f"On the headline distribution (median {fixed.dist.median_s:g} s, sigma"
        f" {fixed.dist.sigma:g}), for half the jobs to be noticed within {fixed.median_s:.2f} s"
        f" (the fixed schedule's median delay, closed form) any schedule needs at least"
        f" {f.at_least:.2f} polls per job (a schedule with {f.at_most:.2f} was found on the"
        f" {f.step_s:g} s grid), against half the fixed schedule's {HALF * fixed.polls:.2f}:"
        f" both targets at once are {verdict}."
    )
    text += f" The schedule found {_found(fixed)} (a median alone is met cheapest so)."
    for row in learned:
        text += (
            f" {row.label}: {row.polls / fixed.polls:.2f}x the fixed polls at a median of"
            f" {row.median_s:.2f} s, {row.polls / row.frontier.at_most:.2f}x the polls of the"
            f" schedule found at that median ({row.polls / row.frontier.at_least:.2f}x the"
            f" lower bound); at its mean delay ({row.mean_s:.2f} s, the rule's target)"
            f" {row.polls / row.mean_frontier.at_most:.3f}x the schedule found there."
        )
    return text


def _found(fixed: Reach) -> str:
    """What the fewest-polls schedule at the fixed schedule's median gives up for it: it
    first polls near the median, so the jobs done earlier wait, and so do the slowest."""
    dist, ages, fixed_ages = (
        fixed.dist,
        list(fixed.frontier.ages_s),
        schedule_ages(fixed.dist, None),
    )
    return (
        f"first polls at {ages[0]:.0f} s, mean delay {evaluate(ages, dist).delay_s:.1f} s and"
        f" 95th percentile {delay_quantile_s(ages, dist, 0.95):.0f} s, the fixed schedule's"
        f" {evaluate(fixed_ages, dist).delay_s:.1f} s and"
        f" {delay_quantile_s(fixed_ages, dist, 0.95):.0f} s"
    )
