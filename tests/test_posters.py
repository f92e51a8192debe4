"""Poster frames from real videos (``batchveo.posters``): the packaged sample and its
longer and shorter copies (``mp4.with_duration``), videos PyAV itself encodes at other
sizes, and files that are no video; what lands on disk, and what never does."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import shutil
from fractions import Fraction
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote

import av
import pytest
from PIL import Image, ImageChops, ImageStat

from batchveo.api import DownloadResult, OperationStatus, VeoClient, resolve_provider
from batchveo.mp4 import with_duration
from batchveo.posters import (
    POSTER_AT_S,
    POSTER_MARK,
    POSTER_MAX_PX,
    Poster,
    is_poster,
    make_poster,
    make_posters,
    poster_path,
    still_image,
)
from batchveo.report import build_report
from batchveo.report.cards import NO_POSTER
from batchveo.report.posters import PosterCounts
from batchveo.run import downloader
from batchveo.run.runner import Runner
from batchveo.spec import JobSpec
from batchveo.states import JobState as S
from batchveo.store import Job, Store
from tests.helpers import make_spec, without_posters
from tests.pipeline_helpers import SAMPLE_MP4, fast_config, fast_sim, run_batch
from tests.test_report import EXPECTED, run_night
from tests.test_report import Page as ReportHtml


def sample(folder: Path, name: str = "clip.mp4", data: bytes = SAMPLE_MP4) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def encode(path: Path, width: int, height: int, seconds: float = 2.0, fps: int = 12) -> Path:
    """A real MP4 (MPEG-4 part 2 video) of ``width`` x ``height``: each second its
    own colour, so which second a still comes from is plain to see."""
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        for i in range(round(seconds * fps)):
            image = Image.new("RGB", (width, height), colours[i // fps % len(colours)])
            frame = av.VideoFrame.from_image(image)
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def mean_diff(a: Image.Image, b: Image.Image) -> float:
    diff = ImageChops.difference(a.convert("RGB"), b.convert("RGB").resize(a.size))
    return sum(ImageStat.Stat(diff).mean) / 3


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".part", ".tmp")))


def test_the_sample_gives_a_marked_jpeg_of_the_frame_at_one_second(tmp_path: Path) -> None:
    video = sample(tmp_path)
    poster = make_poster(video)
    assert poster == Poster(video, tmp_path / "clip.jpg")
    assert poster_path(video) == tmp_path / "clip.jpg"
    with Image.open(tmp_path / "clip.jpg") as im:
        assert (im.format, im.size, im.mode) == ("JPEG", (320, 180), "RGB")
        assert im.info["comment"] == POSTER_MARK
        im.load()
        # The sample is FFmpeg's test pattern with a moving bar and its timestamp burnt in:
        # the poster is the frame at 1 s, not the first.
        at_one = mean_diff(im, still_image(video, POSTER_AT_S))
        assert at_one < 6  # the JPEG's own artefacts on a test pattern
        assert mean_diff(im, still_image(video, 0.0)) > 3 * at_one
    assert 2_000 < (tmp_path / "clip.jpg").stat().st_size < 30_000
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("seconds", [8.0, 0.5])
def test_copies_made_to_last_another_length_decode_too(tmp_path: Path, seconds: float) -> None:
    video = sample(tmp_path, data=with_duration(SAMPLE_MP4, seconds))
    poster = make_poster(video)
    assert poster.problem is None and poster.path == tmp_path / "clip.jpg"
    with av.open(str(video)) as c:
        frames = list(c.decode(video=0))
    # 8 s: the frame shown at 1 s; 0.5 s: there is no second 1, so the last frame.
    want = next(f for f in frames if f.time >= 1.0) if seconds > 1 else frames[-1]
    with Image.open(poster.path) as im:
        assert im.size == (320, 180)
        assert mean_diff(im, want.to_image()) < 6


@pytest.mark.parametrize(
    ("width", "height", "size"),
    [(640, 360, (320, 180)), (360, 640, (180, 320)), (96, 64, (96, 64))],
)
def test_a_poster_is_at_most_320_px_on_its_longer_side_and_never_enlarged(
    tmp_path: Path, width: int, height: int, size: tuple[int, int]
) -> None:
    video = encode(tmp_path / "made.mp4", width, height)
    poster = make_poster(video)
    assert poster.path is not None
    with Image.open(poster.path) as im:
        assert im.size == size and max(size) <= POSTER_MAX_PX
        # Second 0 is red, second 1 green: the still is from second 1.
        r, g, b = (round(v) for v in ImageStat.Stat(im.convert("RGB")).mean)
        assert g > 150 and r < 80 and b < 80, (r, g, b)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("junk.mp4", b"this is not a video at all"),
        ("cut.mp4", SAMPLE_MP4[:5000]),
        ("empty.mp4", b""),
    ],
)
def test_a_file_that_is_no_video_gets_no_poster_and_a_reason(
    tmp_path: Path, name: str, data: bytes
) -> None:
    video = sample(tmp_path, name, data)
    poster = make_poster(video)
    assert poster.path is None
    assert poster.problem is not None and poster.problem.startswith("cannot read the video: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_a_missing_video_gets_a_reason(tmp_path: Path) -> None:
    poster = make_poster(tmp_path / "gone.mp4")
    assert poster.path is None
    assert poster.problem == "cannot read the video: No such file or directory"


def test_a_file_of_the_users_is_never_replaced(tmp_path: Path) -> None:
    """An input image that happens to have the poster's name keeps its bytes; the poster
    goes to ``<stem>.poster.jpg``. A poster of batchveo's own is simply made again."""
    video = sample(tmp_path)
    mine = tmp_path / "clip.jpg"
    Image.new("RGB", (50, 50), "white").save(mine, "JPEG")
    before = mine.read_bytes()
    poster = make_poster(video)
    assert poster.path == tmp_path / "clip.poster.jpg" and is_poster(poster.path)
    assert mine.read_bytes() == before and not is_poster(mine)
    again = make_poster(video)
    assert again.path == tmp_path / "clip.poster.jpg"
    # Both names taken by other files: no poster, and why.
    shutil.copyfile(mine, tmp_path / "clip.poster.jpg")
    refused = make_poster(video)
    assert refused.path is None and refused.problem is not None
    assert "clip.jpg and clip.poster.jpg" in refused.problem
    assert mine.read_bytes() == before == (tmp_path / "clip.poster.jpg").read_bytes()


def test_a_poster_of_batchveos_is_made_again_in_its_place(tmp_path: Path) -> None:
    video = sample(tmp_path)
    first = make_poster(video)
    assert first.path is not None
    inode = first.path.stat().st_ino
    assert make_poster(video) == first  # replaced by a new file (renamed over), same name
    assert first.path.stat().st_ino != inode and is_poster(first.path)
    first.path.unlink()
    assert make_poster(video) == first and is_poster(first.path)


def test_a_disk_that_refuses_the_jpeg_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    video = sample(tmp_path)

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    poster = make_poster(video)
    assert poster == Poster(video, None, "cannot write clip.jpg: No space left on device")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


async def test_posters_are_made_off_the_event_loop(tmp_path: Path) -> None:
    videos = [sample(tmp_path, f"v{i}.mp4") for i in range(3)]
    posters = await make_posters([*videos, tmp_path / "none.mp4"])
    assert [p.path for p in posters] == [tmp_path / f"v{i}.jpg" for i in range(3)] + [None]


# -- in a run: every done video gets its poster before the job is done ----------------


def garbled(data: bytes = SAMPLE_MP4) -> bytes:
    """The sample with every byte of its frames zeroed: an MP4 by its boxes (it downloads
    and verifies), but no frame decodes."""
    at = data.index(b"mdat") - 4
    size = int.from_bytes(data[at : at + 4], "big")
    return data[: at + 8] + bytes(size - 8) + data[at + size :]


def assert_poster_of(video: Path, name: str = "") -> None:
    """``video`` plays (PyAV) and has its poster beside it: a JPEG Pillow opens, 320x180."""
    with av.open(str(video)) as c:
        assert c.streams.video and next(c.decode(video=0)).width == 320
    poster = video.with_name(name or video.with_suffix(".jpg").name)
    with Image.open(poster) as im:
        assert (im.format, im.size) == ("JPEG", (320, 180)) and is_poster(poster)


async def test_a_run_leaves_a_poster_beside_every_done_video(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "videos"
    specs = [make_spec(f"ok{i}") for i in range(3)]
    specs += [make_spec("bad", "a glacier calving [sim:op_error]")]
    specs += [make_spec("named", output_name="shots/named-take")]
    async with fast_sim() as sim:
        result = await run_batch(store, sim, fast_config(out), specs)
    assert result.exit_code == 1  # the failed job
    jobs = {j.id: j for j in await store.jobs()}
    for job_id in ("ok0", "ok1", "ok2", "named"):
        job = jobs[job_id]
        video = Path(job.files[0]["path"])
        assert job.state is S.DONE and job.posters == [video.with_suffix(".jpg").name]
        assert_poster_of(video)
    assert jobs["named"].files[0]["path"] == str(out / "shots" / "named-take.mp4")
    assert jobs["bad"].state is S.FAILED and jobs["bad"].posters == []
    assert sorted(p.name for p in out.rglob("*.jpg")) == [
        "named-take.jpg", "ok0.jpg", "ok1.jpg", "ok2.jpg"
    ]  # fmt: skip


async def test_a_run_without_posters_leaves_only_videos_and_the_report_makes_them(
    store: Store, tmp_path: Path
) -> None:
    """``run --no-posters``: the run decodes nothing; ``report`` makes what is missing."""
    out = tmp_path / "videos"
    specs = [make_spec(f"ok{i}") for i in range(3)]
    async with fast_sim() as sim:
        config = dataclasses.replace(fast_config(out), posters=False)
        result = await run_batch(store, sim, config, specs)
    assert result.exit_code == 0
    assert list(out.rglob("*.jpg")) == []
    assert all(j.state is S.DONE and j.posters == [] for j in await store.jobs())
    summary = await build_report(store, out / "report.html")
    assert summary.posters is not None and summary.posters.made == 3
    for job in await store.jobs():
        assert job.posters == [f"{job.id}.jpg"]
        assert_poster_of(Path(job.files[0]["path"]))


class Crash(Exception):
    """The process dies here (a kill -9, as far as the database and the disk see)."""


async def test_a_kill_between_video_and_poster_leaves_no_dangling_poster_and_the_rerun_makes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "videos"
    real = downloader.make_posters

    async def dies(videos: list[Path]) -> list[Poster]:
        raise Crash("killed with the video on disk, before its poster")

    store = await Store.open(tmp_path / "jobs.db")
    try:
        async with fast_sim() as sim:
            monkeypatch.setattr(downloader, "make_posters", dies)
            with pytest.raises(Crash):
                await run_batch(store, sim, fast_config(out), [make_spec("a")])
            job = await store.get("a")
            assert job is not None and job.state is S.GENERATED
            assert job.posters == [] and job.files == []  # nothing names a poster
            assert (out / "a.mp4").exists() and not (out / "a.jpg").exists()

            monkeypatch.setattr(downloader, "make_posters", real)
            result = await run_batch(store, sim, fast_config(out))
            job = await store.get("a")
    finally:
        await store.close()
    assert result.exit_code == 0 and job is not None and job.state is S.DONE
    assert job.posters == ["a.jpg"] and without_posters(p.name for p in out.iterdir()) == ["a.mp4"]
    assert_poster_of(out / "a.mp4")


async def test_a_poster_left_half_written_by_a_dead_process_is_cleaned_by_the_next_run(
    store: Store, tmp_path: Path
) -> None:
    out = tmp_path / "videos"
    out.mkdir()
    (out / "a.jpg.0123abcd.part").write_bytes(b"\xff\xd8 half a poster")  # ours
    (out / "holiday.jpg.part").write_bytes(b"a browser's download")  # not ours
    async with fast_sim() as sim:
        result = await run_batch(store, sim, fast_config(out), [make_spec("a")])
    assert result.exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg", "a.mp4", "holiday.jpg.part"]


class CrashingStore(Store):
    """The real store, dying once before the job is recorded done."""

    async def transition(
        self, job_id: str, src: S, dst: S, *, detail: str | None = None, **fields: Any
    ) -> Job:
        if dst is S.DONE and not getattr(self, "crashed", False):
            self.crashed = True
            raise Crash(f"{job_id}: died before {src.value} -> {dst.value}")
        return await super().transition(job_id, src, dst, detail=detail, **fields)


async def test_a_kill_after_the_poster_before_done_makes_it_again_in_its_place(
    tmp_path: Path,
) -> None:
    out = tmp_path / "videos"
    store = cast(CrashingStore, await CrashingStore.open(tmp_path / "jobs.db"))
    try:
        async with fast_sim() as sim:
            with pytest.raises(Crash):
                await run_batch(store, sim, fast_config(out), [make_spec("a")])
            job = await store.get("a")
            assert job is not None and job.state is S.GENERATED and job.posters == []
            assert is_poster(out / "a.jpg")  # on disk, named by nothing yet
            result = await run_batch(store, sim, fast_config(out))
            job = await store.get("a")
    finally:
        await store.close()
    assert result.exit_code == 0 and job is not None and job.posters == ["a.jpg"]
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg", "a.mp4"]  # no a.poster.jpg


class FakeVertex:
    """Every submit accepted, the first poll done with ``videos`` inline (Vertex AI without
    a bucket), saved by the real client."""

    def __init__(self, saver: VeoClient, videos: tuple[bytes, ...]):
        self.saver = saver
        self.answer = OperationStatus("done", inline_videos=videos, samples_requested=2)

    async def submit(self, spec: JobSpec) -> str:
        return f"projects/p/locations/us-central1/publishers/google/models/m/operations/{spec.id}"

    async def poll(self, operation_name: str, model: str) -> OperationStatus:
        return self.answer

    async def download(self, uri: str, dest: Path) -> DownloadResult:
        raise AssertionError("inline videos are never downloaded")

    async def save(self, data: bytes, dest: Path) -> DownloadResult:
        return await self.saver.save(data, dest)


async def test_an_unreadable_video_gets_no_poster_and_its_job_is_done_with_the_reason(
    store: Store, tmp_path: Path
) -> None:
    """Vertex AI's inline samples (the poller's save path): the second one verifies as an
    MP4 but no frame of it decodes."""
    out = tmp_path / "v"
    events: list[tuple[str, dict[str, Any]]] = []
    await store.add_jobs([make_spec("a")])
    async with VeoClient(resolve_provider("custom", "http://127.0.0.1:9"), "k" * 8) as saver:
        client = FakeVertex(saver, (SAMPLE_MP4 + b"\0\0\0\x0cfree1234", garbled()))
        runner = Runner(
            store, client, fast_config(out), rng=random.Random(1),
            observer=lambda name, details: events.append((name, details)),
        )  # fmt: skip
        result = await asyncio.wait_for(runner.run(), 60)
    job = await store.get("a")
    assert result.exit_code == 0 and job is not None and job.state is S.DONE
    assert len(job.files) == 2 and job.posters == ["a_1.jpg", None]
    assert_poster_of(out / "a_1.mp4")
    assert sorted(p.name for p in out.iterdir()) == ["a_1.jpg", "a_1.mp4", "a_2.mp4"]
    done = [e for e in await store.events("a") if e.to_state == "done"]
    assert done[0].detail is not None
    assert "no poster frame for a_2.mp4: cannot read the video: " in done[0].detail
    failed = [d for name, d in events if name == "poster_failed"]
    assert [(d["job"], Path(d["path"]).name) for d in failed] == [("a", "a_2.mp4")]
    assert failed[0]["reason"].startswith("cannot read the video: ")


# -- in the report: every card shows its poster; the report makes the missing ones -----

DONE_IN_NIGHT = [i for i, s in EXPECTED.items() if s is S.DONE]


def card_videos(report: Path) -> dict[str, dict[str, str]]:
    """Each card's ``<video>`` attributes, by job id."""
    html = report.read_text(encoding="utf-8")
    out = {}
    for job_id in EXPECTED:
        start = html.index(f'id="job-{job_id}"')
        card = html[start : html.index("</article>", start)]
        page = parse_html(card)
        if page.videos:
            out[job_id] = page.videos[0]
    return out


def parse_html(text: str) -> ReportHtml:
    page = ReportHtml()
    page.feed(text)
    page.close()
    return page


async def test_each_card_shows_its_poster_by_a_relative_url(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "my videos"
    await run_night(store, tmp_path, out)
    for report in (out / "report.html", tmp_path / "elsewhere" / "deep" / "r.html"):
        summary = await build_report(store, report)
        assert summary.posters == PosterCounts()  # the run made every one
        videos = card_videos(report)
        assert sorted(videos) == sorted(DONE_IN_NIGHT)
        for job_id, video in videos.items():
            url = video["poster"]
            assert not url.startswith(("/", "file:", "data:")) and " " not in url
            assert video["preload"] == "none" and "src" not in video
            poster = (report.parent / unquote(url)).resolve()
            assert poster == (out / f"{job_id}.jpg").resolve() and is_poster(poster)
            assert (
                poster.with_suffix(".mp4") == (report.parent / unquote(video["data-src"])).resolve()
            )


async def test_the_report_makes_the_posters_of_videos_done_without_them(
    store: Store, tmp_path: Path
) -> None:
    """Videos downloaded before posters existed (the column NULL, no JPEG), one whose
    poster was deleted since, and one that is no video any more."""
    out = tmp_path / "videos"
    await run_night(store, tmp_path, out)
    for job_id in DONE_IN_NIGHT:
        (out / f"{job_id}.jpg").unlink()
        if job_id != "sea":  # sea keeps its name: only its file is gone
            await store.update(job_id, S.DONE, posters=None)
    (out / "fox.mp4").write_bytes(garbled())
    report = out / "report.html"
    summary = await build_report(store, report)
    assert summary.posters is not None
    assert (summary.posters.made, summary.posters.unreadable) == (len(DONE_IN_NIGHT) - 1, 1)
    assert summary.posters.problems == [
        "job fox: fox.mp4: cannot read the video: Invalid data found when processing input"
    ]
    jobs = {j.id: j for j in await store.jobs()}
    for job_id in DONE_IN_NIGHT:
        want = [] if job_id == "fox" else [f"{job_id}.jpg"]  # fox: nothing to record
        assert jobs[job_id].state is S.DONE and jobs[job_id].posters == want
        if want:
            assert_poster_of(out / f"{job_id}.mp4")
    videos = card_videos(report)
    assert videos["fox"]["poster"] == NO_POSTER
    assert videos["sea"]["poster"] == "sea.jpg"
    again = await build_report(store, report)  # nothing left to make; fox is tried again
    assert again.posters is not None and (again.posters.made, again.posters.unreadable) == (0, 1)

    # A job that names a poster no longer there, of a video that gives none: the name goes.
    (out / "sea.mp4").write_bytes(garbled())
    (out / "sea.jpg").unlink()
    await build_report(store, report)
    sea = await store.get("sea")
    assert sea is not None and sea.posters == [None]
    assert card_videos(report)["sea"]["poster"] == NO_POSTER
