"""The job table: the only memory batchveo has between two runs.

Everything the pipeline knows about a job lives in one SQLite row, and every
change to it is committed before the step that depends on it: a job is marked
``submitting`` before its request is sent, its operation name is written the
moment the server returns it. That ordering is what makes ``kill -9`` safe.

Concurrency, the two traps this module exists to avoid:

* One aiosqlite connection runs every statement on one thread, but it does not
  isolate two coroutines' transactions from each other. All access holds one
  ``asyncio.Lock``; ``_tx()`` holds it for the whole transaction.
* A deferred transaction that reads and then writes fails with
  SQLITE_BUSY_SNAPSHOT when another process wrote in between. Every write
  transaction starts with ``BEGIN IMMEDIATE`` (and waits on ``busy_timeout``),
  so two processes can never claim the same job.

The pipeline's hot writes (one job's transition, one submitter's claim) go
through ``groupcommit``: those arriving within a few milliseconds of each other
share one guarded statement, so a busy run pays one trip to the database thread
per window rather than one per write. Each caller still returns only once its
own row is committed, and learns whether it changed.

WAL with ``synchronous=FULL``: a commit is on disk before the call returns, so
even a power cut cannot undo a claim whose request was then sent (the job would
come back ``pending`` and be paid for twice). NORMAL would survive ``kill -9``
alone; grouped commits make FULL's fsync per statement affordable.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import aiosqlite

from batchveo.errors import (
    DatabaseUnusable,
    ManifestError,
    Problem,
    StaleTransition,
    StoreError,
)
from batchveo.models import RETENTION_S, estimate_cost_usd
from batchveo.spec import JobSpec, params_json
from batchveo.states import JobState, check_transition
from batchveo.store.groupcommit import GroupCommit
from batchveo.store.migrations import MIGRATIONS, Migration

Clock = Callable[[], float]

COLUMNS = (
    "id",
    "batch",
    "state",
    "spec_hash",
    "prompt",
    "model",
    "params",
    "inputs",
    "output_name",
    "source",
    "cost_usd",
    "operation",
    "video_uris",
    "files",
    "error_kind",
    "error",
    "attempts",
    "next_attempt_at",
    "next_poll_at",
    "polls",
    "created_at",
    "updated_at",
    "submitted_at",
    "generated_at",
    "finished_at",
)
_RETURNING = ", ".join(COLUMNS)
_SELECT = f"SELECT {_RETURNING} FROM jobs"
_JSON_COLUMNS = frozenset({"params", "inputs", "video_uris", "files"})
_UPDATABLE = frozenset(
    {
        "operation",
        "video_uris",
        "files",
        "error_kind",
        "error",
        "attempts",
        "next_attempt_at",
        "next_poll_at",
        "polls",
        "submitted_at",
        "generated_at",
        "finished_at",
    }
)
_SQL_CHUNK = 500  # below SQLite's bound-parameter limit
_BATCH_ROWS = 256  # transitions in one grouped UPDATE: at most 4 + 2*12 parameters each
MIN_SQLITE = (3, 35, 0)
"""RETURNING (3.35) and UPDATE ... FROM (3.33); 32766 bound parameters (3.32)."""
COMMIT_LINGER_S = 0.004
"""How long a busy run lets writes gather before their shared commit (see groupcommit)."""

SPENT_STATES = ("generated", "done", "expired")
"""Jobs whose video was made: billed (estimates; the service bills only on success)."""
COMMITTED_STATES = (*SPENT_STATES, "submitting", "running", "uncertain")
"""Jobs that are or may become billed; filtered and rejected jobs are not charged."""
BUDGET_SLACK_USD = 1e-9
"""Sums of float prices may land a hair above a budget they reach exactly: $3 of $1.50 jobs
fits a $3 budget."""
CAPS_SQL = "SELECT name, budget_usd FROM batches WHERE budget_usd IS NOT NULL"
"""The batches' budgets (from their manifests' ``budget:``)."""


def committed_sql(cost: str = "cost_usd", states: Sequence[str] = COMMITTED_STATES) -> str:
    """Estimated cost committed per batch: ``(batch, usd)`` rows, one per batch.

    ``cost`` is the SQL for a job's cost (``plan --prices`` prices the rows anew, as a run
    reprices them before its first claim).
    """
    marks = ",".join(f"'{s}'" for s in states)
    return f"SELECT batch, SUM({cost}) FROM jobs WHERE state IN ({marks}) GROUP BY batch"


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


@dataclass(frozen=True)
class Job:
    """One row of the job table, decoded."""

    id: str
    batch: str
    state: JobState
    spec_hash: str
    prompt: str
    model: str
    params: dict[str, Any]
    inputs: dict[str, Any]
    output_name: str | None
    source: str | None
    cost_usd: float
    operation: str | None
    video_uris: list[str]
    files: list[dict[str, Any]]
    error_kind: str | None
    error: str | None
    attempts: int
    next_attempt_at: float | None
    next_poll_at: float | None
    polls: int
    created_at: float
    updated_at: float
    submitted_at: float | None
    generated_at: float | None
    finished_at: float | None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Job:
        d = dict(zip(COLUMNS, row, strict=True))
        d["state"] = JobState(d["state"])
        for col in _JSON_COLUMNS:
            raw = d[col]
            d[col] = json.loads(raw) if raw else ([] if col in ("video_uris", "files") else {})
        return cls(**d)

    def spec(self) -> JobSpec:
        return JobSpec.from_row(
            id=self.id,
            batch=self.batch,
            prompt=self.prompt,
            model=self.model,
            params=self.params,
            inputs=self.inputs,
            output_name=self.output_name,
            source=self.source or "",
        )

    def as_dict(self) -> dict[str, Any]:
        d = {col: getattr(self, col) for col in COLUMNS}
        d["state"] = self.state.value
        return d


@dataclass(frozen=True)
class Event:
    job_id: str
    from_state: str | None
    to_state: str
    at: float
    attempt: int
    detail: str | None


@dataclass(frozen=True)
class TransitionEvent:
    """One committed state change, as told to observers (log file, progress display)."""

    job_id: str
    batch: str
    from_state: str
    to_state: str
    at: float
    attempt: int
    detail: str | None
    operation: str | None
    error_kind: str | None
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "job": self.job_id,
            "batch": self.batch,
            "from": self.from_state,
            "to": self.to_state,
            "attempt": self.attempt,
            "operation": self.operation,
            "error_kind": self.error_kind,
            "error": self.error,
            "detail": self.detail,
        }


TransitionObserver = Callable[[TransitionEvent], None]


@dataclass(frozen=True)
class AddResult:
    new: int
    existing: int
    replaced: int


@dataclass(frozen=True)
class Transition:
    """One guarded state change: applies only if the job is still in ``src``."""

    job_id: str
    src: JobState
    dst: JobState
    fields: Mapping[str, Any] = field(default_factory=dict)
    detail: str | None = None


def _encode(col: str, value: Any) -> Any:
    if col in _JSON_COLUMNS and value is not None and not isinstance(value, str):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return value


def _chunks(items: Sequence[str], size: int = _SQL_CHUNK) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class Store:
    """Async access to the job database; one instance per process."""

    def __init__(
        self,
        conn: aiosqlite.Connection,
        path: Path,
        clock: Clock,
        *,
        commit_linger_s: float = COMMIT_LINGER_S,
    ):
        self._db = conn
        self.path = path
        self.clock = clock
        self._lock = asyncio.Lock()
        # The pipeline's hot writes: single transitions and unbudgeted claims.
        self._transitions: GroupCommit[Transition, Job] = GroupCommit(
            self._apply_grouped,
            lock=self._lock,
            linger_s=commit_linger_s,
            max_batch=_BATCH_ROWS,
            key=lambda t: t.job_id,
        )
        self._claims: GroupCommit[int, list[Job]] = GroupCommit(
            self._claim_grouped,
            lock=self._lock,
            linger_s=commit_linger_s,
            drop_cancelled=True,
            on_abandoned=self._unclaim,
        )
        self._caps: dict[str, float] | None = None
        self._caps_read_at = 0.0
        self.observers: list[TransitionObserver] = []
        """Told about every transition after it is committed; must not block or raise."""

    # -- opening and schema -------------------------------------------------

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        clock: Clock = time.time,
        migrations: Sequence[Migration] = MIGRATIONS,
        commit_linger_s: float = COMMIT_LINGER_S,
    ) -> Store:
        p = Path(path)
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            need = ".".join(map(str, MIN_SQLITE))
            raise DatabaseUnusable(
                f"batchveo needs SQLite {need} or newer (UPDATE ... RETURNING); this Python"
                f" has {sqlite3.sqlite_version}: use a newer Python build or distribution"
            )
        conn = await aiosqlite.connect(str(p), isolation_level=None, timeout=30.0)
        try:
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA synchronous=FULL")
            await conn.execute("PRAGMA busy_timeout=30000")
            await conn.execute("PRAGMA cache_size=-32768")  # 32 MB: big loads insert faster
            await conn.execute("PRAGMA foreign_keys=ON")
            store = cls(conn, p, clock, commit_linger_s=commit_linger_s)
            await store._migrate(migrations)
        except sqlite3.DatabaseError as e:
            await conn.close()
            raise DatabaseUnusable(f"{p}: not a usable batchveo database ({e})") from None
        except BaseException:
            await conn.close()
            raise
        return store

    async def close(self) -> None:
        try:
            # A claim's hand-back may queue after the transitions drained: until both rest.
            while self._transitions.busy or self._claims.busy:
                await self._transitions.drain()
                await self._claims.drain()
        finally:
            await self._db.close()

    @property
    def grouped_batches(self) -> int:
        """Grouped statements run so far (claims and transitions)."""
        return self._transitions.batches + self._claims.batches

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _migrate(self, migrations: Sequence[Migration]) -> None:
        await self._db.execute(
            "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL)"
        )
        async with self._db.execute("SELECT name FROM _migrations") as cur:
            applied = {row[0] for row in await cur.fetchall()}
        known = {m.name for m in migrations}
        unknown = applied - known
        if unknown:
            raise DatabaseUnusable(
                f"{self.path}: written by a newer batchveo (unknown migrations: "
                f"{', '.join(sorted(unknown))})"
            )
        for m in migrations:
            if m.name in applied:
                continue
            # One transaction per migration: a crash leaves it fully applied or not at all.
            async with self._tx() as db:
                # executescript would commit first; run the statements one by one instead.
                for stmt in _split_sql(m.sql):
                    await db.execute(stmt)
                await db.execute(
                    "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                    (m.name, self.clock()),
                )

    async def applied_migrations(self) -> list[str]:
        async with self._db.execute("SELECT name FROM _migrations ORDER BY name") as cur:
            return [row[0] for row in await cur.fetchall()]

    @asynccontextmanager
    async def _statement(self) -> AsyncIterator[aiosqlite.Connection]:
        """One autocommit statement, not interleaved with another coroutine's transaction."""
        async with self._lock:
            yield self._db

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction, isolated from this process's other coroutines."""
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            else:
                await self._db.execute("COMMIT")

    async def _query(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """All rows of one read, not interleaved with another coroutine's transaction."""
        async with self._lock, self._db.execute(sql, args) as cur:
            return list(await cur.fetchall())

    async def _scalar(self, sql: str, args: Sequence[Any] = ()) -> Any:
        rows = await self._query(sql, args)
        return rows[0][0] if rows else None

    # -- loading ---------------------------------------------------------------

    async def add_jobs(
        self,
        specs: Sequence[JobSpec],
        *,
        replace: bool = False,
        manifest: str | None = None,
        budgets: Mapping[str, float] | None = None,
    ) -> AddResult:
        """Insert the specs that are new; all or nothing.

        A spec whose id is already stored with the same content is counted as
        existing (so loading a manifest twice adds nothing). Different content
        under the same id is a problem, unless ``replace`` and the job has not
        been submitted yet.
        """
        now = self.clock()
        async with self._tx() as db:
            # Only the hashes: a reload of 100k jobs must stay small; details are
            # fetched for the few conflicting ids.
            stored: dict[str, str] = {}
            async with db.execute("SELECT EXISTS (SELECT 1 FROM jobs)") as cur:
                row = await cur.fetchone()
            ids = [s.id for s in specs] if row and row[0] else []  # an empty table: all new
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT id, spec_hash FROM jobs WHERE id IN ({marks})"
                async with db.execute(sql, chunk) as cur:
                    stored.update((str(i), str(h)) for i, h in await cur.fetchall())
            new: list[tuple[JobSpec, str]] = []
            replacing: list[tuple[JobSpec, str, str]] = []
            problems: list[Problem] = []
            existing = 0
            for spec in specs:
                h = spec.spec_hash()
                stored_hash = stored.get(spec.id)
                if stored_hash is None:
                    new.append((spec, h))
                    continue
                if stored_hash == h:
                    existing += 1
                    continue
                async with db.execute(
                    "SELECT spec_hash, state, source FROM jobs WHERE id=?", (spec.id,)
                ) as cur:
                    old = await cur.fetchone()
                assert old is not None
                if not replace:
                    problems.append(
                        Problem(
                            spec.source or "manifest",
                            spec.id,
                            f"already loaded from {old[2] or 'an earlier manifest'} with a "
                            "different spec (pass --replace to overwrite it)",
                        )
                    )
                elif old[1] not in (JobState.PENDING, JobState.CANCELLED):
                    problems.append(
                        Problem(
                            spec.source or "manifest",
                            spec.id,
                            f"cannot replace: already submitted (state {old[1]}, "
                            f"loaded from {old[2] or 'an earlier manifest'})",
                        )
                    )
                else:
                    replacing.append((spec, h, old[1]))
            if ids:  # an empty table holds no video to clash with (the loader checked the rest)
                changed = [s for s, _ in new] + [s for s, _, _ in replacing]
                problems += await self._output_clashes(db, changed)
            if problems:
                raise ManifestError(problems)
            batches = sorted({s.batch for s, _ in new} | {s.batch for s, _, _ in replacing})
            await db.executemany(
                "INSERT OR IGNORE INTO batches (name, created_at, manifest) VALUES (?, ?, ?)",
                [(b, now, manifest) for b in batches],
            )
            if budgets:
                self._caps = None
                # The manifest's latest word on a batch's budget wins.
                await db.executemany(
                    "INSERT INTO batches (name, created_at, manifest, budget_usd) VALUES (?,?,?,?)"
                    " ON CONFLICT(name) DO UPDATE SET budget_usd=excluded.budget_usd",
                    [(b, now, manifest, usd) for b, usd in budgets.items()],
                )
            await db.executemany(
                "INSERT INTO jobs (id, batch, state, spec_hash, prompt, model, params, inputs,"
                " output_name, source, cost_usd, created_at, updated_at)"
                " VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                # Generators, not lists: 100k rows are built as SQLite takes them.
                ((*_spec_row(s, h), now, now) for s, h in new),
            )
            # No "loaded" event per job: the row's created_at and source say it
            # (``Store.history`` adds that first line); at 100k jobs it cost a fifth.
            for spec, h, old_state in replacing:
                cur = await db.execute(
                    "UPDATE jobs SET batch=?, state='pending', spec_hash=?, prompt=?, model=?,"
                    " params=?, inputs=?, output_name=?, source=?, cost_usd=?, attempts=0,"
                    " error_kind=NULL, error=NULL, next_attempt_at=NULL, updated_at=?,"
                    " last_detail=?"
                    " WHERE id=? AND state=?",
                    (*_spec_row(spec, h)[1:], now, f"replaced from {spec.source}", spec.id,
                     old_state),
                )  # fmt: skip
                if cur.rowcount != 1:
                    raise StaleTransition(f"job {spec.id} changed while being replaced")
        return AddResult(new=len(new), existing=existing, replaced=len(replacing))

    async def _output_clashes(
        self, db: aiosqlite.Connection, specs: Sequence[JobSpec]
    ) -> list[Problem]:
        """New or replacing specs whose video would stand where a stored job needs a folder, or
        the other way round: the file system holds one or the other, so every run would fail
        that download. Stored jobs without ``output`` are read only when they could clash."""
        from batchveo.manifest import OutputTree, output_clashes

        if not specs:
            return []
        sql = "SELECT id, output_name, source FROM jobs WHERE output_name IS NOT NULL"
        async with db.execute(sql) as cur:
            stored = [(str(i), o, s) for i, o, s in await cur.fetchall()]
        names = [s.output_name for s in specs] + [o for _, o, _ in stored]
        if not any(n and "/" in n for n in names):
            return []  # no folders at all: nothing can stand where one must be
        if OutputTree.plain_jobs_matter(names):
            sql = "SELECT id, NULL, source FROM jobs WHERE output_name IS NULL"
            async with db.execute(sql) as cur:
                stored += [(str(i), None, s) for i, _, s in await cur.fetchall()]
        changed = {s.id for s in specs}
        return output_clashes([r for r in stored if r[0] not in changed], specs)

    # -- transitions -------------------------------------------------------------

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
        for t in transitions:
            check_transition(t.src, t.dst)
            bad = set(t.fields) - _UPDATABLE
            if bad:
                raise StoreError(f"not an updatable column: {', '.join(sorted(bad))}")
        if len(transitions) == 1:
            # The pipeline's case: shares one UPDATE with whatever else is being written.
            return [await self._transitions.submit(transitions[0])]
        now = self.clock()
        out: list[Job] = []
        async with self._tx() as db:
            for t in transitions:
                cols = list(t.fields)
                sets = ", ".join(
                    ["state=?", "updated_at=?", "last_detail=?", *[f"{c}=?" for c in cols]]
                )
                values = [t.dst.value, now, t.detail, *[_encode(c, t.fields[c]) for c in cols]]
                sql = f"UPDATE jobs SET {sets} WHERE id=? AND state=? RETURNING {_RETURNING}"
                rows = await db.execute_fetchall(sql, (*values, t.job_id, t.src.value))
                if not rows:
                    raise StaleTransition(await self._stale(db, t))
                out.append(Job.from_row(next(iter(rows))))
        self._tell(_event(t, j, now) for t, j in zip(transitions, out, strict=True))
        return out

    async def _apply_grouped(self, transitions: Sequence[Transition]) -> list[Job | BaseException]:
        """Independent transitions (distinct jobs) as one UPDATE; run under the lock.

        Each row is guarded on its own (``id`` and ``state`` must match), and one
        statement is atomic: every caller learns whether its own row changed.
        """
        now = self.clock()
        sql, args = _grouped_update(transitions, now)
        rows = await self._db.execute_fetchall(sql, args)
        by_id = {row[0]: row for row in rows}
        out: list[Job | BaseException] = []
        for t in transitions:
            row = by_id.get(t.job_id)
            if row is None:
                out.append(StaleTransition(await self._stale(self._db, t)))
                continue
            try:  # committed: whatever happens now concerns this caller only
                out.append(Job.from_row(row))
            except Exception as exc:
                out.append(exc)
        self._tell(
            _event(t, j, now) for t, j in zip(transitions, out, strict=True) if isinstance(j, Job)
        )
        return out

    async def _stale(self, db: aiosqlite.Connection, t: Transition) -> str:
        return (
            f"job {t.job_id}: expected state {t.src.value}, cannot move to "
            f"{t.dst.value} ({await self._describe(db, t.job_id)})"
        )

    def _tell(self, events: Iterable[TransitionEvent]) -> None:
        if not self.observers:
            return
        for event in events:
            for observer in self.observers:
                observer(event)

    async def update(self, job_id: str, state: JobState, **fields: Any) -> Job:
        """Change bookkeeping fields of a job that stays in ``state`` (e.g. the next poll)."""
        bad = set(fields) - _UPDATABLE
        if bad or not fields:
            raise StoreError(f"not an updatable column: {', '.join(sorted(bad)) or '(none)'}")
        cols = list(fields)
        sets = ", ".join(["updated_at=?", *[f"{c}=?" for c in cols]])
        values = [self.clock(), *[_encode(c, fields[c]) for c in cols]]
        async with self._statement() as db:
            sql = f"UPDATE jobs SET {sets} WHERE id=? AND state=? RETURNING {_RETURNING}"
            rows = await db.execute_fetchall(sql, (*values, job_id, state.value))
            if not rows:
                raise StaleTransition(
                    f"job {job_id}: expected state {state.value} "
                    f"({await self._describe(db, job_id)})"
                )
        return Job.from_row(next(iter(rows)))

    async def _describe(self, db: aiosqlite.Connection, job_id: str) -> str:
        async with db.execute("SELECT state FROM jobs WHERE id=?", (job_id,)) as cur:
            row = await cur.fetchone()
        return "no such job" if row is None else f"it is {row[0]}"

    async def claim_pending(
        self, limit: int, *, now: float | None = None, budget_usd: float | None = None
    ) -> list[Job]:
        """Atomically take up to ``limit`` due pending jobs, oldest first, into ``submitting``.

        The job is marked before its request is sent: if we die mid-submit, the
        next run finds it in ``submitting`` and knows it may have been billed.
        """
        if limit <= 0:
            return []
        budgeted = budget_usd is not None or bool(await self._batch_caps())
        if not budgeted and now is None:
            # The pipeline's case: one UPDATE claims for every submitter asking now.
            return await self._claims.submit(limit)
        t = self.clock() if now is None else now
        # With budgets, the caps are read in the claim's own transaction: what is
        # committed is exactly what earlier claims (this run or any before it)
        # committed. Without, the claim is one UPDATE, atomic by itself.
        async with self._tx() if budgeted else self._statement() as db:
            fits, fit_args = await self._budget_filter(db, budget_usd) if budgeted else ("", [])
            jobs = await self._claim(db, t, limit, fits, fit_args)
        return jobs

    async def _claim(
        self, db: aiosqlite.Connection, t: float, limit: int, fits: str, fit_args: list[Any]
    ) -> list[Job]:
        sql = (
            "UPDATE jobs SET state='submitting', attempts=attempts+1, updated_at=?,"
            " last_detail=NULL"
            " WHERE id IN (SELECT id FROM jobs WHERE state='pending'"
            f" AND (next_attempt_at IS NULL OR next_attempt_at<=?){fits}"
            " ORDER BY rowid LIMIT ?)"
            f" RETURNING rowid, {_RETURNING}"
        )
        rows = sorted(await db.execute_fetchall(sql, (t, t, *fit_args, limit)))
        jobs = [Job.from_row(r[1:]) for r in rows]
        self._tell(
            TransitionEvent(
                j.id, j.batch, "pending", "submitting", t, j.attempts, None, None, None, None
            )
            for j in jobs
        )
        return jobs

    async def _claim_grouped(self, limits: Sequence[int]) -> list[list[Job] | BaseException]:
        """Every waiting submitter's claim in one UPDATE, oldest jobs to the earliest asker."""
        jobs = await self._claim(self._db, self.clock(), sum(limits), "", [])
        out: list[list[Job] | BaseException] = []
        for n in limits:
            out.append(jobs[:n])
            jobs = jobs[n:]
        return out

    async def _unclaim(self, abandoned: Sequence[list[Job]]) -> None:
        """Claims whose submitter was cancelled before getting them: never sent, so pending.

        Runs under the lock, inside the grouped claim's flush.
        """
        ids = [j.id for jobs in abandoned for j in jobs]
        if not ids:
            return
        now = self.clock()
        detail = "claimed as the run stopped; not sent"
        sql = (
            "UPDATE jobs SET state='pending', attempts=MAX(attempts-1, 0), updated_at=?,"
            f" last_detail=? WHERE state='submitting' AND id IN ({','.join('?' * len(ids))})"
            f" RETURNING {_RETURNING}"
        )
        rows = await self._db.execute_fetchall(sql, (now, detail, *ids))
        back = [Job.from_row(r) for r in rows]
        self._tell(
            TransitionEvent(
                j.id, j.batch, "submitting", "pending", now, j.attempts, detail, None, None, None
            )
            for j in back
        )

    async def _budget_filter(
        self, db: aiosqlite.Connection, budget_usd: float | None
    ) -> tuple[str, list[Any]]:
        """SQL keeping only pending jobs whose estimated cost fits every budget."""
        caps = await self._batch_caps(db)
        if budget_usd is None and not caps:
            return "", []
        return BudgetRoom(budget_usd, caps, await self._committed(db)).sql()

    async def _batch_caps(self, db: aiosqlite.Connection | None = None) -> dict[str, float]:
        """Batch budgets, re-read every few seconds (another process may load a manifest)."""
        now = time.monotonic()
        if self._caps is None or now - self._caps_read_at > 5.0 or db is not None:
            if db is None:
                rows = await self._query(CAPS_SQL)
            else:
                rows = list(await db.execute_fetchall(CAPS_SQL))
            self._caps = {name: usd for name, usd in rows}
            self._caps_read_at = now
        return self._caps

    async def _committed(self, db: aiosqlite.Connection) -> dict[str, float]:
        async with db.execute(committed_sql()) as cur:
            return {b: float(v or 0.0) for b, v in await cur.fetchall()}

    async def claimable_pending(self, *, budget_usd: float | None = None) -> tuple[int, int]:
        """(pending jobs that fit the budgets, pending jobs that do not)."""
        async with self._lock:
            fits, args = await self._budget_filter(self._db, budget_usd)
            sql = f"SELECT COUNT(*) FROM jobs WHERE state='pending'{fits}"
            async with self._db.execute(sql, args) as cur:
                row = await cur.fetchone()
            async with self._db.execute("SELECT COUNT(*) FROM jobs WHERE state='pending'") as cur:
                total = await cur.fetchone()
        n_fit = int(row[0]) if row else 0
        return n_fit, (int(total[0]) if total else 0) - n_fit

    async def costs(self) -> dict[str, dict[str, float | None]]:
        """Per batch: estimated ``spent`` (videos made), ``committed`` and the ``budget``."""
        marks = ",".join("?" * len(COMMITTED_STATES))
        sql = (
            "SELECT b.name, b.budget_usd,"
            " COALESCE(SUM(CASE WHEN j.state IN ('generated','done','expired')"
            " THEN j.cost_usd END), 0),"
            f" COALESCE(SUM(CASE WHEN j.state IN ({marks}) THEN j.cost_usd END), 0),"
            " COALESCE(SUM(j.cost_usd), 0)"
            " FROM batches b LEFT JOIN jobs j ON j.batch=b.name GROUP BY b.name ORDER BY b.name"
        )
        return {
            name: {"budget": budget, "spent": spent, "committed": committed, "all_jobs": total}
            for name, budget, spent, committed, total in await self._query(sql, COMMITTED_STATES)
        }

    async def reprice(self, cost_of: Callable[[Job], float]) -> int:
        """Recompute every job's cost estimate (after the user overrides prices)."""
        jobs = await self.jobs()
        async with self._tx() as db:
            await db.executemany(
                "UPDATE jobs SET cost_usd=? WHERE id=?", [(cost_of(j), j.id) for j in jobs]
            )
        return len(jobs)

    async def recover_interrupted(self) -> list[str]:
        """Jobs left ``submitting`` by a dead process become ``uncertain``, never resent."""
        ids = [r[0] for r in await self._query("SELECT id FROM jobs WHERE state='submitting'")]
        if ids:
            detail = "a submit was in flight when the previous run stopped; it may have been billed"
            await self.apply(
                [
                    Transition(
                        i,
                        JobState.SUBMITTING,
                        JobState.UNCERTAIN,
                        {"error_kind": "interrupted", "error": detail},
                        detail,
                    )
                    for i in ids
                ]
            )
        return ids

    async def pull_in_schedules(self, latest: float, now: float) -> int:
        """Bring polls and retries due after ``latest`` forward to ``now``; how many moved.

        A time further ahead than any schedule reaches was written by a clock since set
        back: waiting for it could outlast the retention. Moving one forward costs at most
        one early request.
        """
        moved = 0
        async with self._tx() as db:
            for col, state in (("next_poll_at", "running"), ("next_attempt_at", "pending")):
                sql = f"UPDATE jobs SET {col}=?, updated_at=? WHERE state=? AND {col}>?"
                async with db.execute(sql, (now, now, state, latest)) as cur:
                    moved += cur.rowcount
        return moved

    # -- user actions ------------------------------------------------------------

    async def requeue(
        self,
        states: Iterable[JobState],
        ids: Sequence[str] | None = None,
        *,
        retention_s: float = RETENTION_S,
    ) -> list[str]:
        """Send jobs back on the user's word (``batchveo retry``); the ids moved.

        To pending, except a job whose download failed while its video is still within
        the retention: that one goes back to generated, to be downloaded again rather
        than generated (and billed) again.
        """
        wanted = [s.value for s in states]
        rows = await self._query(
            "SELECT id, state, error_kind, generated_at, video_uris FROM jobs"
            f" WHERE state IN ({','.join('?' * len(wanted))}) ORDER BY rowid",
            wanted,
        )
        if ids is not None:
            keep = set(ids)
            rows = [r for r in rows if r[0] in keep]
        now = self.clock()
        again = {"error_kind": None, "error": None}
        moves = []
        for job_id, state, error_kind, generated_at, video_uris in rows:
            src = JobState(state)
            paid_video = (
                src is JobState.FAILED
                and error_kind == "download"
                and generated_at is not None
                and now < generated_at + retention_s
                and bool(json.loads(video_uris or "[]"))
            )
            if paid_video:
                detail = "retry requested by the user: download again (the video is paid for)"
                moves.append(Transition(job_id, src, JobState.GENERATED, again, detail))
            else:
                fields = {**again, "attempts": 0, "next_attempt_at": None}
                detail = "retry requested by the user"
                moves.append(Transition(job_id, src, JobState.PENDING, fields, detail))
        await self.apply(moves)
        return [t.job_id for t in moves]

    async def cancel(
        self, ids: Sequence[str] | None = None, *, batch: str | None = None
    ) -> list[str]:
        return await self._move_matching(
            [JobState.PENDING], JobState.CANCELLED, ids, {}, "cancelled by the user", batch=batch
        )

    async def _move_matching(
        self,
        states: Iterable[JobState],
        dst: JobState,
        ids: Sequence[str] | None,
        fields: Mapping[str, Any],
        detail: str,
        *,
        batch: str | None = None,
    ) -> list[str]:
        wanted = [s.value for s in states]
        sql = f"SELECT id, state FROM jobs WHERE state IN ({','.join('?' * len(wanted))})"
        args: list[Any] = list(wanted)
        if batch is not None:
            sql += " AND batch=?"
            args.append(batch)
        rows = await self._query(sql + " ORDER BY rowid", args)
        if ids is not None:
            keep = set(ids)
            rows = [r for r in rows if r[0] in keep]
        await self.apply([Transition(r[0], JobState(r[1]), dst, fields, detail) for r in rows])
        return [r[0] for r in rows]

    # -- queries -----------------------------------------------------------------

    async def get(self, job_id: str) -> Job | None:
        rows = await self._query(_SELECT + " WHERE id=?", (job_id,))
        return Job.from_row(rows[0]) if rows else None

    async def jobs(
        self,
        states: Iterable[JobState] | None = None,
        *,
        batch: str | None = None,
        order: str = "rowid",
        limit: int | None = None,
    ) -> list[Job]:
        where: list[str] = []
        args: list[Any] = []
        if states is not None:
            wanted = [s.value for s in states]
            where.append(f"state IN ({','.join('?' * len(wanted))})")
            args.extend(wanted)
        if batch is not None:
            where.append("batch=?")
            args.append(batch)
        sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "")
        if order not in ("rowid", "generated_at", "next_poll_at"):
            raise StoreError(f"cannot order by {order}")
        sql += f" ORDER BY {order}, rowid"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [Job.from_row(r) for r in await self._query(sql, args)]

    async def due_polls(self, now: float, limit: int) -> list[Job]:
        sql = _SELECT + " WHERE state='running' AND next_poll_at<=? ORDER BY next_poll_at LIMIT ?"
        return [Job.from_row(r) for r in await self._query(sql, (now, limit))]

    async def next_poll_at(self) -> float | None:
        value = await self._scalar("SELECT MIN(next_poll_at) FROM jobs WHERE state='running'")
        return None if value is None else float(value)

    async def next_attempt_at(self, *, budget_usd: float | None = None) -> float | None:
        """When the earliest backed-off pending job that fits the budgets becomes due.

        None when no pending job could ever be claimed (none left, or none fits).
        """
        async with self._lock:
            fits, args = await self._budget_filter(self._db, budget_usd)
            sql = f"SELECT MIN(COALESCE(next_attempt_at, 0)) FROM jobs WHERE state='pending'{fits}"
            async with self._db.execute(sql, args) as cur:
                row = await cur.fetchone()
        return row[0] if row else None

    async def last_submit_at(self) -> float | None:
        """When this database last let a submit start (any run, any process)."""
        value = await self._scalar("SELECT MAX(at) FROM events WHERE to_state='submitting'")
        return None if value is None else float(value)

    async def counts(self) -> dict[str, dict[str, int]]:
        """``{batch: {state: n}}`` for every batch with at least one job."""
        out: dict[str, dict[str, int]] = {}
        sql = "SELECT batch, state, COUNT(*) FROM jobs GROUP BY batch, state ORDER BY batch"
        for batch, state, n in await self._query(sql):
            out.setdefault(batch, {})[state] = n
        return out

    async def count_states(self, states: Iterable[JobState]) -> int:
        wanted = [s.value for s in states]
        marks = ",".join("?" * len(wanted))
        sql = f"SELECT COUNT(*) FROM jobs WHERE state IN ({marks})"
        return int(await self._scalar(sql, wanted) or 0)

    async def history(self, job: Job) -> list[Event]:
        """A job's whole story: its loading (from the row), then every logged transition."""
        loaded = Event(
            job.id, None, "pending", job.created_at, 0,
            f"loaded from {job.source}" if job.source else "loaded",
        )  # fmt: skip
        return [loaded, *await self.events(job.id)]

    async def events(self, job_id: str) -> list[Event]:
        sql = (
            "SELECT job_id, from_state, to_state, at, attempt, detail FROM events"
            " WHERE job_id=? ORDER BY seq"
        )
        return [Event(*r) for r in await self._query(sql, (job_id,))]


def _event(t: Transition, j: Job, now: float) -> TransitionEvent:
    return TransitionEvent(
        j.id, j.batch, t.src.value, t.dst.value, now, j.attempts, t.detail, j.operation,
        j.error_kind, j.error,
    )  # fmt: skip


def _grouped_update(transitions: Sequence[Transition], now: float) -> tuple[str, list[Any]]:
    """One guarded UPDATE for transitions of distinct jobs, each with its own fields.

    A column set by only some of the rows carries a flag per row: the others keep
    their value. The trigger of migration 005 logs one event per changed row.
    """
    cols = sorted({c for t in transitions for c in t.fields})
    names = ["v_id", "v_src", "v_dst", "v_detail"]
    sets = ["state=v_dst", "updated_at=?", "last_detail=v_detail"]
    for c in cols:
        names += [f"v_{c}", f"v_has_{c}"]
        sets.append(f"{c}=CASE WHEN v_has_{c} THEN v_{c} ELSE {c} END")
    row_marks = "(" + ",".join("?" * len(names)) + ")"
    args: list[Any] = []
    for t in transitions:
        args += [t.job_id, t.src.value, t.dst.value, t.detail]
        for c in cols:
            has = c in t.fields
            args += [_encode(c, t.fields[c]) if has else None, has]
    sql = (
        f"WITH v({','.join(names)}) AS (VALUES {','.join([row_marks] * len(transitions))})"
        f" UPDATE jobs SET {', '.join(sets)} FROM v WHERE id=v_id AND state=v_src"
        f" RETURNING {_RETURNING}"
    )
    return sql, [*args, now]  # the VALUES come first in the text, then updated_at=?


@lru_cache(maxsize=4096)
def _cost_of(model: str, resolution: str, duration_s: int, samples: int) -> float:
    return estimate_cost_usd(model, resolution, duration_s, samples)


def _spec_row(spec: JobSpec, spec_hash: str) -> tuple[Any, ...]:
    params = spec.params
    cost = _cost_of(
        spec.model,
        str(params.get("resolution", "720p")),
        int(params.get("durationSeconds", 8)),
        int(params.get("sampleCount", 1)),
    )
    inputs = spec.inputs_json()
    return (
        spec.id,
        spec.batch,
        spec_hash,
        spec.prompt,
        spec.model,
        params_json(params),
        json.dumps(inputs, separators=(",", ":"), sort_keys=True) if inputs else "{}",
        spec.output_name,
        spec.source,
        cost,
    )


def _split_sql(script: str) -> list[str]:
    """Split a migration into complete statements (a trigger body holds ';' too)."""
    statements: list[str] = []
    current = ""
    for piece in script.split(";"):
        current += piece + ";"
        if sqlite3.complete_statement(current):
            if current.strip(" \n;"):
                statements.append(current.strip())
            current = ""
    return statements
