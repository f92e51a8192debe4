"""The report's poster frames: where each video's is, and the ones still to make.

A run makes every poster as it downloads (``run.downloader``). The report makes the rest
before it writes a page (``backfill_posters``): videos done before posters existed
(``posters`` empty: NULL in the table), a poster deleted since, one the run could not
write. Each is made beside its video and recorded with its job; the report then links
what the database says. A video that still gives none (not readable) is counted, and its
card shows a placeholder; a report tries it again (a failed decode costs ~50 µs), and
writes nothing for it unless the job named a poster that is gone.

The jobs are read one at a time from a read-only snapshot in a worker thread (as the
pages are); each job's posters are written through the store, on the event loop, as they
are made: an interrupted report keeps the posters it made, and a million old videos take
the memory of one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchveo.errors import StaleTransition
from batchveo.posters import make_poster
from batchveo.report.paths import locate
from batchveo.states import JobState
from batchveo.store import Job, Snapshot, Store


@dataclass
class PosterCounts:
    """What ``backfill_posters`` found: posters made now, and videos that gave none."""

    made: int = 0
    unreadable: int = 0
    problems: list[str] | None = None
    """The first few reasons (``job ID: video: why``), for the one line the CLI prints."""

    def note(self, text: str, keep: int = 3) -> None:
        self.problems = [*(self.problems or []), text][:keep]


def video_paths(files: Sequence[Mapping[str, Any]], base: Path | None) -> list[str]:
    """A job's recorded videos, as found (``paths.locate``)."""
    return [locate(str(f["path"]), base) for f in files if f.get("path")]


def poster_file(video: str, name: str | None) -> str | None:
    """The poster of ``video`` whose name the job recorded (None: it has none)."""
    return None if not name else os.path.join(os.path.dirname(video), name)


def poster_of(job: Job, base: Path | None) -> str | None:
    """The poster of the job's first video (the one its card plays), if it has one."""
    videos = video_paths(job.files, base)
    if not videos or not job.posters:
        return None
    return poster_file(videos[0], job.posters[0])


def _wanted(videos: list[str], posters: list[str | None]) -> bool:
    """Whether some video on disk lacks a poster on disk."""
    for i, video in enumerate(videos):
        have = poster_file(video, posters[i] if i < len(posters) else None)
        if (have is None or not os.path.exists(have)) and os.path.exists(video):
            return True
    return False


def _remake(
    job_id: str, videos: list[str], posters: list[str | None], counts: PosterCounts
) -> list[str | None]:
    """Every poster of a job, those on disk kept, the others made now (blocking)."""
    out: list[str | None] = []
    for i, video in enumerate(videos):
        name = posters[i] if i < len(posters) else None
        have = poster_file(video, name)
        if have is not None and os.path.exists(have):
            out.append(name)
            continue
        if not os.path.exists(video):  # shown as missing; nothing to make a poster of
            out.append(None)
            continue
        poster = make_poster(Path(video))
        if poster.path is None:
            counts.unreadable += 1
            counts.note(f"job {job_id}: {os.path.basename(video)}: {poster.problem}")
            out.append(None)
        else:
            counts.made += 1
            out.append(poster.path.name)
    return out


async def backfill_posters(store: Store, *, batch: str | None = None) -> PosterCounts:
    """Make and record the poster of every done video of ``batch`` (default: every batch)
    that has none on disk; see the module docstring."""
    loop = asyncio.get_running_loop()
    base = store.path.absolute().parent
    counts = PosterCounts()

    def record(job_id: str, posters: list[str | None]) -> None:
        """From the worker thread: the store writes on the loop; wait for it."""
        write = store.update(job_id, JobState.DONE, posters=posters)
        with contextlib.suppress(StaleTransition):  # no longer done: nothing to show
            asyncio.run_coroutine_threadsafe(write, loop).result()

    def scan() -> None:
        with Snapshot.open(store.path) as snap:
            if snap is None:
                return
            cols = ("id", "files", "posters")
            for row in snap.rows(cols, [JobState.DONE], batch=batch):
                videos, posters = video_paths(row["files"], base), list(row["posters"])
                if _wanted(videos, posters):
                    new = _remake(str(row["id"]), videos, posters, counts)
                    if new != posters + [None] * (len(new) - len(posters)):
                        record(str(row["id"]), new)  # not when only "none" is learnt

    await asyncio.to_thread(scan)
    return counts
