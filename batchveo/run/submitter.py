"""Submitters: turn ``pending`` jobs into operations on the server.

Order of events for one job, each step committed before the next:

1. wait for a free in-flight slot (and a place under ``--max-jobs``) and for the
   pacer's turn (before claiming, so a job never sits in ``submitting`` while we merely
   wait our turn); the slot and the place then belong to the job's record, and the
   store's transitions give them back (see ``slots``);
2. claim it: ``pending -> submitting`` (from now on, a crash means "maybe billed");
3. send ``predictLongRunning``;
4. record the outcome: ``running`` with the operation name, or back to
   ``pending`` when the request provably never counted, or ``failed``, or
   ``uncertain`` when the request may have reached the server but we do not
   know what it did. An uncertain job is never resent without the user's word.

What each error means here is the submit column of ``errors``' reaction table.

Submitters work for one route each (``lanes``): a run starts ``config.submitters`` of
them per route, each claims only its route's jobs and waits for its route's slots and
pacer; a refusal that concerns the account or the day's quota stops that route's
submits (``RunContext.stop_route``).
"""

from __future__ import annotations

import asyncio

from batchveo import chains
from batchveo.errors import (
    BatchveoError,
    JobRejected,
    NotSent,
    QuotaExhausted,
    RateLimited,
    Reaction,
    Stage,
    reaction,
)
from batchveo.run import routed
from batchveo.run.context import Lane, RunContext
from batchveo.states import ErrorKind, JobState
from batchveo.store import Job

S = JobState
QUOTA_RECHECK_S = 3600.0
"""A watching run with a spent daily quota tries again after this, unless told when."""


async def submitter(ctx: RunContext, lane: Lane) -> None:
    """One worker of ``lane``'s route; a run starts ``config.submitters`` of them per
    route. It ends when that route's submits stop."""
    while not ctx.submits_stopped(lane):
        job = await claim_one(ctx, lane)
        if job is not None:
            await submit_one(ctx, lane, job)


async def claim_one(ctx: RunContext, lane: Lane) -> Job | None:
    """Steps 1 and 2; None if there was nothing to claim (having waited until there may
    be) or submits stopped."""
    looked = ctx.new_work.mark()

    def stopped() -> bool:
        return ctx.submits_stopped(lane)

    async with lane.slots.claiming(stopped) as reserved:
        if not reserved:
            return None
        async with lane.pacer.turn(stopped) as turn:
            if not turn.granted or stopped():
                return None
            for route in lane.claim_routes():
                jobs = await routed.claim_one(
                    ctx.store, route, ctx.default_route, budget_usd=ctx.config.budget_usd
                )
                ctx.lanes.claimed(lane, jobs)
                if jobs:
                    turn.spend()  # the request leaves right after this block
                    return jobs[0]
    await _wait_for_work(ctx, lane, looked)
    return None


async def _wait_for_work(ctx: RunContext, lane: Lane, looked: int) -> None:
    """Nothing to claim now: until a pending job's backoff ends, or a reason to look
    again (a job back to pending or failed, manifests loaded, a stop)."""
    next_at = await lane_next_attempt_at(ctx, lane)
    if next_at is None:
        ctx.may_be_drained.fire()  # nothing this run could send: perhaps it is over
    await ctx.new_work.wait(looked, until_s=next_at)


async def lane_next_attempt_at(ctx: RunContext, lane: Lane) -> float | None:
    """When the earliest pending job of ``lane``'s routes is due (None: none could be)."""
    times = [
        await routed.next_attempt_at(
            ctx.store, route, ctx.default_route, budget_usd=ctx.config.budget_usd
        )
        for route in lane.routes or (None,)
    ]
    due = [t for t in times if t is not None]
    return min(due) if due else None


async def submit_one(ctx: RunContext, lane: Lane, job: Job) -> None:
    """Steps 3 and 4 (a hop whose parent's video is gone meanwhile is never sent)."""
    route = routed.resolve(routed.job_route(job), ctx.default_route)
    if job.extends is not None and chains.parent_expired(
        job.parent_generated_at, ctx.now(), route.wire
    ):
        detail = chains.parent_expired_message(job.extends)
        await ctx.end_job(job, S.SUBMITTING, S.FAILED, ErrorKind.PARENT_EXPIRED, detail)
        return
    try:
        spec = routed.routed_spec(job, route)
        operation = await lane.client.submit(spec)
    except BatchveoError as e:
        await _refused(ctx, lane, job, e)
        return
    except asyncio.CancelledError:
        # Cancelled mid-request (second signal, shutdown timeout): the job stays
        # `submitting`, and the next run marks it uncertain. That is the truth.
        raise
    t = ctx.now()
    # Shielded: once the server has answered, its operation name must reach the
    # database even if a stop cancels this task right now.
    await asyncio.shield(
        ctx.store.transition(
            job.id,
            S.SUBMITTING,
            S.RUNNING,
            operation=operation,
            submitted_at=t,
            next_poll_at=ctx.polls.first_poll_at(job, t),
            detail=operation,
        )
    )
    lane.pacer.on_success()
    ctx.note_reachable(lane)
    ctx.stats.submitted += 1
    ctx.emit("submitted", job=job.id, operation=operation, attempt=job.attempts)


async def _refused(ctx: RunContext, lane: Lane, job: Job, e: BatchveoError) -> None:
    """Step 4 for a submit that raised: the submit column of the reaction table."""
    now = ctx.now()
    match reaction(Stage.SUBMIT, e):
        case Reaction.UNCERTAIN:
            await ctx.end_job(job, S.SUBMITTING, S.UNCERTAIN, ErrorKind.SUBMIT_UNKNOWN, str(e))
        case Reaction.NOT_SENT:
            # The server never saw it: not an attempt, nothing billed. If the whole
            # service is out of reach, everyone waits instead of burning attempts.
            assert isinstance(e, NotSent)
            ctx.stats.note_error(f"{job.id}: {e}")
            pause_s = ctx.note_unreachable(lane) if e.unreachable else ctx.backoff_s(1)
            await _hand_back(ctx, job, now + pause_s, str(e))
        case Reaction.RATE_LIMITED:
            # A 429 is the server refusing to count the request: not an attempt.
            assert isinstance(e, RateLimited)
            pause_s = lane.pacer.on_rate_limited(e.retry_after_s)
            ctx.emit("rate_limited", job=job.id, pause_s=pause_s)
            await _hand_back(ctx, job, now + pause_s, str(e))
        case Reaction.RETRY:
            ctx.stats.submit_errors += 1
            ctx.stats.note_error(f"{job.id}: {e}")
            if job.attempts >= ctx.config.max_attempts:
                detail = f"gave up after {job.attempts} attempts: {e}"
                await ctx.end_job(job, S.SUBMITTING, S.FAILED, ErrorKind.RETRIES_EXHAUSTED, detail)
            else:
                await _requeue(ctx, job, now + ctx.backoff_s(job.attempts), str(e))
        case Reaction.FAIL:
            assert isinstance(e, JobRejected)
            await ctx.end_job(job, S.SUBMITTING, S.FAILED, ErrorKind(e.kind), str(e))
        case Reaction.QUOTA:
            # The day's quota is spent: nothing is wrong with the account, and once it
            # resets the same jobs go through. The route stops submitting (what is paid
            # for is still polled and downloaded; quotas are the route's, so the other
            # routes go on), and the run exits 75: run again later. A watching run lives
            # on, so it holds the route's submits back until the reset instead.
            # (Decided before the hand-back is recorded: its slot is free from then on.)
            assert isinstance(e, QuotaExhausted)
            if ctx.config.watch_dir is None:
                why = f"stopped submitting: the daily quota is used up ({e})"
                ctx.stop_route(lane, why)
                await _hand_back(ctx, job, None, str(e))
            else:
                pause_s = e.retry_after_s or QUOTA_RECHECK_S
                lane.pacer.pause(pause_s)
                await _hand_back(ctx, job, None, str(e))
                ctx.stats.note_error(f"{job.id}: {e}")
                ctx.emit("quota_exhausted", job=job.id, pause_s=pause_s)
        case Reaction.STOP:
            # Nothing was created: the job goes back untouched and no more submits are
            # sent on this route. Operations already paid for are still polled and
            # downloaded: the end of the balance must not let last night's videos
            # expire. The other routes (another account, project or region) go on;
            # the run exits 4 at its end (see ``RunContext.stop_route``).
            ctx.stop_route(lane, f"stopped: {e}", fatal=str(e))
            await _hand_back(ctx, job, None, str(e))
        case _:
            raise e


async def _hand_back(ctx: RunContext, job: Job, at: float | None, why: str) -> None:
    """Back to pending with the attempt given back: the server never counted this send
    (so neither does ``--max-jobs``; ``slots`` reads it from the record)."""
    await _requeue(ctx, job, at, why, attempts=max(0, job.attempts - 1))


async def _requeue(
    ctx: RunContext, job: Job, at: float | None, why: str, *, attempts: int | None = None
) -> None:
    fields: dict[str, object] = {"next_attempt_at": at, "error": why}
    if attempts is not None:
        fields["attempts"] = attempts
    await ctx.store.transition(job.id, S.SUBMITTING, S.PENDING, detail=why, **fields)
    ctx.emit("retry", job=job.id, error=why, at=at)
