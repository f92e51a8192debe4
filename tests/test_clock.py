"""Schedules survive a wall clock that jumps: during a run, and between two runs."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from batchveo.api import VeoClient, resolve_provider
from batchveo.clock import RunClock, alarms_for
from batchveo.states import JobState
from batchveo.store import Store
from tests.helpers import make_spec
from tests.pipeline_helpers import KEY, fast_config, fast_sim, run_batch

S = JobState
HOUR_S = 3600.0


class SteppedWall:
    """The wall clock, set back by ``back_s`` once a test says so (NTP, a dead CMOS battery)."""

    def __init__(self) -> None:
        self.back_s = 0.0

    def __call__(self) -> float:
        return time.time() - self.back_s


class Ticks:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_the_run_clock_follows_elapsed_time_not_the_wall_clock() -> None:
    wall, ticks = SteppedWall(), Ticks()
    clock = RunClock(wall, ticks)
    start = clock()
    assert abs(start - time.time()) < 5  # it reads as wall time: stored times stay readable
    ticks.t += 10
    wall.back_s = HOUR_S  # the system clock is set back an hour meanwhile
    assert clock() == start + 10  # the run does not notice
    ticks.t += 5
    assert clock() == start + 15
    default = RunClock()  # the wall clock and elapsed time counted through a suspend
    assert abs(default() - time.time()) < 5


async def test_a_fast_run_clock_is_rung_as_fast() -> None:
    # Ten seconds of the run per real second (the poll benchmark's compressed nights):
    # an alarm 30 s ahead on it rings 3 s ahead on the loop.
    ticks = Ticks()
    clock = RunClock(lambda: 5000.0, ticks, rate=10)
    ticks.t += 1.5
    assert clock() == 5015.0
    loop = asyncio.get_running_loop()
    handle = alarms_for(clock).call_at(clock() + 30, lambda: None)
    try:
        assert isinstance(handle, asyncio.TimerHandle)
        assert handle.when() - loop.time() == pytest.approx(3.0, abs=0.5)
    finally:
        handle.cancel()
    with pytest.raises(ValueError):
        RunClock(rate=0)


async def test_a_clock_set_back_an_hour_mid_run_does_not_stop_polling(tmp_path: Path) -> None:
    # The wall clock steps back an hour right after the first submit is recorded: that
    # job's first poll was written an hour "ahead". Polled on the wall clock, it would
    # wait an hour (longer than the retention, and its paid video would be lost).
    wall = SteppedWall()

    def observer(event: str, details: dict[str, object]) -> None:
        if event == "submitted":
            wall.back_s = HOUR_S

    specs = [make_spec(f"j{i}", f"prompt {i}") for i in range(4)]
    specs.append(make_spec("flaky", "flaky [sim:500x1]"))  # its retry is scheduled too
    async with await Store.open(tmp_path / "jobs.db", clock=wall) as store:
        async with fast_sim() as sim:
            config = fast_config(tmp_path / "v")
            run = run_batch(store, sim, config, specs, observer=observer)
            result = await asyncio.wait_for(run, 20)
        assert wall.back_s == HOUR_S
        assert result.exit_code == 0
        assert await store.counts() == {"b1": {"done": 5}}


async def test_a_database_written_in_the_future_is_polled_and_submitted_at_once(
    tmp_path: Path,
) -> None:
    # The last run's clock was an hour fast (then corrected): its polls, retries and last
    # submit all lie an hour ahead. The next run must not sit that hour out.
    db, out = tmp_path / "jobs.db", tmp_path / "v"
    async with fast_sim() as sim:
        future = lambda: time.time() + HOUR_S  # noqa: E731
        async with await Store.open(db, clock=future) as store:
            await store.add_jobs([make_spec(f"j{i}", f"prompt {i}") for i in range(4)])
            running, backed_off = await store.claim_pending(2), await store.claim_pending(2)
            async with VeoClient(resolve_provider("gptproto", sim.url), KEY) as client:
                for job in running:  # sent, as the last run did: real operations
                    op = await client.submit(job.spec())
                    t = store.clock()
                    await store.transition(job.id, S.SUBMITTING, S.RUNNING, operation=op,
                                           submitted_at=t, next_poll_at=t + 10)  # fmt: skip
            for job in backed_off:  # a 503, retry in 30 s
                await store.transition(job.id, S.SUBMITTING, S.PENDING,
                                       next_attempt_at=store.clock() + 30)  # fmt: skip
        async with await Store.open(db) as store:  # today's clock, right again
            config = fast_config(out, rpm=600)  # paced: the last submit "was" an hour ahead
            result = await asyncio.wait_for(run_batch(store, sim, config), 20)
            assert result.exit_code == 0
            assert await store.counts() == {"b1": {"done": 4}}
        assert sim.stats()["requests"]["submit"] == {"200": 4}


async def test_only_times_beyond_any_schedule_are_pulled_in(store: Store) -> None:
    await store.add_jobs([make_spec(f"j{i}") for i in range(4)])
    now = store.clock()
    jobs = await store.claim_pending(4)
    for job, ahead_s in zip(jobs[:2], (5.0, HOUR_S), strict=True):
        await store.transition(job.id, S.SUBMITTING, S.RUNNING, operation=f"operations/{job.id}",
                               submitted_at=now, next_poll_at=now + ahead_s)  # fmt: skip
    for job, ahead_s in zip(jobs[2:], (5.0, HOUR_S), strict=True):
        await store.transition(job.id, S.SUBMITTING, S.PENDING, next_attempt_at=now + ahead_s)
    assert await store.pull_in_schedules(now + 300, now) == 2
    after = {j.id: (j.next_poll_at, j.next_attempt_at) for j in await store.jobs()}
    assert after == {
        "j0": (now + 5, None), "j1": (now, None), "j2": (None, now + 5), "j3": (None, now),
    }  # fmt: skip
