"""Submitters: turn ``pending`` jobs into operations on the server.

Order of events for one job, each step committed before the next:

1. wait for a free in-flight slot and for the pacer (before claiming, so a job
   never sits in ``submitting`` while we merely wait our turn);
2. claim it: ``pending -> submitting`` (from now on, a crash means "maybe billed");
3. send ``predictLongRunning``;
4. record the outcome: ``running`` with the operation name, or back to
   ``pending`` when the request provably never counted, or ``failed``, or
   ``uncertain`` when the request may have reached the server but we do not
   know what it did. An uncertain job is never resent without the user's word.
"""

from __future__ import annotations

import asyncio

from batchveo.errors import (
    JobRejected,
    NotSent,
    QuotaExhausted,
    RateLimited,
    RetryLater,
    StopRun,
    SubmitOutcomeUnknown,
)
from batchveo.run.context import RunContext, wait_event
from batchveo.states import IN_FLIGHT, ErrorKind, JobState
from batchveo.store import Job

S = JobState
QUOTA_RECHECK_S = 3600.0
"""A watching run with a spent daily quota tries again after this, unless told when."""


async def submitter(ctx: RunContext) -> None:
    """One worker; a run starts ``config.submitters`` of them."""
    while not ctx.stop_claiming.is_set():
        if not await _wait_for_slot(ctx):
            continue
        if ctx.config.max_jobs is not None and ctx.new_submits >= ctx.config.max_jobs:
            return
        # Reserve a slot and a place under --max-jobs before any await: the other
        # workers must see them taken.
        ctx.inflight += 1
        ctx.new_submits += 1
        try:
            paced = await ctx.pacer.acquire(ctx.stop_claiming)
            jobs = (
                await ctx.store.claim_pending(1, budget_usd=ctx.config.budget_usd)
                if paced and not ctx.stop_claiming.is_set()
                else []
            )
        except BaseException:
            ctx.new_submits -= 1
            ctx.release_slot()
            raise
        if not jobs:
            # Give the reservations back quietly: waking the others would spin.
            ctx.inflight -= 1
            ctx.new_submits -= 1
            if ctx.stop_claiming.is_set() or not await _wait_for_work(ctx):
                return
            continue
        await ctx.pacer.spaced()
        await submit_one(ctx, jobs[0])


async def _wait_for_slot(ctx: RunContext) -> bool:
    """True when a slot is free; False to re-check the stop flags first."""
    if ctx.inflight < ctx.config.max_inflight:
        return True
    await ctx.slot_freed.wait(1.0)
    return False


async def _wait_for_work(ctx: RunContext) -> bool:
    """No job is due: sleep until one is (a backoff ends) or give up if none waits."""
    next_at = await ctx.store.next_attempt_at(budget_usd=ctx.config.budget_usd)
    if next_at is None:
        if ctx.config.watch_dir is not None:
            await wait_event(ctx.wake_submitters, 5.0)  # a new manifest may come
            return True
        if not await ctx.store.count_states(IN_FLIGHT):
            return False  # nothing pending that could ever be sent: this worker is done
        # Jobs in flight may still fail uncharged and free budget: wait for them.
        await wait_event(ctx.wake_submitters, 5.0)
        return True
    await wait_event(ctx.wake_submitters, min(5.0, max(0.0, next_at - ctx.now())))
    return True


async def submit_one(ctx: RunContext, job: Job) -> None:
    store, now = ctx.store, ctx.now
    try:
        operation = await ctx.client.submit(job.spec())
    except SubmitOutcomeUnknown as e:
        await ctx.end_job(job, S.SUBMITTING, S.UNCERTAIN, ErrorKind.SUBMIT_UNKNOWN, str(e))
    except NotSent as e:
        # The server never saw it: not an attempt, nothing billed. If the whole
        # service is out of reach, everyone waits instead of burning attempts.
        ctx.new_submits -= 1
        ctx.stats.note_error(f"{job.id}: {e}")
        pause_s = ctx.note_unreachable() if e.unreachable else ctx.backoff_s(1)
        await _requeue(ctx, job, now() + pause_s, str(e), attempts=job.attempts - 1)
    except RateLimited as e:
        ctx.new_submits -= 1  # refused, not sent: it does not count against --max-jobs
        pause_s = ctx.pacer.on_rate_limited(e.retry_after_s)
        ctx.emit("rate_limited", job=job.id, pause_s=pause_s)
        # A 429 is the server refusing to count the request: not an attempt.
        await _requeue(ctx, job, now() + pause_s, str(e), attempts=job.attempts - 1)
    except RetryLater as e:
        ctx.stats.submit_errors += 1
        ctx.stats.note_error(f"{job.id}: {e}")
        if job.attempts >= ctx.config.max_attempts:
            detail = f"gave up after {job.attempts} attempts: {e}"
            await ctx.end_job(job, S.SUBMITTING, S.FAILED, ErrorKind.RETRIES_EXHAUSTED, detail)
        else:
            await _requeue(ctx, job, now() + ctx.backoff_s(job.attempts), str(e))
    except JobRejected as e:
        await ctx.end_job(job, S.SUBMITTING, S.FAILED, ErrorKind(e.kind), str(e))
    except QuotaExhausted as e:
        # The day's quota is spent: nothing is wrong with the account, and once it
        # resets the same jobs go through. A run stops submitting (what is paid for
        # is still polled and downloaded) and exits 75: run again later. A watching
        # run lives on, so it holds every submit back until the reset instead.
        ctx.new_submits -= 1
        await _requeue(ctx, job, None, str(e), attempts=job.attempts - 1)
        if ctx.config.watch_dir is None:
            ctx.stop_submitting(f"stopped submitting: the daily quota is used up ({e})")
        else:
            pause_s = e.retry_after_s or QUOTA_RECHECK_S
            ctx.pacer.pause(pause_s)
            ctx.stats.note_error(f"{job.id}: {e}")
            ctx.emit("quota_exhausted", job=job.id, pause_s=pause_s)
    except StopRun as e:
        # Nothing was created: the job goes back untouched and no more submits are
        # sent. Operations already paid for are still polled and downloaded: the
        # end of the balance must not let last night's videos expire.
        ctx.new_submits -= 1
        await _requeue(ctx, job, None, str(e), attempts=job.attempts - 1)
        ctx.account_error = str(e)
        ctx.stop_submitting(f"stopped: {e}")
    except asyncio.CancelledError:
        # Cancelled mid-request (second signal, shutdown timeout): the job stays
        # `submitting`, and the next run marks it uncertain. That is the truth.
        raise
    else:
        t = now()
        # Shielded: once the server has answered, its operation name must reach the
        # database even if a stop cancels this task right now.
        await asyncio.shield(
            store.transition(
                job.id,
                S.SUBMITTING,
                S.RUNNING,
                operation=operation,
                submitted_at=t,
                next_poll_at=t + ctx.config.first_poll_s,
                detail=operation,
            )
        )
        ctx.pacer.on_success()
        ctx.note_reachable()
        ctx.stats.submitted += 1
        ctx.emit("submitted", job=job.id, operation=operation, attempt=job.attempts)
        ctx.wake_poller.set()
        return
    ctx.release_slot()


async def _requeue(
    ctx: RunContext, job: Job, at: float | None, why: str, *, attempts: int | None = None
) -> None:
    fields: dict[str, object] = {"next_attempt_at": at, "error": why}
    if attempts is not None:
        fields["attempts"] = max(0, attempts)
    await ctx.store.transition(job.id, S.SUBMITTING, S.PENDING, detail=why, **fields)
    ctx.emit("retry", job=job.id, error=why, at=at)
