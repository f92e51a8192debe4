"""The poller: advance each running operation to done or failed, cheaply.

Each running job carries its own ``next_poll_at`` in the database, so a
restarted run picks up exactly where the last one was, and the poller sleeps
until the earliest one is due instead of sweeping every operation on a timer.
Long generations are polled less and less often; a finished operation is
never polled again (its job has left ``running``).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from batchveo.errors import (
    ApiError,
    NotFound,
    QuotaExhausted,
    RateLimited,
    RetryLater,
    StopRun,
)
from batchveo.run.context import RunContext, wait_event
from batchveo.states import ErrorKind, JobState
from batchveo.store import Job

S = JobState
_BATCH = 256
_IDLE_CHECK_S = 5.0
POLL_ERRORS_TO_FAIL = 5
"""Consecutive unexpected answers (or 404s past the grace) before an operation is given up."""


def poll_interval_s(ctx: RunContext, age_s: float) -> float:
    """The base interval for the first two minutes, then growing towards the cap."""
    c = ctx.config
    if age_s < 120:
        base = c.poll_interval_s
    else:
        base = min(c.poll_max_interval_s, c.poll_interval_s * (1 + (age_s - 120) / 120))
    base = max(base, c.poll_interval_s)
    return base * (1 + c.poll_jitter * (2 * ctx.rng.random() - 1))


async def poller(ctx: RunContext) -> None:
    """Poll due operations until none is left running (or the run stops)."""
    sem = asyncio.Semaphore(ctx.config.poll_concurrency)
    while not ctx.stop_all.is_set():
        due = await ctx.store.due_polls(ctx.now(), _BATCH)
        if due:
            await asyncio.gather(*(_poll_guarded(ctx, job, sem) for job in due))
            continue
        next_at = await ctx.store.next_poll_at()
        if next_at is None:
            if not ctx.still_watching() and ctx.pipeline_idle():
                return
            await wait_event(ctx.wake_poller, _IDLE_CHECK_S)
            continue
        await wait_event(ctx.wake_poller, min(_IDLE_CHECK_S, next_at - ctx.now()))


async def _poll_guarded(ctx: RunContext, job: Job, sem: asyncio.Semaphore) -> None:
    async with sem:
        if ctx.stop_all.is_set():
            return
        if ctx.config.polls_count_against_rpm:
            await ctx.pacer.acquire()
        await poll_one(ctx, job)


async def poll_one(ctx: RunContext, job: Job) -> None:
    assert job.operation is not None
    now = ctx.now()
    ctx.stats.polls += 1
    try:
        status = await ctx.client.poll(job.operation, job.model)
    except NotFound as e:
        age_s = now - (job.submitted_at or now)
        if age_s > ctx.config.retention_s:
            # The video is deleted, its operation with it: no poll can bring it back.
            await _finish(ctx, job, S.EXPIRED, ErrorKind.EXPIRED, _deleted(ctx, job, age_s, e))
            return
        misses = ctx.note_poll_error(job.id)
        if age_s < ctx.config.operation_grace_s or misses < POLL_ERRORS_TO_FAIL:
            await _reschedule(
                ctx, job, now + max(ctx.config.poll_interval_s, ctx.backoff_s(misses))
            )
        else:
            why = f"operation gone ({misses} polls answered 404): {e}"
            await _finish(ctx, job, S.FAILED, ErrorKind.OPERATION_LOST, why)
        return
    except RateLimited as e:
        pause_s = ctx.pacer.on_rate_limited(e.retry_after_s)
        await _reschedule(ctx, job, now + max(pause_s, ctx.config.poll_interval_s))
        return
    except RetryLater as e:
        ctx.stats.note_error(f"{job.id}: poll: {e}")
        await _reschedule(ctx, job, now + ctx.backoff_s(job.polls + 1))
        return
    except QuotaExhausted as e:
        # Only submits count against the daily quota on Google; should a reseller
        # count polls too, the paid operation waits for the reset, it is not dropped.
        ctx.stats.note_error(f"{job.id}: poll: {e}")
        wait_s = max(e.retry_after_s or 0.0, ctx.backoff_s(job.polls + 1))
        await _reschedule(ctx, job, now + wait_s)
        return
    except StopRun as e:
        ctx.account_error = str(e)
        ctx.request_stop(f"stopped: {e}", everything=True)
        return
    except ApiError as e:
        # An answer we did not expect (a 400 on a poll, a malformed name): retry it
        # with backoff, never crash the run over one operation; give up eventually.
        errors = ctx.note_poll_error(job.id)
        if errors >= POLL_ERRORS_TO_FAIL:
            why = f"polling failed {errors} times: {e}"
            await _finish(ctx, job, S.FAILED, ErrorKind.OPERATION_ERROR, why)
        else:
            ctx.stats.note_error(f"{job.id}: poll: {e}")
            await _reschedule(ctx, job, now + ctx.backoff_s(errors))
        return
    ctx.poll_errors.pop(job.id, None)

    if status.state == "running":
        age_s = now - (job.submitted_at or now)
        await _reschedule(ctx, job, now + poll_interval_s(ctx, age_s))
    elif status.state == "done":
        done = await ctx.store.transition(
            job.id,
            S.RUNNING,
            S.GENERATED,
            video_uris=list(status.video_uris),
            generated_at=now,
            polls=job.polls + 1,
            next_poll_at=None,
            detail=f"{len(status.video_uris)} video(s)",
        )
        ctx.stats.generated += 1
        ctx.downloads.add(done)  # before releasing the slot: downloaders must see it
        ctx.release_slot()
        ctx.emit("generated", job=job.id, videos=len(status.video_uris))
        ctx.wake_downloader.wake_one()
    elif status.state == "filtered":
        reasons = "; ".join(status.filtered_reasons) or "no reason given"
        why = f"blocked by the safety filter (not charged): {reasons}"
        await _finish(ctx, job, S.FAILED, ErrorKind.FILTERED, why)
    else:
        why = f"operation failed: {status.error_message or 'no message'}"
        if status.error_code is not None:
            why = f"operation failed (code {status.error_code}): {status.error_message or ''}"
        await _finish(ctx, job, S.FAILED, ErrorKind.OPERATION_ERROR, why.strip())


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


async def _finish(ctx: RunContext, job: Job, dst: JobState, kind: ErrorKind, why: str) -> None:
    await ctx.end_job(job, S.RUNNING, dst, kind, why, polls=job.polls + 1, next_poll_at=None)
    ctx.release_slot()
