"""The contact sheet: one JPEG of a night's poster frames, each with its job's id (and
its review score, when one is given), for a chat message or an email.

``batchveo report --sheet sheet.jpg``. The done jobs in the order they were loaded, at
most ``SHEET_MAX_JOBS`` of them, ``SHEET_COLUMNS`` to a row: each cell is the poster
fitted into ``CELL_PX`` on the page's dark background (a grey cell with "no poster frame"
for a video that has none), the id below it, the score at its right. The size is
``sheet_size``'s, from the number of jobs alone. Scores are whatever the caller maps job
ids to (``{job_id: score}``: the review stage's, when it exists); a job without one shows
its id alone. Written like the pages: a temporary name, fsync, rename.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from batchveo.errors import UserError
from batchveo.report.pages import write_atomic
from batchveo.report.posters import poster_file, video_paths
from batchveo.states import JobState
from batchveo.store import Snapshot, Store

SHEET_COLUMNS = 6
SHEET_MAX_JOBS = 240
"""Cells a sheet holds at most (40 rows: about 1.5 MB); ``--batch`` picks another part."""
CELL_PX = (240, 135)
"""The picture of a cell (16:9; a portrait poster is fitted inside it)."""
LABEL_PX = 22
"""The strip under each picture: the id, and the score."""
GAP_PX = 6
BACKGROUND = (17, 20, 26)
NO_POSTER_FILL = (44, 50, 61)
TEXT = (230, 233, 238)
MUTED = (154, 163, 178)
SHEET_QUALITY = 85
SHEET_SUFFIXES = (".jpg", ".jpeg")


@dataclass(frozen=True)
class SheetSummary:
    """What ``write_contact_sheet`` wrote (nothing when ``shown`` is 0)."""

    path: Path
    shown: int
    done: int
    """Done jobs of the batch (more than ``shown`` beyond ``SHEET_MAX_JOBS``)."""
    size_px: tuple[int, int]


@dataclass(frozen=True)
class SheetCell:
    """One job on the sheet: its id, and its poster's path (None: it has none)."""

    job_id: str
    poster: str | None


def check_sheet_path(path: Path) -> None:
    """``UserError`` (one line) for a path no contact sheet can be written to; nothing is
    written. Called before the report, so that a bad ``--sheet`` writes nothing at all."""
    if path.suffix.lower() not in SHEET_SUFFIXES:
        raise UserError(f"{path}: a contact sheet is a JPEG: name it .jpg or .jpeg")
    if path.is_dir():
        raise UserError(f"{path}: is a folder; name the contact sheet's file")
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{path}: {parent} is a file, not a folder")
            break


def sheet_size(cells: int, columns: int = SHEET_COLUMNS) -> tuple[int, int]:
    """The sheet's width and height in pixels for ``cells`` cells."""
    cols = max(1, min(columns, cells))
    rows = max(1, -(-cells // cols))
    width = GAP_PX + cols * (CELL_PX[0] + GAP_PX)
    height = GAP_PX + rows * (CELL_PX[1] + LABEL_PX + GAP_PX)
    return width, height


Font = ImageFont.ImageFont | ImageFont.FreeTypeFont
Colour = tuple[int, int, int]


def _font(size: int) -> Font:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow before 10.1: the small bitmap font only
        return ImageFont.load_default()


def _text(
    draw: ImageDraw.ImageDraw, x: float, mid_y: float, text: str, font: Font, fill: Colour
) -> None:
    """``text`` from ``x`` on, centred on the line ``mid_y`` (placed by its box, not by
    ``anchor``: a bitmap font, all a Pillow without FreeType has, takes no anchor)."""
    left, top, _, bottom = draw.textbbox((0, 0), text, font=font)
    draw.text((x - left, mid_y - (top + bottom) / 2), text, font=font, fill=fill)


def _printable(text: str, font: Font) -> str:
    """``text`` as ``font`` can draw it: a bitmap font knows Latin-1 only (``?`` for the rest)."""
    if isinstance(font, ImageFont.FreeTypeFont):
        return text
    return text.encode("latin-1", "replace").decode("latin-1")


def _fit(draw: ImageDraw.ImageDraw, text: str, font: Font, width: float) -> str:
    """``text`` cut (with an ellipsis) to fit ``width`` pixels."""
    text = _printable(text, font)
    if draw.textlength(text, font=font) <= width:
        return text
    dots = _printable("…", font)
    while text and draw.textlength(text + dots, font=font) > width:
        text = text[:-1]
    return text + dots


def _picture(cell: SheetCell) -> Image.Image | None:
    if cell.poster is None:
        return None
    try:
        with Image.open(cell.poster) as im:
            picture = im.convert("RGB")
    except (OSError, UnidentifiedImageError):
        return None
    picture.thumbnail(CELL_PX, Image.Resampling.LANCZOS)
    return picture


def render_sheet(
    cells: list[SheetCell], scores: Mapping[str, float] | None, columns: int = SHEET_COLUMNS
) -> bytes:
    """The sheet of ``cells`` as JPEG bytes."""
    size = sheet_size(len(cells), columns)
    cols = max(1, min(columns, len(cells)))
    sheet = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font, small = _font(14), _font(12)
    for i, cell in enumerate(cells):
        x = GAP_PX + (i % cols) * (CELL_PX[0] + GAP_PX)
        y = GAP_PX + (i // cols) * (CELL_PX[1] + LABEL_PX + GAP_PX)
        picture = _picture(cell)
        if picture is None:
            draw.rectangle((x, y, x + CELL_PX[0] - 1, y + CELL_PX[1] - 1), fill=NO_POSTER_FILL)
            text = "no poster frame"
            left = x + (CELL_PX[0] - draw.textlength(text, font=small)) / 2
            _text(draw, left, y + CELL_PX[1] / 2, text, small, MUTED)
        else:
            dx, dy = (CELL_PX[0] - picture.width) // 2, (CELL_PX[1] - picture.height) // 2
            sheet.paste(picture, (x + dx, y + dy))
        score = "" if scores is None or cell.job_id not in scores else f"{scores[cell.job_id]:g}"
        room, line = CELL_PX[0] - 4, y + CELL_PX[1] + LABEL_PX / 2
        if score:
            width = draw.textlength(score, font=font)
            room -= int(width) + 8
            _text(draw, x + CELL_PX[0] - 2 - width, line, score, font, TEXT)
        _text(draw, x + 2, line, _fit(draw, cell.job_id, font, room), font, TEXT)
    buf = io.BytesIO()
    sheet.save(buf, "JPEG", quality=SHEET_QUALITY, optimize=True)
    return buf.getvalue()


def _cells(db: Path, batch: str | None, base: Path, limit: int) -> tuple[list[SheetCell], int]:
    """The first ``limit`` done jobs' cells, and how many done jobs there are."""
    cells: list[SheetCell] = []
    done = 0
    with Snapshot.open(db) as snap:
        if snap is None:
            return cells, 0
        for row in snap.rows(("id", "files", "posters"), [JobState.DONE], batch=batch):
            done += 1
            if len(cells) < limit:
                videos, posters = video_paths(row["files"], base), row["posters"]
                name = posters[0] if videos and posters else None
                cells.append(
                    SheetCell(str(row["id"]), poster_file(videos[0], name) if name else None)
                )
    return cells, done


async def write_contact_sheet(
    store: Store,
    out_path: Path,
    *,
    batch: str | None = None,
    scores: Mapping[str, float] | None = None,
    columns: int = SHEET_COLUMNS,
    max_jobs: int = SHEET_MAX_JOBS,
) -> SheetSummary:
    """Write the contact sheet of ``batch``'s done jobs (every batch's by default) to
    ``out_path``, each labelled with its id and, if ``scores`` maps it, its score. The
    posters are the ones the jobs record (``build_report`` makes the missing ones first).
    Nothing is written when no job is done."""
    check_sheet_path(out_path)
    base = store.path.absolute().parent

    def work() -> SheetSummary:
        cells, done = _cells(store.path, batch, base, max(1, max_jobs))
        if not cells:
            return SheetSummary(out_path, 0, 0, (0, 0))
        write_atomic(out_path, render_sheet(cells, scores, columns))
        return SheetSummary(out_path, len(cells), done, sheet_size(len(cells), columns))

    return await asyncio.to_thread(work)
