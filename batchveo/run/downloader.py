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
(``save_files`` is that rule, shared with the poller, which saves the videos Vertex AI
sends inline in a poll's answer the same way.)

Each video on disk gets its poster frame (``batchveo.posters``) before the job is ``done``,
recorded in the same statement as its files: a poster the database names exists, and a
run that dies in between fetches the video again and makes it then. A video that gives no
poster is still done; why is in the job's history and the log (``poster_failed``).

A video in the user's own Cloud Storage bucket (a ``gs://`` URI: Vertex AI with a
``storageUri``) has no retention: the objects stay until the user deletes them. Such a
job is never ``expired`` by the clock, and a 404 there is an answer like any other: it
is failed once the same answer came ``DOWNLOAD_SAME_ANSWER_TRIES`` times, and so is one
whose bytes were not the object's that many times (``WrongBytes``: cut short, another size
or checksum than its metadata's; no deadline would ever end those tries). ``batchveo
retry`` brings it back to ``generated``.

What each error means here is the download column of ``errors``' reaction table.
Downloaders wait on their own queue (``DownloadQueue``): for a video the poller hands
over, or for the earliest retry time.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchveo.api.results import DownloadResult
from batchveo.clock import Alarms
from batchveo.errors import (
    ApiError,
    BatchveoError,
    FileRefused,
    JobRejected,
    MalformedAnswer,
    NotFound,
    OutputUnusable,
    QuotaExhausted,
    Reaction,
    Stage,
    WrongBytes,
    reaction,
)
from batchveo.outputs import fallback_video_paths, video_paths
from batchveo.posters import make_posters
from batchveo.run.context import RunContext, StopLevel
from batchveo.run.duequeue import DueQueue
from batchveo.states import ErrorKind, JobState
from batchveo.store import Job

S = JobState

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


NO_DEADLINE_SCHEMES = ("gs://",)
"""Video URIs in the user's own storage: kept until the user deletes them, no retention."""


def output_paths(out_dir: Path, job: Job, n_videos: int | None = None) -> list[Path]:
    """Where ``job``'s videos go (see ``outputs.video_paths``; ``n_videos``: how many, by
    default one per video URI); ``OutputUnusable`` if one would leave ``out_dir``."""
    n = len(job.video_uris) if n_videos is None else n_videos
    try:
        return video_paths(out_dir, job.id, job.output_name, n)
    except ValueError as e:  # a path that would leave --out: that job's, never a crash
        raise OutputUnusable(str(e)) from None


def fallback_paths(out_dir: Path, job: Job, n_videos: int | None = None) -> list[Path]:
    """Where ``job``'s videos go when their own paths cannot be written."""
    n = len(job.video_uris) if n_videos is None else n_videos
    return fallback_video_paths(out_dir, job.id, n)


def has_retention(job: Job) -> bool:
    """Whether the service deletes ``job``'s videos after the retention (False for
    videos in the user's bucket, which stay until the user deletes them)."""
    return not job.video_uris or not all(
        uri.startswith(NO_DEADLINE_SCHEMES) for uri in job.video_uris
    )


@dataclass
class Failures:
    """One video's failed tries in this run (in memory: a restart starts afresh, as polls do)."""

    last_answer: tuple[str, int | None, str] | None = None
    same: int = 0
    rejected: int = 0
    wrong_bytes: int = 0
    past_retention: int = 0

    def give_up(
        self, e: ApiError, *, past_retention: bool, retention_h: float, retained: bool = True
    ) -> str | None:
        """Count this failure; the reason to stop trying, or None to try again.

        ``retained``: the service deletes the video after the retention (a "gone" answer
        then waits for it to end expired); False for the user's own bucket, where "gone"
        is an answer like any other."""
        if isinstance(e, JobRejected):
            self.rejected += 1
            if self.rejected >= DOWNLOAD_UNUSABLE_TRIES:
                return f"download failed: cannot be downloaded ({self.rejected} tries): {e}"
        if not retained and isinstance(e, WrongBytes):  # the user's bucket: no deadline
            self.wrong_bytes += 1
            if self.wrong_bytes >= DOWNLOAD_SAME_ANSWER_TRIES:
                return (
                    f"download failed: {self.wrong_bytes} tries got bytes that are not the"
                    f" object's: {e}"
                )
        gone = retained and isinstance(e, (NotFound, FileRefused))  # expired at the retention
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


@dataclass
class DueJob:
    """A generated job in the queue: when it may be tried next, and its tries so far."""

    due_at: float
    generated_at: float
    job: Job = field(compare=False)
    tries: int = field(default=0, compare=False)
    failures: Failures = field(default_factory=Failures, compare=False)


class DownloadQueue(DueQueue[DueJob]):
    """Generated jobs, closest to expiry first, each with its own retry time.

    Filled from the database when a run starts and by the poller as videos are made,
    so downloaders never sweep the table. Idle downloaders wait here (``DueQueue``: a new
    video wakes one of them, one alarm rings at the earliest retry time).
    """

    def __init__(self, clock: Alarms) -> None:
        super().__init__(clock, key=lambda item: item.job.id)

    def add(self, job: Job, due_at: float = 0.0) -> None:
        generated_at = job.generated_at or 0.0
        self.push(DueJob(due_at, generated_at, job), due_at, rank=generated_at)

    def retry(self, item: DueJob, due_at: float) -> None:
        """``item`` again at ``due_at``, with its tries and failures so far."""
        again = DueJob(due_at, item.generated_at, item.job, item.tries + 1, item.failures)
        self.again(again, due_at, rank=item.generated_at)


async def downloader(ctx: RunContext, queue: DownloadQueue) -> None:
    """One worker of the pool; all workers share ``queue``. It ends with the run."""
    while (item := await queue.take(ctx.stop.ended)) is not None:
        await download_one(ctx, queue, item)


async def download_one(ctx: RunContext, queue: DownloadQueue, item: DueJob) -> None:
    job = item.job
    now = ctx.now()
    expires_at = (job.generated_at or now) + ctx.config.retention_s
    if not has_retention(job):
        expires_at = float("inf")  # the user's bucket: no deadline
    client = ctx.lane_for(job).client

    async def fetch(i: int, dest: Path) -> DownloadResult:
        result: DownloadResult = await client.download(job.video_uris[i], dest)
        return result

    try:
        files, posters, notes = await save_files(ctx, job, len(job.video_uris), fetch)
    except BatchveoError as e:
        await _failed(ctx, queue, item, e, now, expires_at)
        return
    detail = "; ".join([f"{len(files)} file(s)", *notes])
    await ctx.store.transition(
        job.id,
        S.GENERATED,
        S.DONE,
        files=files,
        posters=posters,
        finished_at=ctx.now(),
        detail=detail,
    )
    queue.forget(job.id)
    ctx.stats.downloaded += 1
    ctx.emit("done", job=job.id, files=[f["path"] for f in files])


async def _failed(
    ctx: RunContext,
    queue: DownloadQueue,
    item: DueJob,
    e: BatchveoError,
    now: float,
    expires_at: float,
) -> None:
    """A download that raised: the download column of the reaction table."""
    job = item.job
    match reaction(Stage.DOWNLOAD, e):
        case Reaction.FAIL:  # neither its own name nor OUT/<id>.mp4 can be written
            await _end(ctx, queue, job, S.FAILED, ErrorKind.DOWNLOAD, str(e))
        case Reaction.QUOTA:  # as for polls: the paid video waits, it is not dropped
            assert isinstance(e, QuotaExhausted)
            ctx.stats.note_error(f"{job.id}: download: {e}")
            wait_s = max(e.retry_after_s or 0.0, ctx.backoff_s(item.tries + 1))
            queue.retry(item, now + _before_expiry(wait_s, now, expires_at))
        case Reaction.HALT:
            queue.retry(item, now)
            ctx.stop.fatal(str(e), StopLevel.END, f"stopped: {e}")
        case Reaction.TRY_AGAIN:
            assert isinstance(e, ApiError)
            await _failed_try(ctx, queue, item, e, now, expires_at)
        case _:
            raise e


Fetch = Callable[[int, Path], Awaitable[DownloadResult]]
"""Makes video number ``i`` of a job durable at a path (a download, or inline bytes saved)."""


async def save_files(
    ctx: RunContext, job: Job, n_videos: int, fetch: Fetch
) -> tuple[list[dict[str, Any]], list[str | None], list[str]]:
    """Every video of ``job`` on disk: the records of its files, their posters (names in
    the video's folder, None for none) and notes on names changed and posters not made.

    A video whose own path cannot be written is saved under its fallback name instead
    (the paid video matters more than its name); OutputUnusable if that fails too.
    """
    out_dir = ctx.config.out_dir
    files, notes = [], []
    paths, fallbacks = output_paths(out_dir, job, n_videos), fallback_paths(out_dir, job, n_videos)
    for i, (path, fallback) in enumerate(zip(paths, fallbacks, strict=True)):
        try:
            result = await fetch(i, path)
        except OutputUnusable as e:
            if fallback == path:
                raise
            try:
                result = await fetch(i, fallback)
            except OutputUnusable as again:
                raise OutputUnusable(f"{e}; its fallback name failed too: {again}") from None
            note = f"{e}; saved as {result.path}"
            notes.append(note)
            ctx.stats.note_error(f"{job.id}: {note}")
            ctx.emit("renamed", job=job.id, wanted=str(path), path=str(result.path), reason=str(e))
        files.append(
            {"path": os.path.abspath(result.path), "size": result.size, "sha256": result.sha256}
        )
    posters: list[str | None] = []
    if not ctx.config.posters:  # none made yet: the report makes them
        return files, posters, notes
    for poster in await make_posters([Path(str(f["path"])) for f in files]):
        posters.append(None if poster.path is None else poster.path.name)
        if poster.problem is not None:
            notes.append(f"no poster frame for {poster.video.name}: {poster.problem}")
            ctx.emit("poster_failed", job=job.id, path=str(poster.video), reason=poster.problem)
    return files, posters, notes


async def _failed_try(
    ctx: RunContext, queue: DownloadQueue, item: DueJob, e: ApiError, now: float, expires_at: float
) -> None:
    """A download that failed: expired, failed, or tried again later (see the module doc)."""
    job = item.job
    past_retention = now >= expires_at  # never, for the user's own bucket
    if past_retention and isinstance(e, (NotFound, FileRefused)):
        # The server says the file is gone, and the recorded times agree.
        await _end(ctx, queue, job, S.EXPIRED, ErrorKind.EXPIRED, f"video deleted: {e}")
        return
    retention_h = ctx.config.retention_s / 3600
    why = item.failures.give_up(
        e, past_retention=past_retention, retention_h=retention_h, retained=has_retention(job)
    )
    if why is not None:
        await _end(ctx, queue, job, S.FAILED, ErrorKind.DOWNLOAD, why)
        return
    ctx.stats.note_error(f"{job.id}: download: {e}")
    queue.retry(item, now + _before_expiry(ctx.backoff_s(item.tries + 1), now, expires_at))


def _before_expiry(delay_s: float, now: float, expires_at: float) -> float:
    """The delay before the next try: one last try just before the server deletes the
    video; once past that, the backoff as it is (never a loop of immediate retries)."""
    return delay_s if now >= expires_at else min(delay_s, expires_at - now)


async def _end(
    ctx: RunContext, queue: DownloadQueue, job: Job, dst: JobState, kind: ErrorKind, why: str
) -> None:
    await ctx.end_job(job, S.GENERATED, dst, kind, why)
    queue.forget(job.id)
