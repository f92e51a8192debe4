"""Writing the report: which jobs, where the file goes, and how it is written.

* The page must be safe to share: it renders job data only, and as a last line of
  defence the finished text is scrubbed of anything shaped like an API key, including
  the value of any key-like environment variable (``redact``).
* It is written atomically (temp file in the same folder, fsync, ``os.replace``): a
  crash never leaves a half page in place of the previous report.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from batchveo.errors import UserError
from batchveo.redact import redact
from batchveo.report.page import Page
from batchveo.report.paths import locate
from batchveo.states import JobState
from batchveo.store import Job, Store


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


async def build_report(
    store: Store, out_path: Path, *, batch: str | None = None, now: float | None = None
) -> ReportSummary:
    """Write the HTML report of ``batch`` (default: every batch) to ``out_path``, atomically.

    Raises ``UserError`` when ``batch`` names no job (nothing is written then).
    """
    jobs = await store.jobs(batch=batch)
    if batch is not None and not jobs:
        known = ", ".join(sorted(await store.counts())) or "none"
        raise UserError(f"no jobs in batch {batch!r} (batches: {known})")
    when = store.clock() if now is None else now
    out_path = Path(out_path)
    base = store.path.absolute().parent
    return await asyncio.to_thread(_render_and_write, jobs, out_path, batch, when, base)


async def default_report_path(store: Store, *, batch: str | None = None) -> Path:
    """``report.html`` (``report-<batch>.html`` for one batch) in the folder of the videos.

    The folder is the deepest one holding every downloaded file, so the default follows
    whatever ``--out`` the runs used; ``videos`` when nothing is downloaded yet.
    """
    name = "report.html" if batch is None else f"report-{_safe_name(batch)}.html"
    folders = {
        os.path.dirname(os.path.abspath(locate(str(f["path"]), store.path.absolute().parent)))
        for job in await store.jobs([JobState.DONE], batch=batch)
        for f in job.files
        if f.get("path")
    }
    try:
        folder = Path(os.path.commonpath(sorted(folders))) if folders else Path("videos")
    except ValueError:  # files on several drives
        folder = Path("videos")
    with contextlib.suppress(ValueError):  # shown to the user: short when under the cwd
        folder = folder.relative_to(Path.cwd()) if folder.is_absolute() else folder
    return folder / name


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "batch"


def _render_and_write(
    jobs: Sequence[Job], out_path: Path, batch: str | None, now: float, files_base: Path
) -> ReportSummary:
    page = Page(jobs, out_path.absolute().parent, batch=batch, now=now, files_base=files_base)
    text = redact(page.render(), os.environ)
    data = text.encode("utf-8")
    write_atomic(out_path, data)
    return ReportSummary(
        path=out_path,
        jobs=len(jobs),
        states={s.value: n for s, n in page.counts.items() if n},
        attention=len(page.attention),
        missing_files=page.missing_files,
        size_bytes=len(data),
    )


def write_atomic(path: Path, data: bytes) -> None:
    """Temp file in the same folder, fsync, rename over ``path``, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # not possible on every platform; the rename stands
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
