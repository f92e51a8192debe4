"""The store's async reads of the live job table: for the run, ``status``, ``show``.

``Reads`` runs each query on the store's connection, under its lock. ``jobs_sql``, the
query of a list of jobs, is shared with ``snapshot.Snapshot``, the read-only look
without an event loop (``plan``, ``export``, the report).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from batchveo.errors import StoreError
from batchveo.routes import Route, resolve_route
from batchveo.states import JobState
from batchveo.store.db import Core
from batchveo.store.rows import ROUTE_COLUMNS, SELECT, Event, Job, in_states
from batchveo.store.schema import applied_migrations
from batchveo.store.totals import COUNTS_SQL, ROUTES_SQL, SAMPLES_SQL

S = JobState
WORK_STATES: tuple[JobState, ...] = (S.PENDING, S.SUBMITTING, S.RUNNING, S.GENERATED)
"""Jobs a run still has something to do for (send, poll, download)."""
ORDERS = ("rowid", "generated_at", "next_poll_at")
"""What ``jobs`` may be sorted by (then by rowid: the order they were loaded in)."""
_EVENTS_SQL = (
    "SELECT job_id, from_state, to_state, at, attempt, detail FROM events"
    " WHERE job_id=? ORDER BY seq"
)


class Brief(NamedTuple):
    """A job as a list names it (``status``: uncertain jobs, videos at risk)."""

    id: str
    batch: str
    error: str | None
    generated_at: float | None


_BRIEF_SELECT = f"SELECT {', '.join(Brief._fields)} FROM jobs"


def jobs_sql(
    states: Iterable[JobState] | None = None,
    *,
    batch: str | None = None,
    order: str = "rowid",
    limit: int | None = None,
    select: str = SELECT,
) -> tuple[str, list[Any]]:
    """The query of ``jobs``: the rows in ``states`` (all if None) of ``batch``, sorted
    (``select``: which columns, ``SELECT ... FROM jobs``; default a whole ``Job``)."""
    where: list[str] = []
    args: list[Any] = []
    if states is not None:
        wanted = [s.value for s in states]
        where.append(f"state IN ({','.join('?' * len(wanted))})")
        args.extend(wanted)
    if batch is not None:
        where.append("batch=?")
        args.append(batch)
    sql = select + (" WHERE " + " AND ".join(where) if where else "")
    if order not in ORDERS:
        raise StoreError(f"cannot order by {order}")
    sql += f" ORDER BY {order}, rowid"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return sql, args


def _route_order(route: Route | None) -> tuple[str, ...]:
    """None (the run's own) first, then by provider, project, region and bucket."""
    if route is None:
        return ()
    return tuple(
        p or "" for p in (route.provider, route.project, route.location, route.storage_uri)
    )


def loaded_event(job: Job) -> Event:
    """A job's first line of history, told by its row: no event is written per job at load
    (a scene chain's hop is loaded waiting for its parent)."""
    detail = f"loaded from {job.source}" if job.source else "loaded"
    first = S.PENDING if job.extends is None else S.WAITING
    return Event(job.id, None, first.value, job.created_at, 0, detail)


class Reads(Core):
    """The store's queries (each one statement under the lock, never inside a write)."""

    async def get(self, job_id: str) -> Job | None:
        rows = await self._query(SELECT + " WHERE id=?", (job_id,))
        return Job.from_row(rows[0]) if rows else None

    async def jobs(
        self,
        states: Iterable[JobState] | None = None,
        *,
        batch: str | None = None,
        order: str = "rowid",
        limit: int | None = None,
    ) -> list[Job]:
        sql, args = jobs_sql(states, batch=batch, order=order, limit=limit)
        return [Job.from_row(r) for r in await self._query(sql, args)]

    async def briefs(self, states: Iterable[JobState], *, order: str = "rowid") -> list[Brief]:
        """The jobs in ``states`` as lists name them (a few columns, not whole rows:
        ``status`` lists every uncertain job, and there may be thousands)."""
        sql, args = jobs_sql(states, order=order, select=_BRIEF_SELECT)
        return [Brief(*r) for r in await self._query(sql, args)]

    async def due_polls(self, now: float, limit: int) -> list[Job]:
        sql = (
            f"{SELECT} WHERE {in_states([S.RUNNING])} AND next_poll_at<=?"
            " ORDER BY next_poll_at LIMIT ?"
        )
        return [Job.from_row(r) for r in await self._query(sql, (now, limit))]

    async def next_poll_at(self) -> float | None:
        sql = f"SELECT MIN(next_poll_at) FROM jobs WHERE {in_states([S.RUNNING])}"
        value = await self._scalar(sql)
        return None if value is None else float(value)

    async def generation_times(self, limit: int) -> list[tuple[str, str | None, float, int]]:
        """The latest ``limit`` jobs whose videos were made, newest first: (model, resolution,
        seconds from submit to the done answer, polls it took). Read from the newest
        ``generated_at`` down its index (``008_generated_at``): ``limit`` rows, whatever
        the size of the table."""
        sql = (
            "SELECT model, json_extract(params, '$.resolution'), generated_at - submitted_at,"
            " polls FROM jobs WHERE generated_at IS NOT NULL AND submitted_at IS NOT NULL"
            " ORDER BY generated_at DESC LIMIT ?"
        )
        return [(m, r, float(d), int(p)) for m, r, d, p in await self._query(sql, (limit,))]

    async def last_submit_at(self) -> float | None:
        """When this database last let a submit start (any run, any process)."""
        sql = f"SELECT MAX(at) FROM events WHERE to_state = '{S.SUBMITTING.value}'"
        value = await self._scalar(sql)  # down events_submits (010): the state spelled out
        return None if value is None else float(value)

    async def counts(self) -> dict[str, dict[str, int]]:
        """``{batch: {state: n}}`` for every batch with at least one job (running totals)."""
        out: dict[str, dict[str, int]] = {}
        for batch, state, n in await self._query(COUNTS_SQL):
            out.setdefault(batch, {})[state] = n
        return out

    async def sample_counts(self) -> dict[str, dict[str, int]]:
        """Per batch, of the jobs the service answered with a count of videos (Vertex):
        ``{"jobs", "requested", "returned", "filtered", "partial"}``, ``partial`` being the
        jobs that got some of their videos but not all (the rest kept back by the filter)."""
        keys = ("jobs", "requested", "returned", "filtered", "partial")
        return {
            batch: dict(zip(keys, (int(n or 0) for n in counts), strict=True))
            for batch, *counts in await self._query(SAMPLES_SQL)
        }

    async def route_counts(self) -> list[tuple[Route | None, dict[str, int]]]:
        """Each stored route (None: the run's) with its jobs' counts per state."""
        out: dict[Route | None, dict[str, int]] = {}
        for *parts, state, n in await self._query(ROUTES_SQL):
            route = None if tuple(parts) == (None,) * 4 else Route(*parts)
            out.setdefault(route, {})[state] = n
        return sorted(out.items(), key=lambda item: _route_order(item[0]))

    async def count_states(self, states: Iterable[JobState]) -> int:
        wanted = [s.value for s in states]
        marks = ",".join("?" * len(wanted))
        sql = f"SELECT COUNT(*) FROM jobs WHERE state IN ({marks})"
        return int(await self._scalar(sql, wanted) or 0)

    async def history(self, job: Job) -> list[Event]:
        """A job's whole story: its loading (from the row), then every logged transition."""
        return [loaded_event(job), *await self.events(job.id)]

    async def events(self, job_id: str) -> list[Event]:
        return [Event(*r) for r in await self._query(_EVENTS_SQL, (job_id,))]

    async def routes_with_work(
        self,
        states: Iterable[JobState] = WORK_STATES,
        *,
        default_route: Route | None = None,
    ) -> list[Route | None]:
        """The distinct stored routes of the jobs in ``states`` (a run's work: pending,
        submitting, running, generated), None for jobs with none (loaded before routes, or
        without any): each is the run's to make whole.

        With ``default_route`` (the run's), each made whole instead, and the same whole
        route once (a stored None and the run's own route are one route): what a run
        makes a client, a pacer and submitters for. Sorted, so a run starts them in the
        same order every time.
        """
        sql = (  # from the running totals: a few lines, whatever the number of jobs
            f"SELECT {', '.join(ROUTE_COLUMNS)} FROM totals WHERE {in_states(list(states))}"
            " GROUP BY route_key HAVING SUM(jobs) > 0"
        )
        stored = [None if r == (None,) * 4 else Route(*r) for r in await self._query(sql)]
        if default_route is not None:
            stored = list(dict.fromkeys(resolve_route(r, default_route) for r in stored))
        return sorted(stored, key=_route_order)

    async def applied_migrations(self) -> list[str]:
        async with self._lock:
            return await applied_migrations(self._db)
