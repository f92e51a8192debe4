"""One connection, one lock: how every store module talks to SQLite.

Concurrency, the two traps this module exists to avoid:

* One aiosqlite connection runs every statement on one thread, but it does not
  isolate two coroutines' transactions from each other. All access holds one
  ``asyncio.Lock``; ``_tx()`` holds it for the whole transaction.
* A deferred transaction that reads and then writes fails with
  SQLITE_BUSY_SNAPSHOT when another process wrote in between. Every write
  transaction starts with ``BEGIN IMMEDIATE`` (and waits on ``busy_timeout``),
  so two processes can never claim the same job.

``Core`` is the base the store's parts (``reads``, ``writes``, ``claims``, ``loading``,
``budget``) share; ``Store`` (``store.py``) puts them together.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from batchveo.store.claimmarks import Marks
from batchveo.store.rows import TransitionEvent, TransitionObserver

Clock = Callable[[], float]


class Core:
    """The connection, its lock, the clock and the observers of transitions."""

    def __init__(self, conn: aiosqlite.Connection, path: Path, clock: Clock):
        self._db = conn
        self.path = path
        self.clock = clock
        self._lock = asyncio.Lock()
        self.observers: list[TransitionObserver] = []
        """Told about every transition after it is committed; must not block or raise."""
        self._marks = Marks()
        """Where claims' walks may start (``claimmarks``): this connection's."""

    @asynccontextmanager
    async def _statement(self) -> AsyncIterator[aiosqlite.Connection]:
        """One autocommit statement, not interleaved with another coroutine's transaction."""
        async with self._lock:
            yield self._db

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction, isolated from this process's other coroutines."""
        async with self._lock, immediate(self._db) as db:
            yield db

    async def _query(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """All rows of one read, not interleaved with another coroutine's transaction."""
        async with self._lock, self._db.execute(sql, args) as cur:
            return list(await cur.fetchall())

    async def _scalar(self, sql: str, args: Sequence[Any] = ()) -> Any:
        rows = await self._query(sql, args)
        return rows[0][0] if rows else None

    def _tell(self, events: Iterable[TransitionEvent]) -> None:
        if not self.observers:
            return
        for event in events:
            for observer in self.observers:
                observer(event)


@asynccontextmanager
async def immediate(db: aiosqlite.Connection) -> AsyncIterator[aiosqlite.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error (the caller holds the lock)."""
    await db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        await db.execute("ROLLBACK")
        raise
    try:
        await db.execute("COMMIT")
    except BaseException:  # a COMMIT refused (disk full, I/O) must not leave it open
        if db.in_transaction:
            await db.execute("ROLLBACK")
        raise


async def describe(db: aiosqlite.Connection, job_id: str) -> str:
    """What a stale write found instead: ``it is running`` or ``no such job``."""
    async with db.execute("SELECT state FROM jobs WHERE id=?", (job_id,)) as cur:
        row = await cur.fetchone()
    return "no such job" if row is None else f"it is {row[0]}"
