"""Poster frames from real videos (``batchveo.posters``): the packaged sample and its
longer and shorter copies (``mp4.with_duration``), videos PyAV itself encodes at other
sizes, and files that are no video; what lands on disk, and what never does."""

from __future__ import annotations

import os
import shutil
from fractions import Fraction
from pathlib import Path

import av
import pytest
from PIL import Image, ImageChops, ImageStat

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
from tests.pipeline_helpers import SAMPLE_MP4


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
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


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
