"""Every way a pending job behind a claim's walk can come to fit, against a real ``Store``.

A claim walks from where the last claim of its kind stopped (``store/claimmarks.py``). What
a user would notice if the mark were wrong: a job that fits left pending while later jobs
go first, or left for good (the run ends "drained" with it pending, ``next_attempt_at``
saying None). Each test puts the job behind the walk by a path of its own and checks the
next claims take it in oldest-first order, and that nothing fitting is left at the end.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from batchveo.states import JobState
from batchveo.store import Store
from tests.helpers import FakeClock, make_spec

S = JobState
BUDGET_USD = 1e6
"""The run's ``--budget`` in these tests: large, so only the batch budgets block."""


async def claim(store: Store, budget_usd: float | None = BUDGET_USD) -> str | None:
    jobs = await store.claim_pending(1, budget_usd=budget_usd)
    return jobs[0].id if jobs else None


async def claim_all(store: Store, budget_usd: float | None = BUDGET_USD) -> list[str]:
    """Claims one at a time until none is left (at most 400)."""
    got: list[str] = []
    for _ in range(400):
        job = await claim(store, budget_usd)
        if job is None:
            return got
        got.append(job)
    raise AssertionError(f"more than 400 claims: {got}")


async def nothing_fitting_left(store: Store, budget_usd: float | None = BUDGET_USD) -> None:
    """What ``_drained`` reads says no job could be sent, and that is the truth."""
    fit, _ = await store.claimable_pending(budget_usd=budget_usd)
    assert fit == 0, f"{fit} pending job(s) fit"
    assert await store.next_attempt_at(budget_usd=budget_usd) is None


async def dear_then_open(db: Path, dear: int = 200, opened: int = 5, **kw: object) -> Store:
    """Pending jobs of a batch with $1 left ($3.20 jobs: none fits), then ``opened`` jobs of
    an open batch (o0..)."""
    store = await Store.open(db, clock=FakeClock())
    await store.add_jobs([make_spec(f"d{i}", batch="dear") for i in range(dear)],
                         budgets={"dear": 1.0})  # fmt: skip
    await store.add_jobs([make_spec(f"o{i}", batch="open", **kw) for i in range(opened)])
    return store


# -- a claim that fails ----------------------------------------------------------------


async def test_a_claim_that_fails_leaves_its_job_to_the_next_claim(tmp_path: Path) -> None:
    """The disk fills up in the middle of a claim (a real SQLITE_FULL: the database may not
    grow): the claim's transaction rolls back, its job is pending still. Once there is room
    again, the next claim takes that job, the oldest; none is left behind."""
    store = await dear_then_open(tmp_path / "jobs.db", opened=300)
    try:
        [[pages]] = await store._db.execute_fetchall("PRAGMA page_count")
        await store._db.execute(f"PRAGMA max_page_count={pages}")
        got: list[str] = []
        with pytest.raises(sqlite3.OperationalError, match="full"):
            for _ in range(300):  # each claim logs its event; one needs a new page
                got += [j.id for j in await store.claim_pending(1, budget_usd=BUDGET_USD)]
        failed = f"o{len(got)}"
        job = await store.get(failed)
        assert job is not None and job.state is S.PENDING  # rolled back: never claimed
        await store._db.execute("PRAGMA max_page_count=1073741823")  # room again
        rest = await claim_all(store)
        assert rest == [f"o{i}" for i in range(len(got), 300)]
        await nothing_fitting_left(store)
    finally:
        await store.close()
