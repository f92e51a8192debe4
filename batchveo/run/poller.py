"""The poller: advance each running operation to generated, done or failed, cheaply.

Each running job carries its own ``next_poll_at`` in the database, so a
restarted run picks up exactly where the last one was, and the poller sleeps
until the earliest one is due instead of sweeping every operation on a timer.
When each operation is polled is the run's ``PollPlan`` (``pollplan``: the fixed
schedule of the flags, or one learned from finished jobs, told of every job seen done
here); a finished operation is never polled again (its job has left ``running``).

The poller sleeps until the earliest poll is due, or until a job enters ``running``
(``RunContext.new_operation``); what each error means here is the poll column of
``errors``' reaction table. Each job is polled through its route's client (and, where
polls are paced, its route's pacer).

A poll whose answer carries the videos themselves (Vertex AI without a bucket:
``OperationStatus.inline_videos``) is the download: each video is saved as a download
is (its name, no clobbering, the fallback name; ``downloader.save_files``), and only
then is the job ``done``, in one transition with its files and sample counts. A crash
in between leaves it ``running``: the next run polls again and saves the same bytes
under the same names (a file with the very same bytes is this video). A video that
cannot be saved is asked for again with the next poll, a few times
(``DOWNLOAD_UNUSABLE_TRIES``); what the disk refuses stops the run, the job kept.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from batchveo.api.results import DownloadResult, OperationStatus
from batchveo.errors import (
    BatchveoError,
    NotFound,
    QuotaExhausted,
    RateLimited,
    Reaction,
    Stage,
    reaction,
)
from batchveo.run.context import Lane, RunContext, StopLevel
from batchveo.run.downloader import DOWNLOAD_UNUSABLE_TRIES, save_files
from batchveo.run.routed import sample_fields
from batchveo.states import ErrorKind, JobState
from batchveo.store import Job

S = JobState
_BATCH = 256
POLL_ERRORS_TO_FAIL = 5
"""Consecutive unexpected answers (or 404s past the grace) before an operation is given up."""


class Poller:
    """The one poll loop of a run, and what it remembers between polls."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self._sem = asyncio.Semaphore(ctx.config.poll_concurrency)
        self._errors: dict[str, int] = {}
        """Consecutive failed polls per job (in memory: a restart gives them a fresh start)."""
        self._unsaved: dict[str, int] = {}
        """Inline answers per job whose videos could not be saved (in memory, as above)."""

    async def run(self) -> None:
        """Poll due operations until the run ends (the runner decides when)."""
        ctx = self.ctx
        while not ctx.stop.ended():
            looked = ctx.new_operation.mark()
            due = await ctx.store.due_polls(ctx.now(), _BATCH)
            if due:
                await asyncio.gather(*(self._poll_guarded(job) for job in due))
                continue
            await ctx.new_operation.wait(looked, until_s=await ctx.store.next_poll_at())

    async def _poll_guarded(self, job: Job) -> None:
        ctx = self.ctx
        async with self._sem:
            if ctx.stop.ended():
                return
            if ctx.config.polls_count_against_rpm:
                async with ctx.lane_for(job).pacer.turn(ctx.stop.ended) as turn:
                    if not turn.granted:
                        return
                    turn.spend()
            await self.poll_one(job)

    async def poll_one(self, job: Job) -> None:
        ctx = self.ctx
        assert job.operation is not None
        lane = ctx.lane_for(job)
        now = ctx.now()
        ctx.stats.polls += 1
        try:
            status = await lane.client.poll(job.operation, job.model)
        except BatchveoError as e:
            await self._failed(job, lane, e, now)
            return
        self._errors.pop(job.id, None)

        if status.state == "running":
            await _reschedule(ctx, job, ctx.polls.next_poll_at(job, now))
        elif status.state == "done" and status.inline_videos:
            ctx.polls.finished(job, now)
            await self._save_inline(job, lane, status, now)
        elif status.state == "done":
            ctx.polls.finished(job, now)
            done = await ctx.store.transition(
                job.id,
                S.RUNNING,
                S.GENERATED,
                video_uris=list(status.video_uris),
                generated_at=now,
                polls=job.polls + 1,
                next_poll_at=None,
                detail=f"{len(status.video_uris)} video(s)",
                **sample_fields(status, len(status.video_uris)),
            )
            ctx.stats.generated += 1
            ctx.downloads.add(done)
            ctx.emit("generated", job=job.id, videos=len(status.video_uris))
        elif status.state == "filtered":
            reasons = "; ".join(status.filtered_reasons) or "no reason given"
            why = f"blocked by the safety filter (not charged): {reasons}"
            # None of its videos came back: a route that counts them (Vertex AI) records
            # so, and the job then costs nothing (``store.writes``), as it is billed.
            fields = sample_fields(status, 0)
            await _finish(ctx, job, S.FAILED, ErrorKind.FILTERED, why, **fields)
        else:
            why = f"operation failed: {status.error_message or 'no message'}"
            if status.error_code is not None:
                why = f"operation failed (code {status.error_code}): {status.error_message or ''}"
            await _finish(ctx, job, S.FAILED, ErrorKind.OPERATION_ERROR, why.strip())

    async def _save_inline(self, job: Job, lane: Lane, status: OperationStatus, now: float) -> None:
        """The poll's answer is the download: every video on disk, then ``done`` (see the
        module docstring). Nothing is written to the job before its files exist."""
        ctx = self.ctx
        videos = status.inline_videos

        async def save(i: int, dest: Path) -> DownloadResult:
            result: DownloadResult = await lane.client.save(videos[i], dest)
            return result

        try:
            files, posters, notes = await save_files(ctx, job, len(videos), save)
        except BatchveoError as e:
            await self._unsaved_answer(job, e, now)
            return
        self._unsaved.pop(job.id, None)
        detail = "; ".join([f"{len(files)} file(s), sent inline", *notes])
        await ctx.store.transition(
            job.id,
            S.RUNNING,
            S.DONE,
            files=files,
            posters=posters,
            generated_at=now,
            finished_at=ctx.now(),
            polls=job.polls + 1,
            next_poll_at=None,
            detail=detail,
            **sample_fields(status, len(files)),
        )
        ctx.stats.generated += 1
        ctx.stats.downloaded += 1
        ctx.emit("done", job=job.id, files=[f["path"] for f in files])

    async def _unsaved_answer(self, job: Job, e: BatchveoError, now: float) -> None:
        """Inline videos that could not be saved: the download column of the reaction
        table, the job still ``running`` (its next poll brings the videos again)."""
        ctx = self.ctx
        match reaction(Stage.DOWNLOAD, e):
            case Reaction.FAIL:  # neither its own name nor OUT/<id>.mp4 can be written
                self._unsaved.pop(job.id, None)
                await _finish(ctx, job, S.FAILED, ErrorKind.DOWNLOAD, str(e))
            case Reaction.HALT:  # the disk refuses: the job stays running for the next run
                ctx.stop.fatal(str(e), StopLevel.END, f"stopped: {e}")
            case Reaction.TRY_AGAIN | Reaction.QUOTA:
                tries = self._unsaved[job.id] = self._unsaved.get(job.id, 0) + 1
                if tries >= DOWNLOAD_UNUSABLE_TRIES:
                    self._unsaved.pop(job.id, None)
                    why = f"the videos sent inline could not be saved ({tries} tries): {e}"
                    await _finish(ctx, job, S.FAILED, ErrorKind.DOWNLOAD, why)
                else:
                    ctx.stats.note_error(f"{job.id}: saving inline videos: {e}")
                    await _reschedule(ctx, job, now + ctx.backoff_s(tries))
            case _:
                raise e

    async def _failed(self, job: Job, lane: Lane, e: BatchveoError, now: float) -> None:
        """A poll that raised: the poll column of the reaction table."""
        ctx = self.ctx
        match reaction(Stage.POLL, e):
            case Reaction.NOT_FOUND:
                assert isinstance(e, NotFound)
                await self._not_found(job, e, now)
            case Reaction.RATE_LIMITED:
                assert isinstance(e, RateLimited)
                pause_s = lane.pacer.on_rate_limited(e.retry_after_s)
                await _reschedule(ctx, job, now + max(pause_s, ctx.config.poll_interval_s))
            case Reaction.RETRY:
                ctx.stats.note_error(f"{job.id}: poll: {e}")
                await _reschedule(ctx, job, now + ctx.backoff_s(job.polls + 1))
            case Reaction.QUOTA:
                # Only submits count against the daily quota on Google; should a reseller
                # count polls too, the paid operation waits for the reset, it is not dropped.
                assert isinstance(e, QuotaExhausted)
                ctx.stats.note_error(f"{job.id}: poll: {e}")
                wait_s = max(e.retry_after_s or 0.0, ctx.backoff_s(job.polls + 1))
                await _reschedule(ctx, job, now + wait_s)
            case Reaction.HALT:
                # Every stage stops, whichever route said it: the account or model of a
                # paid operation refused on a poll is not worked around by going on.
                error = f"{lane.name}: {e}" if ctx.lanes.several else str(e)
                ctx.stop.fatal(error, StopLevel.END, f"stopped: {error}")
            case Reaction.COUNT:
                # An answer we did not expect (a 400 on a poll, a malformed name): retry
                # it with backoff, never crash the run over one operation; give up
                # eventually.
                errors = self._note_error(job.id)
                if errors >= POLL_ERRORS_TO_FAIL:
                    why = f"polling failed {errors} times: {e}"
                    await _finish(ctx, job, S.FAILED, ErrorKind.OPERATION_ERROR, why)
                else:
                    ctx.stats.note_error(f"{job.id}: poll: {e}")
                    await _reschedule(ctx, job, now + ctx.backoff_s(errors))
            case _:
                raise e

    async def _not_found(self, job: Job, e: NotFound, now: float) -> None:
        ctx = self.ctx
        age_s = now - (job.submitted_at or now)
        if age_s > ctx.config.retention_s:
            # The video is deleted, its operation with it: no poll can bring it back.
            await _finish(ctx, job, S.EXPIRED, ErrorKind.EXPIRED, _deleted(ctx, job, age_s, e))
            return
        misses = self._note_error(job.id)
        if age_s < ctx.config.operation_grace_s or misses < POLL_ERRORS_TO_FAIL:
            wait_s = max(ctx.config.poll_interval_s, ctx.backoff_s(misses))
            await _reschedule(ctx, job, now + wait_s)
        else:
            why = f"operation gone ({misses} polls answered 404): {e}"
            await _finish(ctx, job, S.FAILED, ErrorKind.OPERATION_LOST, why)

    def _note_error(self, job_id: str) -> int:
        n = self._errors[job_id] = self._errors.get(job_id, 0) + 1
        return n


def _deleted(ctx: RunContext, job: Job, age_s: float, e: NotFound) -> str:
    """Why an operation past the retention is expired: when it was sent, and the rule."""
    at = datetime.fromtimestamp(job.submitted_at or 0.0, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return (
        f"video deleted by the service: submitted {at} ({_span(age_s)} ago), longer ago"
        f" than the {_span(ctx.config.retention_s)} it keeps videos (retention): {e}"
    )


def _span(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.3g} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.3g} h"
    return f"{seconds / 60:.3g} min"


async def _reschedule(ctx: RunContext, job: Job, at: float) -> None:
    await ctx.store.update(job.id, S.RUNNING, next_poll_at=at, polls=job.polls + 1)


async def _finish(
    ctx: RunContext, job: Job, dst: JobState, kind: ErrorKind, why: str, **fields: Any
) -> None:
    ctx.polls.forget(job)
    await ctx.end_job(
        job, S.RUNNING, dst, kind, why, polls=job.polls + 1, next_poll_at=None, **fields
    )
