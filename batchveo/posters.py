"""Poster frames: one small JPEG still of each video, beside it, so a report of 500 cards
shows 500 pictures without decoding a single video.

Who calls it: the downloader (``run.downloader.save_files``), right after each video is
on disk and verified and before the job is recorded ``done``, and the report, which makes
the ones missing (videos done before posters existed, a poster deleted since).

* **Which frame**: the one shown at ``POSTER_AT_S`` (1 s), not the first. An image-to-video
  job's first frame *is* the user's input image, already on its card; a clip may open on a
  fade or a blur; one second in, the shot is established, and every Veo clip (4 to 8 s)
  lasts that long. PyAV seeks to the keyframe at or before 1 s and decodes forward to it
  (at most a keyframe interval of frames: tens of milliseconds for a 720p clip). A video
  shorter than that gives its last frame.
* **Size**: at most ``POSTER_MAX_PX`` on its longer side (320x180 for 16:9, 180x320 for
  9:16: sharp in a card, ~10 kB), JPEG quality ``POSTER_QUALITY``.
* **Where**: ``<video stem>.jpg`` beside the video, written to a temporary name (a
  ``.part`` the next run cleans up after a kill), fsynced, renamed over, the folder
  fsynced. A file of that name that batchveo did not write (a
  user's own image of the same name: an input image beside the videos) is never replaced:
  every poster carries a JPEG comment (``POSTER_MARK``), and a file without it sends the
  poster to ``<video stem>.poster.jpg`` instead.
* **Never fatal**: a video PyAV cannot read, or a disk that refuses the JPEG, gives a
  ``Poster`` with no path and the reason (the caller records and reports it; the video
  itself is done). Decoding blocks, so ``make_posters`` runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from av.video.frame import VideoFrame
from PIL import Image, UnidentifiedImageError

from batchveo.outfolder import PART_SUFFIX

POSTER_AT_S = 1.0
"""The moment of the video the poster shows (see the module docstring)."""
POSTER_MAX_PX = 320
"""The poster's longer side, in pixels (never enlarged)."""
POSTER_QUALITY = 80
POSTER_MARK = b"batchveo poster"
"""The JPEG comment that says a file is a poster batchveo wrote, and so may be replaced."""
MAX_FRAMES_DECODED = 600
"""Frames decoded at most to reach ``POSTER_AT_S`` (a file with broken timestamps would
otherwise be decoded to its end)."""


@dataclass(frozen=True)
class Poster:
    """The poster of one video: where it is, or why there is none."""

    video: Path
    path: Path | None
    problem: str | None = None


def poster_path(video: Path) -> Path:
    """Where the poster of ``video`` goes: ``<stem>.jpg`` beside it."""
    return video.with_suffix(".jpg")


def is_poster(path: Path) -> bool:
    """Whether ``path`` is a poster batchveo wrote (its JPEG comment says so)."""
    try:
        with Image.open(path) as im:
            return bool(im.format == "JPEG" and im.info.get("comment") == POSTER_MARK)
    except (OSError, UnidentifiedImageError, ValueError):
        return False


def free_poster_path(video: Path) -> Path | None:
    """Where the poster of ``video`` may be written without replacing a file of the
    user's: ``<stem>.jpg`` unless another file holds that name, then ``<stem>.poster.jpg``;
    None if both are taken."""
    for path in (poster_path(video), video.with_suffix(".poster.jpg")):
        if not os.path.lexists(path) or is_poster(path):
            return path
    return None


class Unreadable(Exception):
    """The video gives no frame (not a video, no video stream, cut short)."""


def _still(container: av.container.InputContainer, at_s: float) -> VideoFrame:
    if not container.streams.video:
        raise Unreadable("no video stream")
    stream = container.streams.video[0]
    base = stream.time_base or Fraction(1, av.time_base)
    target = int(at_s / base)
    with contextlib.suppress(av.FFmpegError):  # unseekable: decode from the start instead
        container.seek(target, stream=stream, backward=True, any_frame=False)
    last: VideoFrame | None = None
    for n, frame in enumerate(container.decode(stream), 1):
        last = frame
        if (frame.pts is not None and frame.pts >= target) or n >= MAX_FRAMES_DECODED:
            break
    if last is None:
        raise Unreadable("no frame could be decoded")
    return last


def still_image(video: Path, at_s: float = POSTER_AT_S) -> Image.Image:
    """The frame of ``video`` shown at ``at_s`` (or its last before), as an RGB image;
    ``Unreadable`` with the decoder's reason if there is none."""
    try:
        with av.open(str(video), mode="r") as container:
            image: Image.Image = _still(container, at_s).to_image()  # type: ignore[no-untyped-call]
            return image
    except av.FFmpegError as e:
        raise Unreadable(_reason(e)) from None


def _reason(e: av.FFmpegError) -> str:
    """The decoder's reason, without the file name it repeats."""
    text = getattr(e, "strerror", None) or str(e)
    return str(text).strip() or type(e).__name__


def poster_jpeg(image: Image.Image) -> bytes:
    """``image`` scaled to at most ``POSTER_MAX_PX`` on its longer side, as marked JPEG."""
    small = image.convert("RGB")
    small.thumbnail((POSTER_MAX_PX, POSTER_MAX_PX), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=POSTER_QUALITY, optimize=True, comment=POSTER_MARK)
    return buf.getvalue()


def write_file_atomic(path: Path, data: bytes) -> None:
    """``data`` to a new temporary name beside ``path`` (never following a link planted
    there), fsynced, renamed over ``path``, the folder fsynced: whole or absent. The
    temporary name is one the next run cleans if this process dies meanwhile
    (``outfolder.OUR_PARTS``: ``NAME.jpg.<8 hex>.part``)."""
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}{PART_SUFFIX}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # not possible on every platform; the rename stands
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def make_poster(video: Path) -> Poster:
    """The poster of ``video`` made and on disk (blocking); never raises for a video that
    cannot be read or a poster that cannot be written: the ``Poster`` says why."""
    try:
        jpeg = poster_jpeg(still_image(video))
    except Unreadable as e:
        return Poster(video, None, f"cannot read the video: {e}")
    except OSError as e:  # the file itself (gone, unreadable) or Pillow's encoder
        return Poster(video, None, f"cannot read the video: {e.strerror or e}")
    dest = free_poster_path(video)
    if dest is None:
        taken = f"{poster_path(video).name} and {video.with_suffix('.poster.jpg').name}"
        return Poster(video, None, f"not written: {taken} are files of someone else's")
    try:
        write_file_atomic(dest, jpeg)
    except OSError as e:
        return Poster(video, None, f"cannot write {dest.name}: {e.strerror or e}")
    return Poster(video, dest)


async def make_posters(videos: Sequence[Path]) -> list[Poster]:
    """The posters of ``videos``, made in a worker thread (decoding blocks)."""
    return await asyncio.to_thread(lambda: [make_poster(v) for v in videos])
