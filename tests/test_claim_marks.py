"""Claims walk from where the last one stopped (store/claimmarks.py), and never miss a job.

A batch over its budget with many pending jobs, loaded before an open batch, used to make
every claim read all of those rows again. What a user would notice either way is which job
each claim takes: the oldest that fits, including one that came to fit behind the walk's
start (a hand-back, a retry, money given back, lower prices, another process's write, a
backoff over). The cost is counted in SQLite's own steps (a progress handler), not time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from batchveo.routes import Route
from batchveo.states import JobState
from batchveo.store import Store
from batchveo.store.claimmarks import MAX_AGE_S, Mark, Room, plan_walk
from tests.helpers import FakeClock, make_spec

S = JobState
BLOCKED_ROWS = 3000
"""Pending jobs of the batch over its budget, ahead of the open batch's."""


def test_a_walk_starts_next_where_a_fitting_row_may_still_be() -> None:
    # cut at the limit: past the last row walked
    walk = plan_walk(0, 2, [5, 9], [], 100)
    assert (walk.take, walk.next_from_rowid) == ([5, 9], 10)
    # the walk read to the table's end: past the table's last row
    walk = plan_walk(40, 3, [50], [], 100)
    assert (walk.take, walk.next_from_rowid) == ([50], 101)
    # nothing found from a start past the end: the start stays
    assert plan_walk(120, 3, [], [], 100).next_from_rowid == 120
    # an older backoff row took a walked row's place: that row still fits, start at it
    walk = plan_walk(0, 2, [5, 9], [3], 100)
    assert (walk.take, walk.next_from_rowid) == ([3, 5], 9)


def test_a_mark_holds_only_while_no_row_can_have_come_to_fit() -> None:
    room = Room(1_000, (("a", 50), ("b", 0)))
    mark = Mark(10, room, pending_again=3, data_version=7, chain_started_s=100.0)
    assert mark.holds(room, 3, 7, 100.0 + MAX_AGE_S - 1)
    assert mark.holds(Room(900, (("a", 40), ("b", 0))), 3, 7, 101.0)  # less room: holds
    assert not mark.holds(Room(1_001, room.batches_micro_usd), 3, 7, 101.0)  # more money
    assert not mark.holds(Room(1_000, (("a", 51), ("b", 0))), 3, 7, 101.0)  # a batch's
    assert not mark.holds(Room(1_000, (("a", 50),)), 3, 7, 101.0)  # another set of budgets
    assert not mark.holds(Room(None, room.batches_micro_usd), 3, 7, 101.0)
    assert not mark.holds(room, 4, 7, 101.0)  # a row became pending here
    assert not mark.holds(room, 3, 8, 101.0)  # another connection committed
    assert not mark.holds(room, 3, 7, 100.0 + MAX_AGE_S)  # the backstop


@asynccontextmanager
async def steps(store: Store) -> AsyncIterator[list[int]]:
    """SQLite's virtual machine steps while inside (in thousands)."""
    count = [0]

    def tick() -> int:
        count[0] += 1
        return 0

    await store._db.set_progress_handler(tick, 1000)
    try:
        yield count
    finally:
        await store._db.set_progress_handler(None, 0)


async def blocked_ahead(db: Path, clock: FakeClock | None = None) -> Store:
    """A store whose oldest pending jobs are of a batch with no budget left ($1 for $3.20
    jobs), then ten of an open batch (o0..o9)."""
    store = await Store.open(db, clock=clock or FakeClock())
    dear = [make_spec(f"d{i}", batch="dear") for i in range(BLOCKED_ROWS)]
    await store.add_jobs(dear, budgets={"dear": 1.0})
    await store.add_jobs([make_spec(f"o{i}", batch="open") for i in range(10)])
    return store


async def claim(store: Store, budget_usd: float | None = 1e6) -> str | None:
    jobs = await store.claim_pending(1, budget_usd=budget_usd)
    return jobs[0].id if jobs else None


async def test_claims_behind_a_batch_over_its_budget_read_its_rows_once(tmp_path: Path) -> None:
    store = await blocked_ahead(tmp_path / "jobs.db")
    try:
        async with steps(store) as first:
            assert await claim(store) == "o0"
        async with steps(store) as second:
            assert await claim(store) == "o1"
        async with steps(store) as due:
            assert await store.next_attempt_at(budget_usd=1e6) == 0.0
        assert first[0] > 20 * max(1, second[0]), (first, second)  # stepped over 3,000 once
        assert first[0] > 20 * max(1, due[0]), (first, due)
        assert [await claim(store) for _ in range(9)] == [f"o{i}" for i in range(2, 10)] + [None]
        assert await store.next_attempt_at(budget_usd=1e6) is None  # nothing could be sent
    finally:
        await store.close()


async def test_claims_of_one_route_behind_another_routes_rows_read_them_once(
    tmp_path: Path,
) -> None:
    gemini, reseller = Route("gemini"), Route("gptproto")
    async with await Store.open(tmp_path / "jobs.db", clock=FakeClock()) as store:
        await store.add_jobs([make_spec(f"g{i}", route=gemini) for i in range(BLOCKED_ROWS)])
        await store.add_jobs([make_spec(f"r{i}", route=reseller) for i in range(3)])
        got = []
        async with steps(store) as first:
            got += await store.claim_pending(1, route=reseller, default_route=reseller)
        async with steps(store) as second:
            got += await store.claim_pending(1, route=reseller, default_route=reseller)
        assert [j.id for j in got] == ["r0", "r1"]
        assert first[0] > 20 * max(1, second[0]), (first, second)
        [g] = await store.claim_pending(1, route=gemini, default_route=reseller)
        assert g.id == "g0"  # the other route's walk is its own


async def test_a_job_handed_back_behind_the_walk_is_the_next_claimed(tmp_path: Path) -> None:
    store = await blocked_ahead(tmp_path / "jobs.db")
    try:
        assert [await claim(store) for _ in range(3)] == ["o0", "o1", "o2"]
        # o1's submitter went away: o1 is pending again, behind where the walk is now
        await store.transition("o1", S.SUBMITTING, S.PENDING, detail="handed back")
        assert await claim(store) == "o1"
        assert await claim(store) == "o3"
    finally:
        await store.close()


async def test_money_given_back_makes_a_stepped_over_job_claimable(tmp_path: Path) -> None:
    store = await blocked_ahead(tmp_path / "jobs.db")
    try:
        await store.add_jobs([make_spec("d-extra", batch="dear")], budgets={"dear": 4.0})
        # $4 now: one $3.20 job of the dear batch fits, the oldest, then the batch is full
        assert await claim(store) == "d0"
        assert await claim(store) == "o0"
        # d0 is refused (never billed): its $3.20 is the batch's again, so d1 fits
        await store.transition("d0", S.SUBMITTING, S.FAILED, error_kind="rejected")
        assert await claim(store) == "d1"
        assert await claim(store) == "o1"
    finally:
        await store.close()


async def test_lower_prices_make_a_stepped_over_job_claimable(tmp_path: Path) -> None:
    store = await blocked_ahead(tmp_path / "jobs.db")
    try:
        assert await claim(store) == "o0"
        await store.reprice(lambda model, params: 0.5)  # the dear batch's $1 fits two now
        assert [await claim(store) for _ in range(3)] == ["d0", "d1", "o1"]
    finally:
        await store.close()


async def test_another_processs_writes_behind_the_walk_are_seen(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    reseller = Route("gptproto")
    async with await Store.open(db, clock=FakeClock()) as store:
        await store.add_jobs([make_spec(f"g{i}", route=Route("gemini")) for i in range(50)])
        await store.add_jobs([make_spec(f"r{i}", route=reseller) for i in range(4)])

        async def claim_reseller() -> str:
            [job] = await store.claim_pending(1, route=reseller, default_route=reseller)
            return job.id

        assert [await claim_reseller(), await claim_reseller()] == ["r0", "r1"]
        await store.transition("r0", S.SUBMITTING, S.FAILED, error_kind="rejected")
        with sqlite3.connect(db) as other:  # `batchveo retry r0`, beside the run
            other.execute("UPDATE jobs SET state='pending', error_kind=NULL WHERE id='r0'")
        assert await claim_reseller() == "r0"  # oldest first, though behind the walk
        assert await claim_reseller() == "r2"
        # and a larger budget loaded by another process lets the dear rows through
        await store.add_jobs([make_spec(f"d{i}", batch="dear") for i in range(3)],
                             budgets={"dear": 1.0})  # fmt: skip
        assert await claim(store) == "g0"
        with sqlite3.connect(db) as other:
            other.execute("UPDATE batches SET budget_usd = 100 WHERE name = 'dear'")
        store._forget_caps()  # as the caps' age would, a few seconds on
        assert [await claim(store) for _ in range(54)][-5:] == ["r3", "d0", "d1", "d2", None]


async def test_a_backoff_that_ends_behind_the_walk_is_claimed(tmp_path: Path) -> None:
    clock = FakeClock()
    store = await blocked_ahead(tmp_path / "jobs.db", clock)
    try:
        assert await claim(store) == "o0"
        await store.transition(
            "o0", S.SUBMITTING, S.PENDING, next_attempt_at=clock.now + 30, detail="429"
        )
        assert await claim(store) == "o1"
        assert await store.next_attempt_at(budget_usd=1e6) == 0.0
        assert [await claim(store) for _ in range(8)] == [f"o{i}" for i in range(2, 10)]
        assert await store.next_attempt_at(budget_usd=1e6) == pytest.approx(clock.now + 30)
        assert await claim(store) is None
        clock.advance(31)
        assert await claim(store) == "o0"
    finally:
        await store.close()


async def test_a_backoff_does_not_make_claims_read_the_blocked_rows_again(tmp_path: Path) -> None:
    """A 429 puts a claimed job back to pending with a backoff: the walk never reads such
    rows (they are found down their own index), so the claims after it start from the
    mark still, not from the first row (a rate-limited run gets many)."""
    clock = FakeClock()
    store = await blocked_ahead(tmp_path / "jobs.db", clock)
    try:
        async with steps(store) as first:
            assert await claim(store) == "o0"
        assert await claim(store) == "o1"
        await store.transition(
            "o0", S.SUBMITTING, S.PENDING, next_attempt_at=clock.now + 30, detail="429"
        )
        async with steps(store) as after:
            assert await claim(store) == "o2"
        assert first[0] > 20 * max(1, after[0]), (first, after)
        clock.advance(31)
        assert await claim(store) == "o0"
    finally:
        await store.close()


async def test_a_job_handed_back_after_its_backoff_is_claimed_first(tmp_path: Path) -> None:
    """A job claimed at the end of its backoff keeps the time it was due: handed back, it
    is pending with that time (no row the walk reads, and no trigger counts it), and is
    found down the backoff index, before the later jobs."""
    clock = FakeClock()
    store = await blocked_ahead(tmp_path / "jobs.db", clock)
    try:
        assert await claim(store) == "o0"
        await store.transition(
            "o0", S.SUBMITTING, S.PENDING, next_attempt_at=clock.now + 5, detail="429"
        )
        assert await claim(store) == "o1"
        clock.advance(6)
        assert await claim(store) == "o0"
        await store.transition("o0", S.SUBMITTING, S.PENDING, detail="handed back")
        [row] = await store._db.execute_fetchall("SELECT next_attempt_at FROM jobs WHERE id='o0'")
        assert row[0] is not None  # still the time it was due
        assert [await claim(store) for _ in range(2)] == ["o0", "o2"]
        assert await store.next_attempt_at(budget_usd=1e6) == 0.0
    finally:
        await store.close()
