"""The poll schedule's rules, checked directly: the bound holds, the polls fall.

Each figure here is an expectation computed in closed form under the true distribution
(``schedule.evaluate``), not a count of simulated polls: exact, and the same on any machine.
A "night" is a batch of jobs drawn from a seeded generator, noticed by the schedule in force
and stored as a run stores them (noticed after ``duration_s``, by its ``polls``-th poll).
"""

from __future__ import annotations

import bisect
import random

import pytest

from batchveo.run.schedule import (
    PRIOR,
    Finished,
    Learned,
    LogNormal,
    evaluate,
    fit,
    fixed_gap_s,
    for_distribution,
    learn,
)

BOUND_S = 10.0
CAPS = {"max_gap_s": 60.0, "max_first_s": 300.0}
DISTRIBUTIONS = [
    LogNormal(60, 0.5),  # the simulator's benchmark distribution
    LogNormal(150, 0.5),  # "one to six minutes"
    LogNormal(30, 0.3),  # fast and steady
    LogNormal(300, 0.4),  # a slow model at 4k
    LogNormal(45, 0.9),  # very spread out
]


def fixed_ages(first_s: float = 10.0, interval_s: float = 10.0) -> list[float]:
    """The polls of ``--first-poll 10s --poll-interval 10s`` (without jitter)."""
    ages, t = [], first_s
    while t < 20_000:
        ages.append(t)
        t += fixed_gap_s(t, interval_s, 60.0)
    return ages


def night(schedule: Learned, dist: LogNormal, rng: random.Random, jobs: int) -> list[Finished]:
    """``jobs`` operations drawn from ``dist``, as their rows record them under ``schedule``."""
    ages = list(schedule.ages())
    while ages[-1] < 50_000:
        ages.append(schedule.next_poll_s(ages[-1]))
    out = []
    for _ in range(jobs):
        done_s = dist.sample(rng.random())
        k = bisect.bisect_left(ages, done_s)
        out.append(Finished(ages[k], k + 1))
    return out


def test_the_fixed_rule_is_the_flags_schedule() -> None:
    # 10 s apart for two minutes, then growing by 10 s every two minutes, up to 60 s.
    assert [fixed_gap_s(a, 10, 60) for a in (0, 60, 119, 120, 240, 360, 2000)] == [
        10, 10, 10, 10, 20, 30, 60,
    ]  # fmt: skip
    assert fixed_gap_s(500, 30, 20) == 30  # never below the interval asked for


@pytest.mark.parametrize("dist", DISTRIBUTIONS, ids=str)
def test_the_expected_delay_is_the_bound_with_fewer_polls_than_the_fixed_schedule(
    dist: LogNormal,
) -> None:
    learned = for_distribution(dist, BOUND_S, **CAPS)
    got = learned.expected()
    fixed = evaluate(fixed_ages(), dist)
    assert got.delay_s == pytest.approx(BOUND_S, rel=0.02)
    assert got.polls < fixed.polls
    # The first poll lands in the low end, none asked about early; where the spread is
    # narrow beside the bound, one poll just past most ends is cheapest.
    assert dist.quantile(0.01) < learned.first_s
    assert learned.first_s < (dist.quantile(0.4) if dist.sigma >= 0.4 else dist.median_s + 10)


def test_the_benchmark_distribution_costs_well_under_half_the_polls() -> None:
    dist = LogNormal(60, 0.5)
    learned = for_distribution(dist, BOUND_S, **CAPS).expected()
    fixed = evaluate(fixed_ages(), dist)
    assert fixed.polls == pytest.approx(7.3, abs=0.1)  # as today's runs poll
    assert learned.polls < 0.45 * fixed.polls


def test_a_tighter_bound_buys_freshness_with_polls() -> None:
    dist = LogNormal(60, 0.5)
    loose, tight = (for_distribution(dist, b, **CAPS).expected() for b in (10.0, 5.0))
    assert tight.delay_s == pytest.approx(5.0, rel=0.02) and tight.polls > loose.polls
    # At the fixed schedule's own mean delay (5 s) the learned one still polls less.
    assert tight.polls < evaluate(fixed_ages(), dist).polls


@pytest.mark.parametrize("dist", DISTRIBUTIONS, ids=str)
def test_learned_from_finished_jobs_the_bound_holds_night_after_night(dist: LogNormal) -> None:
    # Each night learns from the last one's rows (noticed times, not true ends). Read as
    # exact, those drift later every night and the delay grows; read as intervals, the
    # bound holds in expectation from the second night on.
    rng = random.Random(7)
    schedule = learn([], BOUND_S, **CAPS)  # the prior
    fixed = evaluate(fixed_ages(), dist).polls
    for _ in range(5):
        rows = night(schedule, dist, rng, 400)
        schedule = learn(rows, BOUND_S, **CAPS)
        got = schedule.expected(dist)  # under the true distribution
        assert got.delay_s <= 1.12 * BOUND_S
        assert got.polls < fixed


def test_noticed_times_taken_as_exact_would_drift() -> None:
    # Why ``interval`` exists: fitted to the noticed times as if exact, the schedule comes
    # out later each night (a median that grows), and the delay with it.
    dist, rng = LogNormal(60, 0.5), random.Random(7)
    schedule = learn([], BOUND_S, **CAPS)
    medians = []
    for _ in range(4):
        rows = night(schedule, dist, rng, 400)
        # A bound of ~0 makes every interval a point: the noticed time, taken as exact.
        naive = fit([Finished(r.duration_s, 2) for r in rows], bound_s=1e-9)
        medians.append(naive.median_s)
        schedule = for_distribution(naive, BOUND_S, **CAPS)
    assert medians == sorted(medians) and medians[-1] > 1.2 * dist.median_s
    assert schedule.expected(dist).delay_s > 1.5 * BOUND_S


def test_no_finished_jobs_means_the_prior() -> None:
    assert fit([], BOUND_S) == PRIOR
    prior = learn([], BOUND_S, **CAPS)
    assert prior.dist == PRIOR and prior.expected().delay_s == pytest.approx(BOUND_S, rel=0.02)
    # Median 60 s, 1st and 99th percentiles about 11 s and 6 minutes (Google's figures).
    assert PRIOR.quantile(0.01) == pytest.approx(10.5, abs=1)
    assert PRIOR.quantile(0.99) == pytest.approx(343, abs=20)


def test_a_few_jobs_move_the_prior_and_many_decide_it() -> None:
    rng = random.Random(3)
    true = LogNormal(200, 0.3)
    rows = [Finished(true.sample(rng.random()), 3) for _ in range(400)]
    few = fit(rows[:3], BOUND_S)
    many = fit(rows, BOUND_S)
    assert PRIOR.median_s < few.median_s < many.median_s
    # Read as ended up to 2 x bound before their notice, the fit errs early: the safe side.
    assert 0.85 * true.median_s < many.median_s < true.median_s
    assert many.sigma == pytest.approx(true.sigma, abs=0.1)


def test_a_bound_the_gaps_cannot_reach_is_met_as_near_as_they_allow() -> None:
    dist = LogNormal(60, 0.5)
    lazy = for_distribution(dist, 1000.0, max_gap_s=60.0, max_first_s=300.0)
    assert lazy.expected().delay_s < 1000 and all(
        lazy.gap_s(a) <= 60.0 for a in (lazy.first_s, 100.0, 1e4)
    )
    with pytest.raises(ValueError):
        learn([], 0.0, **CAPS)


def test_a_schedule_is_a_pure_function_of_its_samples() -> None:
    rows = [Finished(40.0 + i, 2) for i in range(30)]
    a, b = learn(rows, BOUND_S, **CAPS), learn(list(rows), BOUND_S, **CAPS)
    assert a == b and [a.next_poll_s(t) for t in (50.0, 80.0)] == [
        b.next_poll_s(t) for t in (50.0, 80.0)
    ]


def test_jobs_still_running_keep_the_first_finished_from_passing_for_all() -> None:
    # A batch sent at once, looked at 110 s on: the 40% done so far are its fastest.
    rng, true = random.Random(11), LogNormal(120, 0.5)
    ends = [true.sample(rng.random()) for _ in range(400)]
    done = [Finished(t + 1.0, 3) for t in ends if t < 110]
    running = [110.0 for t in ends if t >= 110]
    assert 100 < len(done) < 250
    assert fit(done, BOUND_S).median_s < 0.8 * true.median_s
    assert fit(done, BOUND_S, running_s=running).median_s == pytest.approx(120, rel=0.15)
