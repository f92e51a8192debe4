"""Where a claim's walk may start: pending rows already found wanting are not read again.

Why. A claim walks the pending jobs oldest first (down the state index, in rowid order)
and keeps those that fit the budgets and go by its route; the rows that do not are
stepped over, and at every claim again. A batch over its budget with a million pending
jobs loaded before an open batch made every claim read those million rows (0.33 s a
claim at 1M, 0.03 s at 100k, the store's lock held meanwhile), and so did one route's
claims behind another route's rows, and an idle submitter's "when is the next job due".

The mark. After a walk, every pending row without a backoff between the walk's start
and the row it stopped at was either taken or did not fit. The next walk of the same
kind (``Key``: the route filter, with or without budgets) starts there, for as long as
none of those rows can have come to fit (``Mark.holds``):

- no row of this connection became pending without a backoff (a temporary trigger
  counts them as they happen, ``watch_pending``; one with a backoff is no row a walk
  reads) and no pending row's cost was lowered here (the reprice and load paths say so:
  ``Marks.loosened``);
- no other connection committed anything (``PRAGMA data_version``): a ``batchveo load``,
  ``retry`` or ``cancel`` beside the run;
- no budget leaves more room than it did when the walk was made (``Room``): money given
  back by a job that failed unbilled, a batch budget raised;
- the chain of marks began with a walk from the first row less than ``MAX_AGE_S`` ago:
  a backstop, so that a rule missed here would cost a late claim, never a lost job.

Rows waiting out a backoff are asked for apart from the walk, down their own index (a
few rows): time passing makes them due, and needs no rule of its own. New rows (a load,
a retake) come after every mark (a mark never passes the table's last row), so they are
always read.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite

MAX_AGE_S = 60.0
"""A chain of marks is walked again from the first row after this long (a backstop)."""
LOOSENED_FUNCTION = "batchveo_pending_again"
"""The SQL function the temporary trigger calls for each row that became pending."""

WALK_SQL = (
    "SELECT rowid FROM jobs WHERE state='pending' AND rowid>=? AND next_attempt_at IS NULL{}"
    " ORDER BY rowid LIMIT ?"
)
"""A claim's walk: pending rows without a backoff, from a start, that pass the filter in the
braces (budgets and route), oldest first; down the state index from the start."""


@dataclass(frozen=True)
class Key:
    """What kind of walk a mark is for: its route filter (SQL and arguments) and its budget
    filter's SQL (the budgets' arguments are what they leave: the ``Room``, compared)."""

    route_sql: str
    route_args: tuple[Any, ...]
    budget_sql: str = ""

    @property
    def filter_sql(self) -> str:
        """The walk's filter: the budgets' (their arguments first), then the route's."""
        return self.budget_sql + self.route_sql


@dataclass(frozen=True)
class Room:
    """What the budgets left for a walk, in micro-dollars: the run's ``--budget`` (None:
    none) and each capped batch's. More room in any of them may make a stepped row fit."""

    total_micro_usd: int | None
    batches_micro_usd: tuple[tuple[str, int], ...]

    def within(self, earlier: Room) -> bool:
        """No budget leaves more than in ``earlier`` (the same budgets, each no roomier)."""
        now, then = self.total_micro_usd, earlier.total_micro_usd
        if (now is None) != (then is None) or (now is not None and then is not None and now > then):
            return False
        if [b for b, _ in self.batches_micro_usd] != [b for b, _ in earlier.batches_micro_usd]:
            return False
        pairs = zip(self.batches_micro_usd, earlier.batches_micro_usd, strict=True)
        return all(now <= then for (_, now), (_, then) in pairs)


NO_ROOM_RULE = Room(None, ())
"""The room of a walk without budgets: always the same."""


@dataclass(frozen=True)
class Mark:
    """A walk may start at ``from_rowid`` while what it was made under still holds."""

    from_rowid: int
    room: Room
    pending_again: int
    """This connection's count of rows become pending (or cheaper) when it was made."""
    data_version: int
    chain_started_s: float
    """When the walk from the first row that began this chain of marks was made."""

    def holds(self, room: Room, pending_again: int, data_version: int, now_s: float) -> bool:
        """Whether a walk made now may start at ``from_rowid`` (see the module docstring)."""
        return (
            pending_again == self.pending_again
            and data_version == self.data_version
            and now_s - self.chain_started_s < MAX_AGE_S
            and room.within(self.room)
        )


@dataclass(frozen=True)
class Walk:
    """What one claim's reads found: the rows it takes (oldest first) and where the next
    walk of its kind may start."""

    take: list[int]
    next_from_rowid: int


def plan_walk(
    start: int, limit: int, walked: Sequence[int], backoff: Sequence[int], last_rowid: int
) -> Walk:
    """The rows to take and the next start, from the walk's rows (``walked``: pending, no
    backoff, fitting, from ``start``, ascending, at most ``limit``) and the due rows
    waiting out a backoff (``backoff``, ascending, at most ``limit``).

    The oldest ``limit`` of both are taken. Below the next start every row without a
    backoff was taken or did not fit: the first walked row not taken, else past the last
    walked row when the walk was cut at ``limit``, else (the walk read every row to the
    table's end) past the table's last row.
    """
    take = sorted(itertools.chain(walked, backoff))[:limit]
    taken = set(take)
    untaken = [r for r in walked if r not in taken]
    if untaken:
        nxt = untaken[0]
    elif len(walked) >= limit and walked:
        nxt = walked[-1] + 1
    else:
        nxt = max(last_rowid + 1, start)
    return Walk(take, nxt)


class Marks:
    """This connection's marks, one per ``Key``, and its count of rows become pending."""

    def __init__(self) -> None:
        self._marks: dict[Key, Mark] = {}
        self._pending_again = 0

    def loosened(self) -> None:
        """A row of this connection became pending, or a pending row cheaper: every mark
        is void (the trigger calls this per row; the reprice and load paths once)."""
        self._pending_again += 1

    async def watch_pending(self, db: aiosqlite.Connection) -> None:
        """The temporary trigger (this connection only, never written to the file) that
        counts every row this connection makes pending, whatever statement does it; not
        one sent back with a backoff (a 429, a 5xx: many, in a run held back), which the
        walk never reads: the claims find it down ``jobs_backoff`` once it is due."""
        await db.create_function(LOOSENED_FUNCTION, 0, self._from_sql)
        await db.execute(
            "CREATE TEMP TRIGGER IF NOT EXISTS claim_marks_pending"
            " AFTER UPDATE OF state ON main.jobs"
            " WHEN NEW.state = 'pending' AND OLD.state IS NOT 'pending'"
            " AND NEW.next_attempt_at IS NULL"
            f" BEGIN SELECT {LOOSENED_FUNCTION}(); END"
        )

    def _from_sql(self) -> None:
        self.loosened()

    async def begin(self, db: aiosqlite.Connection, key: Key, room: Room) -> Begun:
        """A walk of ``key`` under ``room`` begins: where it starts (a mark that holds, or
        the first row), with what it is made under, read before its first row."""
        version = await _data_version(db)
        now_s = time.monotonic()
        mark = self._marks.pop(key, None)
        if mark is not None and mark.holds(room, self._pending_again, version, now_s):
            return Begun(key, room, mark.from_rowid, self._pending_again, version,
                         mark.chain_started_s)  # fmt: skip
        return Begun(key, room, 0, self._pending_again, version, now_s)

    def ended(self, begun: Begun, next_from_rowid: int) -> None:
        """The walk ended: the next of its kind may start at ``next_from_rowid`` (what
        ``plan_walk`` said), unless a row became pending meanwhile."""
        self._marks[begun.key] = Mark(
            next_from_rowid, begun.room, begun.pending_again, begun.data_version,
            begun.chain_started_s,
        )  # fmt: skip

    def forget(self) -> None:
        """Every walk starts from the first row again (a claim's transaction rolled back:
        the rows its walk took are pending still, behind the mark it left)."""
        self._marks.clear()


@dataclass(frozen=True)
class Begun:
    """A walk under way: its kind, room and start, and what the mark it leaves is made
    under (read before the walk's first row, so that nothing after slips by)."""

    key: Key
    room: Room
    start: int
    pending_again: int
    data_version: int
    chain_started_s: float


async def _data_version(db: aiosqlite.Connection) -> int:
    async with db.execute("PRAGMA data_version") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0
