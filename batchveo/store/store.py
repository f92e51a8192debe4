"""``Store``: the one class callers use, the store's parts over one connection.

Opening checks the SQLite, sets the pragmas and applies the migrations
(``schema``); closing first lets every write already asked for reach the disk.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import aiosqlite

from batchveo.errors import DatabaseUnusable
from batchveo.store import schema
from batchveo.store.chainreads import ChainReads
from batchveo.store.claims import Claims
from batchveo.store.db import Clock
from batchveo.store.loading import Loading
from batchveo.store.migrations import MIGRATIONS, Migration
from batchveo.store.pricing import Pricing
from batchveo.store.reads import Reads
from batchveo.store.reviews import Reviews
from batchveo.store.takes import Takes
from batchveo.store.writes import Writes


class Store(Loading, Claims, Writes, Reads, Pricing, ChainReads, Reviews, Takes):
    """Async access to the job database; one instance per process."""

    def __init__(self, conn: aiosqlite.Connection, path: Path, clock: Clock):
        super().__init__(conn, path, clock)
        self._start_grouping()
        self._start_claims()

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        clock: Clock = time.time,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> Store:
        p = Path(path)
        schema.check_sqlite()
        try:
            conn = await schema.connect(p)
        except sqlite3.DatabaseError as e:
            raise DatabaseUnusable(f"{p}: not a usable batchveo database ({e})") from None
        try:
            await schema.migrate(conn, migrations, path=p, clock=clock)
        except sqlite3.DatabaseError as e:
            await conn.close()
            raise DatabaseUnusable(f"{p}: not a usable batchveo database ({e})") from None
        except BaseException:
            await conn.close()
            raise
        store = cls(conn, p, clock)
        await store._marks.watch_pending(conn)
        return store

    async def close(self) -> None:
        try:
            # A claim's hand-back may queue after the transitions drained: until both rest.
            while self._transitions.busy or self._claims.busy:
                await self._transitions.drain()
                await self._claims.drain()
        finally:
            await self._db.close()

    @property
    def grouped_batches(self) -> int:
        """Grouped statements run so far (transitions and claims)."""
        return self._transitions.batches + self._claims.batches

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
