"""The frontiers of ``bench/poll_bound.py`` and ``bench/poll_bound_mean.py``: the fewest
polls any schedule needs for a median (or mean) notice delay, checked against every
schedule of a tiny grid and against the schedules the product has (fixed and learned,
whose ages are off the grid).

Every figure is an expectation in closed form (``schedule.evaluate``), exact on any machine.
"""

from __future__ import annotations

import bisect
import itertools
import random

import pytest

from batchveo.run.schedule import LogNormal, evaluate
from bench.poll_bound import (
    any_schedule,
    fewest_polls,
    median_delay_s,
    problem,
    relaxed,
    share_within,
)
from bench.poll_bound_mean import any_schedule_mean, mean_grid, relaxed_mean
from bench.poll_sweep import SPREADS, schedule_ages

TINY = LogNormal(6, 0.4)
TINY_STEP_S, TINY_HORIZON_S = 1.0, 14.0


def every_schedule() -> list[list[float]]:
    """Every schedule on the tiny grid (1, 2, ..., 14 s) whose last poll is the horizon."""
    inner = [float(k) for k in range(1, int(TINY_HORIZON_S))]
    return [
        [*chosen, TINY_HORIZON_S]
        for n in range(len(inner) + 1)
        for chosen in itertools.combinations(inner, n)
    ]


@pytest.mark.parametrize("d_s", [1.0, 2.5, 4.0])
@pytest.mark.parametrize("lam", [0.5, 3.0, 12.0, 60.0])
def test_the_dynamic_program_is_the_best_of_every_schedule(d_s: float, lam: float) -> None:
    p = problem(TINY, d_s, step_s=TINY_STEP_S, horizon_s=TINY_HORIZON_S)
    value, path = relaxed(p, lam)
    brute = min(
        evaluate(ages, TINY).polls - lam * share_within(ages, TINY, d_s)
        for ages in every_schedule()
    )
    assert value == pytest.approx(brute, abs=1e-12)
    # The schedule it returns has that value, by the independent sums.
    ages = path.ages_s(p)
    assert ages[-1] == TINY_HORIZON_S
    assert evaluate(ages, TINY).polls == pytest.approx(path.polls, abs=1e-12)
    assert share_within(ages, TINY, d_s) == pytest.approx(path.share, abs=1e-12)


@pytest.mark.parametrize("d_s", [1.0, 2.5, 4.0])
def test_the_fewest_polls_for_half_within_d_bracket_the_brute_force_optimum(d_s: float) -> None:
    found = fewest_polls(TINY, d_s, step_s=TINY_STEP_S, horizon_s=TINY_HORIZON_S)
    feasible = [s for s in every_schedule() if share_within(s, TINY, d_s) >= 0.5]
    best = min(evaluate(s, TINY).polls for s in feasible)
    assert found.at_least <= best + 1e-12
    assert best <= found.polls + 1e-12
    assert share_within(found.ages_s, TINY, d_s) >= 0.5
    assert evaluate(found.ages_s, TINY).polls == pytest.approx(found.polls, abs=1e-12)


@pytest.mark.parametrize("dist", SPREADS, ids=str)
@pytest.mark.parametrize("bound_s", [None, 10.0, 5.0], ids=["fixed", "learned10", "learned5"])
def test_no_schedule_of_the_product_polls_less_than_the_frontier_at_its_median(
    dist: LogNormal, bound_s: float | None
) -> None:
    # Their ages are off the grid (the fixed one grows by fractions of a second past
    # two minutes; the learned one is anywhere): the bound holds off the grid too.
    ages = schedule_ages(dist, bound_s)
    polls = evaluate(ages, dist).polls
    frontier = any_schedule(dist, median_delay_s(ages, dist))
    assert frontier.at_least <= frontier.at_most <= polls
    assert median_delay_s(list(frontier.ages_s), dist) <= frontier.d_s + 1e-9


def test_off_the_grid_the_bound_allows_for_rounding_to_it() -> None:
    # A schedule on a fine grid beats the best of a coarse grid at its own median; the
    # coarse grid's fewest is no bound for it, the rounded one is.
    dist = LogNormal(60, 0.5)
    fine = list(fewest_polls(dist, 5.0, step_s=0.1).ages_s)
    polls, median_s = evaluate(fine, dist).polls, median_delay_s(fine, dist)
    assert fewest_polls(dist, median_s, step_s=1.5).at_least > polls + 0.05
    assert any_schedule(dist, median_s, step_s=1.5).at_least <= polls


def test_half_the_fixed_polls_at_no_worse_a_median_is_out_of_reach_on_the_benchmark() -> None:
    dist = LogNormal(60, 0.5)
    fixed = schedule_ages(dist, None)
    half = 0.5 * evaluate(fixed, dist).polls
    median_s = median_delay_s(fixed, dist)
    frontier = any_schedule(dist, median_s)
    assert half == pytest.approx(3.63, abs=0.01)
    assert frontier.at_least > half + 0.15  # any schedule, not only one on the grid
    on_grid = fewest_polls(dist, median_s)
    assert on_grid.polls - on_grid.at_least < 0.05  # the grid's duality gap is small here


def test_with_a_narrow_spread_half_the_fixed_polls_is_reachable() -> None:
    dist = LogNormal(60, 0.25)
    fixed = schedule_ages(dist, None)
    frontier = any_schedule(dist, median_delay_s(fixed, dist))
    assert frontier.at_most < 0.35 * evaluate(fixed, dist).polls


def test_one_poll_long_after_every_end_is_late_by_its_age_less_the_median() -> None:
    assert median_delay_s([1000.0], LogNormal(60, 0.5)) == pytest.approx(940.0, abs=1e-6)


def test_the_median_delay_is_what_drawn_jobs_see() -> None:
    dist, rng = LogNormal(60, 0.5), random.Random(7)
    ages = schedule_ages(dist, None)
    delays = sorted(
        ages[bisect.bisect_left(ages, t)] - t
        for t in (dist.sample(rng.random()) for _ in range(40_000))
    )
    assert median_delay_s(ages, dist) == pytest.approx(delays[len(delays) // 2], abs=0.1)


def test_the_mean_delay_program_is_the_best_of_every_schedule() -> None:
    g = mean_grid(TINY, step_s=TINY_STEP_S, horizon_s=TINY_HORIZON_S)
    for mu in (0.01, 0.1, 0.5, 3.0):
        value, ages = relaxed_mean(g, mu)
        brute = min(
            evaluate(s, TINY).polls + mu * evaluate(s, TINY).delay_s for s in every_schedule()
        )
        assert value == pytest.approx(brute, abs=1e-12)
        got = evaluate(ages, TINY)
        assert got.polls + mu * got.delay_s == pytest.approx(value, abs=1e-12)


def test_the_convex_hull_trick_is_the_plain_dynamic_program() -> None:
    # On the benchmark's distribution, a 2 s grid: every predecessor tried, no hull.
    dist, mu = LogNormal(60, 0.5), 0.3
    g = mean_grid(dist, step_s=2.0)
    t, f, m = g.ages_s, g.cdf, g.partial_mean
    value = [0.0] * len(t)
    for k in range(1, len(t)):
        value[k] = min(
            value[i] + 1 - f[i] + mu * (t[k] * (f[k] - f[i]) - (m[k] - m[i])) for i in range(k)
        )
    assert relaxed_mean(g, mu)[0] == pytest.approx(value[-1], abs=1e-9)


@pytest.mark.parametrize("dist", SPREADS, ids=str)
@pytest.mark.parametrize("bound_s", [10.0, 5.0])
def test_the_learned_schedule_has_the_fewest_polls_at_its_mean_delay(
    dist: LogNormal, bound_s: float
) -> None:
    # What the learned rule is for: its own target, where it sits on the frontier.
    ages = schedule_ages(dist, bound_s)
    got = evaluate(ages, dist)
    frontier = any_schedule_mean(dist, got.delay_s)
    assert frontier.at_least <= got.polls <= 1.01 * frontier.at_most
    assert evaluate(frontier.ages_s, dist).delay_s <= got.delay_s
