"""Repricing: every job's cost estimate from the user's price file (``run --prices``).

A run with ``--prices`` reprices before its first claim, since budgets compare these
estimates. Reading every job takes seconds at a million, and most runs reprice with the
prices of the run before (a cron line does not change): so the database remembers the
prices it last applied to every job and the last row it priced then (``prices_applied``,
migration 010). The same prices again reprice only the rows loaded since, which the
loader priced by its own table; any other prices, or none remembered, every row. A load
that replaces jobs (``--replace``: priced by the table again, in place) forgets them.

Rows are read in pages by rowid and only the estimates that change are written, all in
one transaction: a crash leaves every estimate as it was, and memory holds one page.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import aiosqlite

from batchveo.models import billed_params
from batchveo.store.db import Core
from batchveo.store.rows import decode

CostOf = Callable[[str, Mapping[str, Any]], float]
"""``cost_of(model, params)``: a request's estimate, every video it asks for."""
PAGE_ROWS = 10_000
"""Jobs read, priced and written back at a time."""
_PAGE_SQL = (
    "SELECT rowid, model, params, samples_requested, samples_returned, cost_usd,"
    " sample_cost_usd, output_s FROM jobs WHERE rowid > ? ORDER BY rowid LIMIT ?"
)
FORGET_PRICES_SQL = "DELETE FROM prices_applied"
"""Every row is priced again by the next reprice (a load that replaced jobs runs it)."""


class Pricing(Core):
    """``reprice``: the stored estimates from a price file."""

    async def reprice(self, cost_of: CostOf, *, prices_key: str | None = None) -> int:
        """Recompute the jobs' cost estimates with ``cost_of``; how many jobs were read.

        ``cost_of`` prices the job's request, every video it asks for; a job that returned
        fewer (partly filtered) costs what it returned, as everywhere. ``prices_key`` names
        the prices (canonical text of the price file's table): the same as last time, only
        the jobs loaded since are read. None: every job, and nothing remembered.
        """

        @lru_cache(maxsize=4096)  # a night's jobs share a handful of requests' shapes
        def price(model: str, params: str, output_s: int | None) -> float:
            return cost_of(model, billed_params(decode("params", params), output_s))

        async with self._tx() as db:
            start = 0 if prices_key is None else await _applied_through(db, prices_key)
            last, read = await _reprice_from(db, start, price)
            await db.execute(FORGET_PRICES_SQL)
            if prices_key is not None:
                await db.execute(
                    "INSERT INTO prices_applied (one, prices, through_rowid) VALUES (1, ?, ?)",
                    (prices_key, last),
                )
        return read


async def _applied_through(db: aiosqlite.Connection, prices_key: str) -> int:
    """The last row already priced by these prices (0: none, every row is read)."""
    rows = list(await db.execute_fetchall("SELECT prices, through_rowid FROM prices_applied"))
    return int(rows[0][1]) if rows and rows[0][0] == prices_key else 0


async def _reprice_from(
    db: aiosqlite.Connection, start: int, price: Callable[[str, str, int | None], float]
) -> tuple[int, int]:
    """Reprice the rows after rowid ``start``: (the last rowid seen, rows read)."""
    last, read = start, 0
    while True:
        rows = list(await db.execute_fetchall(_PAGE_SQL, (last, PAGE_ROWS)))
        if not rows:
            return last, read
        changed = []
        for rowid, model, params, asked, returned, cost_was, one_was, output_s in rows:
            one = price(model, params, output_s) / max(1, asked)
            cost = one * (asked if returned is None else returned)
            if cost != cost_was or one != one_was:
                changed.append((cost, one, rowid))
        await db.executemany("UPDATE jobs SET cost_usd=?, sample_cost_usd=? WHERE rowid=?", changed)
        last, read = rows[-1][0], read + len(rows)
