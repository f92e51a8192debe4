"""Claims: a submitter takes the next pending job, marked ``submitting`` before it is sent.

The job is marked before its request is sent: if we die mid-submit, the next
run finds it in ``submitting`` and knows it may have been billed. A claim takes
the oldest due jobs that fit the budgets, in one guarded statement under the
store's lock: two coroutines, or two processes, never claim the same job.

Submitters asking at the same moment share one statement (``groupcommit``):
one UPDATE claims for all of them, the oldest jobs going to the earliest
asker. With budgets, each claim is its own transaction instead, so each
commits its cost before the next is judged.

A run serves every route with work, one submitter pool per route: a claim may name
its ``route`` and then takes only the jobs that go by it, a job's stored route made
whole by the run's ``default_route`` (``routes.resolve_route``: the rows loaded before
routes, and the parts a load left open, are the run's). The filter is a residual test
on the rows the state index finds, in the same single guarded UPDATE; the claims of one
moment are one such statement per route. Without a route, a claim takes any job (one
route, as before routes).

A claim walks from where the last claim of its kind stopped, while nothing can have made a
row it stepped over fit (``claimmarks``): rows over a budget or of another route are read
once, not at every claim; rows waiting out a backoff are asked for down their own index.

A claim nobody will send must not stay ``submitting`` (the next run would call
it uncertain and never send it): a submitter cancelled before its claim is
made claims nothing, and the jobs of one cancelled once its claim was made are
handed back to ``pending``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiosqlite

from batchveo.routes import Route
from batchveo.states import JobState, check_transition
from batchveo.store.budget import BACKOFF_INDEX, Budgets
from batchveo.store.claimmarks import NO_ROOM_RULE, WALK_SQL, Key, Room, plan_walk
from batchveo.store.db import immediate
from batchveo.store.groupcommit import GroupCommit
from batchveo.store.routesql import route_filter
from batchveo.store.rows import RETURNING, Job, TransitionEvent

S = JobState
HAND_BACK_DETAIL = "claimed as the run stopped; not sent"


@dataclass(frozen=True)
class _Ask:
    """One submitter's claim: up to ``limit`` jobs, due at ``now``, within ``budget_usd``,
    of ``route`` (None: any)."""

    limit: int
    now: float | None
    budget_usd: float | None
    route: tuple[str, tuple[Any, ...]] = ("", ())
    """``route_filter`` of the claim's route: its SQL and arguments (one key per route)."""


class Claims(Budgets):
    """``claim_pending`` and the hand-back of claims whose submitter left."""

    _claims: GroupCommit[_Ask, list[Job]]

    def _start_claims(self) -> None:
        self._claims = GroupCommit(
            self._claim_all, lock=self._lock, drop_cancelled=True, on_abandoned=self._hand_back
        )

    async def claim_pending(
        self,
        limit: int,
        *,
        now: float | None = None,
        budget_usd: float | None = None,
        route: Route | None = None,
        default_route: Route | None = None,
    ) -> list[Job]:
        """Atomically take up to ``limit`` due pending jobs, oldest first, into ``submitting``.

        With ``route``, only jobs that go by it: their stored route, its unset parts (all
        of them for a job loaded before routes) taken from ``default_route``, the run's.
        """
        if limit <= 0:
            return []
        sql, args = route_filter(route, default_route)
        return await self._claims.submit(_Ask(limit, now, budget_usd, (sql, tuple(args))))

    async def _claim_all(self, asks: Sequence[_Ask]) -> list[list[Job] | BaseException]:
        """The claims of every submitter waiting now, in the order they asked; under the lock.

        Asks of one route share one UPDATE (atomic): the oldest jobs go to the earliest
        asker of that route.
        """
        check_transition(S.PENDING, S.SUBMITTING)
        t = self.clock()
        one_by_one = any(a.budget_usd is not None or a.now is not None for a in asks)
        if one_by_one or await self._batch_caps(self._db):
            return [await self._claim_one(a, t) for a in asks]
        by_route: dict[tuple[str, tuple[Any, ...]], list[int]] = {}
        for i, a in enumerate(asks):
            by_route.setdefault(a.route, []).append(i)
        out: list[list[Job] | BaseException] = [[] for _ in asks]
        for indexes in by_route.values():
            sql, args = asks[indexes[0]].route
            limit = sum(asks[i].limit for i in indexes)
            try:
                jobs = await self._take_committed(t, limit, Key(sql, args))
            except Exception as exc:  # this route's claims fail; the others stand
                for i in indexes:
                    out[i] = exc
                continue
            self._tell(TransitionEvent.of(j, S.PENDING, t, None) for j in jobs)
            for i in indexes:
                out[i] = jobs[: asks[i].limit]
                jobs = jobs[asks[i].limit :]
        return out

    async def _take_committed(self, t: float, limit: int, key: Key) -> list[Job]:
        """One route's claims of one moment, without budgets, in their own transaction."""
        async with self._claim_tx() as db:
            return await self._take(db, t, limit, key, NO_ROOM_RULE)

    @asynccontextmanager
    async def _claim_tx(self) -> AsyncIterator[aiosqlite.Connection]:
        """A claim's transaction. One that fails (rolled back) leaves the rows its walk
        took pending, behind the mark the walk left: every walk starts from the first row
        again."""
        try:
            async with immediate(self._db) as db:
                yield db
        except BaseException:
            self._marks.forget()
            raise

    async def _claim_one(self, ask: _Ask, t: float) -> list[Job] | BaseException:
        """One claim in its own transaction, the caps and the committed cost read in it:
        what is committed is exactly what earlier claims (this run or any before it, in
        any process) committed."""
        t = t if ask.now is None else ask.now
        try:
            async with self._claim_tx() as db:
                fits, args, room = await self._budget_filter(db, ask.budget_usd)
                route_sql, route_args = ask.route
                key = Key(route_sql, route_args, fits)
                jobs = await self._take(db, t, ask.limit, key, room, args)
        except Exception as exc:  # this claim's failure is this caller's
            return exc
        self._tell(TransitionEvent.of(j, S.PENDING, t, None) for j in jobs)
        return jobs

    async def _hand_back(self, abandoned: Sequence[list[Job]]) -> None:
        """Claimed jobs whose submitter left before sending them: pending again, the
        attempt not counted. Runs under the lock, inside a claim's flush."""
        ids = [j.id for jobs in abandoned for j in jobs]
        if not ids:
            return
        check_transition(S.SUBMITTING, S.PENDING)
        now = self.clock()
        sql = (
            "UPDATE jobs SET state=?, attempts=MAX(attempts-1, 0), updated_at=?, last_detail=?"
            f" WHERE state=? AND id IN ({','.join('?' * len(ids))}) RETURNING {RETURNING}"
        )
        args = (S.PENDING.value, now, HAND_BACK_DETAIL, S.SUBMITTING.value, *ids)
        rows = await self._db.execute_fetchall(sql, args)
        self._tell(
            TransitionEvent.of(Job.from_row(r), S.SUBMITTING, now, HAND_BACK_DETAIL) for r in rows
        )

    async def _take(
        self,
        db: aiosqlite.Connection,
        t: float,
        limit: int,
        key: Key,
        room: Room,
        budget_args: Sequence[Any] = (),
    ) -> list[Job]:
        """The guarded UPDATE of a claim: the oldest due pending jobs that fit (``key``'s
        filter), found by a walk from the mark of its kind and the due backoffs, in the
        caller's transaction."""
        begun = await self._marks.begin(db, key, room)
        args = (*budget_args, *key.route_args)
        walked = await _rowids(db, WALK_SQL.format(key.filter_sql), (begun.start, *args, limit))
        backoff = await _rowids(db, DUE_BACKOFF_SQL.format(key.filter_sql), (t, *args, limit))
        last = await _last_rowid(db) if len(walked) < limit else 0
        walk = plan_walk(begun.start, limit, walked, backoff, last)
        self._marks.ended(begun, walk.next_from_rowid)
        if not walk.take:
            return []
        sql = (
            "UPDATE jobs SET state=?, attempts=attempts+1, updated_at=?, last_detail=NULL"
            f" WHERE rowid IN ({','.join('?' * len(walk.take))}) AND state=?"
            f" RETURNING rowid, {RETURNING}"
        )
        args = (S.SUBMITTING.value, t, *walk.take, S.PENDING.value)
        rows = sorted(await db.execute_fetchall(sql, args))
        return [Job.from_row(r[1:]) for r in rows]


DUE_BACKOFF_SQL = (
    f"SELECT rowid FROM jobs INDEXED BY {BACKOFF_INDEX}"
    " WHERE state='pending' AND next_attempt_at IS NOT NULL AND next_attempt_at<=?{}"
    " ORDER BY rowid LIMIT ?"
)
"""Pending rows whose backoff is over, that pass the filter: down their own index (few)."""


async def _rowids(db: aiosqlite.Connection, sql: str, args: Sequence[Any]) -> list[int]:
    return [int(r[0]) for r in await db.execute_fetchall(sql, args)]


async def _last_rowid(db: aiosqlite.Connection) -> int:
    rows = list(await db.execute_fetchall("SELECT MAX(rowid) FROM jobs"))
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0
