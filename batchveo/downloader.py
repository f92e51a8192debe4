"""The downloader: bring every generated video home before the server deletes it.

The service keeps a video for two days. Jobs are taken oldest-generated first
(closest to expiry), every video streams to ``NAME.part`` and is renamed only
when complete and checked, and the job is ``done`` only once all its files are
on disk with their size and sha256 recorded. A paid-for video is never given
up while it may still exist: transient failures retry until the retention
window has passed, and then the job is ``expired``.

A video whose own name cannot be written (a link or a file in its way, a name
too long) is saved as ``OUT/<id>.mp4`` instead, and the job records that name.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from batchveo.context import DueJob, RunContext
from batchveo.errors import (
    JobRejected,
    NotFound,
    OutputUnusable,
    QuotaExhausted,
    RetryLater,
    StopRun,
)
from batchveo.states import ErrorKind, JobState
from batchveo.store import Job

S = JobState
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_IDLE_CHECK_S = 5.0


def safe_segment(name: str) -> str:
    """One path segment that cannot climb out of the output folder or hide.

    When cleaning changed the name, a short hash of the original is added, so
    "shot 1", "shot?1" and "shot_1" do not all become ``shot_1.mp4``.
    """
    cleaned = _SAFE.sub("_", name).strip("._")[:150] or "job"
    if cleaned != name:
        cleaned += "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return cleaned


def output_paths(out_dir: Path, job: Job) -> list[Path]:
    """``OUT/<id>.mp4``, or ``OUT/<id>_<n>.mp4`` (n from 1) when there are several videos.

    An id is always one file name; only a manifest's ``output`` template (already
    checked to be relative) may name sub-folders.
    """
    if job.output_name:
        parts = [safe_segment(p) for p in job.output_name.split("/") if p not in ("", ".", "..")]
    else:
        parts = [safe_segment(job.id)]
    folder = out_dir.joinpath(*parts[:-1])
    stem = parts[-1] if parts else safe_segment(job.id)
    paths = [folder / name for name in _video_names(stem, len(job.video_uris))]
    root = os.path.abspath(out_dir)
    for p in paths:  # defence in depth (segments are sanitised); no syscalls per job
        if os.path.commonpath([root, os.path.abspath(p)]) != root:
            raise ValueError(f"job {job.id}: output path escapes {out_dir}")
    # On the resolved path, files.PartFile holds it: no link below --out is followed.
    return paths


def fallback_paths(out_dir: Path, job: Job) -> list[Path]:
    """Where a video goes when its own path cannot be written: ``OUT/<id>.mp4`` (or
    ``OUT/<id>_<n>.mp4``), right in ``--out`` where nothing but the name can be in the way."""
    return [out_dir / name for name in _video_names(safe_segment(job.id), len(job.video_uris))]


def _video_names(stem: str, n: int) -> list[str]:
    return [f"{stem}.mp4"] if n == 1 else [f"{stem}_{i}.mp4" for i in range(1, n + 1)]


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
    except OutputUnusable as e:  # neither its own name nor OUT/<id>.mp4 can be written
        await _end(ctx, job, S.FAILED, ErrorKind.DOWNLOAD, str(e))
        return
    except (NotFound, RetryLater, JobRejected) as e:
        # A paid video is never given up while it may still exist: any refusal is
        # retried with backoff until the retention window has passed.
        if isinstance(e, NotFound) and now >= expires_at:
            await _end(ctx, job, S.EXPIRED, ErrorKind.EXPIRED, f"video deleted: {e}")
            return
        if now >= expires_at:
            await _end(ctx, job, S.EXPIRED, ErrorKind.EXPIRED, f"past retention: {e}")
            return
        ctx.stats.note_error(f"{job.id}: download: {e}")
        delay_s = min(ctx.backoff_s(item.tries + 1), max(0.0, expires_at - now))
        queue.retry(item, now + delay_s)
        ctx.wake_downloader.wake_one()
        return
    except ValueError as e:  # an output path that would leave --out: our bug, not theirs
        await _end(ctx, job, S.FAILED, ErrorKind.DOWNLOAD, str(e))
        return
    except QuotaExhausted as e:  # as for polls: the paid video waits, it is not dropped
        ctx.stats.note_error(f"{job.id}: download: {e}")
        wait_s = max(e.retry_after_s or 0.0, ctx.backoff_s(item.tries + 1))
        queue.retry(item, now + min(wait_s, max(0.0, expires_at - now)))
        ctx.wake_downloader.wake_one()
        return
    except StopRun as e:
        ctx.account_error = str(e)
        ctx.request_stop(f"stopped: {e}", everything=True)
        queue.retry(item, now)
        return
    detail = "; ".join([f"{len(files)} file(s)", *notes])
    await ctx.store.transition(
        job.id, S.GENERATED, S.DONE, files=files, finished_at=ctx.now(), detail=detail
    )
    queue.forget(job.id)
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


async def _end(ctx: RunContext, job: Job, dst: JobState, kind: ErrorKind, why: str) -> None:
    await ctx.end_job(job, S.GENERATED, dst, kind, why)
    ctx.downloads.forget(job.id)
