"""A load's writes of one job: a new row, a replaced one, a rerouted one.

``loading`` decides which each spec of a load is; this module holds the SQL and the row
layout: ``NewRows.row`` gives a new job's columns in ``NEW_ROW``'s order (``spec_row`` a
replaced one's, in ``INSERTED``'s), and ``TALLIED`` says where ``NewJobs.count``
(``totals``) finds what the running totals count in it. What a job's parameters make of
its row (their JSON, its estimate) is worked out once per distinct parameters.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import aiosqlite

from batchveo.errors import StaleTransition
from batchveo.models import billed_params, estimate_params_cost_usd, price_inputs
from batchveo.spec import JobSpec, params_json
from batchveo.states import JobState, check_transition
from batchveo.store.pricing import Shape
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
"""The columns of a job's content that ``spec_row`` gives, in its order (a replace's)."""
NEW_ROW = tuple(c for c in INSERTED if c != "state")
"""The columns of a new job's row that ``NewRows.row`` gives, in its order, then its time:
the state is written by the statement (one value less to bind for each of a million rows):
pending, or waiting for a scene chain's hop (``INSERT_HOP_SQL``)."""
TALLIED = {
    "batch": NEW_ROW.index("batch"),
    "cost": NEW_ROW.index("cost_usd"),
    "route": NEW_ROW.index("provider"),
}
"""Where ``NewJobs.count`` finds what the running totals count in a ``new_row``."""
assert NEW_ROW[TALLIED["route"] :][:4] == ROUTE_COLUMNS
assert INSERTED.index("state") == 2  # spec_row puts it after the id and the batch


def _insert_sql(state: JobState) -> str:
    return (
        f"INSERT INTO jobs ({', '.join(NEW_ROW)}, state, created_at, updated_at)"
        f" VALUES ({', '.join(f'?{i}' for i in range(1, len(NEW_ROW) + 1))},"
        f" '{state.value}', ?{len(NEW_ROW) + 1}, ?{len(NEW_ROW) + 1})"
        " ON CONFLICT(id) DO NOTHING"
    )


INSERT_SQL = _insert_sql(S.PENDING)
"""A new job, pending, created and updated at its time; an id this load already inserted
is left alone (the caller counts the rows inserted, and reports the second as a duplicate)."""
INSERT_HOP_SQL = _insert_sql(S.WAITING)
"""A new hop of a scene chain, waiting for its parent's video (``INSERT_SQL`` otherwise)."""


Request = tuple[str, float, int, float, Shape]
"""What a job's request makes of its row: its parameters as stored, its estimate (every
video it asks for), how many videos it asks for, one video's estimate (the estimate over
``sampleCount``), and its price shape."""


@lru_cache(maxsize=4096)
def _request_of(model: str, items: tuple[tuple[str, Any], ...], output_s: int | None) -> Request:
    """``_request`` of hashable parameters (a load's jobs share a handful)."""
    return _request(model, dict(items), output_s)


def _request(model: str, params: dict[str, Any], output_s: int | None) -> Request:
    """A hop of a scene chain (``output_s``) is priced, and shaped, as its whole video
    (``models.billed_params``); its parameters are stored as sent."""
    billed = billed_params(params, output_s)
    cost = estimate_params_cost_usd(model, billed)
    samples = int(params.get("sampleCount", 1))
    shape = (model, *price_inputs(billed))
    return params_json(params), cost, samples, cost / samples if samples > 1 else cost, shape


def _request_columns(spec: JobSpec) -> Request:
    try:
        return _request_of(spec.model, tuple(spec.params.items()), spec.output_s)
    except TypeError:  # an unhashable value: priced directly
        return _request(spec.model, spec.params, spec.output_s)


def _inputs_json(spec: JobSpec) -> str:
    """The inputs column: a text job's without building its (empty) dict."""
    image, last = spec.image, spec.last_frame
    if image is None and last is None and not spec.reference_images and spec.video_uri is None:
        return "{}"
    return json.dumps(spec.inputs_json(), separators=(",", ":"), sort_keys=True)


def _new_row(spec: JobSpec, spec_hash: str, request: Request, now: float) -> tuple[Any, ...]:
    """``NEW_ROW`` and ``now``: a job's columns but its state, then its time (the load's hot
    row, built in one tuple), ``request`` being its ``_request``."""
    params, cost, samples, one, _ = request
    return (
        spec.id,
        spec.batch,
        spec_hash,
        spec.prompt,
        spec.model,
        params,
        _inputs_json(spec),
        spec.output_name,
        spec.source,
        cost,
        *route_parts(spec.route),
        samples,
        one,
        spec.extends,
        spec.chain_root,
        spec.hop,
        spec.output_s,
        now,
    )


def spec_row(spec: JobSpec, spec_hash: str) -> tuple[Any, ...]:
    """``INSERTED``: a job's row up to its times (the cost is the spec's own estimate, every
    video it asks for, a scene chain's hop priced as its whole video; one video's is that
    over ``sampleCount``). A hop starts ``waiting`` (the load releases it if its parent is
    already done)."""
    job_id, batch, *rest, _ = _new_row(spec, spec_hash, _request_columns(spec), 0.0)
    state = S.PENDING if spec.extends is None else S.WAITING
    return (job_id, batch, state.value, *rest)


class NewRows:
    """A load's new rows, and the price shapes of their requests, each at the table's price
    (what ``pricing.note_load`` remembers of them)."""

    def __init__(self) -> None:
        self.shapes: dict[Shape, float] = {}
        self._last: Request | None = None

    def row(self, spec: JobSpec, spec_hash: str, now: float) -> tuple[Any, ...]:
        """``NEW_ROW`` and the time: a new job's values for ``INSERT_SQL`` (a hop's for
        ``INSERT_HOP_SQL``)."""
        request = _request_columns(spec)
        if request is not self._last:  # rows alike follow each other: noted once
            _, cost, _, _, shape = request
            self.shapes[shape] = cost
            self._last = request
        return _new_row(spec, spec_hash, request, now)


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
