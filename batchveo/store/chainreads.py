"""Scene chains as ``status``, ``show`` and the report read them.

A chain is its root and every job whose ``chain_root`` names it; the hops are found down
the ``jobs_children`` index (partial: only hops are in it), so reading chains costs
nothing on a table of plain jobs, however large.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from batchveo.states import JobState
from batchveo.store.db import Core
from batchveo.store.rows import SELECT, Job

_CHUNK = 500
_SUMMARY_SQL = (
    "SELECT chain_root, COUNT(*), SUM(state = 'done') FROM jobs INDEXED BY jobs_children"
    " WHERE extends IS NOT NULL GROUP BY chain_root ORDER BY MIN(rowid)"
)
_MEMBERS_SQL = (
    "WITH RECURSIVE d(id) AS (SELECT ?"
    " UNION SELECT j.id FROM jobs j INDEXED BY jobs_children JOIN d ON j.extends = d.id)"
    f" {SELECT} WHERE id IN d ORDER BY hop, rowid"
)


@dataclass(frozen=True)
class ChainCount:
    """One chain, as ``status`` shows it: its root, how many of its jobs (root included)
    are done, and how many it has."""

    root: str
    done: int
    total: int


class ChainReads(Core):
    """``chain_counts``, ``chain_members`` and ``states_of``."""

    async def chain_counts(self) -> list[ChainCount]:
        """Every chain of the database, in load order."""
        rows = await self._query(_SUMMARY_SQL)
        if not rows:
            return []
        roots = [r[0] for r in rows]
        marks = ",".join("?" * len(roots))
        done_roots = {
            r[0]
            for r in await self._query(
                f"SELECT id FROM jobs WHERE id IN ({marks}) AND state = 'done'", roots
            )
        }
        return [
            ChainCount(root, int(done or 0) + (root in done_roots), int(n) + 1)
            for root, n, done in rows
        ]

    async def states_of(self, ids: Sequence[str]) -> dict[str, JobState]:
        """The state of each of ``ids`` (what a retry's moves came to: a hop reopened may
        wait, or fail again at once when its parent is still failed)."""
        out: dict[str, JobState] = {}
        for i in range(0, len(ids), _CHUNK):
            part = list(ids[i : i + _CHUNK])
            sql = f"SELECT id, state FROM jobs WHERE id IN ({','.join('?' * len(part))})"
            out.update((r[0], JobState(r[1])) for r in await self._query(sql, part))
        return out

    async def chain_members(self, job: Job) -> list[Job]:
        """The chain ``job`` is part of (its root, then every hop in hop order); [] for a
        job that is not part of one."""
        root = job.chain_root or job.id
        members = [Job.from_row(r) for r in await self._query(_MEMBERS_SQL, (root,))]
        return members if len(members) > 1 else []
