"""State changes: every write that moves a job, guarded and logged.

Everything the pipeline knows about a job lives in one SQLite row, and every
change to it is committed before the step that depends on it: a job is marked
``submitting`` before its request is sent, its operation name is written the
moment the server returns it. That ordering is what makes ``kill -9`` safe.

A transition is one guarded ``UPDATE ... WHERE id=? AND state=?``: it applies
only if the job is still where the caller saw it, and a refused one says what
the job is instead. The trigger of migration 005 logs the event; observers
hear it once it is committed.

A transition that sets ``samples_returned`` (the answer of a Vertex job: how many of the
``sampleCount`` videos came back) also sets the job's ``cost_usd`` to its
``sample_cost_usd`` times those videos, in the same statement: the service bills the
videos it returns, and a partly filtered job must count only those against the budgets.
The store does it, not the caller, so no caller can forget it or price it differently;
setting the same count twice gives the same cost, and ``samples_returned=None`` (a job
sent again) brings back the cost of every video asked for.

A single transition, the pipeline's hot write (three or four per job), goes
through ``groupcommit``: those of other jobs waiting at the same moment share
one guarded statement, so a busy run pays one trip to the database thread and
one fsync per batch rather than per write. Each caller still returns only once
its own row is committed, and learns whether it changed. Several transitions
given together (``apply``) are one plain transaction; so is everything else here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import aiosqlite

from batchveo.errors import StaleTransition, StoreError
from batchveo.models import RETENTION_S
from batchveo.states import ErrorKind, JobState, check_transition
from batchveo.store.budget import BACKOFF_INDEX
from batchveo.store.chainwrites import ENDS, HAS_WAITING_HOPS, Moved, reopened, settle
from batchveo.store.db import Core, describe, immediate
from batchveo.store.groupcommit import GroupCommit
from batchveo.store.guarded import COST_OF_RETURNED, update_sql
from batchveo.store.rows import (
    RETURNING,
    UPDATABLE,
    Job,
    Transition,
    TransitionEvent,
    encode,
    in_states,
)

S = JobState

_BATCH_ROWS = 256
"""Transitions in one grouped UPDATE: at most 4 + 2*15 parameters each."""
_RESET_SAMPLES = {"samples_returned": None, "samples_filtered": None, "filtered_reasons": None}
"""A job sent again has no answer yet: every video it asks for counts again."""


class Writes(Core):
    """Transitions and the user's actions on jobs."""

    _transitions: GroupCommit[Transition, Job]
    """Single transitions waiting together, written as one statement (below)."""

    async def transition(
        self,
        job_id: str,
        src: JobState,
        dst: JobState,
        *,
        detail: str | None = None,
        **fields: Any,
    ) -> Job:
        """Move one job from ``src`` to ``dst``; raise if it was not in ``src``."""
        jobs = await self.apply([Transition(job_id, src, dst, fields, detail)])
        return jobs[0]

    async def apply(self, transitions: Sequence[Transition]) -> list[Job]:
        """Apply guarded transitions in one transaction: all of them or none."""
        if not transitions:
            return []
        for t in transitions:
            check_transition(t.src, t.dst)
            _check_fields(t.fields)
        if len(transitions) == 1:
            # The pipeline's case: the same guarded UPDATE, shared with the single
            # transitions of other jobs asked for at the same moment (see the end).
            return [await self._transitions.submit(transitions[0])]
        now = self.clock()
        async with self._tx() as db:
            out, hops = await _apply_in(db, transitions, now)
        self._tell(
            TransitionEvent.of(j, t.src, now, t.detail)
            for t, j in zip(transitions, out, strict=True)
        )
        self._tell_hops(hops, now)
        return out

    def _tell_hops(self, hops: Sequence[Moved], now: float) -> None:
        """The hops a transition moved on (``chainwrites``), once committed."""
        self._tell(TransitionEvent.of(j, src, now, detail) for j, src, detail in hops)

    async def settle_chains(self) -> int:
        """Every waiting hop whose parent has ended, moved on (a run's start: idempotent,
        for what a version without chains or a hand left behind); how many moved."""
        now = self.clock()
        async with self._tx() as db:
            hops = await settle(db, now)
        self._tell_hops(hops, now)
        return len(hops)

    async def update(self, job_id: str, state: JobState, **fields: Any) -> Job:
        """Change bookkeeping fields of a job that stays in ``state`` (e.g. the next poll)."""
        if not fields:
            raise StoreError("not an updatable column: (none)")
        _check_fields(fields)
        cols = list(fields)
        sets_list = ["updated_at=?", *[f"{c}=?" for c in cols]]
        values = [self.clock(), *[encode(c, fields[c]) for c in cols]]
        if "samples_returned" in fields:
            sets_list.append("cost_usd=" + COST_OF_RETURNED.format("?"))
            values.append(fields["samples_returned"])
        sets = ", ".join(sets_list)
        async with self._statement() as db:
            sql = f"UPDATE jobs SET {sets} WHERE id=? AND state=? RETURNING {RETURNING}"
            rows = await db.execute_fetchall(sql, (*values, job_id, state.value))
            if not rows:
                raise StaleTransition(
                    f"job {job_id}: expected state {state.value} ({await describe(db, job_id)})"
                )
        return Job.from_row(next(iter(rows)))

    # -- recovery and the user's actions -------------------------------------------

    async def recover_interrupted(self) -> list[str]:
        """Jobs left ``submitting`` by a dead process become ``uncertain``, never resent."""
        rows = await self._query("SELECT id FROM jobs WHERE state=?", (S.SUBMITTING.value,))
        ids = [r[0] for r in rows]
        detail = "a submit was in flight when the previous run stopped; it may have been billed"
        fields = {"error_kind": ErrorKind.INTERRUPTED.value, "error": detail}
        await self.apply([Transition(i, S.SUBMITTING, S.UNCERTAIN, fields, detail) for i in ids])
        return ids

    async def pull_in_schedules(self, latest: float, now: float) -> int:
        """Bring polls and retries due after ``latest`` forward to ``now``; how many moved.

        A time further ahead than any schedule reaches was written by a clock since set
        back: waiting for it could outlast the retention. Moving one forward costs at most
        one early request.
        """
        moved = 0
        async with self._tx() as db:
            # Running jobs are few (the in-flight cap), found by their state; pending ones
            # may be a million: only those waiting out a backoff, down their index.
            for col, state, table in (
                ("next_poll_at", S.RUNNING, "jobs"),
                ("next_attempt_at", S.PENDING, f"jobs INDEXED BY {BACKOFF_INDEX}"),
            ):
                where = f"{in_states([state])} AND {col}>?"
                sql = f"UPDATE {table} SET {col}=?, updated_at=? WHERE {where}"
                async with db.execute(sql, (now, now, latest)) as cur:
                    moved += cur.rowcount
        return moved

    async def requeue(
        self,
        states: Iterable[JobState],
        ids: Sequence[str] | None = None,
        *,
        retention_s: float = RETENTION_S,
    ) -> list[str]:
        """Send jobs back on the user's word (``batchveo retry``); the ids moved.

        To pending, except a job whose download failed while its video is still within
        the retention (or in the user's own bucket, ``gs://``, which has none): that one
        goes back to generated, to be downloaded again rather than generated (and
        billed) again.
        """
        wanted = [s.value for s in states]
        rows = await self._query(
            "SELECT id, state, error_kind, generated_at, video_uris, extends FROM jobs"
            f" WHERE state IN ({','.join('?' * len(wanted))}) ORDER BY rowid",
            wanted,
        )
        if ids is not None:
            keep = set(ids)
            rows = [r for r in rows if r[0] in keep]
        now = self.clock()
        again = {"error_kind": None, "error": None}
        moves = []
        for job_id, state, error_kind, generated_at, video_uris, extends in rows:
            src = JobState(state)
            if extends is not None and src in (S.FAILED, S.CANCELLED):
                # A hop never sent (or failed of its own): it waits for its parent's video
                # again, released at once if the parent is done.
                fields: dict[str, Any] = {**again, **_RESET_SAMPLES, "attempts": 0}
                fields |= {"next_attempt_at": None, "inputs": {}, "parent_generated_at": None}
                detail = "retry requested by the user: waits for its parent's video"
                moves.append(Transition(job_id, src, S.WAITING, fields, detail))
                continue
            uris = json.loads(video_uris or "[]")
            in_bucket = all(str(u).startswith("gs://") for u in uris)  # the user's: no retention
            paid_video = (
                src is S.FAILED
                and error_kind == ErrorKind.DOWNLOAD
                and generated_at is not None
                and (in_bucket or now < generated_at + retention_s)
                and bool(uris)
            )
            if paid_video:
                detail = "retry requested by the user: download again (the video is paid for)"
                moves.append(Transition(job_id, src, S.GENERATED, again, detail))
            else:
                fields = {**again, **_RESET_SAMPLES, "attempts": 0, "next_attempt_at": None}
                detail = "retry requested by the user"
                moves.append(Transition(job_id, src, S.PENDING, fields, detail))
        if not moves:
            return []
        async with self._tx() as db:
            # The hops that failed because of a retried job wait for it again.
            named = {t.job_id for t in moves}
            moves += [t for t in await reopened(db, sorted(named)) if t.job_id not in named]
            for t in moves:
                check_transition(t.src, t.dst)
                _check_fields(t.fields)
            out, hops = await _apply_in(db, moves, now)
        self._tell(
            TransitionEvent.of(j, t.src, now, t.detail) for t, j in zip(moves, out, strict=True)
        )
        self._tell_hops(hops, now)
        return [t.job_id for t in moves]

    async def cancel(
        self, ids: Sequence[str] | None = None, *, batch: str | None = None
    ) -> list[str]:
        """Cancel pending jobs (all, those of ``batch``, or those of ``ids``), and waiting hops
        of scene chains (their own waiting hops then fail: the chain broke there); the ids
        moved."""
        sql = "SELECT id, state FROM jobs WHERE state IN (?, ?)"
        args: list[Any] = [S.PENDING.value, S.WAITING.value]
        if batch is not None:
            sql += " AND batch=?"
            args.append(batch)
        rows = await self._query(sql + " ORDER BY rowid", args)
        keep = None if ids is None else set(ids)
        moved = [(r[0], JobState(r[1])) for r in rows if keep is None or r[0] in keep]
        detail = "cancelled by the user"
        await self.apply([Transition(i, src, S.CANCELLED, {}, detail) for i, src in moved])
        return [i for i, _ in moved]

    # -- grouping: how single transitions share a statement ------------------------

    def _start_grouping(self) -> None:
        self._transitions = GroupCommit(
            self._apply_grouped, lock=self._lock, max_batch=_BATCH_ROWS, key=lambda t: t.job_id
        )

    async def _apply_grouped(self, transitions: Sequence[Transition]) -> list[Job | BaseException]:
        """Independent transitions (distinct jobs) as one UPDATE; run under the lock.

        Each row is guarded on its own (``id`` and ``state`` must match), and one
        statement is atomic: every caller learns whether its own row changed.
        """
        now = self.clock()
        ending = any(t.dst in ENDS for t in transitions)
        sql, args = _grouped_update_sql(transitions, now, flag_hops=ending)
        rows: list[Sequence[Any]] = list(await self._db.execute_fetchall(sql, args))
        hops: list[Moved] = []
        if ending:
            # A job that ends may move its chain's waiting hops. The statement itself said
            # which have any (a plain job costs no extra trip); they are moved at once, in a
            # transaction of their own: a crash in between is redone at the next run's
            # start (``settle_chains``), and a hop loaded meanwhile by another process was
            # either seen by the statement or sees its parent ended.
            parents = [r[0] for r in rows if r[-1]]
            rows = [r[:-1] for r in rows]
            if parents:
                try:
                    async with immediate(self._db) as db:
                        hops = await settle(db, now, parents)
                except Exception:  # the transitions above are committed: theirs stand
                    hops = []  # the hops are moved by the next settle (a run's start)
        by_id = {row[0]: row for row in rows}
        out: list[Job | BaseException] = []
        for t in transitions:
            row = by_id.get(t.job_id)
            if row is None:
                out.append(StaleTransition(await _stale(self._db, t)))
                continue
            try:  # committed: whatever happens now concerns this caller only
                out.append(Job.from_row(row))
            except Exception as exc:
                out.append(exc)
        self._tell(
            TransitionEvent.of(j, t.src, now, t.detail)
            for t, j in zip(transitions, out, strict=True)
            if isinstance(j, Job)
        )
        self._tell_hops(hops, now)
        return out


async def _apply_in(
    db: aiosqlite.Connection, transitions: Sequence[Transition], now: float
) -> tuple[list[Job], list[Moved]]:
    """Guarded transitions inside the caller's transaction, and the chains' hops they
    move on (a parent ended, or a hop back to waiting whose parent is done)."""
    out: list[Job] = []
    for t in transitions:
        sql, args = update_sql(t, now)
        rows = await db.execute_fetchall(sql, args)
        if not rows:
            raise StaleTransition(await _stale(db, t))
        out.append(Job.from_row(next(iter(rows))))
    parents = {j.id for j in out if j.state in ENDS}
    parents |= {j.extends for j in out if j.state is S.WAITING and j.extends is not None}
    hops = await settle(db, now, sorted(parents)) if parents else []
    return out, hops


def _check_fields(fields: Mapping[str, Any]) -> None:
    bad = set(fields) - UPDATABLE
    if bad:
        raise StoreError(f"not an updatable column: {', '.join(sorted(bad))}")
    for col in ("samples_returned", "samples_filtered"):
        n = fields.get(col)
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
            raise StoreError(f"{col} must be a count of videos, not {n!r}")
    reasons = fields.get("filtered_reasons")
    if reasons is not None and (
        isinstance(reasons, str) or not all(isinstance(r, str) for r in reasons)
    ):
        raise StoreError("filtered_reasons must be a list of texts")


async def _stale(db: aiosqlite.Connection, t: Transition) -> str:
    return (
        f"job {t.job_id}: expected state {t.src.value}, cannot move to "
        f"{t.dst.value} ({await describe(db, t.job_id)})"
    )


def _grouped_update_sql(
    transitions: Sequence[Transition], now: float, *, flag_hops: bool = False
) -> tuple[str, list[Any]]:
    """``update_sql`` for transitions of distinct jobs at once, each with its own fields.

    A column set by only some of the rows carries a flag per row: the others keep
    their value. The trigger logs one event per changed row. ``flag_hops``: each row
    returned ends with whether the job has waiting hops (``HAS_WAITING_HOPS``).
    """
    cols = sorted({c for t in transitions for c in t.fields})
    names = ["v_id", "v_src", "v_dst", "v_detail"]
    sets = ["state=v_dst", "updated_at=?", "last_detail=v_detail"]
    for c in cols:
        names += [f"v_{c}", f"v_has_{c}"]
        sets.append(f"{c}=CASE WHEN v_has_{c} THEN v_{c} ELSE {c} END")
    if "samples_returned" in cols:
        cost = COST_OF_RETURNED.format("v_samples_returned")
        sets.append(f"cost_usd=CASE WHEN v_has_samples_returned THEN {cost} ELSE cost_usd END")
    row_marks = "(" + ",".join("?" * len(names)) + ")"
    args: list[Any] = []
    for t in transitions:
        args += [t.job_id, t.src.value, t.dst.value, t.detail]
        for c in cols:
            has = c in t.fields
            args += [encode(c, t.fields[c]) if has else None, has]
    sql = (
        f"WITH v({','.join(names)}) AS (VALUES {','.join([row_marks] * len(transitions))})"
        f" UPDATE jobs SET {', '.join(sets)} FROM v WHERE id=v_id AND state=v_src"
        f" RETURNING {RETURNING}{', ' + HAS_WAITING_HOPS if flag_hops else ''}"
    )
    return sql, [*args, now]  # the VALUES come first in the text, then updated_at=?
