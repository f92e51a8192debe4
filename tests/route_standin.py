"""STAND-IN for the store's side of routes, until the store helper's lands (VERTEX.md,
"Store"): ``Job.route``, ``Store.routes_with_work()``, ``claim_pending(..., route=,
default_route=)`` and ``next_attempt_at`` with the same filter, and the sample counts a
transition may set. Only for the run's tests: the lead replaces it with the real store
at the merge (the tests then set routes through the manifests or ``JobSpec.route``).

Here a job's stored route is its batch's (``batch_routes``; a batch not in it is a
legacy row: route None), and the sample counts are kept in memory (``samples``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import aiosqlite

from batchveo.routes import Route
from batchveo.run.routed import resolve
from batchveo.states import WORK_LEFT, JobState
from batchveo.store import Job, Store, TransitionEvent
from batchveo.store.claims import _take
from batchveo.store.db import Clock, immediate
from batchveo.store.rows import in_states

S = JobState
SAMPLE_FIELDS = ("samples_returned", "samples_filtered", "filtered_reasons")


class Crash(Exception):
    """The process dies here (a kill -9 between two steps, as far as the database sees)."""


class RoutedStore(Store):
    """The real store, with each batch's route and the route filters of VERTEX.md."""

    def __init__(self, conn: aiosqlite.Connection, path: Any, clock: Clock):
        super().__init__(conn, path, clock)
        self.batch_routes: dict[str, Route | None] = {}
        self.samples: dict[str, dict[str, Any]] = {}
        """Sample counts the transitions set, by job (the store's columns, later)."""
        self.crash_before: tuple[JobState, JobState] | None = None
        """A transition that dies before anything of it is written (once)."""

    def _tag(self, job: Job) -> Job:
        object.__setattr__(job, "route", self.batch_routes.get(job.batch))
        return job

    def _tag_all(self, jobs: Iterable[Job]) -> list[Job]:
        return [self._tag(j) for j in jobs]

    async def get(self, job_id: str) -> Job | None:
        job = await super().get(job_id)
        return None if job is None else self._tag(job)

    async def jobs(self, *args: Any, **kw: Any) -> list[Job]:
        return self._tag_all(await super().jobs(*args, **kw))

    async def due_polls(self, now: float, limit: int) -> list[Job]:
        return self._tag_all(await super().due_polls(now, limit))

    async def transition(
        self, job_id: str, src: JobState, dst: JobState, *, detail: str | None = None, **fields: Any
    ) -> Job:
        if self.crash_before == (src, dst):
            self.crash_before = None
            raise Crash(f"{job_id}: died before {src.value} -> {dst.value}")
        samples = {k: fields.pop(k) for k in SAMPLE_FIELDS if k in fields}
        job = await super().transition(job_id, src, dst, detail=detail, **fields)
        if samples:
            self.samples[job_id] = samples
        return self._tag(job)

    async def routes_with_work(self) -> list[Route | None]:
        rows = await self._query(f"SELECT DISTINCT batch FROM jobs WHERE {in_states(WORK_LEFT)}")
        return list(dict.fromkeys(self.batch_routes.get(b) for (b,) in rows))

    def _route_filter(self, route: Route, default: Route | None) -> tuple[str, list[Any]]:
        """SQL keeping the jobs whose batch's route, resolved, is ``route``."""
        default = default or Route()
        known = list(self.batch_routes)
        mine = [b for b, r in self.batch_routes.items() if resolve(r, default) == route]
        sql = f"batch IN ({','.join('?' * len(mine))})" if mine else "0"
        if resolve(None, default) == route:  # legacy rows are the run's route
            sql = f"({sql} OR batch NOT IN ({','.join('?' * len(known))}))"
            return f" AND {sql}", [*mine, *known]
        return f" AND {sql}", mine

    async def claim_pending(
        self,
        limit: int,
        *,
        now: float | None = None,
        budget_usd: float | None = None,
        route: Route | None = None,
        default_route: Route | None = None,
    ) -> list[Job]:
        if route is None:
            return self._tag_all(await super().claim_pending(limit, now=now, budget_usd=budget_usd))
        extra, extra_args = self._route_filter(route, default_route)
        async with self._lock:
            t = self.clock() if now is None else now
            async with immediate(self._db) as db:
                fits, args = await self._budget_filter(db, budget_usd)
                jobs = await _take(db, t, limit, fits + extra, [*args, *extra_args])
        self._tell(TransitionEvent.of(j, S.PENDING, t, None) for j in jobs)
        return self._tag_all(jobs)

    async def next_attempt_at(
        self,
        *,
        budget_usd: float | None = None,
        route: Route | None = None,
        default_route: Route | None = None,
    ) -> float | None:
        if route is None:
            return await super().next_attempt_at(budget_usd=budget_usd)
        extra, extra_args = self._route_filter(route, default_route)
        async with self._lock:
            fits, args = await self._budget_filter(self._db, budget_usd)
            sql = (
                "SELECT MIN(COALESCE(next_attempt_at, 0)) FROM jobs"
                f" WHERE {in_states([S.PENDING])}{fits}{extra}"
            )
            async with self._db.execute(sql, [*args, *extra_args]) as cur:
                row = await cur.fetchone()
        return row[0] if row else None
