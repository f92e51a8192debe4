"""When to poll an operation: the flags' fixed rule, and the rule learned from finished jobs.

Pure: ages in, ages out (seconds since the submit); no clock, no store, no randomness (the
run's ``pollplan`` adds the jitter and keeps the samples).

Why learn. A Veo operation takes from about 11 s to 6 minutes; polled every 10 s from 10 s
on, a job costs 6 to 36 polls, and on Vertex each counts against the same per-minute quota
as submits. Most of them ask about an operation that cannot be done yet. The jobs already
finished say how long this model takes at this resolution, so the polls can go where the
operations finish.

The rule. An operation's generation time T has the distribution F (density f, hazard
λ = f / (1 - F)); it is polled at ages t0 < t1 < ...; it is noticed done at the first poll
at or after T, and the notice delay is that poll's age minus T. Expected polls are
Σ_k P(T > t_{k-1}), the expected delay Σ_k E[t_k - T; t_{k-1} < T <= t_k]. The schedule
minimises ``c`` times the polls plus the delay, ``c`` being what a poll is worth in seconds
of delay, and ``c`` is chosen (bisection) so that the expected delay is the bound
(``--max-notice-delay``):

- between polls, Keller's inspection density (Keller 1974, "Optimum checking schedules for
  systems subject to random failure"): the next poll ``sqrt(2c / λ)`` seconds on, λ taken
  half way there. Where an operation is unlikely to finish now (early, or deep in the tail)
  polls are far apart; where it is likely, close together;
- the first poll where one more second of waiting costs the jobs already done as much as
  it saves the others: ``F(t0) = f(t0) (t1 - t0 + c)`` (the optimality condition of the
  first check in Barlow, Hunter and Proschan 1963). It lands near the low end of the
  distribution; before it, nothing is asked.

The distribution is a log-normal (generation times are positive and right-skewed; the
simulator's default is one), fitted by maximum likelihood to the latest finished jobs
(``fit``), with the prior counting as ``PRIOR_WEIGHT`` jobs, so that a few jobs move it
and a few hundred decide it.

What a finished job says. A job's row knows when its done answer was *noticed*, not when
generation ended: ended at most the gap before the last poll earlier. Taken as exact, the
noticed times make the fit too late by about the bound, the next schedule later still,
and night after night the delay grows (it doubled in five simulated nights). So each
sample is an interval (``interval``): a job done by its first poll ended somewhere in
(0.3 a, a] (it says only "by a", and a floor keeps samples that all say so from sliding the
fit towards zero); any other in (a - min(2 bound, a/2), a], the gap before a poll where
operations finish being about twice the bound (half a gap is the expected delay there;
smaller under the fixed 10 s rule, which only errs early, hence safe). Fitted to these
(expectation-maximisation over truncated normals in log time) the schedule holds the bound
night after night (``tests/test_schedule.py``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from statistics import NormalDist
from typing import NamedTuple

PRIOR_MEDIAN_S = 60.0
PRIOR_SIGMA = 0.75
"""The prior, before a model and resolution has finished jobs: log-normal, median 60 s,
sigma 0.75. Google's pages give Veo a latency of 11 s at least and 6 minutes at peak
hours; this log-normal puts 11 s and 6 minutes at its 1st and 99th percentiles."""
PRIOR_WEIGHT = 5.0
"""The prior counts as this many finished jobs."""
FIRST_POLL_FLOOR = 0.3
"""A job done by its first poll at age a is taken to have ended in (0.3 a, a]."""
SIGMA_RANGE = (0.05, 2.0)
"""The fitted spread stays within this (a factor of 1.05 to 7 for one sigma)."""
FIXED_GROWTH_AFTER_S = 120.0
"""The fixed rule keeps its interval for this long, then lets it grow."""
_EM_ROUNDS = 60
_C_ROUNDS = 40
_TAIL = 1e-6
"""The schedule is evaluated until this share of operations is left running."""
_MAX_STEPS = 20_000
_SQRT2 = math.sqrt(2.0)
_SQRT2PI = math.sqrt(2.0 * math.pi)
_STD = NormalDist()


def fixed_gap_s(age_s: float, interval_s: float, max_interval_s: float) -> float:
    """The flags' rule: ``interval_s`` for the first two minutes, then growing towards
    ``max_interval_s`` (never below ``interval_s``)."""
    if age_s < FIXED_GROWTH_AFTER_S:
        return interval_s
    grown = interval_s * (1 + (age_s - FIXED_GROWTH_AFTER_S) / FIXED_GROWTH_AFTER_S)
    return max(interval_s, min(max_interval_s, grown))


def _cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / _SQRT2)


def _sf(z: float) -> float:
    return 0.5 * math.erfc(z / _SQRT2)


def _pdf(z: float) -> float:
    return math.exp(-0.5 * z * z) / _SQRT2PI


@dataclass(frozen=True)
class LogNormal:
    """Generation times whose logarithm is normal: ``median_s`` and the spread ``sigma``."""

    median_s: float
    sigma: float

    def __post_init__(self) -> None:
        if not (self.median_s > 0 and self.sigma > 0):
            raise ValueError("a log-normal needs median_s > 0 and sigma > 0")

    @property
    def mu(self) -> float:
        return math.log(self.median_s)

    def _z(self, t: float) -> float:
        return (math.log(t) - self.mu) / self.sigma

    def cdf(self, t: float) -> float:
        return 0.0 if t <= 0 else _cdf(self._z(t))

    def pdf(self, t: float) -> float:
        return 0.0 if t <= 0 else _pdf(self._z(t)) / (t * self.sigma)

    def hazard(self, t: float) -> float:
        """The chance per second of finishing now, of an operation still running at ``t``."""
        if t <= 0:
            return 0.0
        z = self._z(t)
        sf = _sf(z)
        # Far in the tail the survival underflows; there the Mills ratio is about z.
        ratio = _pdf(z) / sf if sf > 1e-300 else max(z, 0.0)
        return ratio / (t * self.sigma)

    def partial_mean(self, t: float) -> float:
        """E[T; T <= t]: the integral of x dF(x) from 0 to ``t``."""
        if t <= 0:
            return 0.0
        return math.exp(self.mu + self.sigma**2 / 2) * _cdf(self._z(t) - self.sigma)

    def quantile(self, p: float) -> float:
        return math.exp(self.mu + self.sigma * _STD.inv_cdf(p))

    def sample(self, u: float) -> float:
        """The generation time at the uniform draw ``u`` in (0, 1)."""
        return self.quantile(u)


PRIOR = LogNormal(PRIOR_MEDIAN_S, PRIOR_SIGMA)


class Finished(NamedTuple):
    """What a finished job says of its generation: noticed done ``duration_s`` after its
    submit, by its ``polls``-th poll (the done one included)."""

    duration_s: float
    polls: int


def interval(sample: Finished, bound_s: float) -> tuple[float, float]:
    """When the job's generation ended, as far as its row can tell (see the docstring)."""
    a = sample.duration_s
    if sample.polls <= 1:
        return FIRST_POLL_FLOOR * a, a
    return a - min(2.0 * bound_s, a / 2), a


def fit(
    samples: Iterable[Finished],
    bound_s: float,
    prior: LogNormal = PRIOR,
    prior_weight: float = PRIOR_WEIGHT,
    running_s: Iterable[float] = (),
) -> LogNormal:
    """The log-normal most likely to have given these finished jobs (each an ``interval``)
    and these still running (each at least as old as its age in ``running_s``: without
    them, the first jobs a night sees done are its fastest, and a fit to them alone is
    too early), the prior counting as ``prior_weight`` jobs at its own mean and spread."""
    logs = [
        (math.log(lo), math.log(hi))
        for lo, hi in (interval(s, bound_s) for s in samples if s.duration_s > 0)
    ]
    if not logs:
        return prior
    logs += [(math.log(a), math.inf) for a in running_s if a > 0]
    mu, sigma = prior.mu, prior.sigma
    prior_s1 = prior_weight * prior.mu
    prior_s2 = prior_weight * (prior.sigma**2 + prior.mu**2)
    n = prior_weight + len(logs)
    for _ in range(_EM_ROUNDS):
        s1, s2 = prior_s1, prior_s2
        for lo, hi in logs:
            e1, e2 = _truncated_moments((lo - mu) / sigma, (hi - mu) / sigma)
            s1 += mu + sigma * e1
            s2 += mu * mu + 2 * mu * sigma * e1 + sigma * sigma * e2
        new_mu = s1 / n
        new_sigma = math.sqrt(max(s2 / n - new_mu * new_mu, 0.0))
        new_sigma = min(max(new_sigma, SIGMA_RANGE[0]), SIGMA_RANGE[1])
        done = abs(new_mu - mu) < 1e-6 and abs(new_sigma - sigma) < 1e-6
        mu, sigma = new_mu, new_sigma
        if done:
            break
    return LogNormal(math.exp(mu), sigma)


def _truncated_moments(a: float, b: float) -> tuple[float, float]:
    """E[Z] and E[Z^2] of a standard normal Z given a < Z <= b (b may be infinite)."""
    mass = _sf(a) if b == math.inf else _cdf(b) - _cdf(a)
    if mass < 1e-12:  # far out in a tail: the interval's start or middle stands for it
        mid = a if b == math.inf else (a + b) / 2
        return mid, mid * mid + (0.0 if b == math.inf else (b - a) ** 2 / 12)
    pa = _pdf(a)
    pb, bpb = (0.0, 0.0) if b == math.inf else (_pdf(b), b * _pdf(b))
    return (pa - pb) / mass, 1 + (a * pa - bpb) / mass


class Expected(NamedTuple):
    """What a schedule costs under a distribution, per operation."""

    polls: float
    delay_s: float


@dataclass(frozen=True)
class Learned:
    """A schedule learned for one distribution and bound (see the module docstring)."""

    dist: LogNormal
    bound_s: float
    poll_cost_s: float
    """``c``: the seconds of delay one poll is worth, chosen to meet the bound."""
    first_s: float
    min_gap_s: float
    max_gap_s: float

    def gap_s(self, age_s: float) -> float:
        """Seconds from a poll at ``age_s`` to the next: Keller's, within the bounds."""
        h = self._keller(age_s)
        for _ in range(2):  # the hazard half way to the next poll
            h = self._keller(age_s + h / 2)
        return h

    def _keller(self, t: float) -> float:
        lam = self.dist.hazard(t)
        if lam <= 0:
            return self.max_gap_s
        return min(self.max_gap_s, max(self.min_gap_s, math.sqrt(2 * self.poll_cost_s / lam)))

    def next_poll_s(self, age_s: float) -> float:
        """The age of the next poll after one at ``age_s``."""
        return age_s + self.gap_s(age_s)

    def ages(self) -> Iterator[float]:
        """The ages of its polls, until all but a millionth of the operations are done."""
        t = self.first_s
        for _ in range(_MAX_STEPS):
            yield t
            if self.dist.cdf(t) >= 1 - _TAIL:
                return
            t = self.next_poll_s(t)

    def expected(self, dist: LogNormal | None = None) -> Expected:
        """Polls and notice delay per operation, under ``dist`` (by default its own)."""
        return evaluate(self.ages(), dist or self.dist)


def evaluate(ages: Iterable[float], dist: LogNormal) -> Expected:
    """Expected polls and notice delay of polls at ``ages`` (ascending) under ``dist``."""
    polls = delay = 0.0
    last_f = last_m = 0.0
    for t in ages:
        polls += 1 - last_f  # the poll at t is sent if the operation was running before it
        f, m = dist.cdf(t), dist.partial_mean(t)
        delay += t * (f - last_f) - (m - last_m)
        last_f, last_m = f, m
    return Expected(polls, delay)


def learn(
    samples: Iterable[Finished],
    bound_s: float,
    *,
    max_gap_s: float,
    max_first_s: float,
    prior: LogNormal = PRIOR,
    running_s: Iterable[float] = (),
) -> Learned:
    """The schedule for jobs like ``samples`` (finished jobs) and ``running_s`` (the ages at
    which jobs of theirs still running were last seen so) whose expected notice delay is
    ``bound_s``, with polls at most ``max_gap_s`` apart and the first at most ``max_first_s``
    after the submit."""
    if bound_s <= 0:
        raise ValueError("the notice delay bound must be > 0")
    dist = fit(samples, bound_s, prior, running_s=running_s)
    return for_distribution(dist, bound_s, max_gap_s=max_gap_s, max_first_s=max_first_s)


def for_distribution(
    dist: LogNormal, bound_s: float, *, max_gap_s: float, max_first_s: float
) -> Learned:
    """The schedule whose expected notice delay under ``dist`` is ``bound_s`` (or as near as
    the gaps' bounds allow), with the fewest polls."""
    min_gap_s = min(bound_s / 10, max_gap_s)
    lo, hi = math.log(bound_s * 1e-3), math.log(bound_s * 1e3)

    def schedule(log_c: float) -> Learned:
        c = math.exp(log_c)
        gaps = Learned(dist, bound_s, c, 0.0, min_gap_s, max_gap_s)
        first = _first_poll_s(gaps, max_first_s)
        return Learned(dist, bound_s, c, first, min_gap_s, max_gap_s)

    best = schedule(lo)
    if best.expected().delay_s > bound_s:
        return best  # the shortest gaps allowed still miss the bound: as near as it gets
    for _ in range(_C_ROUNDS):
        mid = (lo + hi) / 2
        candidate = schedule(mid)
        if candidate.expected().delay_s <= bound_s:
            lo, best = mid, candidate
        else:
            hi = mid
    return best


def _first_poll_s(gaps: Learned, max_first_s: float) -> float:
    """Where ``F(t0) = f(t0) (gap(t0) + c)``: before it, waiting costs less than asking."""
    dist, c = gaps.dist, gaps.poll_cost_s

    def excess(log_t: float) -> float:
        t = math.exp(log_t)
        return dist.cdf(t) - dist.pdf(t) * (gaps.gap_s(t) + c)

    lo = math.log(min(dist.quantile(1e-4), max_first_s))
    hi = math.log(min(dist.quantile(0.999), max_first_s))
    if excess(hi) < 0:
        return math.exp(hi)
    if excess(lo) > 0:
        return math.exp(lo)
    for _ in range(50):
        mid = (lo + hi) / 2
        if excess(mid) < 0:
            lo = mid
        else:
            hi = mid
    return math.exp(hi)
