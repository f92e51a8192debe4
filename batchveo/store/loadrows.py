"""A load's writes of one job: a new row, a replaced one, a rerouted one.

``loading`` decides which each spec of a load is; this module holds the SQL and the row
layout: ``spec_row`` gives a new job's columns in ``INSERTED``'s order, and ``TALLIED``
says where ``NewJobs.count`` (``totals``) finds what the running totals count in it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import aiosqlite

from batchveo.errors import StaleTransition
from batchveo.spec import JobSpec, params_json
from batchveo.states import JobState, check_transition
from batchveo.store.rows import RETURNING, ROUTE_COLUMNS, Job, TransitionEvent, route_parts

S = JobState

INSERTED = (
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
    "extends",
    "chain_root",
    "hop",
    "output_s",
)
"""The columns of a new job's row that ``spec_row`` gives, in its order."""
TALLIED = {
    "batch": INSERTED.index("batch"),
    "state": INSERTED.index("state"),
    "cost": INSERTED.index("cost_usd"),
    "route": INSERTED.index("provider"),
}
"""Where ``NewJobs.count`` finds what the running totals count in such a row."""
assert INSERTED[TALLIED["route"] :][:4] == ROUTE_COLUMNS

INSERT_SQL = (
    f"INSERT INTO jobs ({', '.join(INSERTED)}, created_at, updated_at)"
    f" VALUES ({', '.join('?' * (len(INSERTED) + 2))}) ON CONFLICT(id) DO NOTHING"
)
"""A new job (with its times); an id this load already inserted is left alone (the caller
counts the rows inserted, and reports the second as a duplicate)."""


def spec_row(spec: JobSpec, spec_hash: str) -> tuple[Any, ...]:
    """``INSERTED``: a new job's row up to its times (the cost is the spec's own estimate,
    every video it asks for; one video's is that over ``sampleCount``). A hop of a scene
    chain starts ``waiting`` (the load releases it if its parent is already done)."""
    inputs = spec.inputs_json()
    samples = int(spec.params.get("sampleCount", 1))
    cost = spec.cost_usd
    return (
        spec.id,
        spec.batch,
        S.PENDING.value if spec.extends is None else S.WAITING.value,
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
        spec.extends,
        spec.chain_root,
        spec.hop,
        spec.output_s,
    )


async def replace_job(
    db: aiosqlite.Connection, spec: JobSpec, spec_hash: str, old_state: JobState, now: float
) -> TransitionEvent | None:
    """Overwrite a never-sent job with its new spec; it starts over as pending (a hop of a
    scene chain: waiting, its chain's columns the new spec's; the caller refuses to make
    a job a hop or a hop a job in place).

    A pending job stays pending: its state is not written, so no transition is logged.
    A cancelled one comes back through the state table; its event is returned, to be
    told once the load is committed.
    """
    _, batch, _, *content = spec_row(spec, spec_hash)
    start = S.PENDING if spec.extends is None else S.WAITING
    sets = (
        "batch=?, spec_hash=?, prompt=?, model=?, params=?, inputs=?, output_name=?, source=?,"
        " cost_usd=?, provider=?, project=?, location=?, storage_uri=?, samples_requested=?,"
        " sample_cost_usd=?, extends=?, chain_root=?, hop=?, output_s=?, samples_returned=NULL,"
        " samples_filtered=NULL, filtered_reasons=NULL, attempts=0, error_kind=NULL,"
        " error=NULL, next_attempt_at=NULL, parent_generated_at=NULL, updated_at=?"
    )
    args = [batch, *content, now]
    detail = f"replaced from {spec.source}"
    if old_state is not start:
        check_transition(old_state, start)
        sets += ", state=?, last_detail=?"  # the trigger logs the event with this detail
        args += [start.value, detail]
    sql = f"UPDATE jobs SET {sets} WHERE id=? AND state=? RETURNING {RETURNING}"
    rows = list(await db.execute_fetchall(sql, [*args, spec.id, old_state.value]))
    if not rows:
        raise StaleTransition(f"job {spec.id} changed while being replaced")
    if old_state is start:
        return None
    return TransitionEvent.of(Job.from_row(rows[0]), old_state, now, detail)


async def reroute_jobs(
    db: aiosqlite.Connection, rerouting: Sequence[tuple[JobSpec, JobState]], now: float
) -> None:
    """Give never-sent jobs this load's route (guarded: still in the state that allowed it)."""
    if not rerouting:
        return
    await db.executemany(
        "UPDATE jobs SET provider=?, project=?, location=?, storage_uri=?, updated_at=?"
        " WHERE id=? AND state=?",
        [(*route_parts(spec.route), now, spec.id, state.value) for spec, state in rerouting],
    )
