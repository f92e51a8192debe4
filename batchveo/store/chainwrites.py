"""Scene chains in the job table: a hop released, failed or reopened with its parent.

A hop waits (``waiting``) until its parent's video is known. ``settle`` is the one rule
that moves waiting hops on: inside the transaction that moved their parent where that is
one (``Writes.apply``, ``retry``, a load), right after it for the pipeline's single
transitions (whose statement says which jobs have waiting hops, ``HAS_WAITING_HOPS``, so
a plain job pays nothing), and over the whole table at every run's start, so a ``kill -9``
can never leave a parent done and its hop waiting for good:

- parent ``done`` with a video still on the server: the hop becomes ``pending`` and
  carries the parent's video uri (Gemini format: its first ``video_uris``; Vertex: its
  ``gs://`` object) and when it was made (``parent_generated_at``, checked again at claim);
- parent ``done`` but its video past the retention (``chains.parent_expired``) or not
  stored anywhere a hop could send: ``failed/parent_expired``, never sent;
- parent ``failed``, ``expired`` or ``cancelled``: every waiting descendant (children, and
  theirs) ends ``failed/parent_failed`` naming the hop that broke;
- parent anything else (``uncertain`` included): the hop holds.

``settle`` is idempotent: a run calls it over the whole table at its start too (a
database written by a version without it, or moved by hand, is made right). ``reopened``
finds what ``retry`` of a parent sends back to waiting: its descendants that failed
because of it.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any

import aiosqlite

from batchveo import chains
from batchveo.routes import Wire
from batchveo.states import ErrorKind, JobState, check_transition
from batchveo.store.guarded import update_sql
from batchveo.store.rows import Job, Transition

S = JobState
BROKEN = (S.FAILED, S.EXPIRED, S.CANCELLED)
"""A parent in one of these will never have a video: its waiting hops fail."""
ENDS = frozenset({S.DONE, *BROKEN})
"""States whose arrival may move a job's waiting hops."""
HAS_WAITING_HOPS = (
    "EXISTS (SELECT 1 FROM jobs c INDEXED BY jobs_children"
    " WHERE c.extends = jobs.id AND c.state = 'waiting')"
)
"""A column for an UPDATE's ``RETURNING`` on ``jobs``: whether the row has waiting hops
(read in the statement's own transaction: a hop committed before it is seen)."""
_CAUSED = (ErrorKind.PARENT_FAILED.value, ErrorKind.PARENT_EXPIRED.value)
_MAX_PARAMS = 500

Moved = tuple[Job, JobState, str]
"""A hop moved by ``settle``: its row as committed, where it was, the detail logged."""


async def settle(
    db: aiosqlite.Connection, now: float, parents: Collection[str] | None = None
) -> list[Moved]:
    """Move on the waiting hops of ``parents`` (None: of every job), and theirs, inside
    the caller's transaction; what moved, to be told once it is committed."""
    moved: list[Moved] = []
    broken_at: dict[str, str] = {}
    todo: Collection[str] | None = parents
    while todo is None or todo:
        rows = await _waiting_children(db, todo)
        failed_now: list[str] = []
        for child, parent, p_state, p_kind, p_uris, p_generated_at in rows:
            state = JobState(p_state)
            if state is S.DONE:
                moved.append(await _release(db, now, child, parent, p_uris, p_generated_at))
                if moved[-1][0].state is S.FAILED:
                    failed_now.append(child)
                    broken_at[child] = child
            elif state in BROKEN:
                broken = broken_at.get(parent) or await _broken_at(db, parent, p_kind)
                broken_at[child] = broken
                row = await _broken_row(db, broken)
                detail = chains.parent_failed_message(broken, *row)
                fields = {"error_kind": ErrorKind.PARENT_FAILED.value, "error": detail}
                t = Transition(child, S.WAITING, S.FAILED, fields, detail)
                moved.append(await _move(db, now, t))
                failed_now.append(child)
        todo = failed_now
    return moved


async def _waiting_children(db: aiosqlite.Connection, parents: Collection[str] | None) -> list[Any]:
    sql = (
        "SELECT c.id, p.id, p.state, p.error_kind, p.video_uris, p.generated_at"
        " FROM jobs c INDEXED BY jobs_children JOIN jobs p ON p.id = c.extends"
        " WHERE c.extends IS NOT NULL AND c.state = 'waiting'"
    )
    if parents is None:
        return list(await db.execute_fetchall(sql + " ORDER BY c.rowid"))
    out: list[Any] = []
    ids = list(parents)
    for i in range(0, len(ids), _MAX_PARAMS):
        part = ids[i : i + _MAX_PARAMS]
        marks = ",".join("?" * len(part))
        out += await db.execute_fetchall(f"{sql} AND c.extends IN ({marks}) ORDER BY c.rowid", part)
    return out


async def _release(
    db: aiosqlite.Connection,
    now: float,
    child: str,
    parent: str,
    uris_json: str | None,
    generated_at: float | None,
) -> Moved:
    """A done parent's waiting hop: pending with the parent's video, or failed when the
    video is gone (or was never where a hop can send it from)."""
    uris = json.loads(uris_json or "[]")
    uri = str(uris[0]) if uris else None
    wire = Wire.VERTEX if uri is not None and uri.startswith("gs://") else Wire.GEMINI
    if uri is None or chains.parent_expired(generated_at, now, wire):
        detail = chains.parent_expired_message(parent)
        if uri is None:
            detail = (
                f"parent {parent} is done but its video is on no server a hop can send"
                " (a Vertex chain needs --storage-uri): nothing was sent"
            )
        failed = {"error_kind": ErrorKind.PARENT_EXPIRED.value, "error": detail}
        return await _move(db, now, Transition(child, S.WAITING, S.FAILED, failed, detail))
    fields: dict[str, Any] = {
        "inputs": {"video": {"uri": uri}},
        "parent_generated_at": generated_at,
        "error_kind": None,
        "error": None,
    }
    detail = f"{parent} is done: extends its video"
    return await _move(db, now, Transition(child, S.WAITING, S.PENDING, fields, detail))


async def _broken_at(db: aiosqlite.Connection, parent: str, kind: str | None) -> str:
    """The hop where the chain broke: ``parent``, or the first of its ancestors that
    failed of its own (a parent that failed because of its own parent passes it on)."""
    job, seen = parent, {parent}
    while kind == ErrorKind.PARENT_FAILED.value:
        rows = list(
            await db.execute_fetchall(
                "SELECT p.id, p.error_kind FROM jobs c JOIN jobs p ON p.id = c.extends"
                " WHERE c.id = ?",
                (job,),
            )
        )
        if not rows or rows[0][0] in seen:
            break
        job, kind = rows[0]
        seen.add(job)
    return job


async def _broken_row(db: aiosqlite.Connection, job_id: str) -> tuple[str, str | None]:
    rows = list(
        await db.execute_fetchall("SELECT state, error_kind FROM jobs WHERE id = ?", (job_id,))
    )
    return (rows[0][0], rows[0][1]) if rows else ("gone", None)


async def _move(db: aiosqlite.Connection, now: float, t: Transition) -> Moved:
    """One guarded transition of a hop (the caller's transaction)."""
    check_transition(t.src, t.dst)
    sql, args = update_sql(t, now)
    rows = list(await db.execute_fetchall(sql, args))
    if not rows:  # pragma: no cover - guarded: the SELECT above saw it waiting
        raise RuntimeError(f"hop {t.job_id} moved while being settled")
    return Job.from_row(rows[0]), t.src, t.detail or ""


async def reopened(db: aiosqlite.Connection, parents: Sequence[str]) -> list[Transition]:
    """``retry`` of ``parents``: their descendants that failed because of them (the chain
    broke there), back to waiting; released when the parent is done again."""
    rows: list[Any] = []
    for i in range(0, len(parents), _MAX_PARAMS):
        part = list(parents[i : i + _MAX_PARAMS])
        marks = ",".join("?" * len(part))
        sql = (
            "WITH RECURSIVE d(id) AS ("
            f" SELECT id FROM jobs INDEXED BY jobs_children WHERE extends IN ({marks})"
            " UNION SELECT j.id FROM jobs j INDEXED BY jobs_children JOIN d ON j.extends = d.id)"
            " SELECT id FROM jobs WHERE id IN d AND state = ? AND error_kind IN (?, ?)"
            " ORDER BY rowid"
        )
        rows += await db.execute_fetchall(sql, [*part, S.FAILED.value, *_CAUSED])
    detail = "its chain reopened by a retry of an earlier hop"
    reset: dict[str, Any] = {"error_kind": None, "error": None, "inputs": {}}
    reset["parent_generated_at"] = None
    return [Transition(r[0], S.FAILED, S.WAITING, reset, detail) for r in rows]
