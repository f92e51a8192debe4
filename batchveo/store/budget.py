"""Money: which jobs count against a budget, the one budget rule, and what was spent.

Costs are estimates the loader's specs carry (``JobSpec.cost_usd``, from the
price table in ``models``: every video a job asks for, with or without audio); the
store stores, sums and compares them, and counts only the videos a job returned once
it knows how many (``writes``: ``cost_usd`` is ``sample_cost_usd`` times those). The
budgets are a run's ``--budget`` and each batch's own (a manifest's ``budget:``).

The rule compares integer micro-dollars (``micro_usd``): each job's cost rounded once,
and the committed cost of a batch the sum of those, kept by the running totals
(``totals``, migration 009) so that a claim reads a few lines, never every committed
job. Integer sums are exact in any order: $3 of $1.50 jobs fits a $3 budget, after a
million moves as after one, where float sums kept by adding and taking away drift.

What a batch's reviews cost counts too (``review_costs``, migration 012: each review as it
is recorded, from the tokens its answer counted), with the batch's committed cost; a
review is asked only if its estimate fits (``review_fits``), as a claim is made.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import aiosqlite

from batchveo.routes import Route
from batchveo.states import JobState
from batchveo.store.claimmarks import NO_ROOM_RULE, WALK_SQL, Key, Room
from batchveo.store.db import Core
from batchveo.store.routesql import route_filter
from batchveo.store.rows import in_states

S = JobState

SPENT_STATES: tuple[JobState, ...] = (S.GENERATED, S.DONE, S.EXPIRED)
"""Jobs whose video was made: billed (estimates; the service bills only on success)."""
COMMITTED_STATES: tuple[JobState, ...] = (*SPENT_STATES, S.SUBMITTING, S.RUNNING, S.UNCERTAIN)
"""Jobs that are or may become billed; filtered and rejected jobs are not charged."""
MICRO_USD = 1_000_000
"""Micro-dollars per dollar: what the budget rule counts in."""
MICRO_USD_SQL = "CAST({} * 1000000 + 0.5 AS INTEGER)"
"""``micro_usd`` in SQL, of the column named in the braces: the same double arithmetic
(times 10^6, plus a half, floored: costs are never negative), so SQL and Python agree."""
SQL_BOUND = 2**62
"""The budget left as an SQL argument is held within this (a ``--budget 1e15`` is 10^21
micro-dollars, past SQLite's integers; every cost is far below)."""
BACKOFF_INDEX = "jobs_backoff"
"""Pending jobs waiting out a backoff, by when they are due (migration 010): a few rows."""
CAPS_MAX_AGE_S = 5.0
"""How long a run trusts the batch budgets it read (another process may load a manifest)."""
CAPS_SQL = "SELECT name, budget_usd FROM batches WHERE budget_usd IS NOT NULL"
"""The batches' budgets (from their manifests' ``budget:``)."""


def micro_usd(usd: float) -> int:
    """``usd`` in whole micro-dollars, to the nearest (``MICRO_USD_SQL`` in SQL)."""
    return math.floor(usd * MICRO_USD + 0.5)


def committed_sql(states: Sequence[JobState] = COMMITTED_STATES) -> str:
    """Estimated cost of the jobs in ``states``, per batch, in micro-dollars, with what the
    batch's reviews cost (``review_costs``, migration 012): ``(batch, micro_usd)`` rows,
    from the running totals (a few lines, whatever the number of jobs)."""
    return (
        "SELECT batch, SUM(micro) FROM ("
        f"SELECT batch, cost_micro_usd AS micro, jobs FROM totals WHERE {in_states(states)}"
        " UNION ALL SELECT batch, cost_micro_usd, 0 FROM review_costs"
        ") GROUP BY batch HAVING SUM(jobs) > 0"
    )


def committed_rows_sql(states: Sequence[JobState] = COMMITTED_STATES) -> str:
    """``committed_sql`` counted from the jobs themselves (a database before migration 009,
    which ``plan`` reads as it is)."""
    micro = MICRO_USD_SQL.format("cost_usd")
    return f"SELECT batch, SUM({micro}) FROM jobs WHERE {in_states(states)} GROUP BY batch"


_SPENT, _COMMITTED = in_states(SPENT_STATES), in_states(COMMITTED_STATES)
_REVIEWS = "IFNULL((SELECT cost_micro_usd FROM review_costs r WHERE r.batch = b.name), 0)"
COSTS_SQL = (
    "SELECT b.name, b.budget_usd,"
    f" (TOTAL(CASE WHEN t.{_SPENT} THEN t.cost_micro_usd END) + {_REVIEWS}) / {MICRO_USD},"
    f" (TOTAL(CASE WHEN t.{_COMMITTED} THEN t.cost_micro_usd END) + {_REVIEWS}) / {MICRO_USD},"
    f" TOTAL(t.cost_micro_usd) / {MICRO_USD}"
    " FROM batches b LEFT JOIN totals t ON t.batch=b.name AND t.jobs > 0"
    " GROUP BY b.name ORDER BY b.name"
)
"""Per batch: its budget, then the estimated cost spent and committed (with what its
reviews cost) and of all its jobs (from the running totals: a few rows, whatever the
number of jobs; the sums the budget rule reads)."""


class Costed(NamedTuple):
    """A job as the budget rule sees it: its batch and estimated cost (and what prices it)."""

    id: str
    batch: str
    model: str
    params: Mapping[str, Any]
    cost_usd: float


@dataclass
class BudgetRoom:
    """What the budgets leave for the next claim: the one rule of claims, and of ``plan``.

    A pending job fits if its estimated cost is within what ``--budget`` leaves of all the
    cost committed in the database and within what its batch's budget leaves of that
    batch's committed cost, all in micro-dollars (``micro_usd``). A run claims one job at
    a time, oldest first, each claim committing its cost: ``plan`` walks the same jobs in
    the same order with ``blocking`` and ``spend``; a claim filters the rows with ``sql``.
    """

    budget_usd: float | None
    caps: Mapping[str, float]
    """Batch name -> its budget in USD (batches without one are capped by --budget only)."""
    committed_micro_usd: dict[str, int]
    """Batch name -> estimated cost committed (``COMMITTED_STATES``), in micro-dollars."""

    def total_left_micro_usd(self) -> int | None:
        if self.budget_usd is None:
            return None
        return micro_usd(self.budget_usd) - sum(self.committed_micro_usd.values())

    def batch_left_micro_usd(self, batch: str) -> int | None:
        cap = self.caps.get(batch)
        return None if cap is None else micro_usd(cap) - self.committed_micro_usd.get(batch, 0)

    def blocking(self, batch: str, cost_usd: float) -> str | None:
        """None if a job of ``batch`` costing ``cost_usd`` fits; else the budget it would
        exceed: ``"budget"`` (the run's ``--budget``) or ``"batch"`` (its batch's)."""
        cost = micro_usd(cost_usd)
        total = self.total_left_micro_usd()
        if total is not None and cost > total:
            return "budget"
        left = self.batch_left_micro_usd(batch)
        if left is not None and cost > left:
            return "batch"
        return None

    def spend(self, batch: str, cost_usd: float) -> None:
        """A job of ``batch`` was claimed: its cost is committed now."""
        committed = self.committed_micro_usd
        committed[batch] = committed.get(batch, 0) + micro_usd(cost_usd)

    def room(self) -> Room:
        """What the budgets leave, for a claim's mark (``claimmarks``)."""
        caps = tuple((name, micro_usd(cap) - self.committed_micro_usd.get(name, 0))
                     for name, cap in sorted(self.caps.items()))  # fmt: skip
        return Room(self.total_left_micro_usd(), caps)

    def sql(self) -> tuple[str, list[Any]]:
        """``blocking`` as SQL: a filter keeping the rows (``cost_usd``, ``batch``) that fit."""
        sql, args = "", list[Any]()
        cost = MICRO_USD_SQL.format("cost_usd")
        total = self.total_left_micro_usd()
        if total is not None:
            sql += f" AND {cost} <= ?"
            args.append(_bounded(total))
        if self.caps:
            cases = " ".join("WHEN ? THEN ?" for _ in self.caps)
            sql += f" AND {cost} <= CASE batch {cases} ELSE 1e300 END"
            for name in self.caps:
                left = self.batch_left_micro_usd(name)
                assert left is not None
                args += [name, _bounded(left)]
        return sql, args


def _bounded(micro: int) -> int:
    return max(-SQL_BOUND, min(SQL_BOUND, micro))


class Budgets(Core):
    """The budget side of the store: the claims' filter and the money reads."""

    _caps: dict[str, float] | None = None
    _caps_read_at = 0.0

    def _forget_caps(self) -> None:
        """A load just wrote batch budgets: the next claim reads them again."""
        self._caps = None

    async def _batch_caps(
        self, db: aiosqlite.Connection, *, fresh: bool = False
    ) -> dict[str, float]:
        """Batch budgets, re-read every few seconds (another process may load a manifest),
        or now if ``fresh``. The caller holds the lock."""
        now = time.monotonic()
        if fresh or self._caps is None or now - self._caps_read_at > CAPS_MAX_AGE_S:
            self._caps = {name: usd for name, usd in await db.execute_fetchall(CAPS_SQL)}
            self._caps_read_at = now
        return self._caps

    async def _budget_filter(
        self, db: aiosqlite.Connection, budget_usd: float | None
    ) -> tuple[str, list[Any], Room]:
        """SQL keeping only pending jobs whose estimated cost fits every budget, and what
        the budgets leave."""
        caps = await self._batch_caps(db, fresh=True)
        if budget_usd is None and not caps:
            return "", [], NO_ROOM_RULE
        async with db.execute(committed_sql()) as cur:
            committed = {b: int(v) for b, v in await cur.fetchall()}
        room = BudgetRoom(budget_usd, caps, committed)
        return (*room.sql(), room.room())

    async def claimable_pending(
        self,
        *,
        budget_usd: float | None = None,
        route: Route | None = None,
        default_route: Route | None = None,
    ) -> tuple[int, int]:
        """(pending jobs that fit the budgets, pending jobs that do not); with ``route``,
        of that route only (as ``claim_pending`` takes them)."""
        route_sql, route_args = route_filter(route, default_route)
        pending = f"SELECT COUNT(*) FROM jobs WHERE {in_states([S.PENDING])}{route_sql}"
        async with self._lock:
            async with self._db.execute(pending, route_args) as cur:
                total = await cur.fetchone()
            n_all = int(total[0]) if total else 0
            fits, args, _ = await self._budget_filter(self._db, budget_usd)
            if not fits:
                return n_all, 0
            async with self._db.execute(pending + fits, [*route_args, *args]) as cur:
                row = await cur.fetchone()
        n_fit = int(row[0]) if row else 0
        return n_fit, n_all - n_fit

    async def next_attempt_at(
        self,
        *,
        budget_usd: float | None = None,
        route: Route | None = None,
        default_route: Route | None = None,
    ) -> float | None:
        """When the earliest pending job that fits the budgets becomes due (of ``route``
        only, if given): 0 if one is due without a backoff.

        None when no pending job could ever be claimed (none left, or none fits). Two
        short reads: a claim's walk (``claimmarks``: from the mark of its kind, stopping at
        the first row that fits, which the next walk starts at), else the earliest backoff
        among the few pending jobs that have one (``jobs_backoff``, migration 010).
        """
        route_sql, route_args = route_filter(route, default_route)
        async with self._lock:
            db = self._db
            fits, args, room = await self._budget_filter(db, budget_usd)
            begun = await self._marks.begin(db, Key(route_sql, tuple(route_args), fits), room)
            walk = WALK_SQL.format(fits + route_sql)
            first = list(await db.execute_fetchall(walk, [begun.start, *args, *route_args, 1]))
            if first:
                self._marks.ended(begun, int(first[0][0]))
                return 0.0
            async with db.execute("SELECT MAX(rowid) FROM jobs") as cur:
                last = await cur.fetchone()
            end = int(last[0]) + 1 if last and last[0] is not None else 0
            self._marks.ended(begun, max(end, begun.start))
            later = (  # the planner, knowing no counts, would go down jobs_state instead
                f"SELECT MIN(next_attempt_at) FROM jobs INDEXED BY {BACKOFF_INDEX}"
                f" WHERE {in_states([S.PENDING])} AND next_attempt_at IS NOT NULL"
                f"{fits}{route_sql}"
            )
            rows = list(await db.execute_fetchall(later, [*args, *route_args]))
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    async def review_fits(self, batch: str, cost_usd: float, budget_usd: float | None) -> bool:
        """Whether a review of a take of ``batch`` estimated at ``cost_usd`` fits what the
        budgets leave (``--budget`` and the batch's): the rule of claims, for a review."""
        async with self._lock:
            caps = await self._batch_caps(self._db)
            if budget_usd is None and batch not in caps:
                return True
            async with self._db.execute(committed_sql()) as cur:
                committed = {b: int(v) for b, v in await cur.fetchall()}
        return BudgetRoom(budget_usd, caps, committed).blocking(batch, cost_usd) is None

    async def costs(self) -> dict[str, dict[str, float | None]]:
        """Per batch: estimated ``spent`` (videos made), ``committed`` and the ``budget``."""
        return {
            name: {"budget": budget, "spent": spent, "committed": committed, "all_jobs": total}
            for name, budget, spent, committed, total in await self._query(COSTS_SQL)
        }
