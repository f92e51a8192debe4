"""Loading specs into the job table: idempotent, all or nothing, streamed.

Loading a manifest twice adds nothing: a spec whose id is stored with the same
content hash is counted as existing. Different content under the same id is
refused, naming both places, unless ``--replace`` and the job was never sent.
No event is written per job at load: the row's ``created_at`` and ``source``
tell it (``reads.loaded_event``).

A job's route is not part of its content (``spec``): a reload that gives a job another
route changes the route of a job never sent (pending or cancelled: the latest load's word
wins, as for budgets) and leaves a sent one where its operation is.

A load is one transaction fed in chunks (``Loading.loading`` and ``LoadSession``): each
chunk's new jobs are inserted as they come, so a million-row manifest is never held in
memory, and any problem found on the way (the reader's, passed in with the chunk, or the
store's: a duplicate id, an id stored with another spec) rolls the whole load back at
``finish``. What the checks across the load need is kept in SQLite, not in Python: the
job table itself finds a second job with the id of one this load inserted (the rowids
above the load's ``watermark`` are its own), and two TEMP tables, made only when needed,
hold the ids of stored jobs this load named (a reload) and the load's output names.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiosqlite

from batchveo.errors import MAX_PROBLEMS_KEPT, ManifestError, Problem
from batchveo.manifest.show import show
from batchveo.routes import Route
from batchveo.spec import JobSpec
from batchveo.states import JobState
from batchveo.store.budget import Budgets
from batchveo.store.chainwrites import settle
from batchveo.store.loadrows import (
    INSERT_HOP_SQL,
    INSERT_SQL,
    TALLIED,
    NewRows,
    replace_job,
    reroute_jobs,
)
from batchveo.store.outputcheck import load_output_clashes
from batchveo.store.pricing import forget_prices, note_load
from batchveo.store.rows import AddResult, TransitionEvent, route_parts
from batchveo.store.totals import NewJobs

S = JobState
_REPLACEABLE = (S.PENDING, S.CANCELLED, S.WAITING)
"""A job may be replaced only while it was never sent."""
CHUNK_SPECS = 2000
"""Specs handed to ``LoadSession.add`` at a time (the lists ``add_jobs`` cuts; the
streaming loader's chunks): under SQLite's 32,766 bound variables per statement."""

LoadItem = JobSpec | Problem
"""What a chunk holds, in file order: a valid job, or a problem the reader found."""


class Loading(Budgets):
    """``add_jobs`` and ``loading``: the one way specs become rows."""

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
        async with self.loading(replace=replace, manifest=manifest) as session:
            for i in range(0, len(specs), CHUNK_SPECS):
                await session.add(specs[i : i + CHUNK_SPECS])
            return await session.finish(budgets)

    @asynccontextmanager
    async def loading(
        self, *, replace: bool = False, manifest: str | None = None
    ) -> AsyncIterator[LoadSession]:
        """One load's transaction: ``add`` chunks, then ``finish`` (which raises
        ``ManifestError`` with every problem); any exception rolls it all back."""
        async with self._tx() as db:
            session = await LoadSession.start(db, replace, manifest, self.clock())
            yield session
            if not session.finished:
                raise RuntimeError("a load left without finish(): rolled back")
            if session.budgets_written:
                self._forget_caps()
        self._marks.loosened()  # a replaced job may be cheaper now, or of another route
        self._tell(session.events)


@dataclass
class _Seen:
    """A job id's first occurrence in this load: its hash and where it was."""

    spec_hash: str
    source: str


@dataclass
class LoadSession:
    """The state of one load inside its transaction (see the module docstring)."""

    db: aiosqlite.Connection
    replace: bool
    manifest: str | None
    now: float
    watermark: int
    """The largest rowid before the load: rows above it are the load's own."""
    empty: bool
    """No job before the load: every spec is new, none needs looking up."""
    new: int = 0
    existing: int = 0
    replaced: set[str] = field(default_factory=set)
    rerouted: int = 0
    problems: list[Problem] = field(default_factory=list)
    more_problems: int = 0
    """Problems past ``MAX_PROBLEMS_KEPT``: counted, not kept."""
    events: list[TransitionEvent] = field(default_factory=list)
    batches: dict[str, None] = field(default_factory=dict)
    """Every batch of the load's specs, in order."""
    routes: dict[Route | None, None] = field(default_factory=dict)
    """Every route of the load's specs (None: the loading command's), in order."""
    budgets_written: bool = False
    finished: bool = False
    _written_batches: set[str] = field(default_factory=set)
    _totals: NewJobs = field(default_factory=NewJobs)
    _rows: NewRows = field(default_factory=NewRows)
    _seen_table: bool = False
    _outputs_table: bool = False
    _folders: bool = False
    """Some new or replacing spec's output has a folder (or a stored job may have one)."""
    _hops: bool = False
    """Some spec is a hop of a scene chain: its parent may be done already."""

    @classmethod
    async def start(
        cls, db: aiosqlite.Connection, replace: bool, manifest: str | None, now: float
    ) -> LoadSession:
        async with db.execute("SELECT max(rowid) FROM jobs") as cur:
            row = await cur.fetchone()
        top = row[0] if row and row[0] is not None else None
        return cls(db, replace, manifest, now, watermark=top or 0, empty=top is None)

    def _problem(self, problem: Problem) -> None:
        if len(self.problems) < MAX_PROBLEMS_KEPT:
            self.problems.append(problem)
        else:
            self.more_problems += 1

    async def add(self, items: Sequence[LoadItem]) -> None:
        """The next chunk of the load: specs to store, problems to report, in file order
        (the store's problems of a spec are reported in its place)."""
        specs = [it for it in items if isinstance(it, JobSpec)]
        found = await self._add(specs) if specs else {}
        if not found and len(specs) == len(items):
            return  # the common chunk: nothing to report
        for it in items:
            if isinstance(it, Problem):
                self._problem(it)
            else:
                for message in found.get(id(it), ()):
                    self._problem(Problem(it.source or "manifest", it.id, message))

    async def _add(self, specs: list[JobSpec]) -> dict[int, list[str]]:
        """Store a chunk's specs; ``id(spec)`` -> its problems."""
        out = dict[int, list[str]]()
        hashes = [s.spec_hash() for s in specs]
        for s in specs:
            self.batches.setdefault(s.batch)
            self.routes.setdefault(s.route)
            if s.extends is not None:
                self._hops = True
        firsts: dict[str, int] = {}
        for i, s in enumerate(specs):
            firsts.setdefault(s.id, i)
        stored = {} if self.empty else await self._stored(list(firsts))
        earlier = await self._seen(stored, firsts, specs, hashes) if stored else {}
        fresh = [i for job_id, i in firsts.items() if job_id not in stored]
        if fresh:
            earlier |= await self._insert(specs, hashes, fresh)
        if not stored and not earlier and len(firsts) == len(specs):
            self.new += len(specs)  # the common chunk: every spec new, no id twice
            accepted = specs
        else:
            accepted = await self._check_each(specs, hashes, stored, earlier, firsts, out)
        if any(s.output_name is not None for s in accepted):
            for spec, why in await self._output_twice(accepted):
                out.setdefault(id(spec), []).append(why)
        return out

    async def _check_each(
        self,
        specs: list[JobSpec],
        hashes: list[str],
        stored: Mapping[str, tuple[Any, ...]],
        earlier: Mapping[str, _Seen],
        firsts: Mapping[str, int],
        out: dict[int, list[str]],
    ) -> list[JobSpec]:
        """The chunk's specs one by one: a second of an id (``out``), existing, rerouted,
        replaced or new; those accepted (each id's first)."""
        rerouting: list[tuple[JobSpec, JobState]] = []
        accepted: list[JobSpec] = []
        for i, (spec, h) in enumerate(zip(specs, hashes, strict=True)):
            if (first := earlier.get(spec.id)) is None and (j := firsts[spec.id]) != i:
                first = _Seen(hashes[j], specs[j].source)  # this chunk's first of the id
            if first is not None:
                out.setdefault(id(spec), []).append(_duplicate(spec.id, h, first))
                continue
            accepted.append(spec)
            old = stored.get(spec.id)
            if old is None:
                self.new += 1
            elif old[1] == h:  # as stored: existing (a reload), perhaps on another route
                self.existing += 1
                if old[4:8] != route_parts(spec.route) and (state := S(old[2])) in _REPLACEABLE:
                    rerouting.append((spec, state))
            elif (why := await self._against_stored(spec, h, old)) is not None:
                out.setdefault(id(spec), []).append(why)
        await reroute_jobs(self.db, rerouting, self.now)
        self.rerouted += len(rerouting)
        return accepted

    async def _stored(self, ids: list[str]) -> dict[str, tuple[Any, ...]]:
        """``{id: (rowid, spec_hash, state, source, *route columns, extends)}`` of the ids
        stored before the load (only these: a reload of a million jobs must stay small)."""
        sql = (
            "SELECT id, rowid, spec_hash, state, source, provider, project, location,"
            " storage_uri, extends"
            f" FROM jobs WHERE id IN ({','.join('?' * len(ids))}) AND rowid <= ?"
        )
        async with self.db.execute(sql, [*ids, self.watermark]) as cur:
            return {r[0]: tuple(r[1:]) for r in await cur.fetchall()}

    async def _seen(
        self,
        stored: Mapping[str, tuple[Any, ...]],
        firsts: Mapping[str, int],
        specs: Sequence[JobSpec],
        hashes: Sequence[str],
    ) -> dict[str, _Seen]:
        """Of the stored ids this chunk names, those an earlier chunk named already (their
        first occurrence); the others are noted for the chunks after. Noted by the stored
        job's rowid: a reload in the order of the load before appends to the table."""
        db = self.db
        if not self._seen_table:
            await db.execute(
                "CREATE TEMP TABLE load_seen (n INTEGER PRIMARY KEY, spec_hash TEXT, source TEXT)"
            )
            self._seen_table = True
        by_rowid = {old[0]: job_id for job_id, old in stored.items()}
        marks = ",".join("?" * len(by_rowid))
        sql = f"SELECT n, spec_hash, source FROM temp.load_seen WHERE n IN ({marks})"
        async with db.execute(sql, list(by_rowid)) as cur:
            earlier = {by_rowid[r[0]]: _Seen(r[1], r[2]) for r in await cur.fetchall()}
        await db.executemany(
            "INSERT INTO temp.load_seen VALUES (?, ?, ?)",
            [
                (n, hashes[firsts[job_id]], specs[firsts[job_id]].source)
                for n, job_id in sorted(by_rowid.items())
                if job_id not in earlier
            ],
        )
        return earlier

    async def _insert(
        self, specs: Sequence[JobSpec], hashes: Sequence[str], fresh: Sequence[int]
    ) -> dict[str, _Seen]:
        """Insert the new jobs (``fresh``: their indexes); of their ids, those an earlier
        chunk of this load inserted already (their first occurrence)."""
        db = self.db
        await self._write_batches({specs[i].batch for i in fresh})
        async with db.execute("SELECT max(rowid) FROM jobs") as cur:
            row = await cur.fetchone()
        top = row[0] if row and row[0] is not None else 0
        before = db.total_changes
        now = self.now
        new_rows = self._rows
        plain, hops = fresh, []
        if self._hops:  # a scene chain's hops start waiting for their parents' videos
            plain = [i for i in fresh if specs[i].extends is None]
            hops = [i for i in fresh if specs[i].extends is not None]
        for state, sql, which in (
            (S.PENDING, INSERT_SQL, plain),
            (S.WAITING, INSERT_HOP_SQL, hops),
        ):
            if not which:
                continue
            rows = (new_rows.row(specs[i], hashes[i], now) for i in which)
            # A generator, not a list: the rows are built as SQLite takes them.
            await db.executemany(sql, self._totals.count(rows, state=state.value, **TALLIED))
        if db.total_changes - before == len(fresh):
            return {}
        ids = [specs[i].id for i in fresh]
        sql = (
            f"SELECT id, spec_hash, source FROM jobs WHERE id IN ({','.join('?' * len(ids))})"
            " AND rowid > ? AND rowid <= ?"
        )
        async with db.execute(sql, [*ids, self.watermark, top]) as cur:
            return {r[0]: _Seen(r[1], r[2] or "") for r in await cur.fetchall()}

    async def _write_batches(self, names: Iterable[str]) -> None:
        todo = sorted(set(names) - self._written_batches)
        if not todo:
            return
        await self.db.executemany(
            "INSERT OR IGNORE INTO batches (name, created_at, manifest) VALUES (?, ?, ?)",
            [(b, self.now, self.manifest) for b in todo],
        )
        self._written_batches.update(todo)

    async def _against_stored(
        self, spec: JobSpec, spec_hash: str, old: tuple[Any, ...]
    ) -> str | None:
        """A spec whose id was stored before the load with another spec: replaced, or the
        problem it is."""
        state, where = JobState(old[2]), old[3] or "an earlier manifest"
        if not self.replace:
            return (
                f"already loaded from {where} with a different spec"
                " (pass --replace to overwrite it)"
            )
        if state not in _REPLACEABLE:
            return f"cannot replace: already submitted (state {state}, loaded from {where})"
        if (old[8] is not None) != (spec.extends is not None):  # the stored job's kind
            return (
                f"cannot replace: a job and a hop of a scene chain are not the same kind of"
                f" job (state {state}, loaded from {where}): give it a new id"
            )
        if old[8] != spec.extends and old[8] is not None:  # nor could a chain loop then
            return (
                f"cannot replace: a hop keeps the job it extends ({old[8]}, loaded from"
                f" {where}), not {spec.extends}: give it a new id"
            )
        await self._write_batches([spec.batch])
        event = await replace_job(self.db, spec, spec_hash, state, self.now)
        if event is not None:
            self.events.append(event)
        self.replaced.add(spec.id)
        if spec.output_name is not None and "/" in spec.output_name:
            self._folders = True
        return None

    async def _output_twice(self, specs: Sequence[JobSpec]) -> list[tuple[JobSpec, str]]:
        """Specs whose output name an earlier spec of the load took (one video would
        replace the other); the others' names are noted for the chunks after."""
        db = self.db
        if not self._outputs_table:
            await db.execute("CREATE TEMP TABLE load_outputs (name TEXT PRIMARY KEY, source TEXT)")
            self._outputs_table = True
        named = [s for s in specs if s.output_name is not None]
        if any("/" in (s.output_name or "") for s in named):
            self._folders = True
        names = list(dict.fromkeys(s.output_name for s in named))
        marks = ",".join("?" * len(names))
        sql = f"SELECT name, source FROM temp.load_outputs WHERE name IN ({marks})"
        async with db.execute(sql, names) as cur:
            taken: dict[str | None, str] = {r[0]: r[1] for r in await cur.fetchall()}
        clashes, mine = [], []
        for s in named:
            other = taken.get(s.output_name)
            if other is not None:
                why = (
                    f"output {show(s.output_name)} is also used by {other}:"
                    " one video would replace the other"
                )
                clashes.append((s, why))
                continue
            taken[s.output_name] = s.source
            mine.append((s.output_name, s.source))
        await db.executemany("INSERT INTO temp.load_outputs VALUES (?, ?)", mine)
        return clashes

    async def finish(self, budgets: Mapping[str, float] | None = None) -> AddResult:
        """The load's last checks and writes; ``ManifestError`` (rolling it all back)
        if anything was wrong."""
        db = self.db
        changed = self.new or self.replaced
        if changed and (self._folders or not self.empty):
            for p in await load_output_clashes(db, self.watermark, self.replaced):
                self._problem(p)
        if self.problems:
            raise ManifestError(self.problems, more=self.more_problems)
        if budgets:
            # The manifest's latest word on a batch's budget wins.
            await db.executemany(
                "INSERT INTO batches (name, created_at, manifest, budget_usd) VALUES (?,?,?,?)"
                " ON CONFLICT(name) DO UPDATE SET budget_usd=excluded.budget_usd",
                [(b, self.now, self.manifest, usd) for b, usd in budgets.items()],
            )
            self.budgets_written = True
        await self._totals.write(db)  # the running totals (no trigger counts an INSERT)
        if self._hops:  # a hop whose parent is done already is released at once
            for job, src, detail in await settle(db, self.now):
                self.events.append(TransitionEvent.of(job, src, self.now, detail))
        if self.replaced:  # priced by the table again: the next reprice reads every job
            await forget_prices(db)
        elif self.new:
            await note_load(db, self.watermark, self._rows.shapes)
        for table, made in (("load_seen", self._seen_table), ("load_outputs", self._outputs_table)):
            if made:
                await db.execute(f"DROP TABLE temp.{table}")
        self.finished = True
        return AddResult(
            new=self.new,
            existing=self.existing,
            replaced=len(self.replaced),
            rerouted=self.rerouted,
        )


def _duplicate(job_id: str, spec_hash: str, first: _Seen) -> str:
    """A second job of the load with the id of ``first``."""
    if first.spec_hash == spec_hash:
        return f"duplicate of {first.source} (use repeat: N for variants)"
    return f"id {job_id} is also used by a different job at {first.source}"
