"""``batchveo report``: a night's self-contained HTML pages, and with ``--sheet`` its
contact sheet.

It writes the pages (``report.build_report``: one page, or for a big night a first page
with its numbers and a page per 1,000 cards), then the sheet (``report.sheet``: one JPEG
of the poster frames with their ids), and prints where each went. What wants a look
(jobs needing attention, downloaded files gone from disk, videos without a poster frame)
goes to stderr with exit 0; a sheet's bad name, or a file it cannot write, is exit 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from batchveo.cli.boundary import echo, main, run_async
from batchveo.cli.commands import open_store
from batchveo.cli.params import db_option
from batchveo.errors import UserError

if TYPE_CHECKING:
    from batchveo.report import ReportSummary
    from batchveo.report.sheet import SheetSummary


@main.command()
@click.option("--batch", help="Only this batch (default: every batch in the database).")
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The HTML file (default: report.html beside the downloaded videos; "
    "report-BATCH.html with --batch).",
)
@click.option(
    "--sheet",
    "sheet_path",
    type=click.Path(path_type=Path),
    help="Also write a contact sheet: one JPEG of the poster frames with their ids.",
)
@db_option
def report(
    batch: str | None, out_path: Path | None, sheet_path: Path | None, db_path: Path
) -> None:
    """Write self-contained HTML pages to look at a night: videos, prompts, failures
    (one page, or for a big night the first with its numbers and a page per 1,000 cards)."""
    from batchveo.report import CARDS_PER_PAGE, build_report, default_report_path
    from batchveo.report.sheet import check_sheet_path, write_contact_sheet

    async def go() -> tuple[ReportSummary, SheetSummary | None]:
        if sheet_path is not None:
            check_sheet_path(sheet_path)  # before anything is written
        async with await open_store(db_path) as store:
            path = out_path or await default_report_path(store, batch=batch)
            try:
                summary = await build_report(store, path, batch=batch)
            except OSError as e:  # nothing was put in place (a full disk, a folder...)
                raise UserError(f"{path}: cannot write the report: {e.strerror or e}") from None
            if sheet_path is None:
                return summary, None
            try:
                return summary, await write_contact_sheet(
                    store, sheet_path, batch=batch, scores=summary.scores
                )
            except OSError as e:
                why = e.strerror or e
                raise UserError(f"{sheet_path}: cannot write the contact sheet: {why}") from None

    summary, sheet = run_async(go, db_path)
    states = ", ".join(f"{n} {s}" for s, n in summary.states.items()) or "no jobs"
    echo(f"wrote {summary.path} ({summary.jobs} jobs: {states})")
    if summary.pages_folder is not None:
        echo(
            f"{summary.pages} pages of {CARDS_PER_PAGE} cards: the first is {summary.path},"
            f" the others in {summary.pages_folder}/"
        )
    _echo_sheet(sheet)
    if summary.attention:
        echo(f"batchveo: {summary.attention} job(s) need attention", err=True)
    if summary.missing_files:
        echo(
            f"batchveo: {summary.missing_files} downloaded file(s) are no longer on disk", err=True
        )
    if (posters := summary.posters) is not None and posters.unreadable:
        first = (posters.problems or [""])[0]
        echo(f"batchveo: {posters.unreadable} video(s) gave no poster frame: {first}", err=True)


def _echo_sheet(sheet: SheetSummary | None) -> None:
    if sheet is not None and not sheet.shown:
        echo("batchveo: no video is done yet: no contact sheet written", err=True)
    elif sheet is not None:
        more = f", the first {sheet.shown} of {sheet.done}" if sheet.done > sheet.shown else ""
        w, h = sheet.size_px
        echo(f"wrote {sheet.path} (contact sheet: {sheet.shown} videos{more}, {w}x{h} px)")
