"""In-flight slots and --max-jobs places: taken before a claim, given back by transitions."""

from __future__ import annotations

import asyncio

from batchveo.run.slots import InflightSlots
from batchveo.states import JobState
from batchveo.store import TransitionEvent

S = JobState


def moved(job: str, src: JobState, dst: JobState, attempt: int = 1) -> TransitionEvent:
    return TransitionEvent(job, "b1", src.value, dst.value, 0.0, attempt, None, None, None, None)


def never() -> bool:
    return False


async def claim(slots: InflightSlots, job: str | None, attempt: int = 1) -> bool:
    """One submitter's step 1 and 2: reserve, then claim ``job`` (None: nothing to claim)."""
    async with slots.claiming(never) as reserved:
        if reserved and job is not None:
            slots.observe(moved(job, S.PENDING, S.SUBMITTING, attempt))
        return reserved


async def test_a_slot_is_freed_only_when_its_job_leaves_the_in_flight_states() -> None:
    slots = InflightSlots(1)
    assert await claim(slots, "a")
    waiting = asyncio.create_task(claim(slots, "b"))
    slots.observe(moved("a", S.SUBMITTING, S.RUNNING))  # still in flight
    await asyncio.sleep(0)
    assert not waiting.done() and slots.in_flight == 1
    slots.observe(moved("a", S.RUNNING, S.GENERATED))  # the operation is over: slot free
    assert await asyncio.wait_for(waiting, 5) and slots.in_flight == 1


async def test_a_claim_that_found_nothing_gives_its_reservation_back() -> None:
    slots = InflightSlots(1)
    assert await claim(slots, None)
    assert await asyncio.wait_for(claim(slots, "a"), 5)  # not held by the empty claim


async def test_only_sends_that_count_spend_a_max_jobs_place() -> None:
    slots = InflightSlots(10, max_sends=2)
    for job in ("a", "b"):
        assert await claim(slots, job)
    # a: refused with a 429, handed back with its attempt given back (attempt 1 -> 0).
    slots.observe(moved("a", S.SUBMITTING, S.PENDING, attempt=0))
    # b: a 503, retried later: it reached the server, the attempt stays spent.
    slots.observe(moved("b", S.SUBMITTING, S.PENDING, attempt=1))
    assert not slots.sends_spent()
    assert await asyncio.wait_for(claim(slots, "a", attempt=1), 5)  # a's place came back
    slots.observe(moved("a", S.SUBMITTING, S.RUNNING))
    assert slots.sends_spent()
    waiting = asyncio.create_task(claim(slots, "c"))
    await asyncio.sleep(0)
    assert not waiting.done()  # no place left: waits (until the run ends it)
    waiting.cancel()


async def test_a_stop_wakes_every_waiter_with_no_slot() -> None:
    slots = InflightSlots(1, in_flight=1)  # one operation running since the last run
    stopped = False

    async def claim_unless_stopped() -> bool:
        async with slots.claiming(lambda: stopped) as reserved:
            return reserved

    waiting = [asyncio.create_task(claim_unless_stopped()) for _ in range(3)]
    await asyncio.sleep(0)
    stopped = True
    slots.wake_all()
    assert await asyncio.wait_for(asyncio.gather(*waiting), 5) == [False] * 3
