"""The downloader: bring every generated video home before the server deletes it.

The service keeps a video for two days. Jobs are taken oldest-generated first
(closest to expiry), every video streams to ``NAME.part`` and is renamed only
when complete and checked, and the job is ``done`` only once all its files are
on disk with their size and sha256 recorded.

A paid-for video is not given up while it may still exist, but neither is a run
kept alive for two days by a video that can never be fetched. Failures retry
with backoff; the job's download is failed (``batchveo retry`` brings it back to
``generated``, nothing paid again) when the client calls the URI unusable a few
times, when the server gives the very same answer again and again, or when the
recorded times are past the retention and it still fails. It is ``expired`` only
when the server says the file is gone *and* the recorded times agree: a local
clock that jumped ahead alone expires nothing.

A video whose own name cannot be written (a link or a file in its way, a name
too long) is saved as ``OUT/<id>.mp4`` instead, and the job records that name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from batchveo.errors import (
    ApiError,
    FileRefused,
    JobRejected,
    MalformedAnswer,
    NotFound,
    OutputUnusable,
    QuotaExhausted,
    RetryLater,
    StopRun,
)
from batchveo.outputs import fallback_video_paths, video_paths
from batchveo.run.context import DueJob, RunContext
from batchveo.states import ErrorKind, JobState
from batchveo.store import Job

S = JobState
_IDLE_CHECK_S = 5.0

DOWNLOAD_UNUSABLE_TRIES = 3
"""Tries of a video the client or the server calls unfetchable as it is (``JobRejected``:
a ``file://`` URI, a redirect loop, a 400) before its download is failed: a glitch gets
another chance, a URI that can never work does not keep the run going for two days."""

DOWNLOAD_SAME_ANSWER_TRIES = 8
"""Tries of a video that got the very same answer from the server each time (status and
message), or that still fail once the recorded times are past the retention, before its
download is failed. About 6 minutes with the default backoff: reached within one
14-minute cron run (the count is in memory), and ``batchveo retry`` fetches it again.
Two kinds of failure are not "the same answer": none at all (the service unreachable: an
outage, not this video's fault; it counts only past the retention), and "the file is
gone" (404, or the Files API's 403), which ends ``expired`` once the retention is over."""


def output_paths(out_dir: Path, job: Job) -> list[Path]:
    """Where ``job``'s videos go (see ``outputs.video_paths``)."""
    return video_paths(out_dir, job.id, job.output_name, len(job.video_uris))


def fallback_paths(out_dir: Path, job: Job) -> list[Path]:
    """Where ``job``'s videos go when their own paths cannot be written."""
    return fallback_video_paths(out_dir, job.id, len(job.video_uris))


async def downloader(ctx: RunContext) -> None:
    """One worker of the pool; all workers share ``ctx.downloads``."""
    queue = ctx.downloads
    while not ctx.stop_all.is_set():
        item = queue.pop_due(ctx.now())
        if item is None:
            if not ctx.still_watching() and not len(queue) and ctx.pipeline_idle():
                ctx.wake_downloader.wake_all()  # let the other workers see it too
                return
            next_due = queue.next_due()
            wait_s = _IDLE_CHECK_S if next_due is None else next_due - ctx.now()
            await ctx.wake_downloader.wait(min(_IDLE_CHECK_S, wait_s))
            continue
        await download_one(ctx, item)


async def download_one(ctx: RunContext, item: DueJob) -> None:
    job, queue = item.job, ctx.downloads
    now = ctx.now()
    expires_at = (job.generated_at or now) + ctx.config.retention_s
    try:
        files, notes = await _download_files(ctx, job)
    except ValueError as e:  # an output path that would leave --out: our bug, not theirs
        await _end(ctx, job, S.FAILED, ErrorKind.DOWNLOAD, str(e))
        return
    except OutputUnusable as e:  # neither its own name nor OUT/<id>.mp4 can be written
        await _end(ctx, job, S.FAILED, ErrorKind.DOWNLOAD, str(e))
        return
    except QuotaExhausted as e:  # as for polls: the paid video waits, it is not dropped
        ctx.stats.note_error(f"{job.id}: download: {e}")
        wait_s = max(e.retry_after_s or 0.0, ctx.backoff_s(item.tries + 1))
        queue.retry(item, now + _before_expiry(wait_s, now, expires_at))
        ctx.wake_downloader.wake_one()
        return
    except StopRun as e:
        ctx.account_error = str(e)
        ctx.request_stop(f"stopped: {e}", everything=True)
        queue.retry(item, now)
        return
    except (RetryLater, JobRejected, MalformedAnswer) as e:
        await _failed_try(ctx, item, e, now, expires_at)
        return
    detail = "; ".join([f"{len(files)} file(s)", *notes])
    await ctx.store.transition(
        job.id, S.GENERATED, S.DONE, files=files, finished_at=ctx.now(), detail=detail
    )
    queue.forget(job.id)
    _failures(ctx).pop(job.id, None)
    ctx.stats.downloaded += 1
    ctx.emit("done", job=job.id, files=[f["path"] for f in files])


async def _download_files(ctx: RunContext, job: Job) -> tuple[list[dict[str, Any]], list[str]]:
    """Every video of ``job`` on disk: the records of its files, and notes on names changed.

    A video whose own path cannot be written is saved under its fallback name instead
    (the paid video matters more than its name); OutputUnusable if that fails too.
    """
    out_dir = ctx.config.out_dir
    files, notes = [], []
    paths, fallbacks = output_paths(out_dir, job), fallback_paths(out_dir, job)
    for uri, path, fallback in zip(job.video_uris, paths, fallbacks, strict=True):
        try:
            result = await ctx.client.download(uri, path)
        except OutputUnusable as e:
            if fallback == path:
                raise
            try:
                result = await ctx.client.download(uri, fallback)
            except OutputUnusable as again:
                raise OutputUnusable(f"{e}; its fallback name failed too: {again}") from None
            note = f"{e}; saved as {result.path}"
            notes.append(note)
            ctx.stats.note_error(f"{job.id}: {note}")
            ctx.emit("renamed", job=job.id, wanted=str(path), path=str(result.path), reason=str(e))
        files.append(
            {"path": os.path.abspath(result.path), "size": result.size, "sha256": result.sha256}
        )
    return files, notes


@dataclass
class _Failures:
    """One video's failed tries in this run (in memory: a restart starts afresh, as polls do)."""

    last_answer: tuple[str, int | None, str] | None = None
    same: int = 0
    rejected: int = 0
    past_retention: int = 0

    def give_up(self, e: ApiError, *, past_retention: bool, retention_h: float) -> str | None:
        """Count this failure; the reason to stop trying, or None to try again."""
        if isinstance(e, JobRejected):
            self.rejected += 1
            if self.rejected >= DOWNLOAD_UNUSABLE_TRIES:
                return f"download failed: cannot be downloaded ({self.rejected} tries): {e}"
        gone = isinstance(e, (NotFound, FileRefused))  # ends expired at the retention
        if not gone and (e.status is not None or isinstance(e, (JobRejected, MalformedAnswer))):
            answer = (type(e).__name__, e.status, str(e))
            self.same = self.same + 1 if answer == self.last_answer else 1
            self.last_answer = answer
            if self.same >= DOWNLOAD_SAME_ANSWER_TRIES:
                return f"download failed: the same answer {self.same} times in a row: {e}"
        # No answer at all (an outage) neither counts nor breaks a run of equal answers.
        if past_retention:
            self.past_retention += 1
            if self.past_retention >= DOWNLOAD_SAME_ANSWER_TRIES:
                return (
                    f"download failed: still failing after {self.past_retention} tries past"
                    f" the {retention_h:g} h retention (by this machine's clock): {e}"
                )
        return None


_FAILURES: WeakKeyDictionary[RunContext, dict[str, _Failures]] = WeakKeyDictionary()
"""Per run (its context), per job: kept beside the context, owned by this stage."""


def _failures(ctx: RunContext) -> dict[str, _Failures]:
    return _FAILURES.setdefault(ctx, {})


async def _failed_try(
    ctx: RunContext, item: DueJob, e: ApiError, now: float, expires_at: float
) -> None:
    """A download that failed: expired, failed, or tried again later (see the module doc)."""
    job, queue = item.job, ctx.downloads
    past_retention = now >= expires_at
    if past_retention and isinstance(e, (NotFound, FileRefused)):
        # The server says the file is gone, and the recorded times agree.
        _failures(ctx).pop(job.id, None)
        await _end(ctx, job, S.EXPIRED, ErrorKind.EXPIRED, f"video deleted: {e}")
        return
    failures = _failures(ctx).setdefault(job.id, _Failures())
    retention_h = ctx.config.retention_s / 3600
    why = failures.give_up(e, past_retention=past_retention, retention_h=retention_h)
    if why is not None:
        _failures(ctx).pop(job.id, None)
        await _end(ctx, job, S.FAILED, ErrorKind.DOWNLOAD, why)
        return
    ctx.stats.note_error(f"{job.id}: download: {e}")
    queue.retry(item, now + _before_expiry(ctx.backoff_s(item.tries + 1), now, expires_at))
    ctx.wake_downloader.wake_one()


def _before_expiry(delay_s: float, now: float, expires_at: float) -> float:
    """The delay before the next try: one last try just before the server deletes the
    video; once past that, the backoff as it is (never a loop of immediate retries)."""
    return delay_s if now >= expires_at else min(delay_s, expires_at - now)


async def _end(ctx: RunContext, job: Job, dst: JobState, kind: ErrorKind, why: str) -> None:
    await ctx.end_job(job, S.GENERATED, dst, kind, why)
    ctx.downloads.forget(job.id)
