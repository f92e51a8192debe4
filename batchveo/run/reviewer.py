"""The review stage: a model watches every finished take and its verdict is kept.

A video is reviewed only once it is on disk and verified: its job is ``done``, and the
store made its review due in the same statement (``store.reviews``). The reviewer reads
the due reviews of the batches it reviews when it starts, then hears of every job that
becomes done (a store observer): no table is swept. Each review takes a turn of its own
pacer (``--review-rpm``, on the run clock) and one of ``--review-inflight`` workers, sends
the take's file, the job's prompt and the rubric (``ReviewAsk``) and writes the outcome in
one statement. Cut off by a kill, a review stays due and the next run asks it again.
A flagged verdict asks for a retake (the batch's ``retakes``): the store makes the job's
next take in the verdict's own transaction if the job has takes left and the budgets room
(``store.takes``); the new take is a pending job the submitters claim like any, and its
review comes when it is done.

What each error means here is the review column of ``errors``' reaction table
(``Reviewer._failed``). Nothing here changes a job's state or the run's exit code: a
video on disk and verified is done whatever its verdict, and an account or model that
refuses reviews stops the reviews only (``stopped``), never the downloads. The runner
asks ``busy()`` before it calls a run drained.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path

from batchveo.api.review import ReviewClient
from batchveo.clock import Alarms
from batchveo.errors import (
    BatchveoError,
    ConfigError,
    RateLimited,
    Reaction,
    Stage,
    VerdictUnusable,
    reaction,
)
from batchveo.observe.text import one_line
from batchveo.run.config import ReviewFlags
from batchveo.run.context import RunContext
from batchveo.run.pacing import Pacer
from batchveo.run.review_cost import estimate_review_usd, review_cost_usd
from batchveo.run.review_queue import ReviewQueue
from batchveo.states import JobState
from batchveo.store import OVER_BUDGET, Job, RetakeAsk, Review, ReviewStatus, Store, TransitionEvent
from batchveo.verdicts import ReviewAsk, ReviewSettings, Verdict

REVIEW_TRIES = 5
"""Tries of one review that met a 5xx, a reset or a timeout before it is recorded as a
review error (a 429 spends none: the pacer waits it out)."""
TEXT_KEPT = 500
"""Characters of the model's text kept with a review error."""
TOO_LARGE = "review skipped: too large"


def review_client_of(client: object) -> ReviewClient:
    """A route's client as a review client; ``ConfigError`` if it cannot review.

    The one place the route clients come in: both of ``api``'s clients review; the branch
    is for a client made for something else (a test's, say), told in one line."""
    if not isinstance(client, ReviewClient):
        raise ConfigError(f"reviews are not supported on this route ({type(client).__name__})")
    return client


class Reviewer:
    """The review stage of a run (or of ``batchveo review``): its queue, pacer, workers."""

    def __init__(
        self,
        store: Store,
        clock: Alarms,
        flags: ReviewFlags,
        stored: Mapping[str, ReviewSettings],
        client_for: Callable[[Job], ReviewClient],
        *,
        ended: Callable[[], bool],
        changed: Callable[[], None] = lambda: None,
        backoff_s: Callable[[int], float] = lambda attempt: min(300.0, 2.0**attempt),
        note_error: Callable[[str], None] = lambda message: None,
        budget_usd: float | None = None,
        emit: Callable[..., None] = lambda event, **details: None,
        watching: bool = False,
        retaken: Callable[[], None] = lambda: None,
    ) -> None:
        """``stored``: the batches' own settings (their manifests'); ``ended``: the run is
        over for every stage; ``changed`` is called whenever ``busy()`` may have turned
        false (the runner's drain check); ``budget_usd``: the run's ``--budget`` (a review
        is asked only if its estimate fits it and its batch's budget, a retake made only if
        its estimate does); ``retaken``: a flagged take's retake was made (pending now)."""
        self.store = store
        self.clock = clock
        self.flags = flags
        self._stored = dict(stored)
        self._settings: dict[str, ReviewSettings | None] = {}
        self._client_for = client_for
        self._ended = ended
        self._changed = changed
        self._backoff_s = backoff_s
        self._note_error = note_error
        self._budget_usd = budget_usd
        self._emit = emit
        self._watching = watching
        """A ``--watch`` run: a manifest dropped meanwhile may ask for its batch's reviews
        (a done job of a batch without settings makes them be read again)."""
        """The run's events (the JSON log): ``reviewed`` per take, ``reviews_stopped``."""
        self._retaken = retaken
        self.retakes = 0
        """Retakes this reviewer's flagged verdicts made."""
        self.over_budget = 0
        """Reviews left due because their estimate would pass a budget."""
        self.queue = ReviewQueue(clock)
        self.pacer = Pacer(flags.rpm, clock=clock)
        self.in_flight = 0
        self._tries: dict[str, int] = {}
        self.stopped: str | None = None
        """Why reviews stopped for this run (an account or model refusing them)."""
        self.recorded: dict[ReviewStatus, int] = {s: 0 for s in ReviewStatus}

    def settings_for(self, batch: str) -> ReviewSettings | None:
        """``batch``'s review settings; None if its videos are not reviewed."""
        if batch not in self._settings:
            self._settings[batch] = self.flags.settings_for(self._stored.get(batch))
        return self._settings[batch]

    async def _settings_of(self, batch: str) -> ReviewSettings | None:
        """``settings_for``; in a watching run, read again for a batch that had none."""
        settings = self.settings_for(batch)
        if settings is None and self._watching:
            self._stored = await self.store.review_settings()
            self._settings.clear()
            settings = self.settings_for(batch)
        return settings

    def reviewed_batches(self) -> list[str] | None:
        """The batches reviewed (None: every batch, ``--review``)."""
        return None if self.flags.review_all else sorted(self._stored)

    async def load_due(self, job_ids: list[str] | None = None) -> int:
        """Queue the due reviews in the database (of ``job_ids`` only, if given)."""
        due = await self.store.due_reviews(self.reviewed_batches())
        if job_ids is not None:
            wanted = set(job_ids)
            due = [i for i in due if i in wanted]
        for job_id in due:
            self.queue.add(job_id)
        return len(due)

    def observe(self, event: TransitionEvent) -> None:
        """A store observer: a job that became done is due for review (if its batch is)."""
        if event.to_state != JobState.DONE.value:
            return
        if self._watching or self.settings_for(event.batch) is not None:
            self.queue.add(event.job_id)

    def busy(self) -> bool:
        """Reviews are due or on their way, and will be asked in this run."""
        due = bool(len(self.queue) or self.in_flight)
        return due and self.stopped is None and not self._ended()

    def wake_all(self) -> None:
        """Every waiting worker looks at its stop condition again (the run is stopping)."""
        self.queue.wake_all()
        self.pacer.wake_all()

    def _done(self) -> bool:
        return self.stopped is not None or self._ended()

    async def worker(self) -> None:
        """One of the ``--review-inflight`` workers; it ends with the run or the reviews."""
        while (job_id := await self.queue.take(self._done)) is not None:
            self.in_flight += 1
            try:
                await self._review_one(job_id)
            finally:
                self.in_flight -= 1
                self._changed()

    async def _review_one(self, job_id: str) -> None:
        job = await self.store.get(job_id)
        settings = None if job is None else await self._settings_of(job.batch)
        if job is None or settings is None or job.state is not JobState.DONE:
            self.queue.forget(job_id)  # not a take to review (any more)
            return
        path = Path(job.files[0]["path"]) if job.files else None
        if path is None or not path.is_file():
            await self._record(job, settings, ReviewStatus.ERROR, error="no video on disk")
            return
        # A hop of a scene chain is its whole cut (output_s), longer than what it asked.
        video_s = float(job.output_s or job.params.get("durationSeconds", 8))
        if not await self.store.review_fits(
            job.batch, estimate_review_usd(settings, video_s), self._budget_usd
        ):
            self.over_budget += 1  # left due: a run with room for it asks it
            self.queue.forget(job_id)
            self._note_error(f"{job_id}: review left for later: over the budget")
            return
        async with self.pacer.turn(self._done) as turn:
            if not turn.granted:
                self.queue.again(job_id, self.clock())  # stopping: it stays due in the store
                return
            turn.spend()  # the request leaves right after this block
        ask = ReviewAsk(
            video_path=path, prompt=job.prompt, rubric=settings.rubric, model=settings.model,
            fps=settings.fps, media_resolution=settings.media_resolution,
        )  # fmt: skip
        try:
            verdict = await self._client_for(job).review(ask)
        except BatchveoError as e:
            await self._failed(job, settings, e)
            return
        self.pacer.on_success()
        passed = verdict.passes(settings.threshold)
        await self._record(
            job, settings, ReviewStatus.PASSED if passed else ReviewStatus.FLAGGED,
            verdict=verdict,
            retake=RetakeAsk(
                settings.retakes, estimate_review_usd(settings, video_s), self._budget_usd
            ),
        )  # fmt: skip

    async def _failed(self, job: Job, settings: ReviewSettings, e: BatchveoError) -> None:
        """A review that raised: the review column of the reaction table."""
        match reaction(Stage.REVIEW, e):
            case Reaction.RECORD:  # no verdict: kept as an error, the video stays done
                text = e.text if isinstance(e, VerdictUnusable) else ""
                error = f"{e}: {one_line(text, TEXT_KEPT)}" if text else str(e)
                await self._record(job, settings, ReviewStatus.ERROR, error=error)
            case Reaction.SKIP:
                await self._record(job, settings, ReviewStatus.SKIPPED, error=TOO_LARGE)
            case Reaction.STOP_REVIEWS:
                self.queue.again(job.id, self.clock())  # stays due: the next run asks it
                self.stop(f"reviews stopped: {e}")
            case Reaction.RATE_LIMITED:
                assert isinstance(e, RateLimited)
                pause_s = self.pacer.on_rate_limited(e.retry_after_s)
                self.queue.again(job.id, self.clock() + pause_s)
            case Reaction.RETRY:
                tries = self._tries[job.id] = self._tries.get(job.id, 0) + 1
                if tries >= REVIEW_TRIES:
                    why = f"review failed after {tries} tries: {e}"
                    await self._record(job, settings, ReviewStatus.ERROR, error=why)
                else:
                    self._note_error(f"{job.id}: review: {e}")
                    self.queue.again(job.id, self.clock() + self._backoff_s(tries))
            case _:
                raise e

    def stop(self, why: str) -> None:
        """No more reviews in this run; the rest of the run goes on, its exit code unchanged."""
        if self.stopped is None:
            self.stopped = why
            self._note_error(why)
            self._emit("reviews_stopped", reason=why)
        self.wake_all()
        self._changed()

    async def _record(
        self,
        job: Job,
        settings: ReviewSettings,
        status: ReviewStatus,
        *,
        verdict: Verdict | None = None,
        error: str | None = None,
        retake: RetakeAsk | None = None,
    ) -> None:
        """Write the outcome (a flagged one with ``retake`` may make the job's next take,
        in the same transaction: ``store.takes``) and tell it."""
        tokens_in = verdict.tokens_in if verdict else 0
        tokens_out = verdict.tokens_out if verdict else 0
        review = Review(
            job_id=job.id,
            batch=job.batch,
            status=status,
            score=verdict.score if verdict else None,
            matches_prompt=verdict.matches_prompt if verdict else None,
            defects=verdict.defects if verdict else (),
            summary=verdict.summary if verdict else None,
            error=error,
            model=settings.model,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost_usd=review_cost_usd(settings.model, tokens_in, tokens_out),
            reviewed_at=self.clock(),
        )
        recorded = await self.store.record_verdict(review, retake)
        if recorded.recorded:
            self.recorded[status] += 1
            made = recorded.retake
            self._emit(
                "reviewed", job=job.id, status=status.value, score=review.score,
                defects=len(review.defects), error=error, cost_usd=review.cost_usd,
                retake=made.note,
            )  # fmt: skip
            if made.job_id is not None:
                self.retakes += 1
                self._retaken()  # a pending job: the submitters look again
            elif made.note == OVER_BUDGET:
                self._note_error(f"{job.id}: flagged; {made.note}")
        if error is not None:
            self._note_error(f"{job.id}: {error}")
        self.queue.forget(job.id)
        self._tries.pop(job.id, None)


async def review_until_idle(reviewer: Reviewer) -> None:
    """``batchveo review``: the reviewer's workers until nothing is due (or reviews stop)."""
    idle = asyncio.Event()

    def changed() -> None:
        if not reviewer.busy():
            idle.set()
            reviewer.wake_all()

    reviewer._changed = changed
    ended = reviewer._ended
    reviewer._ended = lambda: idle.is_set() or ended()
    changed()
    workers = [asyncio.create_task(reviewer.worker()) for _ in range(reviewer.flags.in_flight)]
    try:
        await asyncio.gather(*workers)
    finally:
        for w in workers:
            w.cancel()


async def run_reviewer(ctx: RunContext, fixed: ReviewClient | None = None) -> Reviewer | None:
    """A run's review stage, with the reviews already due, if any batch is reviewed
    (``fixed``: every review's client; by default each route's own)."""
    flags, stored = ctx.config.review, await ctx.store.review_settings()
    watching = ctx.config.watch_dir is not None
    if not flags.review_all and not stored and not watching:
        return None
    if fixed is None and (flags.review_all or stored):
        for lane in ctx.lanes.all:
            review_client_of(lane.client)  # a route that cannot review: told before any send

    def client_for(job: Job) -> ReviewClient:
        return fixed if fixed is not None else review_client_of(ctx.lane_for(job).client)

    reviewer = Reviewer(
        ctx.store, ctx.clock, flags, stored, client_for, ended=ctx.stop.ended,
        changed=ctx.may_be_drained.fire, backoff_s=ctx.backoff_s,
        note_error=ctx.stats.note_error, budget_usd=ctx.config.budget_usd, emit=ctx.emit,
        watching=watching, retaken=ctx.new_work.fire,
    )  # fmt: skip
    ctx.stop.on_change(reviewer.wake_all)
    await reviewer.load_due()
    return reviewer
