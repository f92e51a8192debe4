"""The restart part's child: the hot queries of a run, timed on one database.

Run by the batchveo under test (``python bench/claim_times.py DB``, with that checkout's
Python, as ``gen_db`` is), it opens the store as a run does and times, each the median of
``--repeat`` calls: a claim of one job (without a budget, and with a ``--budget`` large
enough to let it through, which is the one that summed every committed job), when the next
pending job is due under that budget (the drain check's and an idle submitter's question),
the poller's due query (the claimed jobs made running, each due), the routes with work
(what a restart serves) and the last submit (the pacer's gap at a restart). It prints
one JSON object: milliseconds by name. It writes to the database (the claims): give it a
copy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("db", type=Path)
    p.add_argument("--repeat", type=int, default=20)
    a = p.parse_args()
    print(json.dumps(asyncio.run(measure(a.db, a.repeat))))
