"""A load's videos against every job's: no video where another job needs a folder.

The check of ``manifest.output_paths`` (``output: x`` makes ``x.mp4``, ``output:
"x.mp4/{id}"`` needs a folder ``x.mp4``: a file system holds one or the other), run at the
end of a load, inside its transaction, on the job table itself: the load's new rows are in
it by then, so a load of a million jobs keeps none of them in memory for this. Two passes
over the jobs with an ``output``: the folders their videos need (few: a batch shares them),
then whether any video's path is one of them. Only then, the rare case, are the jobs read
whole and walked in order, to name the second of each two that clash (a job already stored
is never the one reported).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from typing import NamedTuple

import aiosqlite

from batchveo.errors import Problem

_WITH_OUTPUT = "SELECT id, output_name, source, rowid FROM jobs WHERE output_name IS NOT NULL"
_WITHOUT_OUTPUT = "SELECT id, output_name, source, rowid FROM jobs WHERE output_name IS NULL"
_FETCH_ROWS = 2000


class _Row(NamedTuple):
    id: str
    output_name: str | None
    source: str
    rowid: int


async def _rows(db: aiosqlite.Connection, sql: str) -> AsyncIterator[_Row]:
    async with db.execute(sql) as cur:
        while batch := await cur.fetchmany(_FETCH_ROWS):
            for i, o, s, r in batch:
                yield _Row(str(i), o, s or "", int(r))


async def load_output_clashes(
    db: aiosqlite.Connection, watermark: int, replaced: Collection[str]
) -> list[Problem]:
    """The problems of this load's jobs (rowid above ``watermark``, or ``replaced``) whose
    video would stand where another job needs a folder, or the other way round."""
    from batchveo.manifest import OutputTree, output_clashes

    tree = OutputTree()
    folders: set[str] = set()
    async for row in _rows(db, _WITH_OUTPUT):
        parts = tree.parts(row.id, row.output_name)
        folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
    if not folders:  # without a folder, no video can stand where one must be
        return []
    plain = any("/" not in f and f.endswith(".mp4") for f in folders)
    hit = False
    async for row in _rows(db, _WITH_OUTPUT):
        if "/".join(tree.parts(row.id, row.output_name)) in folders:
            hit = True
            break
    if not hit and plain:
        async for row in _rows(db, _WITHOUT_OUTPUT):
            if tree.parts(row.id, None)[0] in folders:
                hit = True
                break
    if not hit:
        return []
    rows = [r async for r in _rows(db, _WITH_OUTPUT)]
    if plain:
        rows += [r async for r in _rows(db, _WITHOUT_OUTPUT)]
    rows.sort(key=lambda r: r.rowid)

    def mine(r: _Row) -> bool:
        return r.rowid > watermark or r.id in replaced

    stored = [(r.id, r.output_name, r.source) for r in rows if not mine(r)]
    new = [r for r in rows if mine(r) and r.id not in replaced]
    new += [r for r in rows if r.id in replaced]  # new jobs first, then the replaced ones
    return output_clashes(stored, new)
