"""The review stage: every done video gets a verdict, and nothing about it changes the run.

The videos are made by the simulator over real sockets; the reviews are answered by an
in-process client (``FakeReviews``: the route clients' ``review`` is r16api's, wired at
merge), through the run's own reviewer, pacer and drain check.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from batchveo.api import VeoClient, resolve_provider
from batchveo.errors import (
    AccountError,
    RateLimited,
    TooLargeToReview,
    Transient,
    VerdictUnusable,
)
from batchveo.exitcodes import ExitCode
from batchveo.run.config import ReviewFlags
from batchveo.run.context import Observer
from batchveo.run.reviewer import REVIEW_TRIES, Reviewer, review_until_idle
from batchveo.run.runner import Runner, RunResult
from batchveo.states import JobState
from batchveo.store import ReviewStatus, Store
from batchveo.verdicts import ReviewSettings
from tests.helpers import FakeClock, make_spec, wait_until
from tests.pipeline_helpers import KEY, fast_config, fast_sim, run_batch
from tests.review_helpers import FakeReviews, done_jobs

S = JobState
RUBRIC = "No extra limbs."
REVIEWED = {"b1": ReviewSettings(rubric=RUBRIC, threshold=7, fps=4)}


async def reviewed_run(
    store: Store,
    tmp_path: Path,
    prompts: dict[str, str],
    reviews: FakeReviews,
    observer: Observer | None = None,
    **kw: object,
) -> tuple[RunResult, dict[str, ReviewStatus | None]]:
    await store.set_review_settings(REVIEWED)
    specs = [make_spec(job_id, prompt) for job_id, prompt in prompts.items()]
    config = fast_config(tmp_path / "v", review=ReviewFlags(rpm=0, **kw))  # type: ignore[arg-type]
    async with fast_sim() as sim:
        result = await run_batch(
            store, sim, config, specs, review_client=reviews, observer=observer
        )
    # Every video is done, whatever its review.
    assert {k: n for k, n in result.states.items() if n} == {"done": len(prompts)}
    statuses = {r.job_id: r.status for r in await store.reviews_of()}
    return result, statuses


async def test_done_videos_get_verdicts_and_a_bad_one_is_flagged(
    store: Store, tmp_path: Path
) -> None:
    reviews = FakeReviews()
    events: list[tuple[str, dict[str, object]]] = []
    result, statuses = await reviewed_run(
        store, tmp_path, {"good": "a calm sea [review=9]", "bad": "a hand [review=3]"}, reviews,
        observer=lambda name, details: events.append((name, details)),
    )  # fmt: skip
    assert result.exit_code == ExitCode.OK  # a flagged take is still a done video
    assert result.summary() == "2 done; reviews: 1 passed, 1 flagged"
    told = {d["job"]: (d["status"], d["score"]) for name, d in events if name == "reviewed"}
    assert told == {"good": ("passed", 9.0), "bad": ("flagged", 3.0)}  # the JSON log's lines
    assert statuses == {"good": ReviewStatus.PASSED, "bad": ReviewStatus.FLAGGED}
    bad = await store.review_of("bad")
    assert bad is not None and bad.score == 3.0 and bad.summary == "scored 3"
    assert [(d.at, d.issue) for d in bad.defects] == [("00:05", "an extra finger")]
    assert (bad.tokens_in, bad.tokens_out, bad.model) == (1000, 50, "gemini-3.5-flash")
    assert bad.cost_usd > 0
    # The question quotes the prompt verbatim, with the batch's rubric and frame rate, and
    # the file sent is the verified one on disk.
    ask = next(a for a in reviews.asks if a.prompt == "a hand [review=3]")
    job = await store.get("bad")
    assert job is not None and str(ask.video_path) == job.files[0]["path"]
    assert (ask.rubric, ask.fps) == (RUBRIC, 4)
    assert sorted(reviews.prompts()) == ["a calm sea [review=9]", "a hand [review=3]"]


async def test_an_unusable_verdict_is_a_review_error_with_the_text_and_too_large_is_skipped(
    store: Store, tmp_path: Path
) -> None:
    reviews = FakeReviews(
        {
            "junk": lambda: VerdictUnusable("no verdict", text="I cannot rate this video."),
            "huge": lambda: TooLargeToReview("23 MB is over the inline budget"),
        }
    )
    result, statuses = await reviewed_run(
        store, tmp_path, {"junk": "x [review=junk]", "huge": "y [review=huge]"}, reviews
    )
    assert result.exit_code == ExitCode.OK
    assert statuses == {"junk": ReviewStatus.ERROR, "huge": ReviewStatus.SKIPPED}
    junk, huge = await store.review_of("junk"), await store.review_of("huge")
    assert junk is not None and junk.error == "no verdict: I cannot rate this video."
    assert huge is not None and huge.error == "review skipped: too large"


async def test_an_account_error_on_review_stops_reviews_not_downloads(
    store: Store, tmp_path: Path
) -> None:
    reviews = FakeReviews({"denied": lambda: AccountError("403 the key cannot use Gemini")})
    prompts = {f"j{i}": f"take {i} [review=denied]" for i in range(4)}
    events: list[tuple[str, dict[str, object]]] = []
    result, statuses = await reviewed_run(
        store, tmp_path, prompts, reviews, in_flight=1,
        observer=lambda name, details: events.append((name, details)),
    )  # fmt: skip
    assert ("reviews_stopped", {"reason": "reviews stopped: 403 the key cannot use Gemini"}) in (
        events
    )
    assert result.exit_code == ExitCode.OK  # not 4: the videos are all done
    assert result.summary() == (
        "4 done; reviews: none (reviews stopped: 403 the key cannot use Gemini)"
    )
    assert len(reviews.asks) == 1  # stopped at the first refusal
    assert statuses == {f"j{i}": None for i in range(4)}  # all still due for the next run
    assert set(await store.due_reviews(["b1"])) == set(prompts)


async def test_a_batch_without_review_settings_is_not_reviewed(
    store: Store, tmp_path: Path
) -> None:
    reviews = FakeReviews()
    specs = [make_spec("other", "not reviewed", batch="b2")]
    await store.set_review_settings(REVIEWED)
    async with fast_sim() as sim:
        config = fast_config(tmp_path / "v", review=ReviewFlags(rpm=0))
        result = await run_batch(store, sim, config, specs, review_client=reviews)
    assert result.exit_code == ExitCode.OK and reviews.asks == []
    # --review reviews every batch, the flags over the defaults.
    config = fast_config(tmp_path / "v", review=ReviewFlags(review_all=True, rpm=0, fps=2))
    async with fast_sim() as sim:
        result = await run_batch(store, sim, config, review_client=reviews)
    assert [a.fps for a in reviews.asks] == [2]
    assert (await store.review_of("other")).status is ReviewStatus.PASSED  # type: ignore[union-attr]


async def test_a_429_pauses_the_reviews_on_the_run_clock(store: Store, tmp_path: Path) -> None:
    await done_jobs(store, tmp_path, {"a": "a [review=slow]", "b": "b [review=8]"})
    clock = FakeClock()
    answers: list[RateLimited | None] = [RateLimited("429 slow down", retry_after_s=30.0)]
    reviews = FakeReviews({"slow": lambda: answers.pop() if answers else None}, clock=clock)
    flags = ReviewFlags(rpm=0, in_flight=1)
    reviewer = Reviewer(store, clock, flags, REVIEWED, lambda job: reviews, ended=lambda: False)
    assert await reviewer.load_due() == 2
    task = asyncio.create_task(review_until_idle(reviewer))
    # a is answered 429; b waits for the pacer's turn. The store's reads run on its own
    # thread: a count of loop turns is no bound on them on a busy machine.
    await wait_until(lambda: clock.next_alarm_s() is not None, 10, what="the pacer's alarm")
    assert clock.next_alarm_s() == 1030.0
    for _ in range(20):
        await asyncio.sleep(0)
    assert reviews.asked_at == [1000.0]  # nothing is sent during the pause
    clock.advance(30.0)
    await asyncio.wait_for(task, 5)
    assert reviews.asked_at == [1000.0, 1030.0, 1030.0]  # b, then a again: no try spent
    statuses = {r.job_id: r.status for r in await store.reviews_of()}
    assert statuses == {"a": ReviewStatus.PASSED, "b": ReviewStatus.PASSED}


async def test_a_review_cut_off_by_a_kill_is_asked_again_and_recorded_once(
    tmp_path: Path,
) -> None:
    db = tmp_path / "jobs.db"
    store = await Store.open(db)
    await done_jobs(store, tmp_path, {"a": "a take [review=8]"})
    await store.set_review_settings(REVIEWED)
    clock = FakeClock()
    first = FakeReviews(clock=clock)
    first.hold = asyncio.Event()  # never set: the answer never comes before the kill
    flags = ReviewFlags(rpm=0)
    reviewer = Reviewer(store, clock, flags, REVIEWED, lambda job: first, ended=lambda: False)
    await reviewer.load_due()
    task = asyncio.create_task(review_until_idle(reviewer))
    await asyncio.wait_for(first.sent.wait(), 5)
    task.cancel()  # killed mid-review: the verdict never written
    await asyncio.gather(task, return_exceptions=True)
    await store.close()

    store = await Store.open(db)
    try:
        assert await store.due_reviews(["b1"]) == ["a"]
        second = FakeReviews(clock=clock)
        stored = await store.review_settings()
        reviewer = Reviewer(store, clock, flags, stored, lambda job: second, ended=lambda: False)
        assert await reviewer.load_due() == 1
        await asyncio.wait_for(review_until_idle(reviewer), 5)
        assert second.prompts() == ["a take [review=8]"]
        (review,) = await store.reviews_of()
        assert review.status is ReviewStatus.PASSED and review.score == 8.0
        # A third run finds nothing due: recorded once, never asked again.
        assert await store.due_reviews(["b1"]) == []
    finally:
        await store.close()


async def test_run_waits_for_due_reviews_of_videos_done_in_an_earlier_run(
    store: Store, tmp_path: Path
) -> None:
    await done_jobs(store, tmp_path, {"old": "made last night [review=4]"})
    await store.set_review_settings(REVIEWED)
    reviews = FakeReviews()
    async with fast_sim() as sim:
        config = replace(fast_config(tmp_path / "v"), review=ReviewFlags(rpm=0))
        result = await run_batch(store, sim, config, review_client=reviews)
    assert result.exit_code == ExitCode.OK
    assert (await store.review_of("old")).status is ReviewStatus.FLAGGED  # type: ignore[union-attr]


async def test_a_review_that_would_pass_the_budget_is_left_due(
    store: Store, tmp_path: Path
) -> None:
    await done_jobs(store, tmp_path, {"a": "a take [review=8]"})
    await store.reprice(lambda model, params: 1.0)  # the video: $1.00 of a $1.00 budget
    reviews = FakeReviews()
    flags = ReviewFlags(rpm=0)
    reviewer = Reviewer(
        store, FakeClock(), flags, REVIEWED, lambda job: reviews, ended=lambda: False,
        budget_usd=1.0,
    )  # fmt: skip
    await reviewer.load_due()
    await asyncio.wait_for(review_until_idle(reviewer), 5)
    assert reviews.asks == [] and reviewer.over_budget == 1
    assert await store.due_reviews() == ["a"]  # asked by a run with room for it


async def test_a_reviewing_run_reads_nothing_in_proportion_to_the_tables(
    store: Store, tmp_path: Path
) -> None:
    """Every statement of a run that reviews finds its rows by an index or reads a few
    lines (the totals, the settings, the review costs): no scan of jobs, events or reviews."""
    await done_jobs(store, tmp_path, {f"old{i}": f"last night {i} [review=8]" for i in range(3)})
    await store.set_review_settings(REVIEWED)
    await store.add_jobs([make_spec(f"new{i}", f"tonight {i} [review=4]") for i in range(3)])
    seen: list[str] = []
    await store._db.set_trace_callback(seen.append)
    try:
        config = fast_config(tmp_path / "v", budget_usd=100.0, review=ReviewFlags(rpm=0))
        async with fast_sim() as sim:
            result = await run_batch(store, sim, config, review_client=FakeReviews())
    finally:
        await store._db.set_trace_callback(None)
    assert result.reviews == {"passed": 3, "flagged": 3}
    statements = {q.strip() for q in seen if q.lstrip()[:6].upper() in ("SELECT", "UPDATE")}
    assert any("reviews" in q for q in statements)
    with sqlite3.connect(store.path) as conn:
        for sql in statements:
            plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
            scans = [p for p in plan if p.startswith(("SCAN jobs", "SCAN events", "SCAN reviews"))]
            assert not scans, (sql, plan)


async def test_a_watching_run_reviews_a_batch_whose_manifest_came_after_its_start(
    store: Store, tmp_path: Path
) -> None:
    clock = FakeClock()
    reviews = FakeReviews(clock=clock)
    reviewer = Reviewer(
        store, clock, ReviewFlags(rpm=0), {}, lambda job: reviews, ended=lambda: False,
        watching=True,
    )  # fmt: skip
    store.observers.append(reviewer.observe)
    assert await reviewer.load_due() == 0
    await store.set_review_settings(REVIEWED)  # a manifest dropped in the folder
    await done_jobs(store, tmp_path, {"late": "dropped at night [review=8]"})
    await asyncio.wait_for(review_until_idle(reviewer), 5)
    assert reviews.prompts() == ["dropped at night [review=8]"]
    assert (await store.review_of("late")).status is ReviewStatus.PASSED  # type: ignore[union-attr]


async def test_a_run_stopped_mid_review_leaves_it_due_and_the_next_run_records_it_once(
    store: Store, tmp_path: Path
) -> None:
    await store.set_review_settings(REVIEWED)
    await store.add_jobs([make_spec("a", "a take [review=8]")])
    stuck = FakeReviews()
    stuck.hold = asyncio.Event()  # the answer never comes
    config = fast_config(tmp_path / "v", review=ReviewFlags(rpm=0))
    async with fast_sim() as sim:
        async with VeoClient(resolve_provider("gptproto", sim.url), KEY) as client:
            runner = Runner(store, client, config, review_client=stuck)
            night = asyncio.create_task(runner.run())
            await asyncio.wait_for(stuck.sent.wait(), 30)
            assert not night.done()  # a due review keeps the run from draining
            runner.request_stop()
            runner.request_stop()  # a second signal: everything stops at once
            first = await asyncio.wait_for(night, 30)
        assert first.exit_code == ExitCode.OK and first.states["done"] == 1
        assert await store.due_reviews() == ["a"]
        again = FakeReviews()
        second = await run_batch(store, sim, config, review_client=again)
    assert second.reviews == {"passed": 1} and again.prompts() == ["a take [review=8]"]
    assert [r.status for r in await store.reviews_of()] == [ReviewStatus.PASSED]


async def settled(store: Store, state: Callable[[], object]) -> None:
    """Until the reviewer rests: ``state`` the same across two rounds of loop turns, each
    ending with a trip through the store's lock (a write on the database's thread takes
    more loop turns than any fixed count under a busy machine)."""
    seen: object = None
    for _ in range(200):
        for _ in range(20):
            await asyncio.sleep(0)
        await store.due_reviews()
        now = state()
        if now == seen:
            return
        seen = now


async def test_5xx_on_review_are_retried_after_a_backoff_then_recorded_as_an_error(
    store: Store, tmp_path: Path
) -> None:
    await done_jobs(store, tmp_path, {"flaky": "f [review=flaky]", "down": "d [review=down]"})
    clock = FakeClock()
    flaky: list[Transient | None] = [Transient("503 overloaded"), Transient("reset")]
    reviews = FakeReviews(
        {
            "flaky": lambda: flaky.pop() if flaky else None,
            "down": lambda: Transient("500 internal"),
        },
        clock=clock,
    )
    reviewer = Reviewer(
        store, clock, ReviewFlags(rpm=0), REVIEWED, lambda job: reviews, ended=lambda: False,
        backoff_s=lambda attempt: 10.0 * attempt,
    )  # fmt: skip
    await reviewer.load_due()
    task = asyncio.create_task(review_until_idle(reviewer))
    while not task.done():
        await settled(store, lambda: (len(reviews.asks), clock.next_alarm_s()))
        if not task.done() and clock.next_alarm_s() is not None:
            clock.advance_to_next_alarm()
    await task
    asked = [(a.prompt[:1], t) for a, t in zip(reviews.asks, reviews.asked_at, strict=True)]
    assert [t for p, t in asked if p == "f"] == [1000.0, 1010.0, 1030.0]  # 10 s, then 20 s
    assert len([p for p, _ in asked if p == "d"]) == REVIEW_TRIES
    down, ok = await store.review_of("down"), await store.review_of("flaky")
    assert down is not None and down.status is ReviewStatus.ERROR
    assert down.error == f"review failed after {REVIEW_TRIES} tries: 500 internal"
    assert ok is not None and ok.status is ReviewStatus.PASSED
