"""Money: which jobs count against a budget, the one budget rule, and what was spent.

Costs are estimates the loader's specs carry (``JobSpec.cost_usd``, from the
price table in ``models``: every video a job asks for, with or without audio); the
store stores, sums and compares them, and counts only the videos a job returned once
it knows how many (``writes``: ``cost_usd`` is ``sample_cost_usd`` times those). The
budgets are a run's ``--budget`` and each batch's own (a manifest's ``budget:``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import aiosqlite

from batchveo.routes import Route
from batchveo.states import JobState
from batchveo.store.db import Core
from batchveo.store.routesql import route_filter
from batchveo.store.rows import SELECT, Job, in_states

S = JobState

SPENT_STATES: tuple[JobState, ...] = (S.GENERATED, S.DONE, S.EXPIRED)
"""Jobs whose video was made: billed (estimates; the service bills only on success)."""
COMMITTED_STATES: tuple[JobState, ...] = (*SPENT_STATES, S.SUBMITTING, S.RUNNING, S.UNCERTAIN)
"""Jobs that are or may become billed; filtered and rejected jobs are not charged."""
BUDGET_SLACK_USD = 1e-9
"""Sums of float prices may land a hair above a budget they reach exactly: $3 of $1.50 jobs
fits a $3 budget."""
CAPS_MAX_AGE_S = 5.0
"""How long a run trusts the batch budgets it read (another process may load a manifest)."""
CAPS_SQL = "SELECT name, budget_usd FROM batches WHERE budget_usd IS NOT NULL"
"""The batches' budgets (from their manifests' ``budget:``)."""


def committed_sql(states: Sequence[JobState] = COMMITTED_STATES) -> str:
    """Estimated cost committed per batch: ``(batch, usd)`` rows, one per batch."""
    return f"SELECT batch, SUM(cost_usd) FROM jobs WHERE {in_states(states)} GROUP BY batch"


COSTS_SQL = (
    "SELECT b.name, b.budget_usd,"
    f" TOTAL(CASE WHEN t.{in_states(SPENT_STATES)} THEN t.cost_usd END),"
    f" TOTAL(CASE WHEN t.{in_states(COMMITTED_STATES)} THEN t.cost_usd END),"
    " TOTAL(t.cost_usd)"
    " FROM batches b LEFT JOIN totals t ON t.batch=b.name AND t.jobs > 0"
    " GROUP BY b.name ORDER BY b.name"
)
"""Per batch: its budget, then the estimated cost spent, committed and of all its jobs
(from the running totals of migration 007: a few rows, whatever the number of jobs)."""


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
    batch's committed cost. A run claims one job at a time, oldest first, each claim
    committing its cost: ``plan`` walks the same jobs in the same order with ``blocking``
    and ``spend``; a claim filters the rows with ``sql``.
    """

    budget_usd: float | None
    caps: Mapping[str, float]
    """Batch name -> its budget in USD (batches without one are capped by --budget only)."""
    committed: dict[str, float]
    """Batch name -> estimated cost committed (``COMMITTED_STATES``)."""

    def total_left_usd(self) -> float | None:
        if self.budget_usd is None:
            return None
        return self.budget_usd - sum(self.committed.values())

    def batch_left_usd(self, batch: str) -> float | None:
        cap = self.caps.get(batch)
        return None if cap is None else cap - self.committed.get(batch, 0.0)

    def blocking(self, batch: str, cost_usd: float) -> str | None:
        """None if a job of ``batch`` costing ``cost_usd`` fits; else the budget it would
        exceed: ``"budget"`` (the run's ``--budget``) or ``"batch"`` (its batch's)."""
        total = self.total_left_usd()
        if total is not None and cost_usd > total + BUDGET_SLACK_USD:
            return "budget"
        left = self.batch_left_usd(batch)
        if left is not None and cost_usd > left + BUDGET_SLACK_USD:
            return "batch"
        return None

    def spend(self, batch: str, cost_usd: float) -> None:
        """A job of ``batch`` was claimed: its cost is committed now."""
        self.committed[batch] = self.committed.get(batch, 0.0) + cost_usd

    def sql(self) -> tuple[str, list[Any]]:
        """``blocking`` as SQL: a filter keeping the rows (``cost_usd``, ``batch``) that fit."""
        sql, args = "", list[Any]()
        total = self.total_left_usd()
        if total is not None:
            sql += " AND cost_usd <= ?"
            args.append(total + BUDGET_SLACK_USD)
        if self.caps:
            cases = " ".join("WHEN ? THEN ?" for _ in self.caps)
            sql += f" AND cost_usd <= CASE batch {cases} ELSE 1e300 END"
            for name in self.caps:
                left = self.batch_left_usd(name)
                assert left is not None
                args += [name, left + BUDGET_SLACK_USD]
        return sql, args


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
    ) -> tuple[str, list[Any]]:
        """SQL keeping only pending jobs whose estimated cost fits every budget."""
        caps = await self._batch_caps(db, fresh=True)
        if budget_usd is None and not caps:
            return "", []
        async with db.execute(committed_sql()) as cur:
            committed = {b: float(v or 0.0) for b, v in await cur.fetchall()}
        return BudgetRoom(budget_usd, caps, committed).sql()

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
            fits, args = await self._budget_filter(self._db, budget_usd)
            async with self._db.execute(pending + fits, [*route_args, *args]) as cur:
                row = await cur.fetchone()
            async with self._db.execute(pending, route_args) as cur:
                total = await cur.fetchone()
        n_fit = int(row[0]) if row else 0
        return n_fit, (int(total[0]) if total else 0) - n_fit

    async def next_attempt_at(
        self,
        *,
        budget_usd: float | None = None,
        route: Route | None = None,
        default_route: Route | None = None,
    ) -> float | None:
        """When the earliest backed-off pending job that fits the budgets becomes due (of
        ``route`` only, if given).

        None when no pending job could ever be claimed (none left, or none fits).
        """
        route_sql, route_args = route_filter(route, default_route)
        async with self._lock:
            fits, args = await self._budget_filter(self._db, budget_usd)
            sql = (
                "SELECT MIN(COALESCE(next_attempt_at, 0)) FROM jobs"
                f" WHERE {in_states([S.PENDING])}{route_sql}{fits}"
            )
            async with self._db.execute(sql, [*route_args, *args]) as cur:
                row = await cur.fetchone()
        return row[0] if row else None

    async def costs(self) -> dict[str, dict[str, float | None]]:
        """Per batch: estimated ``spent`` (videos made), ``committed`` and the ``budget``."""
        return {
            name: {"budget": budget, "spent": spent, "committed": committed, "all_jobs": total}
            for name, budget, spent, committed, total in await self._query(COSTS_SQL)
        }

    async def reprice(self, cost_of: Callable[[Job], float]) -> int:
        """Recompute every job's cost estimate (after the user overrides prices).

        ``cost_of`` prices the job's request, every video it asks for; a job that returned
        fewer (partly filtered) costs what it returned, as everywhere."""
        jobs = [Job.from_row(r) for r in await self._query(f"{SELECT} ORDER BY rowid")]
        rows = []
        for j in jobs:
            one = cost_of(j) / max(1, j.samples_requested)
            returned = j.samples_requested if j.samples_returned is None else j.samples_returned
            rows.append((one * returned, one, j.id))
        async with self._tx() as db:
            await db.executemany("UPDATE jobs SET cost_usd=?, sample_cost_usd=? WHERE id=?", rows)
        return len(jobs)
