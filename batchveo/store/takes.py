"""Takes: a flagged job's retakes, made with its verdict, and the take chosen of each job.

A retake is a job row of its own (migration 015): the original's request (prompt, model,
parameters, inputs, route) under the id ``ID~N`` (its file ``ID~N.mp4``, or the original's
``output`` with ``~N``), ``take_of`` the original's id and ``take`` N. Its identity is the
original's hash and its number (``spec.take_hash``), so no load takes it for the original
and every job loaded before keeps its hash. No manifest may name such an id
(``manifest.fields.job_id``), so a reload neither adds, drops nor resets a take.

``make_retake`` runs inside the transaction that records the flagged verdict
(``Reviews.record_review``): a kill before the commit loses both, after it keeps both, so
the retake is never lost nor made twice. It is made only for the latest take of a job
(a flagged original whose retake exists asks for nothing more), only while the job has
retakes left, and only if what the budgets leave at that moment (the rule of claims,
``BudgetRoom``: the verdict just recorded already counted) has room for its estimate (its
video and its review). Nothing is held back for retakes in advance: the new row is
pending, claimed like any job, after the older rows (originals first).

The chosen take of a job (``CHOSEN_SQL``, the one rule): of its takes with a score, the
best, the earliest on a tie; if none has a score, the original.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite

from batchveo.spec import take_hash
from batchveo.states import JobState
from batchveo.store.budget import CAPS_SQL, MICRO_USD_SQL, BudgetRoom, committed_sql
from batchveo.store.db import Core
from batchveo.store.rows import ROUTE_COLUMNS

TAKE_MARK = "~"
"""Between a job's id and its take's number: ``ID~2``."""
OVER_BUDGET = "retake not made: over the budget"

_ROOT = "COALESCE({t}.take_of, {t}.id)"
CHOSEN_ID_SQL = (
    "(SELECT k.id FROM (SELECT o.id, o.take FROM jobs o WHERE o.id = {root}"
    " UNION ALL SELECT t.id, t.take FROM jobs t WHERE t.take_of = {root}) k"
    " LEFT JOIN reviews r ON r.job_id = k.id AND r.status IN ('passed', 'flagged')"
    " ORDER BY r.score IS NULL, r.score DESC, k.take LIMIT 1)"
)
"""The id of the chosen take of the job whose original's id is the SQL ``{root}`` (which
may name the outer query's ``jobs``: the tables in here have names of their own)."""
CHOSEN_SQL = f"(jobs.id = {CHOSEN_ID_SQL.format(root=_ROOT.format(t='jobs'))})"
"""Whether the row of ``jobs`` is its job's chosen take (an export's ``chosen``)."""
EXPORT_SQL: dict[str, str] = {"take_of": "take_of", "take": "take", "chosen": CHOSEN_SQL}
"""The take columns of an export (``Snapshot.rows``' ``extra``)."""

_COPIED = (
    "batch", "prompt", "model", "params", "inputs", "source",
    *ROUTE_COLUMNS, "samples_requested", "sample_cost_usd",
    "extends", "output_s", "parent_generated_at",
)  # fmt: skip
"""What a take copies of its original: the request and where it goes. A retake of a scene
chain's hop extends the same parent: its ``inputs`` name the parent's video, ``extends``
the parent, ``parent_generated_at`` when that video was made (a claim checks it is still
kept), ``output_s`` the whole cut it is priced as. Not ``chain_root`` and ``hop``: a take is
no new member of the chain (its hops keep extending the original take)."""
_INSERT_SQL = (
    f"INSERT INTO jobs (id, state, spec_hash, output_name, cost_usd, created_at, updated_at,"
    f" take_of, take, {', '.join(_COPIED)})"
    f" SELECT ?, ?, ?, ?, sample_cost_usd * samples_requested, ?, ?, ?, ?, {', '.join(_COPIED)}"
    " FROM jobs WHERE id = ? ON CONFLICT (id) DO NOTHING"
)
_ROUTE_KEY = " || ',' || ".join(f"quote({c})" for c in ROUTE_COLUMNS)
_COUNT_SQL = (
    "INSERT INTO totals (batch, state, route_key, provider, project, location, storage_uri,"
    " jobs, cost_micro_usd, answered, requested, returned, filtered, partial)"
    f" SELECT batch, state, {_ROUTE_KEY}, {', '.join(ROUTE_COLUMNS)},"
    f" 1, {MICRO_USD_SQL.format('cost_usd')}, 0, 0, 0, 0, 0 FROM jobs WHERE id = ?"
    " ON CONFLICT (batch, state, route_key) DO UPDATE SET jobs = jobs + excluded.jobs,"
    " cost_micro_usd = cost_micro_usd + excluded.cost_micro_usd"
)
"""The new take in the running totals (no trigger counts an INSERT: ``totals``)."""


@dataclass(frozen=True)
class RetakeAsk:
    """What a flagged verdict asks of its job: another take, if these allow it."""

    retakes: int
    """The batch's ``retakes``: takes beyond the original."""
    review_usd: float
    """The estimated cost of the new take's review (its video's comes from the row)."""
    budget_usd: float | None
    """The run's ``--budget``."""


@dataclass(frozen=True)
class Retake:
    """What became of the retake a flagged verdict asked for."""

    job_id: str | None
    """The new take's id; None if none was made."""
    note: str | None
    """What the verdict says of it (None: nothing to say, e.g. a later take exists)."""


def take_id(original: str, take: int) -> str:
    return f"{original}{TAKE_MARK}{take}"


def original_of(job_id: str) -> str | None:
    """The original's id of take ``job_id`` (``ID~2`` -> ``ID``); None for an original.
    No manifest may name such an id (``manifest.fields.job_id``), so the id says it."""
    head, mark, number = job_id.rpartition(TAKE_MARK)
    return head if mark and head and number.isdigit() and int(number) >= 2 else None


def _take_output(output_name: str | None, take: int) -> str | None:
    return None if output_name is None else f"{output_name}{TAKE_MARK}{take}"


async def make_retake(db: aiosqlite.Connection, job_id: str, ask: RetakeAsk, now: float) -> Retake:
    """Another take of flagged ``job_id``'s job, in the caller's transaction (module
    docstring); what the verdict says of it."""
    if ask.retakes <= 0:
        return Retake(None, None)  # flag only
    rows = list(
        await db.execute_fetchall(
            "SELECT COALESCE(o.id, j.id), COALESCE(o.spec_hash, j.spec_hash),"
            " o.id IS NULL AND j.take_of IS NOT NULL,"
            " IIF(o.id IS NULL, j.output_name, o.output_name), j.take, j.batch"
            " FROM jobs j LEFT JOIN jobs o ON o.id = j.take_of WHERE j.id = ?",
            (job_id,),
        )
    )
    if not rows:
        return Retake(None, None)
    root, root_hash, orphan, output, take, batch = rows[0]
    if orphan:
        return Retake(None, None)  # its original is gone: nothing to copy from
    latest = await db.execute_fetchall(
        "SELECT COUNT(*), MAX(take) FROM jobs WHERE take_of = ?", (root,)
    )
    made, last = next(iter(latest))
    if (last or 1) != take:
        return Retake(None, None)  # a later take answers for the job
    if made >= ask.retakes:
        return Retake(None, f"retake not made: all {ask.retakes} retake(s) made")
    cost_rows = await db.execute_fetchall(
        "SELECT sample_cost_usd * samples_requested FROM jobs WHERE id = ?", (root,)
    )
    cost = float(next(iter(cost_rows))[0]) + ask.review_usd
    caps = {name: usd for name, usd in await db.execute_fetchall(CAPS_SQL)}
    if ask.budget_usd is not None or batch in caps:
        committed = {b: int(v) for b, v in await db.execute_fetchall(committed_sql())}
        if BudgetRoom(ask.budget_usd, caps, committed).blocking(batch, cost) is not None:
            return Retake(None, OVER_BUDGET)
    n = take + 1
    new_id = take_id(root, n)
    cur = await db.execute(
        _INSERT_SQL,
        (
            new_id, JobState.PENDING.value, take_hash(root_hash, n), _take_output(output, n),
            now, now, root, n, root,
        ),
    )  # fmt: skip
    if cur.rowcount != 1:
        return Retake(None, f"retake not made: the id {new_id} is taken")
    await db.execute(_COUNT_SQL, (new_id,))
    return Retake(new_id, f"retaken as {new_id}")


@dataclass(frozen=True)
class Take:
    """One take of a job, as ``show`` lists it."""

    job_id: str
    take: int
    state: str
    status: str | None
    score: float | None
    chosen: bool


class Takes(Core):
    """The reads of takes: a job's takes, and how many retakes each batch made."""

    async def takes_of(self, job_id: str) -> list[Take]:
        """Every take of ``job_id``'s job (given any of them), in take order, with its
        verdict and whether it is the chosen one; empty if there is no such job."""
        root = await self._scalar("SELECT COALESCE(take_of, id) FROM jobs WHERE id = ?", (job_id,))
        if root is None:
            return []
        chosen = CHOSEN_ID_SQL.format(root="?")
        rows = await self._query(
            f"SELECT j.id, j.take, j.state, r.status, r.score, j.id = {chosen}"
            " FROM jobs j LEFT JOIN reviews r ON r.job_id = j.id"
            " WHERE j.id = ? OR j.take_of = ? ORDER BY j.take",
            (root, root, root, root),
        )
        return [Take(i, t, s, st, sc, bool(c)) for i, t, s, st, sc, c in rows]

    async def chosen_take(self, job_id: str) -> str | None:
        """The id of the chosen take of ``job_id``'s job (given any of its takes)."""
        return next((t.job_id for t in await self.takes_of(job_id) if t.chosen), None)

    async def retake_notes(self, job_ids: Sequence[str]) -> dict[str, str]:
        """Of these takes (a few: ``status`` lists 50), what became of the retake each one's
        flagged verdict asked for, where it says."""
        if not job_ids:
            return {}
        rows = await self._query(
            "SELECT job_id, retake FROM reviews WHERE retake IS NOT NULL"
            f" AND job_id IN ({','.join('?' * len(job_ids))})",
            job_ids,
        )
        return {job_id: note for job_id, note in rows}

    async def retake_counts(self) -> dict[str, dict[str, Any]]:
        """Per batch with a retake: ``retakes`` made, and ``chosen`` (jobs whose chosen take
        is a retake)."""
        rows = await self._query(
            "SELECT batch, COUNT(*), SUM(take_of IS NOT NULL AND "
            f"{CHOSEN_SQL}) FROM jobs WHERE take_of IS NOT NULL GROUP BY batch ORDER BY batch"
        )
        return {b: {"retakes": int(n), "chosen": int(c or 0)} for b, n, c in rows}
