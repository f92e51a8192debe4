"""The guarded UPDATE of one transition: the row changes only if it is still where the
caller saw it. One builder for every write that moves a job (``writes``, and the scene
chains' hops in ``chainwrites``), so none can forget the detail the event log reads or
price a job's returned videos otherwise."""

from __future__ import annotations

from typing import Any

from batchveo.store.rows import RETURNING, Transition, encode

COST_OF_RETURNED = "sample_cost_usd * COALESCE({}, samples_requested)"
"""The cost of a job whose ``samples_returned`` becomes ``{}`` (None: as asked)."""


def update_sql(t: Transition, now: float) -> tuple[str, list[Any]]:
    """One guarded UPDATE: the row changes only if it is still in ``t.src``.

    Every UPDATE that sets ``state`` sets ``last_detail`` too: the trigger of
    migration 005 logs it as the event's detail.
    """
    cols = list(t.fields)
    sets = ["state=?", "updated_at=?", "last_detail=?", *[f"{c}=?" for c in cols]]
    values = [t.dst.value, now, t.detail, *[encode(c, t.fields[c]) for c in cols]]
    if "samples_returned" in t.fields:  # SET reads the row as it was: one statement
        sets.append("cost_usd=" + COST_OF_RETURNED.format("?"))
        values.append(t.fields["samples_returned"])
    sql = f"UPDATE jobs SET {', '.join(sets)} WHERE id=? AND state=? RETURNING {RETURNING}"
    return sql, [*values, t.job_id, t.src.value]
