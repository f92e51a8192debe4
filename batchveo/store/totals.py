"""Running totals of the job table: what ``status`` counts without reading every job.

The ``totals`` table (migrations 007, 009) holds a line per batch, state and stored route:
how many jobs are there, their estimated cost in integer micro-dollars (each job's rounded
once, ``budget.micro_usd``: sums that never drift, for the budget rule), and of those the
service answered with a count of videos, how many were asked for, returned and filtered.
Reading it costs the same at 1k and at 1M jobs: ``status`` and every budgeted claim do.

Who keeps it: the migration's triggers, on every UPDATE and DELETE of a column it counts
(a transition, a replace, a reroute, a reprice), in the same statement as the change, so
it can never disagree with a committed row. An INSERT is counted here instead, by
``add_jobs`` (the one code that inserts jobs), once per load and in its transaction: a
trigger per inserted row cost a sixth of loading 100k jobs. Anything else that writes
job rows straight into the table (a test, the benchmark's generator) counts again with
``DELETE FROM totals`` and ``RECOUNT_SQL``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import aiosqlite

from batchveo.store.budget import MICRO_USD_SQL, micro_usd
from batchveo.store.rows import ROUTE_COLUMNS

_ROUTE_KEY = " || ',' || ".join(f"quote({c})" for c in ROUTE_COLUMNS)
"""The line's route as a key (its NULLs spelled NULL), as the migration's triggers write it."""

COUNT_NEW_SQL = (
    "INSERT INTO totals VALUES (?, ?, "
    + " || ',' || ".join("quote(?)" for _ in ROUTE_COLUMNS)
    + ", ?, ?, ?, ?, ?, ?, 0, 0, 0, 0, 0)"
    " ON CONFLICT (batch, state, route_key) DO UPDATE SET"
    " jobs = jobs + excluded.jobs, cost_micro_usd = cost_micro_usd + excluded.cost_micro_usd"
)
"""Adds ``(batch, state, *route, *route, jobs, cost_micro_usd)``: jobs inserted unanswered."""

RECOUNT_SQL = (
    "INSERT INTO totals SELECT batch, state,"
    f" {_ROUTE_KEY}, {', '.join(ROUTE_COLUMNS)},"
    f" COUNT(*), SUM({MICRO_USD_SQL.format('cost_usd')}), SUM(samples_returned IS NOT NULL),"
    " SUM(IIF(samples_returned IS NULL, 0, samples_requested)),"
    " SUM(COALESCE(samples_returned, 0)),"
    " SUM(IIF(samples_returned IS NULL, 0, COALESCE(samples_filtered, 0))),"
    " SUM(IFNULL(samples_returned BETWEEN 1 AND samples_requested - 1, 0))"
    f" FROM jobs GROUP BY batch, state, {', '.join(ROUTE_COLUMNS)}"
)
"""Every line, counted from the jobs themselves (after ``DELETE FROM totals``)."""

COUNTS_SQL = (
    "SELECT batch, state, SUM(jobs) FROM totals GROUP BY batch, state"
    " HAVING SUM(jobs) > 0 ORDER BY batch, state"
)
"""``(batch, state, jobs)`` of every batch and state with a job."""

SAMPLES_SQL = (
    "SELECT batch, SUM(answered), SUM(requested), SUM(returned), SUM(filtered), SUM(partial)"
    " FROM totals GROUP BY batch HAVING SUM(answered) > 0 ORDER BY batch"
)
"""Per batch with answered jobs: those jobs, the videos they asked for, got, had filtered,
and how many got some but not all."""

ROUTES_SQL = (
    f"SELECT {', '.join(ROUTE_COLUMNS)}, state, SUM(jobs) FROM totals"
    " GROUP BY route_key, state HAVING SUM(jobs) > 0"
)
"""``(*route, state, jobs)`` of every stored route and state with a job."""


class NewJobs:
    """The lines a load adds to: counts the rows of new jobs as they go by to the INSERT."""

    def __init__(self) -> None:
        self._lines: dict[tuple[Any, ...], int] = {}
        """``(batch, state, *route, estimate)`` -> jobs: each estimate is rounded to
        micro-dollars once, as many times as jobs have it, when the lines are written."""

    def count(
        self, rows: Iterable[tuple[Any, ...]], *, state: str, batch: int, cost: int, route: int
    ) -> Iterator[tuple[Any, ...]]:
        """``rows`` unchanged, each counted in ``state``: its batch, cost and route (the
        four columns from index ``route``) are at those indexes."""
        end = route + len(ROUTE_COLUMNS)
        lines = self._lines
        for row in rows:
            key = (row[batch], state, *row[route:end], row[cost])
            lines[key] = lines.get(key, 0) + 1
            yield row

    async def write(self, db: aiosqlite.Connection) -> None:
        """Add what was counted to ``totals`` (in the load's transaction)."""
        summed: dict[tuple[Any, ...], list[int]] = {}
        for (*line, usd), jobs in self._lines.items():
            total = summed.setdefault(tuple(line), [0, 0])
            total[0] += jobs
            total[1] += jobs * micro_usd(usd)
        await db.executemany(
            COUNT_NEW_SQL,
            [(b, s, *route, *route, n, micro) for (b, s, *route), (n, micro) in summed.items()],
        )
