"""The running totals (migration 007): what ``status`` reads instead of every job.

They must always say what counting the jobs says, whatever moved them (a load, a replace,
a reroute, claims, grouped transitions, partial results, a retry, a cancel, a reprice),
and the queries ``status`` runs must never scan the job table.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from batchveo.observe.summary import status_data
from batchveo.routes import Route
from batchveo.states import JobState
from batchveo.store import Store
from batchveo.store.migrations import MIGRATIONS
from batchveo.store.totals import RECOUNT_SQL
from tests.helpers import make_spec

S = JobState
GA = "veo-3.1-generate-001"
VERTEX = Route("vertex", "proj", "us-central1", "gs://b/o/")
TRIPLE = {"durationSeconds": 8, "resolution": "720p", "sampleCount": 3}


def lines(db: Path) -> list[tuple[Any, ...]]:
    """The totals' lines with jobs, and the same lines counted from the jobs themselves."""
    with sqlite3.connect(db) as conn:
        kept = conn.execute("SELECT * FROM totals WHERE jobs > 0 ORDER BY 1, 2, 3").fetchall()
        conn.execute("CREATE TEMP TABLE recount AS SELECT * FROM totals WHERE 0")
        conn.execute(RECOUNT_SQL.replace("INTO totals", "INTO temp.recount"))
        counted = conn.execute("SELECT * FROM recount ORDER BY 1, 2, 3").fetchall()
    return [kept, counted]


def assert_agree(db: Path) -> None:
    kept, counted = lines(db)
    assert kept == counted  # cost in micro-dollars too: integer sums, exact


async def test_the_totals_follow_every_write_a_night_makes(store: Store) -> None:
    await store.add_jobs(
        [make_spec(f"g{i}") for i in range(6)]
        + [make_spec(f"v{i}", model=GA, params=TRIPLE, route=VERTEX) for i in range(4)]
        + [make_spec("other", batch="b2")]
    )
    assert_agree(store.path)
    # A reload that replaces one job and reroutes another, and cancels.
    await store.add_jobs([make_spec("g0", "a new prompt")], replace=True)
    await store.add_jobs([make_spec("g1", route=Route("gemini"))])
    await store.cancel(["g5"])
    assert_agree(store.path)
    # Claims, then transitions at the same moment (one grouped statement), with partial
    # and filtered Vertex answers that change the jobs' costs.
    claimed = await store.claim_pending(8)
    await asyncio.gather(
        *(
            store.transition(j.id, S.SUBMITTING, S.RUNNING, operation=f"op-{j.id}")
            for j in claimed
            if j.id != "g0"
        )
    )
    await asyncio.gather(
        store.transition("v0", S.RUNNING, S.DONE, samples_returned=1, samples_filtered=2),
        store.transition(
            "v1", S.RUNNING, S.GENERATED, video_uris=["gs://b/o/1"], samples_returned=3
        ),
        store.transition("v2", S.RUNNING, S.FAILED, error_kind="filtered", samples_returned=0),
        store.transition("g0", S.SUBMITTING, S.UNCERTAIN, error_kind="submit_outcome_unknown"),
        store.transition("g1", S.RUNNING, S.DONE),
    )
    assert_agree(store.path)
    # The user's word: retry (samples reset), and a reprice of every job.
    assert set(await store.requeue([S.FAILED, S.UNCERTAIN])) == {"v2", "g0"}
    await store.reprice(lambda model, params: 2.0)
    assert_agree(store.path)

    data = await status_data(store)
    assert data["total"] == 11
    assert data["states"]["done"] == 2 and data["states"]["pending"] == 4
    assert data["batches"]["b2"]["total"] == 1
    main = data["batches"]["b1"]
    assert main["samples"] == {
        "jobs": 2,
        "requested": 6,
        "returned": 4,
        "filtered": 2,
        "partial": 1,
    }
    vertex = [r for r in data["routes"] if r["provider"] == "vertex"]
    assert [r["total"] for r in vertex] == [4]


async def test_a_database_of_the_previous_schema_gets_its_totals(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    async with await Store.open(db, migrations=MIGRATIONS[:6]):
        pass
    with sqlite3.connect(db) as conn:  # what the previous batchveo wrote
        conn.execute("INSERT INTO batches (name, created_at) VALUES ('night', 0)")
        conn.executemany(
            "INSERT INTO jobs (id, batch, state, spec_hash, prompt, model, params, inputs,"
            " cost_usd, provider, samples_requested, samples_returned, created_at, updated_at)"
            " VALUES (?, 'night', ?, 'h', 'p', 'm', '{}', '{}', 3.2, ?, ?, ?, 0, 0)",
            [
                ("a", "pending", None, 1, None),
                ("b", "pending", "vertex", 2, None),
                ("c", "done", "vertex", 2, 1),
                ("d", "cancelled", None, 1, None),
            ],
        )
    async with await Store.open(db) as store:
        assert "007_totals" in await store.applied_migrations()
        assert await store.counts() == {"night": {"cancelled": 1, "done": 1, "pending": 2}}
        assert await store.sample_counts() == {
            "night": {"jobs": 1, "requested": 2, "returned": 1, "filtered": 0, "partial": 1}
        }
        assert_agree(db)


def plans(conn: sqlite3.Connection, sql: str) -> list[str]:
    return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]


async def test_status_never_reads_every_job(store: Store) -> None:
    """Each query ``status`` runs reads the totals or finds its few jobs by an index."""
    await store.add_jobs([make_spec(f"j{i}") for i in range(20)] + [make_spec("x", batch="b")])
    seen: list[str] = []
    await store._db.set_trace_callback(seen.append)
    try:
        await status_data(store)
    finally:
        await store._db.set_trace_callback(None)
    queries = [q for q in seen if q.lstrip().upper().startswith("SELECT")]
    assert len(queries) >= 6
    with sqlite3.connect(store.path) as conn:
        for sql in queries:
            plan = plans(conn, sql)
            assert not [p for p in plan if p.startswith("SCAN jobs")], (sql, plan)
