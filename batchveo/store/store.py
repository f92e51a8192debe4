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
from batchveo.store.db import Clock
from batchveo.store.loading import Loading
from batchveo.store.migrations import MIGRATIONS, Migration
from batchveo.store.reads import Reads
from batchveo.store.writes import COMMIT_LINGER_S, Writes


class Store(Loading, Writes, Reads):
    """Async access to the job database; one instance per process."""

    def __init__(
        self,
        conn: aiosqlite.Connection,
        path: Path,
        clock: Clock,
        *,
        commit_linger_s: float = COMMIT_LINGER_S,
    ):
        super().__init__(conn, path, clock)
        self._start_groups(commit_linger_s)

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        clock: Clock = time.time,
        migrations: Sequence[Migration] = MIGRATIONS,
        commit_linger_s: float = COMMIT_LINGER_S,
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
        return cls(conn, p, clock, commit_linger_s=commit_linger_s)

    async def close(self) -> None:
        try:
            await self._drain_groups()
        finally:
            await self._db.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
