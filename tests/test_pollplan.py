"""A run's poll plan: which rule each poll follows, what it learns from, and when it relearns.

The rule itself is ``tests/test_schedule.py``'s; here, the run's side of it: the flags
that win, the groups (model and resolution), the store's history read once at the start
and the jobs seen done since.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from batchveo.run.config import RunConfig
from batchveo.run.pollplan import REBUILD_EVERY, PollPlan, job_group
from batchveo.run.schedule import PRIOR, for_distribution, learn
from batchveo.states import JobState
from batchveo.store import Job, Store
from tests.helpers import make_spec

S = JobState
MODEL = "veo-3.1-generate-preview"
LEARN = RunConfig(max_notice_delay_s=10.0, poll_jitter=0.0)
T0 = 1_000_000.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with await Store.open(tmp_path / "jobs.db") as s:
        yield s


async def running(store: Store, job_id: str, resolution: str = "720p", **kw: object) -> Job:
    params = {"aspectRatio": "16:9", "resolution": resolution, "durationSeconds": 8}
    await store.add_jobs([make_spec(job_id, params=params)])
    await store.claim_pending(1)
    return await store.transition(
        job_id, S.SUBMITTING, S.RUNNING, operation=f"operations/{job_id}", submitted_at=T0, **kw
    )


def history(
    n: int, duration_s: float, resolution: str = "720p"
) -> list[tuple[str, str, float, int]]:
    return [(MODEL, resolution, duration_s + (i % 7), 3) for i in range(n)]


async def test_a_config_without_a_bound_polls_as_the_flags_say(store: Store) -> None:
    job = await running(store, "a")
    config = RunConfig(first_poll_s=7.0, poll_interval_s=4.0, poll_jitter=0.1)
    plan = PollPlan(config, random.Random(1), history(50, 100.0))
    assert not plan.learning
    assert plan.first_poll_at(job, T0) == T0 + 7.0
    for age_s, gap_s in ((20.0, 4.0), (360.0, 12.0)):  # grown past two minutes
        at = plan.next_poll_at(job, T0 + age_s)
        assert T0 + age_s + 0.9 * gap_s <= at <= T0 + age_s + 1.1 * gap_s
    plan.finished(job, T0 + 30)  # nothing to learn for: nothing kept
    assert plan.first_poll_at(job, T0) == T0 + 7.0


async def test_each_model_and_resolution_learns_from_its_own_jobs(store: Store) -> None:
    hd, full = await running(store, "hd"), await running(store, "full", "1080p")
    plan = PollPlan(LEARN, random.Random(1), history(200, 150.0))
    assert job_group(hd) == (MODEL, "720p") and job_group(full) == (MODEL, "1080p")
    learned = plan.schedule(job_group(hd))
    assert 120 < learned.dist.median_s < 160  # from the history, not the prior's 60 s
    assert plan.first_poll_at(hd, T0) == T0 + learned.first_s
    assert learned.first_s > 60  # nothing asked in the first minute of a 2.5-minute job
    prior = learn([], 10.0, max_gap_s=60.0, max_first_s=300.0)
    assert plan.first_poll_at(full, T0) == pytest.approx(T0 + prior.first_s)  # no 1080p yet
    assert plan.next_poll_at(hd, T0 + 140) == pytest.approx(T0 + learned.next_poll_s(140))


async def test_a_flag_given_keeps_its_part_fixed(store: Store) -> None:
    job = await running(store, "a")
    rows = history(200, 150.0)
    first_given = PollPlan(
        replace(LEARN, first_poll_s=5.0, learn_first_poll=False), random.Random(), rows
    )
    assert first_given.first_poll_at(job, T0) == T0 + 5.0
    learned = first_given.schedule(job_group(job))
    assert first_given.next_poll_at(job, T0 + 140) == pytest.approx(T0 + learned.next_poll_s(140))

    interval_given = PollPlan(
        replace(LEARN, poll_interval_s=3.0, learn_poll_interval=False), random.Random(), rows
    )
    assert interval_given.first_poll_at(job, T0) == pytest.approx(T0 + learned.first_s)
    assert interval_given.next_poll_at(job, T0 + 140) == T0 + 143.5  # 3 s, grown by 20/120


async def test_jobs_seen_done_teach_the_run_without_a_rebuild_per_poll(store: Store) -> None:
    plan = PollPlan(LEARN, random.Random(1))  # a fresh database: the prior
    job = await running(store, "a")
    key = job_group(job)
    first = plan.schedule(key)
    assert first.dist == PRIOR
    assert plan.schedule(key) is first  # nothing new: the same schedule
    slow = replace(job, polls=2)  # done at its third poll, 200 s after its submit
    plan.finished(slow, T0 + 200)
    second = plan.schedule(key)
    assert second is not first and second.dist.median_s > PRIOR.median_s
    plan.finished(slow, T0 + 200)
    plan.finished(slow, T0 + 200)
    assert plan.schedule(key) is not second  # 2 new on 1: rebuilt (1, 2, 4, ...)


async def test_past_a_full_history_a_schedule_is_rebuilt_every_few_dozen_jobs(
    store: Store,
) -> None:
    plan = PollPlan(LEARN, random.Random(1), history(200, 150.0))
    job = replace(await running(store, "a"), polls=2)
    key = job_group(job)
    built = plan.schedule(key)
    for _ in range(REBUILD_EVERY - 1):
        plan.finished(job, T0 + 300)
        assert plan.schedule(key) is built
    plan.finished(job, T0 + 300)
    assert plan.schedule(key) is not built


def test_the_horizon_covers_a_learned_first_poll() -> None:
    # A stored poll later than the horizon is taken for a clock set back and pulled in:
    # a learned first poll (up to 5 minutes) must not be.
    assert LEARN.schedule_horizon_s >= LEARN.poll_max_first_s
    long = for_distribution(PRIOR, 10.0, max_gap_s=60.0, max_first_s=LEARN.poll_max_first_s)
    assert long.first_s <= LEARN.schedule_horizon_s


# -- what the store gives it -------------------------------------------------------------


async def test_the_store_gives_the_latest_finished_jobs_newest_first(store: Store) -> None:
    for i in range(6):
        job = await running(store, f"j{i}", "1080p" if i == 4 else "720p")
        await store.transition(
            job.id, S.RUNNING, S.GENERATED, generated_at=T0 + 30 + i, polls=i + 1,
            video_uris=["https://v"],
        )  # fmt: skip
    await store.add_jobs([make_spec("never-sent")])
    assert await store.generation_times(3) == [
        (MODEL, "720p", 35.0, 6),
        (MODEL, "1080p", 34.0, 5),
        (MODEL, "720p", 33.0, 4),
    ]
    assert len(await store.generation_times(100)) == 6


async def test_the_latest_finished_jobs_are_read_down_an_index(store: Store) -> None:
    """The query as SQLite plans it: down the partial index, no scan, no sort, so reading
    the latest few costs the same at 1k jobs as at 1M."""
    statements: list[str] = []
    await store._db.set_trace_callback(statements.append)
    await store.generation_times(10)
    await store._db.set_trace_callback(None)
    [sql] = [s for s in statements if "generated_at - submitted_at" in s]
    with sqlite3.connect(store.path) as conn:
        plan = " ".join(r[-1] for r in conn.execute("EXPLAIN QUERY PLAN " + sql))
    assert "USING INDEX jobs_generated_at" in plan, plan
    assert "TEMP B-TREE" not in plan, plan


async def test_jobs_still_running_count_until_they_end(store: Store) -> None:
    plan = PollPlan(LEARN, random.Random(1))
    jobs = [await running(store, f"r{i}") for i in range(12)]
    done = replace(jobs[0], polls=1)
    plan.finished(done, T0 + 60)  # one done at 60 s ...
    alone = plan.schedule(job_group(done)).dist
    for job in jobs[1:]:
        plan.next_poll_at(job, T0 + 200)  # ... eleven still running at 200 s
    plan.finished(replace(jobs[1], polls=4), T0 + 210)
    with_running = plan.schedule(job_group(done)).dist
    assert with_running.median_s > 2 * alone.median_s
    for job in jobs[2:]:
        plan.forget(job)  # failed: they teach nothing
    plan.finished(replace(jobs[0], polls=1), T0 + 60)
    plan.finished(replace(jobs[0], polls=1), T0 + 60)  # 2 new on 2: rebuilt
    assert plan.schedule(job_group(done)).dist.median_s < with_running.median_s
