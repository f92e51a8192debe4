"""Repricing: every job's cost estimate from the user's price file (``run --prices``).

A run with ``--prices`` reprices before its first claim, since budgets compare these
estimates. Reading a million jobs takes seconds, and a price depends on only a few things
of a job: its model, resolution, length, videos asked for and audio (its *price shape*,
``models.price_inputs``); a night has a handful of shapes. So the database remembers, for
every job up to a row (``prices_applied.through_rowid``, migration 010), the price of one
request of each shape those jobs hold (``price_shapes``, migration 014): a reprice prices
each remembered shape, rewrites only the jobs of the shapes whose price changed (one
statement), and reads in pages only the rows after that one; then it remembers every
shape at the new prices, through the last row. The same prices again, or new prices that
change nothing, rewrite nothing and read only the jobs loaded since.

What is remembered is always true of the rows: every job up to ``through_rowid`` holds
exactly what a reprice at its shape's price writes (one video's estimate, and that times
the videos it asks for, or returned). A load into a database priced through its last row
extends it over the jobs it adds (``note_load``) when they are so already (priced by the
table, at the shape's remembered price if it has one); a load that replaces jobs forgets
it all (``forget_prices``), and so does a reprice without ``prices_key``. Everything is
in one transaction: a crash leaves every estimate, and what is remembered, as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import aiosqlite

from batchveo.models import billed_params, price_inputs
from batchveo.store.db import Core
from batchveo.store.rows import decode

CostOf = Callable[[str, Mapping[str, Any]], float]
"""``cost_of(model, params)``: a request's estimate, every video it asks for. It depends only
on the model and the parameters ``models.price_inputs`` reads (it is
``models.estimate_params_cost_usd`` with a price table): what a shape is priced by."""
PAGE_ROWS = 10_000
"""Jobs read, priced and written back at a time."""
_PAGE_SQL = (
    "SELECT rowid, model, params, samples_requested, samples_returned, cost_usd,"
    " sample_cost_usd, output_s FROM jobs WHERE rowid > ? ORDER BY rowid LIMIT ?"
)
Shape = tuple[str, str, int, int, bool]
"""``(model, resolution, duration_s, samples, audio)``: what a request's price depends on."""
_SHAPE_COLUMNS = "model, resolution, duration_s, samples, audio"
_SHAPE_OF_ROW = (
    "jobs.model = s.model"
    " AND COALESCE(json_extract(jobs.params, '$.resolution'), '720p') = s.resolution"
    " AND COALESCE(jobs.output_s, json_extract(jobs.params, '$.durationSeconds'), 8)"
    " = s.duration_s"
    " AND jobs.samples_requested = s.samples"
    " AND (COALESCE(json_extract(jobs.params, '$.generateAudio'), 1) != 0) = s.audio"
)
"""A job row of shape ``s`` (its parameters as ``models.price_inputs`` reads them; the
videos it asks for are ``samples_requested``, ``sampleCount`` as stored; a scene chain's
hop lasts ``output_s``, its whole video, as ``models.billed_params`` prices it)."""
_REWRITE_SQL = (
    "UPDATE jobs SET sample_cost_usd = s.one_usd,"
    " cost_usd = s.one_usd * COALESCE(jobs.samples_returned, jobs.samples_requested)"
    f" FROM temp.repriced AS s WHERE jobs.rowid <= ? AND {_SHAPE_OF_ROW}"
    " AND (jobs.sample_cost_usd IS NOT s.one_usd OR jobs.cost_usd IS NOT"
    " s.one_usd * COALESCE(jobs.samples_returned, jobs.samples_requested))"
)
"""Every job up to a row whose shape's price changed, at its new price (as ``_priced``)."""


def shape_params(shape: Shape) -> dict[str, Any]:
    """Parameters of a request of ``shape``: what ``cost_of`` prices it by."""
    _, resolution, duration_s, samples, audio = shape
    return {
        "resolution": resolution,
        "durationSeconds": duration_s,
        "sampleCount": samples,
        "generateAudio": audio,
    }


@lru_cache(maxsize=4096)
def _shape_of(model: str, params: str, output_s: int | None) -> Shape:
    return (model, *price_inputs(billed_params(decode("params", params), output_s)))


def _priced(request_usd: float, asked: int, returned: int | None) -> tuple[float, float]:
    """``(cost, one video's)`` of a job at ``request_usd``: what a reprice writes."""
    one = request_usd / max(1, asked)
    return one * (asked if returned is None else returned), one


class Pricing(Core):
    """``reprice``: the stored estimates from a price file."""

    async def reprice(self, cost_of: CostOf, *, prices_key: str | None = None) -> int:
        """Recompute the jobs' cost estimates with ``cost_of``; how many jobs were read or
        rewritten.

        ``cost_of`` prices the job's request, every video it asks for; a job that returned
        fewer (partly filtered) costs what it returned, as everywhere. ``prices_key`` names
        the prices (canonical text of the price file's table), kept with what is
        remembered. None: every job is read, and nothing remembered.
        """

        @lru_cache(maxsize=4096)
        def price(shape: Shape) -> float:
            return cost_of(shape[0], shape_params(shape))

        async with self._tx() as db:
            through, shapes = (0, {}) if prices_key is None else await _remembered(db)
            rewritten = await _rewrite(db, through, shapes, price)
            last, read, seen = await _reprice_from(db, through, price)
            await forget_prices(db)
            if prices_key is not None:
                await _remember(db, prices_key, last, {s: price(s) for s in {*shapes, *seen}})
        self._marks.loosened()  # a job may be cheaper now: claims walk from the first row
        return read + rewritten


async def forget_prices(db: aiosqlite.Connection) -> None:
    """Every row is priced again by the next reprice (a load that replaced jobs calls it)."""
    await db.execute("DELETE FROM prices_applied")
    await db.execute("DELETE FROM price_shapes")


async def _remembered(db: aiosqlite.Connection) -> tuple[int, dict[Shape, float]]:
    """The last row priced as remembered (0: none), and the price of each shape up to it."""
    rows = list(await db.execute_fetchall("SELECT through_rowid FROM prices_applied"))
    if not rows:
        return 0, {}
    sql = f"SELECT {_SHAPE_COLUMNS}, request_usd FROM price_shapes"
    shapes = {(m, r, d, n, bool(a)): usd for m, r, d, n, a, usd in await db.execute_fetchall(sql)}
    return int(rows[0][0]), shapes


async def _remember(
    db: aiosqlite.Connection, prices_key: str, through: int, shapes: Mapping[Shape, float]
) -> None:
    await db.execute(
        "INSERT INTO prices_applied (one, prices, through_rowid) VALUES (1, ?, ?)",
        (prices_key, through),
    )
    await db.executemany(
        f"INSERT INTO price_shapes ({_SHAPE_COLUMNS}, request_usd) VALUES (?, ?, ?, ?, ?, ?)",
        [(*shape, usd) for shape, usd in shapes.items()],
    )


async def _rewrite(
    db: aiosqlite.Connection,
    through: int,
    shapes: Mapping[Shape, float],
    price: Callable[[Shape], float],
) -> int:
    """Reprice the jobs up to ``through`` of the shapes whose price changed; how many."""
    changed = [(*s, price(s) / max(1, s[3])) for s, usd in shapes.items() if price(s) != usd]
    if not changed:
        return 0
    await db.execute(
        f"CREATE TEMP TABLE repriced ({_SHAPE_COLUMNS}, one_usd, PRIMARY KEY ({_SHAPE_COLUMNS}))"
    )
    try:
        await db.executemany("INSERT INTO temp.repriced VALUES (?, ?, ?, ?, ?, ?)", changed)
        async with db.execute(_REWRITE_SQL, (through,)) as cur:
            return max(0, cur.rowcount)
    finally:
        await db.execute("DROP TABLE temp.repriced")


async def _reprice_from(
    db: aiosqlite.Connection, start: int, price: Callable[[Shape], float]
) -> tuple[int, int, set[Shape]]:
    """Reprice the rows after rowid ``start``: (the last rowid seen, rows read, their shapes)."""
    last, read, seen = start, 0, set[Shape]()
    while True:
        rows = list(await db.execute_fetchall(_PAGE_SQL, (last, PAGE_ROWS)))
        if not rows:
            return last, read, seen
        changed = []
        for rowid, model, params, asked, returned, cost_was, one_was, output_s in rows:
            shape = _shape_of(model, params, output_s)
            seen.add(shape)
            cost, one = _priced(price(shape), asked, returned)
            if cost != cost_was or one != one_was:
                changed.append((cost, one, rowid))
        await db.executemany("UPDATE jobs SET cost_usd=?, sample_cost_usd=? WHERE rowid=?", changed)
        last, read = rows[-1][0], read + len(rows)


async def note_load(
    db: aiosqlite.Connection, watermark: int, shapes: Mapping[Shape, float]
) -> None:
    """A load's new jobs (the rows after ``watermark``, of ``shapes``, each at the table's
    price of its request) become part of what is remembered, if they can: every row
    before them is (none, or all of them priced), and each of their rows holds what a
    reprice at its shape's price would write, the price remembered for its shape if any."""
    rows = list(await db.execute_fetchall("SELECT through_rowid FROM prices_applied"))
    through = int(rows[0][0]) if rows else 0
    if through != watermark or not shapes:
        return
    for shape, usd in shapes.items():
        asked = shape[3]
        if asked > 1 and (usd / asked) * asked != usd:
            return  # stored as the table's estimate, not as a reprice would write it
    _, known = await _remembered(db) if rows else (0, {})
    if any(known.get(s, usd) != usd for s, usd in shapes.items()):
        return  # a shape repriced otherwise: these rows are read by the next reprice
    top = next(iter(await db.execute_fetchall("SELECT max(rowid) FROM jobs")))[0]
    if rows:
        await db.execute("UPDATE prices_applied SET through_rowid = ?", (top,))
    else:
        await db.execute(
            "INSERT INTO prices_applied (one, prices, through_rowid) VALUES (1, '', ?)", (top,)
        )
    await db.executemany(
        f"INSERT OR IGNORE INTO price_shapes ({_SHAPE_COLUMNS}, request_usd)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [(*shape, usd) for shape, usd in shapes.items()],
    )
