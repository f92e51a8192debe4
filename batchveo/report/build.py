"""Writing the report: which jobs, where the pages go, and how they are written.

* The jobs are read one at a time from one moment of the database (``Snapshot.jobs``, on
  a read-only connection of its own, in a worker thread), ``CARDS_PER_PAGE`` to a page:
  a night of a million jobs takes the memory of a page or two. The first page, which
  carries the night's numbers, is rendered last, once every job has been counted.
* The pages must be safe to share: they render job data only, and as a last line of
  defence each finished page is scrubbed of anything shaped like an API key, including
  the value of any key-like environment variable (``redact``).
* They are written atomically (``pages.PageWriter``): a crash never leaves a half page
  in place of the previous report.
* First, every done video without a poster frame on disk gets one (``posters``): the
  cards show pictures, whichever batchveo downloaded the videos.
* Each job comes with its recorded review, read beside it in the same statement
  (``Snapshot.reviewed_jobs``: one index lookup a job), never a table of verdicts held
  whole. The scores of the first ``SHEET_MAX_JOBS`` done jobs, the contact sheet's, are
  kept for it as they go by.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path

from batchveo.errors import StoreError, UserError
from batchveo.redact import redact
from batchveo.report.night import Night
from batchveo.report.page import Page
from batchveo.report.pages import CARDS_PER_PAGE, PageFiles, Pager, PageWriter
from batchveo.report.paths import locate
from batchveo.report.posters import PosterCounts, backfill_posters
from batchveo.report.sheet import SHEET_MAX_JOBS
from batchveo.states import JobState
from batchveo.store import Job, Review, Snapshot, Store

Reviewed = tuple[Job, Review | None]


@dataclass(frozen=True)
class ReportSummary:
    """What ``build_report`` wrote, for the CLI to print one line about it."""

    path: Path
    jobs: int
    states: dict[str, int]
    attention: int
    missing_files: int
    """Files a done job recorded that are not on disk any more (shown as missing)."""
    size_bytes: int
    """Of every page."""
    pages: int = 1
    pages_folder: Path | None = None
    """Where the pages after the first are (None: the night is one page)."""
    posters: PosterCounts | None = None
    """Poster frames the report made, and videos that gave none."""
    scores: dict[str, float] = field(default_factory=dict)
    """The review scores of the first ``SHEET_MAX_JOBS`` done jobs (those scored): what
    ``write_contact_sheet`` labels its cells with."""


async def build_report(
    store: Store,
    out_path: Path,
    *,
    batch: str | None = None,
    now: float | None = None,
    cards_per_page: int = CARDS_PER_PAGE,
) -> ReportSummary:
    """Write the HTML report of ``batch`` (default: every batch) to ``out_path`` (its first
    page; the others, ``cards_per_page`` cards each, beside it), atomically.

    Raises ``UserError`` when ``batch`` names no job (nothing is written then).
    """
    when = store.clock() if now is None else now
    base = store.path.absolute().parent
    posters = await backfill_posters(store, batch=batch)  # of no job, if no such batch
    summary = await asyncio.to_thread(
        _build, store.path, Path(out_path), batch, when, base, max(1, cards_per_page)
    )
    return replace(summary, posters=posters)


async def default_report_path(store: Store, *, batch: str | None = None) -> Path:
    """``report.html`` (``report-<batch>.html`` for one batch) in the folder of the videos.

    The folder is the deepest one holding every downloaded file, so the default follows
    whatever ``--out`` the runs used; ``videos`` when nothing is downloaded yet.
    """
    name = "report.html" if batch is None else f"report-{_safe_name(batch)}.html"
    base = store.path.absolute().parent
    folders = await asyncio.to_thread(_video_folders, store.path, batch, base)
    try:
        folder = Path(os.path.commonpath(sorted(folders))) if folders else Path("videos")
    except ValueError:  # files on several drives
        folder = Path("videos")
    with contextlib.suppress(ValueError):  # shown to the user: short when under the cwd
        folder = folder.relative_to(Path.cwd()) if folder.is_absolute() else folder
    return folder / name


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "batch"


@contextlib.contextmanager
def _snapshot(db: Path) -> Iterator[Snapshot]:
    with Snapshot.open(db) as snap:
        if snap is None:
            raise StoreError(f"{db}: not set up although open")
        yield snap


def _video_folders(db: Path, batch: str | None, base: Path) -> set[str]:
    """The folders of every downloaded file of ``batch`` (one job at a time)."""
    with _snapshot(db) as snap:
        return {
            os.path.dirname(os.path.abspath(locate(str(f["path"]), base)))
            for files in snap.files([JobState.DONE], batch=batch)
            for f in files
            if f.get("path")
        }


@dataclass
class SheetScores:
    """The review scores of the first ``SHEET_MAX_JOBS`` done jobs, as they go by: the
    ones the contact sheet shows (it takes the done jobs in the same order)."""

    scores: dict[str, float] = field(default_factory=dict)
    done: int = 0

    def add(self, job: Job, review: Review | None) -> None:
        if job.state is not JobState.DONE:
            return
        self.done += 1
        if self.done <= SHEET_MAX_JOBS and review is not None and review.score is not None:
            self.scores[job.id] = review.score


def _chunks(jobs: Iterator[Reviewed], size: int) -> Iterator[list[Reviewed]]:
    while chunk := list(islice(jobs, size)):
        yield chunk


def _build(
    db: Path, out_path: Path, batch: str | None, now: float, files_base: Path, per_page: int
) -> ReportSummary:
    with _snapshot(db) as snap, snap.one_moment():
        batches = snap.batch_jobs(batch)
        if batch is not None and not batches:
            known = ", ".join(snap.batch_jobs()) or "none"
            raise UserError(f"no jobs in batch {batch!r} (batches: {known})")
        total = sum(batches.values())
        files = PageFiles(out_path, max(1, -(-total // per_page)))
        night = Night(batches, batch)
        writer = PageWriter(files)
        sheet = SheetScores()
        takes = snap.takes_index()
        """A job's retakes are shown beside it (``Page``), not where their rows come."""
        retakes = {t for ids in takes.values() for t in ids}
        try:
            first: Sequence[Reviewed] = []
            missing = 0
            for number, jobs in enumerate(_chunks(snap.reviewed_jobs(batch=batch), per_page), 1):
                for job, review in jobs:
                    night.add(job, number, review)
                    sheet.add(job, review)
                if number == 1:
                    first = jobs  # its top needs every job counted: rendered last
                    continue
                missing += _write_page(
                    writer, jobs, number, night, now, files_base, per_page,
                    _beside(snap, jobs, takes, retakes),
                )  # fmt: skip
            missing += _write_page(
                writer, first, 1, night, now, files_base, per_page,
                _beside(snap, first, takes, retakes),
            )  # fmt: skip
            writer.commit()
        except BaseException:
            writer.abort()
            raise
    return ReportSummary(
        path=out_path,
        jobs=night.jobs,
        states={s.value: n for s, n in night.counts.items() if n},
        attention=night.attention_total,
        missing_files=missing,
        size_bytes=writer.bytes,
        pages=files.count,
        pages_folder=files.folder if files.count > 1 else None,
        scores=sheet.scores,
    )


@dataclass(frozen=True)
class Beside:
    """A page's jobs' retakes, shown beside their originals, and each job's chosen take."""

    takes: dict[str, list[Reviewed]] = field(default_factory=dict)
    chosen: dict[str, str] = field(default_factory=dict)
    shown_elsewhere: frozenset[str] = frozenset()
    """This page's rows that are retakes: each is shown beside its original instead."""


def _beside(
    snap: Snapshot, jobs: Sequence[Reviewed], takes: dict[str, list[str]], retakes: set[str]
) -> Beside:
    """The retakes of this page's originals (read now: a night's retakes are made after
    every original, so their rows come on later pages), and the chosen take of each."""
    originals = [job.id for job, _ in jobs if job.id in takes]
    if not originals:
        return Beside(shown_elsewhere=frozenset(j.id for j, _ in jobs if j.id in retakes))
    read = {job.id: (job, review) for job, review in snap.reviewed_ids(
        [t for o in originals for t in takes[o]]
    )}  # fmt: skip
    return Beside(
        takes={o: [read[t] for t in takes[o] if t in read] for o in originals},
        chosen=snap.chosen_takes(originals),
        shown_elsewhere=frozenset(j.id for j, _ in jobs if j.id in retakes),
    )


def _write_page(
    writer: PageWriter,
    jobs: Sequence[Reviewed],
    number: int,
    night: Night,
    now: float,
    files_base: Path,
    per_page: int,
    beside: Beside,
) -> int:
    """Render and write page ``number``; the downloaded files its cards found missing."""
    files = writer.files
    start = (number - 1) * per_page
    pager = Pager(number, files, start + 1, start + len(jobs), sum(night.batches.values()))
    folder = files.path(number).absolute().parent
    reviews = {job.id: review for job, review in jobs if review is not None}
    for taken in beside.takes.values():
        reviews.update({job.id: review for job, review in taken if review is not None})
    page = Page(
        [job for job, _ in jobs if job.id not in beside.shown_elsewhere],
        folder,
        batch=night.batch,
        now=now,
        files_base=files_base,
        night=night,
        pager=pager,
        reviews=reviews,
        takes={o: [job for job, _ in taken] for o, taken in beside.takes.items()},
        chosen=beside.chosen,
    )
    writer.write(number, redact(page.render(), os.environ).encode("utf-8"))
    return page.missing_files
