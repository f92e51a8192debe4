"""The contact sheet (``batchveo report --sheet sheet.jpg``): one JPEG grid of a night's
poster frames, each with its job's id and, when given, its score; what a bad path says.

The night is ``tests/test_report.py``'s, run once on the simulator for the module."""

from __future__ import annotations

import asyncio
import io
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from PIL import Image, ImageChops, ImageFont, ImageStat

from batchveo.cli import main
from batchveo.report import sheet
from batchveo.report.sheet import (
    BACKGROUND,
    CELL_PX,
    GAP_PX,
    LABEL_PX,
    NO_POSTER_FILL,
    SheetSummary,
    sheet_size,
    write_contact_sheet,
)
from batchveo.states import JobState
from batchveo.store import Store
from tests.helpers import make_spec
from tests.pipeline_helpers import fast_config, fast_sim, run_batch
from tests.test_posters import garbled
from tests.test_report import EXPECTED, run_night

DONE = [i for i, s in EXPECTED.items() if s is JobState.DONE]
"""The night's done jobs, in the order they were loaded: the sheet's order."""


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of a finished night: ``jobs.db`` and ``videos/`` (with their posters)."""
    base = tmp_path_factory.mktemp("night")

    async def go() -> None:
        async with await Store.open(base / "jobs.db") as store:
            await run_night(store, base, base / "videos")

    asyncio.run(go())
    return base


@pytest.fixture
def copy(night: Path, tmp_path: Path) -> Path:
    """A copy of the night's database of this test's own (its files are the night's)."""
    (tmp_path / "n").mkdir()
    shutil.copyfile(night / "jobs.db", tmp_path / "n" / "jobs.db")
    return tmp_path / "n"


def cell_box(i: int, cols: int) -> tuple[int, int, int, int]:
    """The picture of cell ``i`` on a sheet of ``cols`` columns (left, top, right, bottom)."""
    x = GAP_PX + (i % cols) * (CELL_PX[0] + GAP_PX)
    y = GAP_PX + (i // cols) * (CELL_PX[1] + LABEL_PX + GAP_PX)
    return x, y, x + CELL_PX[0], y + CELL_PX[1]


def label_box(i: int, cols: int) -> tuple[int, int, int, int]:
    x, _, right, bottom = cell_box(i, cols)
    return x, bottom, right, bottom + LABEL_PX


def mean(im: Image.Image) -> tuple[float, ...]:
    return tuple(ImageStat.Stat(im).mean)


def near(a: tuple[float, ...], b: tuple[float, ...], tol: float = 12) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


async def sheet_of(base: Path, out: Path, **kw: object) -> tuple[SheetSummary, Image.Image]:
    async with await Store.open(base / "jobs.db") as store:
        summary = await write_contact_sheet(store, out, **kw)  # type: ignore[arg-type]
    with Image.open(out) as im:
        im.load()
        return summary, im


async def test_a_sheet_of_every_done_job_has_the_grid_s_size_and_shows_each_poster(
    night: Path, copy: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sheets" / "sheet.jpg"
    summary, im = await sheet_of(copy, out)
    assert summary == SheetSummary(out, len(DONE), len(DONE), sheet_size(len(DONE)))
    width = GAP_PX + len(DONE) * (CELL_PX[0] + GAP_PX)
    assert im.format == "JPEG" and im.size == summary.size_px == (width, 6 + 135 + 22 + 6)
    poster = Image.open(night / "videos" / "sea.jpg").convert("RGB").resize(CELL_PX)
    for i in range(len(DONE)):  # every video is the simulator's sample: the same picture
        picture = im.crop(cell_box(i, len(DONE)))
        assert sum(mean(ImageChops.difference(picture, poster))) / 3 < 12
        assert not near(mean(picture), BACKGROUND)
        label = im.crop(label_box(i, len(DONE)))
        assert max(label.convert("L").getextrema()) > 150  # the id, light on dark
    assert [p.name for p in out.parent.iterdir()] == ["sheet.jpg"]  # no temporary left


async def test_scores_are_drawn_beside_the_ids_of_the_jobs_that_have_one(
    copy: Path, tmp_path: Path
) -> None:
    _, plain = await sheet_of(copy, tmp_path / "plain.jpg")
    _, scored = await sheet_of(copy, tmp_path / "scored.jpg", scores={"fox": 7.5, "sea": 3})
    cols = len(DONE)
    changed = [
        i
        for i in range(cols)
        if ImageChops.difference(plain.crop(label_box(i, cols)), scored.crop(label_box(i, cols)))
        .convert("L")
        .getextrema()[1]
        > 60
    ]
    assert changed == [DONE.index("sea"), DONE.index("fox")]
    for i in range(cols):  # the pictures are the same
        a, b = plain.crop(cell_box(i, cols)), scored.crop(cell_box(i, cols))
        assert sum(mean(ImageChops.difference(a, b))) / 3 < 2


async def test_rows_wrap_and_a_long_night_shows_its_first_jobs(copy: Path, tmp_path: Path) -> None:
    summary, im = await sheet_of(copy, tmp_path / "s.jpg", columns=2, max_jobs=3)
    assert (summary.shown, summary.done) == (3, len(DONE))
    assert im.size == sheet_size(3, 2) == (6 + 2 * 246, 6 + 2 * 163)
    assert near(mean(im.crop(cell_box(3, 2))), BACKGROUND, 3)  # the fourth cell is empty


async def test_a_done_job_without_a_poster_is_a_grey_cell(copy: Path, tmp_path: Path) -> None:
    async with await Store.open(copy / "jobs.db") as store:
        await store.update("fox", JobState.DONE, posters=[None])
    _, im = await sheet_of(copy, tmp_path / "s.jpg")
    box = cell_box(DONE.index("fox"), len(DONE))
    corner = im.crop((box[0] + 4, box[1] + 4, box[0] + 40, box[1] + 30))
    assert near(mean(corner), NO_POSTER_FILL, 4)


async def test_no_done_job_writes_no_sheet(store: Store, tmp_path: Path) -> None:
    await store.add_jobs([make_spec("a")])
    summary = await write_contact_sheet(store, tmp_path / "s.jpg")
    assert summary.shown == 0 and not (tmp_path / "s.jpg").exists()


# -- the command ------------------------------------------------------------------


def invoke(base: Path, *args: str) -> Result:
    """``batchveo report`` of the database in ``base``, its report written there too."""
    db, out = str(base / "jobs.db"), str(base / "report.html")
    return CliRunner().invoke(main, ["report", "--db", db, "--out", out, *args])


def test_report_sheet_writes_the_report_and_a_sheet(copy: Path) -> None:
    sheet = copy / "out" / "sheet.jpg"
    result = invoke(copy, "--sheet", str(sheet))
    assert result.exit_code == 0, result.output
    w, h = sheet_size(len(DONE))
    assert f"wrote {sheet} (contact sheet: {len(DONE)} videos, {w}x{h} px)" in result.stdout
    with Image.open(sheet) as im:
        assert (im.format, im.size) == ("JPEG", (w, h))
    assert (copy / "report.html").is_file()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("sheet.png", "sheet.png: a contact sheet is a JPEG: name it .jpg or .jpeg"),
        ("a-folder.jpg", "a-folder.jpg: is a folder; name the contact sheet's file"),
        ("a-file/sheet.jpg", "a-file/sheet.jpg: {base}/a-file is a file, not a folder"),
    ],
)
def test_a_bad_sheet_path_is_one_line_exit_2_and_nothing_written(
    copy: Path, monkeypatch: pytest.MonkeyPatch, name: str, message: str
) -> None:
    monkeypatch.chdir(copy)
    (copy / "a-folder.jpg").mkdir()
    (copy / "a-file").write_text("not a folder")
    result = invoke(copy, "--sheet", name)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"batchveo: {message.format(base=copy)}"]
    assert not (copy / "report.html").exists()
    assert not (copy / "sheet.png").exists()


def test_a_video_that_gives_no_poster_is_one_line_and_the_report_is_written(
    tmp_path: Path,
) -> None:
    async def night() -> None:
        async with await Store.open(tmp_path / "jobs.db") as store, fast_sim() as sim:
            await run_batch(store, sim, fast_config(tmp_path / "v"), [make_spec("a")])

    asyncio.run(night())
    (tmp_path / "v" / "a.jpg").unlink()
    (tmp_path / "v" / "a.mp4").write_bytes(garbled())
    result = invoke(tmp_path, "--sheet", str(tmp_path / "s.jpg"))
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "batchveo: 1 video(s) gave no poster frame: job a: a.mp4: cannot read the video:"
        " Invalid data found when processing input"
    ]
    assert (tmp_path / "report.html").is_file() and (tmp_path / "s.jpg").is_file()


@pytest.mark.parametrize("bitmap", [False, True])
def test_long_and_non_latin_ids_are_cut_to_fit_whatever_the_font(
    monkeypatch: pytest.MonkeyPatch, bitmap: bool
) -> None:
    """A Pillow without FreeType has only a Latin-1 bitmap font: ids still draw."""
    if bitmap:
        monkeypatch.setattr(sheet, "_font", lambda size: ImageFont.load_default_imagefont())
    cells = [sheet.SheetCell("x" * 80, None), sheet.SheetCell("日本語-ü-id", None)]
    data = sheet.render_sheet(cells, {"x" * 80: 9.5})
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == sheet_size(2)
        label = im.crop(label_box(0, 2))
        assert max(label.convert("L").getextrema()) > 150
