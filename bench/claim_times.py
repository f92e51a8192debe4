"""The restart part's child: the hot queries of a run, timed on one database.

Run by the batchveo under test (``python bench/claim_times.py DB``, with that checkout's
Python, as ``gen_db`` is), it opens the store as a run does and times, each the median of
``--repeat`` calls: a claim of one job (without a budget, and with a ``--budget`` large
enough to let it through, which is the one that summed every committed job), when the next
pending job is due under that budget (the drain check's and an idle submitter's question),
the poller's due query (the claimed jobs made running, each due), the routes with work
(what a restart serves) and the last submit (the pacer's gap at a restart); then, with
every pending job but the last thousand moved into a batch over its budget, a claim and
the next due behind those rows (the first claim walks them; the median is what every later
claim costs), and two claims with a backoff (a 429) between them. It prints one JSON
object: milliseconds by name. It writes to the database (the claims): give it a copy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from batchveo.states import JobState
from batchveo.store import Job, Store

BUDGET_USD = 1e9
"""A budget every job fits: the claim's filter is built and applied, nothing is held."""


async def measure(db: Path, repeat: int) -> dict[str, float]:
    out: dict[str, float] = {}
    store = await Store.open(db)
    try:

        async def timed(name: str, call: Callable[[], Awaitable[Any]]) -> None:
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                await call()
                times.append(time.perf_counter() - t0)
            out[name] = round(statistics.median(times) * 1000, 3)

        claimed: list[Job] = []

        async def claim() -> None:
            claimed.extend(await store.claim_pending(1))

        async def claim_budgeted() -> None:
            claimed.extend(await store.claim_pending(1, budget_usd=BUDGET_USD))

        await timed("claim", claim)
        await timed("claim --budget", claim_budgeted)
        for job in claimed:  # in flight now, each due for a poll
            await store.transition(
                job.id,
                JobState.SUBMITTING,
                JobState.RUNNING,
                operation=f"op-{job.id}",
                next_poll_at=0.0,
            )
        await timed("due polls", lambda: store.due_polls(time.time(), 50))
        await timed("next due --budget", lambda: store.next_attempt_at(budget_usd=BUDGET_USD))
        await timed("routes with work", store.routes_with_work)
        await timed("last submit", store.last_submit_at)
    finally:
        await store.close()
    _over_budget_ahead(db)
    store = await Store.open(db)
    try:
        t0 = time.perf_counter()
        await store.claim_pending(1, budget_usd=BUDGET_USD)
        out["first claim, over-budget batch ahead"] = round((time.perf_counter() - t0) * 1000, 3)
        await timed(
            "claim, over-budget batch ahead",
            lambda: store.claim_pending(1, budget_usd=BUDGET_USD),
        )
        await timed(
            "next due, over-budget batch ahead",
            lambda: store.next_attempt_at(budget_usd=BUDGET_USD),
        )

        async def claim_after_a_backoff() -> None:
            [job] = await store.claim_pending(1, budget_usd=BUDGET_USD)
            await store.transition(  # a 429: back to pending, due in a minute
                job.id, JobState.SUBMITTING, JobState.PENDING, next_attempt_at=time.time() + 60
            )
            await store.claim_pending(1, budget_usd=BUDGET_USD)

        await timed("claim after a backoff, over-budget batch ahead", claim_after_a_backoff)
    finally:
        await store.close()
    return out


OPEN_ROWS = 1000
"""The open batch's pending jobs, after the over-budget batch's."""


def _over_budget_ahead(db: Path) -> None:
    """Every pending job but the last ``OPEN_ROWS`` of a batch with a budget already spent
    (``night-1``, $0.01), those last of one without (``night-2``): each claim must pass the
    first batch's rows to reach the second's (claims walk them once, ``claimmarks``)."""
    with sqlite3.connect(db) as conn:
        (top,) = conn.execute("SELECT MAX(rowid) FROM jobs").fetchone()
        cut = top - OPEN_ROWS
        conn.execute(
            "UPDATE jobs SET batch = CASE WHEN rowid > ? THEN 'night-2' ELSE 'night-1' END"
            " WHERE state = 'pending' AND batch IS NOT"
            " (CASE WHEN rowid > ? THEN 'night-2' ELSE 'night-1' END)",
            (cut, cut),
        )
        conn.execute("UPDATE batches SET budget_usd = 0.01 WHERE name = 'night-1'")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("db", type=Path)
    p.add_argument("--repeat", type=int, default=20)
    a = p.parse_args()
    print(json.dumps(asyncio.run(measure(a.db, a.repeat))))
