"""Reviews in the store: due when a job is done, one verdict per take, read by index."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from batchveo.states import JobState
from batchveo.store import Review, ReviewStatus, Store
from batchveo.store.migrations import MIGRATIONS
from batchveo.store.reviews import EXPORT_SQL
from batchveo.verdicts import Defect, MediaResolution, ReviewSettings
from tests.helpers import make_spec
from tests.review_helpers import done_jobs

S = JobState


def verdict(job_id: str, status: ReviewStatus, score: float) -> Review:
    return Review(
        job_id, "b1", status, score, True, (Defect("00:05", "a sixth finger"),), "ok",
        model="gemini-3.5-flash", tokens_in=2400, tokens_out=80, cost_usd=0.0015,
        reviewed_at=5.0,
    )  # fmt: skip


async def test_a_job_is_due_for_review_once_done_and_its_verdict_is_recorded_once(
    store: Store, tmp_path: Path
) -> None:
    await done_jobs(store, tmp_path, {"a": "one", "b": "two"})
    await store.add_jobs([make_spec("c")])
    [c] = await store.claim_pending(1)
    await store.transition(c.id, S.SUBMITTING, S.FAILED, error_kind="bad_request", error="x")
    assert await store.due_reviews() == ["a", "b"]  # a failed job has no video to review
    assert await store.record_review(verdict("a", ReviewStatus.FLAGGED, 3.0))
    # The same take again (another process, a duplicate answer): the first verdict stays.
    assert not await store.record_review(verdict("a", ReviewStatus.PASSED, 9.0))
    a = await store.review_of("a")
    assert a is not None and (a.status, a.score) == (ReviewStatus.FLAGGED, 3.0)
    assert a.defects == (Defect("00:05", "a sixth finger"),) and a.matches_prompt is True
    assert await store.due_reviews(["b1"]) == ["b"]
    assert await store.review_counts() == {
        "b1": {"passed": 0, "flagged": 1, "error": 0, "skipped": 0, "cost_usd": 0.0015}
    }
    assert await store.flagged(10) == [("a", "b1", 3.0)]
    assert await store.reopen_reviews(["a", "b"]) == 1  # --force: b was due already
    assert await store.due_reviews() == ["a", "b"]
    assert (await store.review_of("a")).score is None  # type: ignore[union-attr]


async def test_videos_done_before_the_migration_are_due_after_it(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    before = MIGRATIONS[: [m.name for m in MIGRATIONS].index("012_reviews")]
    async with await Store.open(db, migrations=before):
        pass  # a database as a batchveo before reviews left it (today's code needs more)
    with sqlite3.connect(db) as conn:  # a video done then, and a job still pending
        conn.execute("INSERT INTO batches (name, created_at) VALUES ('b1', 0)")
        for job_id, state in (("old", "done"), ("waits", "pending")):
            conn.execute(
                "INSERT INTO jobs (id, batch, state, spec_hash, prompt, model, params, inputs,"
                " created_at, updated_at) VALUES (?, 'b1', ?, 'h', 'p', 'm', '{}', '{}', 0, 0)",
                (job_id, state),
            )
    async with await Store.open(db) as store:
        assert await store.due_reviews() == ["old"]


async def test_the_batches_review_settings_round_trip(store: Store) -> None:
    settings = ReviewSettings(
        model="gemini-3-flash-preview", rubric="r", threshold=6.5, retakes=2, fps=4,
        media_resolution=MediaResolution.LOW,
    )  # fmt: skip
    await store.set_review_settings({"b1": settings})
    await store.set_review_settings({"b1": settings, "b2": ReviewSettings()})  # latest wins
    assert await store.review_settings() == {"b1": settings, "b2": ReviewSettings()}


async def test_the_review_reads_go_down_their_indexes(store: Store, tmp_path: Path) -> None:
    await done_jobs(store, tmp_path, {"a": "one"})
    queries = {
        "due of batches": (
            "SELECT job_id FROM reviews INDEXED BY reviews_due WHERE status IS NULL"
            " AND batch IN (?) ORDER BY rowid",
            ["b1"],
            "SEARCH reviews USING INDEX reviews_due (batch=?)",
        ),
        "flagged": (
            "SELECT job_id, batch, score FROM reviews WHERE status = 'flagged'"
            " ORDER BY score, rowid LIMIT 5",
            [],
            "SEARCH reviews USING INDEX reviews_status (status=?)",
        ),
        "export's verdict": (
            f"SELECT id, {EXPORT_SQL['review_status']} FROM jobs ORDER BY rowid",
            [],
            "SEARCH reviews USING INDEX sqlite_autoindex_reviews_1 (job_id=?)",
        ),
    }
    with sqlite3.connect(store.path) as conn:
        for name, (sql, args, wanted) in queries.items():
            plan = [r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args)]
            assert any(p.startswith(wanted) for p in plan), (name, plan)
            assert not any(p.startswith("SCAN reviews") for p in plan), (name, plan)


async def test_what_reviews_cost_counts_against_the_budgets(store: Store, tmp_path: Path) -> None:
    await done_jobs(store, tmp_path, {"a": "one", "b": "two"})
    await store.add_jobs([make_spec(f"p{i}") for i in range(5)])
    await store.reprice(lambda model, params: 0.1)  # $0.20 done, five pending at $0.10
    assert await store.claimable_pending(budget_usd=1.0) == (5, 0)
    paid = Review("a", "b1", ReviewStatus.PASSED, 9.0, True, (), "ok", cost_usd=0.4)
    assert await store.record_review(paid)
    assert (await store.costs())["b1"]["committed"] == 0.6
    assert (await store.costs())["b1"]["spent"] == 0.6
    assert await store.claimable_pending(budget_usd=1.0) == (5, 0)  # $0.40 left
    assert await store.review_fits("b1", 0.4, 1.0)
    # Reviewed again (--force): paid twice, counted twice; the new verdict replaces the old.
    await store.reopen_reviews(["a"])
    assert await store.record_review(paid)
    assert await store.claimable_pending(budget_usd=1.0) == (0, 5)  # nothing left
    assert not await store.review_fits("b1", 0.01, 1.0)
    assert await store.review_fits("b1", 5.0, None)  # no budget at all
