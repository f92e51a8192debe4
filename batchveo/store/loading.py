"""Loading specs into the job table: idempotent, all or nothing, fast at 100k rows.

Loading a manifest twice adds nothing: a spec whose id is stored with the same
content hash is counted as existing. Different content under the same id is
refused, naming both places, unless ``--replace`` and the job was never sent.
No event is written per job at load: the row's ``created_at`` and ``source``
tell it (``reads.loaded_event``).

A job's route is not part of its content (``spec``): a reload that gives a job another
route changes the route of a job never sent (pending or cancelled: the latest load's word
wins, as for budgets) and leaves a sent one where its operation is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiosqlite

from batchveo.errors import ManifestError, Problem, StaleTransition
from batchveo.spec import JobSpec, params_json
from batchveo.states import JobState, check_transition
from batchveo.store.budget import Budgets
from batchveo.store.pricing import FORGET_PRICES_SQL
from batchveo.store.reads import chunks
from batchveo.store.rows import (
    RETURNING,
    ROUTE_COLUMNS,
    AddResult,
    Job,
    TransitionEvent,
    route_parts,
)
from batchveo.store.totals import NewJobs

S = JobState
_REPLACEABLE = (S.PENDING, S.CANCELLED)
"""A job may be replaced only while it was never sent."""


@dataclass
class _Sorted:
    """The specs of one load, by what the database already holds under their ids."""

    new: list[tuple[JobSpec, str]] = field(default_factory=list)
    replacing: list[tuple[JobSpec, str, JobState]] = field(default_factory=list)
    """``(spec, its hash, the stored job's state)``."""
    rerouting: list[tuple[JobSpec, JobState]] = field(default_factory=list)
    """Existing never-sent jobs this load sends another way: ``(spec, stored state)``."""
    existing: int = 0
    problems: list[Problem] = field(default_factory=list)

    def changed(self) -> list[JobSpec]:
        return [s for s, _ in self.new] + [s for s, _, _ in self.replacing]


class Loading(Budgets):
    """``add_jobs``: the one way specs become rows."""

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
            empty = await _is_empty(db)
            stored = {} if empty else await _stored(db, [s.id for s in specs])
            sort = await _sort(db, specs, stored, replace=replace)
            if not empty:  # no video to clash with (the loader checked the manifests' own)
                sort.problems += await _output_clashes(db, sort.changed())
            if sort.problems:
                raise ManifestError(sort.problems)
            await self._write_batches(db, sort.changed(), budgets, manifest=manifest, now=now)
            new = NewJobs()
            await db.executemany(
                f"INSERT INTO jobs ({', '.join(_INSERTED)}, created_at, updated_at)"
                f" VALUES ({', '.join('?' * (len(_INSERTED) + 2))})",
                # Generators, not lists: 100k rows are built as SQLite takes them.
                new.count(((*_spec_row(s, h), now, now) for s, h in sort.new), **_TALLIED),
            )
            await new.write(db)  # the running totals (no trigger counts an INSERT)
            back = [await _replace(db, spec, h, old, now) for spec, h, old in sort.replacing]
            if sort.replacing:  # priced by the table again: the next reprice reads every job
                await db.execute(FORGET_PRICES_SQL)
            await _reroute(db, sort.rerouting, now)
        self._tell(e for e in back if e is not None)
        return AddResult(
            new=len(sort.new),
            existing=sort.existing,
            replaced=len(sort.replacing),
            rerouted=len(sort.rerouting),
        )

    async def _write_batches(
        self,
        db: aiosqlite.Connection,
        specs: Sequence[JobSpec],
        budgets: Mapping[str, float] | None,
        *,
        manifest: str | None,
        now: float,
    ) -> None:
        batches = sorted({s.batch for s in specs})
        await db.executemany(
            "INSERT OR IGNORE INTO batches (name, created_at, manifest) VALUES (?, ?, ?)",
            [(b, now, manifest) for b in batches],
        )
        if budgets:
            self._forget_caps()
            # The manifest's latest word on a batch's budget wins.
            await db.executemany(
                "INSERT INTO batches (name, created_at, manifest, budget_usd) VALUES (?,?,?,?)"
                " ON CONFLICT(name) DO UPDATE SET budget_usd=excluded.budget_usd",
                [(b, now, manifest, usd) for b, usd in budgets.items()],
            )


async def _is_empty(db: aiosqlite.Connection) -> bool:
    """No job at all (the first load): every spec is new, nothing needs looking up."""
    async with db.execute("SELECT EXISTS (SELECT 1 FROM jobs)") as cur:
        row = await cur.fetchone()
    return not (row and row[0])


_Stored = tuple[Any, ...]
"""A stored job as a reload compares it: ``(id, spec_hash, state, *its route's columns)``."""


async def _stored(db: aiosqlite.Connection, ids: Sequence[str]) -> dict[str, _Stored]:
    """``{id: (id, spec_hash, state, *route columns)}`` of the ids already stored.

    Only these: a reload of 100k jobs must stay small; details are fetched for the few
    conflicting ids.
    """
    stored: dict[str, _Stored] = {}
    for chunk in chunks(ids):
        sql = (
            "SELECT id, spec_hash, state, provider, project, location, storage_uri FROM jobs"
            f" WHERE id IN ({','.join('?' * len(chunk))})"
        )
        async with db.execute(sql, chunk) as cur:
            stored.update((r[0], tuple(r)) for r in await cur.fetchall())
    return stored


async def _sort(
    db: aiosqlite.Connection,
    specs: Sequence[JobSpec],
    stored: Mapping[str, _Stored],
    *,
    replace: bool,
) -> _Sorted:
    out = _Sorted()
    for spec in specs:
        h = spec.spec_hash()
        found = stored.get(spec.id)
        if found is None:
            out.new.append((spec, h))
            continue
        if found[1] == h:
            out.existing += 1
            if found[3:] != route_parts(spec.route):
                state = JobState(found[2])
                if state in _REPLACEABLE:
                    out.rerouting.append((spec, state))
            continue
        async with db.execute("SELECT state, source FROM jobs WHERE id=?", (spec.id,)) as cur:
            old = await cur.fetchone()
        assert old is not None
        state, where = JobState(old[0]), old[1] or "an earlier manifest"
        if not replace:
            message = (
                f"already loaded from {where} with a different spec"
                " (pass --replace to overwrite it)"
            )
        elif state not in _REPLACEABLE:
            message = f"cannot replace: already submitted (state {state}, loaded from {where})"
        else:
            out.replacing.append((spec, h, state))
            continue
        out.problems.append(Problem(spec.source or "manifest", spec.id, message))
    return out


async def _replace(
    db: aiosqlite.Connection, spec: JobSpec, spec_hash: str, old_state: JobState, now: float
) -> TransitionEvent | None:
    """Overwrite a never-sent job with its new spec; it starts over as pending.

    A pending job stays pending: its state is not written, so no transition is logged.
    A cancelled one comes back through the state table; its event is returned, to be
    told once the load is committed.
    """
    _, batch, _, *content = _spec_row(spec, spec_hash)
    sets = (
        "batch=?, spec_hash=?, prompt=?, model=?, params=?, inputs=?, output_name=?, source=?,"
        " cost_usd=?, provider=?, project=?, location=?, storage_uri=?, samples_requested=?,"
        " sample_cost_usd=?, samples_returned=NULL, samples_filtered=NULL,"
        " filtered_reasons=NULL, attempts=0, error_kind=NULL, error=NULL,"
        " next_attempt_at=NULL, updated_at=?"
    )
    args = [batch, *content, now]
    detail = f"replaced from {spec.source}"
    if old_state is not S.PENDING:
        check_transition(old_state, S.PENDING)
        sets += ", state=?, last_detail=?"  # the trigger logs the event with this detail
        args += [S.PENDING.value, detail]
    sql = f"UPDATE jobs SET {sets} WHERE id=? AND state=? RETURNING {RETURNING}"
    rows = list(await db.execute_fetchall(sql, [*args, spec.id, old_state.value]))
    if not rows:
        raise StaleTransition(f"job {spec.id} changed while being replaced")
    if old_state is S.PENDING:
        return None
    return TransitionEvent.of(Job.from_row(rows[0]), old_state, now, detail)


async def _output_clashes(db: aiosqlite.Connection, specs: Sequence[JobSpec]) -> list[Problem]:
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


async def _reroute(
    db: aiosqlite.Connection, rerouting: Sequence[tuple[JobSpec, JobState]], now: float
) -> None:
    """Give never-sent jobs this load's route (guarded: still in the state that allowed it)."""
    await db.executemany(
        "UPDATE jobs SET provider=?, project=?, location=?, storage_uri=?, updated_at=?"
        " WHERE id=? AND state=?",
        [(*route_parts(spec.route), now, spec.id, state.value) for spec, state in rerouting],
    )


_INSERTED = (
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
    "provider",
    "project",
    "location",
    "storage_uri",
    "samples_requested",
    "sample_cost_usd",
)
"""The columns of a new job's row that ``_spec_row`` gives, in its order."""
_TALLIED = {
    "batch": _INSERTED.index("batch"),
    "state": _INSERTED.index("state"),
    "cost": _INSERTED.index("cost_usd"),
    "route": _INSERTED.index("provider"),
}
"""Where ``NewJobs.count`` finds what the running totals count in such a row."""
assert _INSERTED[_TALLIED["route"] :][:4] == ROUTE_COLUMNS


def _spec_row(spec: JobSpec, spec_hash: str) -> tuple[Any, ...]:
    """``_INSERTED``: a new job's row up to its times (the cost is the spec's own estimate,
    every video it asks for; one video's is that over ``sampleCount``)."""
    inputs = spec.inputs_json()
    samples = int(spec.params.get("sampleCount", 1))
    cost = spec.cost_usd
    return (
        spec.id,
        spec.batch,
        S.PENDING.value,
        spec_hash,
        spec.prompt,
        spec.model,
        params_json(spec.params),
        json.dumps(inputs, separators=(",", ":"), sort_keys=True) if inputs else "{}",
        spec.output_name,
        spec.source,
        cost,
        *route_parts(spec.route),
        samples,
        cost / samples if samples > 1 else cost,
    )
