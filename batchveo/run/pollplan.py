"""When a run polls each operation: the flags' fixed schedule, or one learned per model and
resolution from the jobs already finished (``schedule`` holds both rules; this keeps the
samples and picks the rule).

A run that was not told ``--first-poll`` and ``--poll-interval`` learns (``RunConfig.
max_notice_delay_s``): at its start the store gives the generation times of the latest
finished jobs (``Store.generation_times``, one bounded query), and every job this run sees
done adds its own, so a night learns from its first jobs too. The jobs still running count
as well (each known to take longer than its age at its last poll): the first jobs a night
sees done are its fastest, and alone they would make the schedule too early. A schedule
is rebuilt from its samples after 1, 2, 4, ... new ones, then every ``REBUILD_EVERY``:
never per poll (a rebuild costs tens of milliseconds). A flag that was given keeps its
part fixed: an explicit first poll with learned intervals, or the reverse.

Every time here is on the run clock: a job's next poll is its submit time plus an age, and
the ages are the schedule's. Each interval is made ``poll_jitter`` longer or shorter at
random, so that operations sent together are not polled together forever.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from batchveo.models import DEFAULT_PARAMS
from batchveo.run.config import RunConfig
from batchveo.run.schedule import PRIOR, Finished, Learned, LogNormal, fixed_gap_s, learn
from batchveo.store import Job

GroupKey = tuple[str, str]
"""Jobs that take alike: (model, resolution)."""
SAMPLES_PER_GROUP = 200
"""A schedule learns from at most the latest this many finished jobs of its group."""
HISTORY_ROWS = 2000
"""How many finished jobs a run reads from the store at its start (the latest)."""
REBUILD_EVERY = 32
"""Past 32 samples, a group's schedule is rebuilt every this many new ones."""
LOGGED_POLLS = 6
"""Poll ages a learned schedule's log line lists (its first polls: where it differs)."""

Learner = Callable[[GroupKey, Learned, int], None]
"""Told of every schedule built: its group, the schedule, how many samples it came from."""


def schedule_details(key: GroupKey, schedule: Learned, samples: int) -> dict[str, object]:
    """What the run log says of a learned schedule (``poll_schedule``): whom it is for,
    what it learned from, and when it polls, so a night's polls can be explained."""
    ages = []
    for age in schedule.ages():
        ages.append(round(age, 1))
        if len(ages) == LOGGED_POLLS:
            break
    return {
        "model": key[0],
        "resolution": key[1],
        "samples": samples,
        "median_s": round(schedule.dist.median_s, 1),
        "sigma": round(schedule.dist.sigma, 3),
        "first_poll_s": round(schedule.first_s, 1),
        "poll_ages_s": ages,
        "max_notice_delay_s": schedule.bound_s,
    }


def group_of(model: str, resolution: object) -> GroupKey:
    return model, str(resolution or DEFAULT_PARAMS["resolution"])


def job_group(job: Job) -> GroupKey:
    return group_of(job.model, job.params.get("resolution"))


@dataclass
class _Group:
    samples: deque[Finished] = field(default_factory=lambda: deque(maxlen=SAMPLES_PER_GROUP))
    running: dict[str, float] = field(default_factory=dict)
    """Job id -> the age its last poll found it still running at (jobs of this run)."""
    schedule: Learned | None = None
    new: int = 0
    """Samples added since ``schedule`` was built."""


class PollPlan:
    """The run's poll times, per job; ``finished`` tells it of every job seen done."""

    def __init__(
        self,
        config: RunConfig,
        rng: random.Random,
        history: Iterable[tuple[str, str | None, float, int]] = (),
        prior: LogNormal = PRIOR,
    ) -> None:
        """``history``: (model, resolution, generation seconds, polls) of finished jobs,
        newest first, as ``Store.generation_times`` gives them."""
        self.config = config
        self._rng = rng
        self._prior = prior
        self._groups: dict[GroupKey, _Group] = {}
        self.on_learned: Learner | None = None
        """Told of every schedule built (the run logs it)."""
        if self.learning:
            for model, resolution, duration_s, polls in reversed(list(history)):
                self._group(group_of(model, resolution)).samples.append(Finished(duration_s, polls))

    @property
    def learning(self) -> bool:
        return self.config.max_notice_delay_s is not None

    def first_poll_at(self, job: Job, submitted_at: float) -> float:
        c = self.config
        if not self.learning or not c.learn_first_poll:
            return submitted_at + c.first_poll_s
        return submitted_at + self.schedule(job_group(job)).first_s

    def next_poll_at(self, job: Job, now: float) -> float:
        """After a poll at ``now`` that found ``job`` still running."""
        c = self.config
        age_s = max(0.0, now - (job.submitted_at or now))
        if self.learning:
            self._group(job_group(job)).running[job.id] = age_s
        if self.learning and c.learn_poll_interval:
            gap_s = self.schedule(job_group(job)).gap_s(age_s)
        else:
            gap_s = fixed_gap_s(age_s, c.poll_interval_s, c.poll_max_interval_s)
        return now + gap_s * (1 + c.poll_jitter * (2 * self._rng.random() - 1))

    def finished(self, job: Job, noticed_at: float) -> None:
        """``job`` was seen done by a poll at ``noticed_at`` (its ``polls`` before it)."""
        if not self.learning or job.submitted_at is None:
            return
        group = self._group(job_group(job))
        group.running.pop(job.id, None)
        group.samples.append(Finished(noticed_at - job.submitted_at, job.polls + 1))
        group.new += 1

    def forget(self, job: Job) -> None:
        """``job`` ended otherwise (failed, filtered, expired): it teaches nothing."""
        group = self._groups.get(job_group(job))
        if group is not None:
            group.running.pop(job.id, None)

    def schedule(self, key: GroupKey) -> Learned:
        """The group's learned schedule, rebuilt when enough new samples came in."""
        group = self._group(key)
        built = len(group.samples) - group.new
        due = group.new >= min(REBUILD_EVERY, max(1, built))
        if group.schedule is None or due:
            c = self.config
            assert c.max_notice_delay_s is not None
            group.schedule = learn(
                group.samples, c.max_notice_delay_s, max_gap_s=c.poll_max_interval_s,
                max_first_s=c.poll_max_first_s, prior=self._prior,
                running_s=group.running.values(),
            )  # fmt: skip
            group.new = 0
            if self.on_learned is not None:
                self.on_learned(key, group.schedule, len(group.samples))
        return group.schedule

    def _group(self, key: GroupKey) -> _Group:
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group()
        return group
