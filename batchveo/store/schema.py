"""Opening a job database: the SQLite it needs, the pragmas it runs with, its migrations.

WAL with ``synchronous=FULL``: a commit is on disk before the call returns, so
even a power cut cannot undo a claim whose request was then sent (the job would
come back ``pending`` and be paid for twice). NORMAL would survive ``kill -9``
alone; grouped commits (``writes``) make FULL's fsync per statement affordable.

The schema itself is ``migrations.py``: an append-only list, applied here one
migration per transaction, so a crash leaves each fully applied or not at all.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import aiosqlite

from batchveo.errors import DatabaseUnusable
from batchveo.store.db import Clock, immediate
from batchveo.store.migrations import Migration

MIN_SQLITE = (3, 35, 0)
"""RETURNING (3.35) and UPDATE ... FROM (3.33); 32766 bound parameters (3.32)."""
BUSY_TIMEOUT_S = 30.0
"""How long a write waits for another process's transaction before giving up."""
_THREAD_END_WAIT_S = 10.0
"""How long a failed open waits for aiosqlite's worker thread to end (it takes milliseconds)."""
WAL_RETRY_S = 0.01
"""How soon to try switching a fresh database to WAL again while another process does."""

_PRAGMAS = (
    "PRAGMA synchronous=FULL",
    f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}",
    "PRAGMA cache_size=-32768",  # 32 MB: big loads insert faster
    "PRAGMA foreign_keys=ON",
)


def check_sqlite() -> None:
    """Refuse, in words, an SQLite too old for the statements the store runs."""
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        need = ".".join(map(str, MIN_SQLITE))
        raise DatabaseUnusable(
            f"batchveo needs SQLite {need} or newer (UPDATE ... RETURNING); this Python"
            f" has {sqlite3.sqlite_version}: use a newer Python build or distribution"
        )


async def connect(path: Path) -> aiosqlite.Connection:
    """A connection in autocommit mode (the store opens its own transactions), pragmas set.

    A connection that cannot even be opened (a missing folder, no permission) still has
    aiosqlite's worker thread, told to stop but not waited for: left alone, it posts its
    last answer after ``asyncio.run`` has closed the loop ("Event loop is closed" in that
    thread, omnilib/aiosqlite#241; seen under load after ``--db nodir/x.db``). Its end
    is waited for here, so a failed open leaves nothing running.
    """
    conn = aiosqlite.connect(str(path), isolation_level=None, timeout=BUSY_TIMEOUT_S)
    try:
        await conn
    except BaseException:
        await asyncio.to_thread(conn._thread.join, _THREAD_END_WAIT_S)
        raise
    try:
        await _use_wal(conn)
        for pragma in _PRAGMAS:
            await conn.execute(pragma)
    except BaseException:
        await conn.close()
        raise
    return conn


async def _use_wal(conn: aiosqlite.Connection) -> None:
    """``journal_mode=WAL``, waiting out another process that is switching the same file.

    The switch needs the file to itself, and while another connection is in the middle
    of its own, SQLite answers "database is locked" at once instead of waiting on the
    busy timeout: two processes opening a fresh database together would clash here.
    """
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + BUSY_TIMEOUT_S
    while True:
        try:
            await conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or loop.time() >= give_up_at:
                raise
        await asyncio.sleep(WAL_RETRY_S)


async def migrate(
    conn: aiosqlite.Connection, migrations: Sequence[Migration], *, path: Path, clock: Clock
) -> None:
    """Apply the migrations the database lacks; refuse one written by a newer batchveo.

    Another process may be setting up the same fresh database this very moment (``run``
    from cron, ``status`` from a shell): whether a migration is applied is decided
    inside its own ``BEGIN IMMEDIATE``, where no other writer can be, never from an
    earlier read.
    """
    applied = await _applied(conn)  # outside any transaction: the usual case writes nothing
    _refuse_unknown(applied, migrations, path)
    for m in migrations:
        if m.name in applied:
            continue
        # One transaction per migration: a crash leaves it fully applied or not at all.
        async with immediate(conn):
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL)"
            )
            applied = await _applied(conn)
            _refuse_unknown(applied, migrations, path)
            if m.name in applied:
                continue  # another process applied it since the first read
            # executescript would commit first; run the statements one by one instead.
            for stmt in split_sql(m.sql):
                await conn.execute(stmt)
            await conn.execute(
                "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)", (m.name, clock())
            )


async def _applied(conn: aiosqlite.Connection) -> set[str]:
    """The migrations a database has; none for a fresh file (no ``_migrations`` table yet)."""
    sql = "SELECT name FROM sqlite_master WHERE type='table' AND name='_migrations'"
    async with conn.execute(sql) as cur:
        if await cur.fetchone() is None:
            return set()
    return set(await applied_migrations(conn))


def _refuse_unknown(applied: set[str], migrations: Sequence[Migration], path: Path) -> None:
    unknown = applied - {m.name for m in migrations}
    if unknown:
        raise DatabaseUnusable(
            f"{path}: written by a newer batchveo (unknown migrations: "
            f"{', '.join(sorted(unknown))})"
        )


async def applied_migrations(conn: aiosqlite.Connection) -> list[str]:
    async with conn.execute("SELECT name FROM _migrations ORDER BY name") as cur:
        return [row[0] for row in await cur.fetchall()]


def split_sql(script: str) -> list[str]:
    """Split a migration into complete statements (a trigger body holds ';' too)."""
    statements: list[str] = []
    current = ""
    for piece in script.split(";"):
        current += piece + ";"
        if sqlite3.complete_statement(current):
            if current.strip(" \n;"):
                statements.append(current.strip())
            current = ""
    return statements
